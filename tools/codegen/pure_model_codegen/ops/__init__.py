"""The operator registry: what each supported ONNX op means for shapes, folding and C++.

One module per operator family registers its ops here. An op definition has:
  infer(node, graph) -> [(dtype, shape), ...]    shapes and types of the outputs; checks attributes.
                                                 An entry may add a third item, the output's value,
                                                 when shapes alone determine it (Shape, Constant).
  evaluate(node, [np.ndarray]) -> [np.ndarray]   numpy semantics, used to fold constant subgraphs
  emit(node, ctx) -> C++ statements               the step in the generated Run(); None = fold only.
                                                 ctx.ptr(name) names a tensor; a constant may be a
                                                 masked view (obfuscate) that only indexes (p[i],
                                                 p + n) or goes to a kernel taking its weights as a
                                                 template parameter: copy with ctx.copy and
                                                 ctx.bytes_of, not std::memcpy or reinterpret_cast.
  view                                            True when the output is the input's bytes renamed
  flops(node, graph) -> int                       arithmetic of one run, for reports; default: one
                                                 operation per output element (0 for views)
  scratch(node, graph) -> int                     bytes of arena the step needs while it runs
  max_version                                     newest since_version implemented (None: all)
  check(node, version)                            rejects attributes of old versions not implemented
  narrow_floats                                   True when emit handles float16/bfloat16 elements itself;
                                                 otherwise the op runs in float32 between Casts that
                                                 passes/widen_narrow.py inserts (as numpy computes)

Ops of the default domain (ai.onnx) are registered by type. An op of another domain is registered
with `domain=` (e.g. com.microsoft's contrib ops) and matches only nodes of exactly that domain
and type; every other op of that domain stays unsupported. Such ops have no onnx schema: their
version is the opset the model imports for the domain.
"""

import dataclasses
from typing import Callable, Optional

from pure_model_codegen.errors import CodegenError


@dataclasses.dataclass(frozen=True)
class OpDef:
    op_type: str
    infer: Callable
    evaluate: Optional[Callable] = None
    emit: Optional[Callable] = None
    view: bool = False
    flops: Optional[Callable] = None
    scratch: Optional[Callable] = None
    max_version: Optional[int] = None
    check: Optional[Callable] = None
    narrow_floats: bool = False


_REGISTRY = {}  # ai.onnx op type -> OpDef
_DOMAIN_REGISTRY = {}  # (domain, op type) -> OpDef, for ops outside ai.onnx


def register(op_type, *, infer, evaluate=None, emit=None, view=False, flops=None, scratch=None, max_version=None,
             check=None, narrow_floats=False, domain=""):
    table, key = (_REGISTRY, op_type) if domain in ("", "ai.onnx") else (_DOMAIN_REGISTRY, (domain, op_type))
    if key in table:
        raise ValueError(f"op {key} registered twice")
    table[key] = OpDef(op_type, infer, evaluate, emit, view, flops, scratch, max_version, check, narrow_floats)


def lookup(node):
    """The definition for `node`, or a CodegenError naming the node, op, domain and opset."""
    if node.domain not in ("", "ai.onnx"):
        op = _DOMAIN_REGISTRY.get((node.domain, node.op_type))
        if op is None and not any(domain == node.domain for domain, _ in _DOMAIN_REGISTRY):
            raise CodegenError(f"unsupported operator: domain '{node.domain}' is not supported", node=node)
    else:
        op = _REGISTRY.get(node.op_type)
    if op is None:
        raise CodegenError("unsupported operator", node=node)
    return op


def supported_ops():
    """Names of the supported ops; those outside ai.onnx carry their domain (com.microsoft.X)."""
    return sorted(_REGISTRY) + sorted(f"{domain}.{op_type}" for domain, op_type in _DOMAIN_REGISTRY)


# Attribute helpers shared by the op modules.
def _shown(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def attr_int(node, name, default=None):
    value = node.attrs.get(name, default)
    if value is None:
        raise CodegenError(f"required attribute '{name}' is missing", node=node)
    if not isinstance(value, int):
        raise CodegenError(f"attribute '{name}' must be an int, got {_shown(value)}", node=node)
    return value


def attr_ints(node, name, default=None):
    value = node.attrs.get(name, default)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        raise CodegenError(f"attribute '{name}' must be a list of ints, got {_shown(value)}", node=node)
    return [int(v) for v in value]


def attr_float(node, name, default):
    value = node.attrs.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodegenError(f"attribute '{name}' must be a float, got {_shown(value)}", node=node)
    return float(value)


def normalize_axis(node, axis, rank, what="axis"):
    if not -rank <= axis < rank:
        raise CodegenError(f"{what} {axis} is out of range for rank {rank}", node=node)
    return axis + rank if axis < 0 else axis


def require_dtype(node, graph, name, allowed):
    from pure_model_codegen import ir

    tensor = graph.tensor(name)
    if tensor.dtype not in allowed:
        names = ", ".join(ir.dtype_name(d) for d in allowed)
        raise CodegenError(
            f"input '{name}' is {ir.dtype_name(tensor.dtype)}; this op supports {names} here", node=node
        )
    return tensor


# Index tables are written into the source as text: beyond this many entries a model would give
# source files of hundreds of megabytes.
MAX_TABLE_ENTRIES = 1 << 22


def check_table_size(node, label, entries):
    if entries > MAX_TABLE_ENTRIES:
        raise CodegenError(f"needs a table of {entries} {label}, more than the {MAX_TABLE_ENTRIES} the generator "
                           "writes into source", node=node)


def input_count(node, low, high=None):
    present = len(node.inputs)
    high = low if high is None else high
    if not low <= present <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise CodegenError(f"expects {expected} inputs, got {present}", node=node)


# Importing the families registers their ops. Every module of this package is an op family, so a
# new family needs no line here (and families added side by side never touch this file).
def _import_families():
    import importlib
    import pkgutil

    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}")


_import_families()
