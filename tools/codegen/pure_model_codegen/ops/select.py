"""Selection along an axis: Hardmax and TopK; and EyeLike, whose value its shape decides.

Orderings follow numpy's, which onnx's reference evaluator uses: NaN counts as larger than any
number, and of equal values the one with the lower index comes first (TopK) or wins (Hardmax).
TopK's k must be known at generation time, since it decides the output's shape; its outputs are
always sorted (sorted=0 leaves the order to the implementation).
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, input_count, normalize_axis, register, require_dtype
from pure_model_codegen.ops.elementwise import literal
from pure_model_codegen.ops.shape_ops import constant_input
from pure_model_codegen.ops.softmax import axis_groups

_FLOATS = (1, 11)
_NUMERIC = _FLOATS + (2, 3, 4, 5, 6, 7, 12, 13)


def _precedes(dtype, largest, a, b):
    """C++ test: `a` comes strictly before `b` in the order of the op."""
    first, second = (a, b) if largest else (b, a)
    if dtype in _FLOATS:
        return f"({first} > {second} || ({first} != {first} && {second} == {second}))"
    return f"{first} > {second}"


# --- Hardmax ------------------------------------------------------------------------------------

def _hardmax_infer(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    axis_groups(node, x.shape)
    return [(x.dtype, x.shape)]


def _hardmax_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    outer, extent, inner = axis_groups(node, x.shape)
    t = ir.cpp_type(x.dtype)
    params = ctx.param_struct(node, [("kOuter", outer), ("kAxis", extent), ("kInner", inner)])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    at = f"(i0 * {params}::kAxis + {{}}) * {params}::kInner + i1"
    candidate, best = f"{src}[{at.format('i2')}]", f"{src}[{at.format('at')}]"
    return [
        f"for (std::size_t i0 = 0; i0 < {params}::kOuter; ++i0) {{",
        f"  for (std::size_t i1 = 0; i1 < {params}::kInner; ++i1) {{",
        "    std::size_t at = 0;",
        f"    for (std::size_t i2 = 1; i2 < {params}::kAxis; ++i2) {{",
        f"      if ({_precedes(x.dtype, True, candidate, best)}) at = i2;",
        "    }",
        f"    for (std::size_t i2 = 0; i2 < {params}::kAxis; ++i2) {dst}[{at.format('i2')}] = i2 == at ? "
        f"{literal(1, x.dtype)} : {literal(0, x.dtype)};",
        "  }",
        "}",
    ]


register("Hardmax", infer=_hardmax_infer, emit=_hardmax_emit)


# --- TopK ---------------------------------------------------------------------------------------

def _topk_params(node, graph):
    x = require_dtype(node, graph, node.inputs[0], _NUMERIC)
    axis = normalize_axis(node, attr_int(node, "axis", -1), len(x.shape))
    if node.opset < 10:
        input_count(node, 1)
        k = attr_int(node, "k")
    else:
        input_count(node, 2)
        value = constant_input(node, graph, 1, "K", integer=True, required=True)
        if np.asarray(value).size != 1:
            raise CodegenError(f"K must hold one value, got shape {list(np.asarray(value).shape)}", node=node)
        k = int(np.asarray(value).reshape(-1)[0])
    if not 0 <= k <= x.shape[axis]:
        raise CodegenError(f"k = {k} is outside [0, {x.shape[axis]}] (the extent of axis {axis})", node=node)
    largest = attr_int(node, "largest", 1) if node.opset >= 11 else 1
    return x, axis, k, bool(largest)


def _topk_infer(node, graph):
    x, axis, k, _ = _topk_params(node, graph)
    shape = tuple(x.shape[:axis]) + (k,) + tuple(x.shape[axis + 1:])
    return [(x.dtype, shape), (7, shape)]


def _topk_emit(node, ctx):
    x, axis, k, largest = _topk_params(node, ctx.graph)
    t = ir.cpp_type(x.dtype)
    shape = x.shape
    params = ctx.param_struct(node, [("kOuter", int(np.prod(shape[:axis]))), ("kAxis", shape[axis]), ("kK", k),
                                     ("kInner", int(np.prod(shape[axis + 1:])))])
    src = ctx.ptr(node.inputs[0])
    values = ctx.ptr(node.outputs[0]) if node.outputs[0] else None
    if len(node.outputs) > 1 and node.outputs[1]:
        indices = ctx.ptr(node.outputs[1])
    else:
        indices = None
    if values is None or indices is None:
        raise CodegenError("both outputs (Values and Indices) must be named", node=node)
    stride = f"{params}::kInner"
    previous = f"top[(slot - 1) * {stride}]"
    return [
        f"for (std::size_t i0 = 0; i0 < {params}::kOuter; ++i0) {{",
        f"  for (std::size_t i1 = 0; i1 < {params}::kInner; ++i1) {{",
        f"    const {t}* const line = {src} + i0 * {params}::kAxis * {stride} + i1;",
        f"    {t}* const top = {values} + i0 * {params}::kK * {stride} + i1;",
        f"    std::int64_t* const top_index = {indices} + i0 * {params}::kK * {stride} + i1;",
        "    // Insertion into the sorted list of the best so far: O(axis * k), no scratch.",
        "    std::size_t kept = 0;",
        f"    for (std::size_t i2 = 0; i2 < {params}::kAxis; ++i2) {{",
        f"      const {t} v = line[i2 * {stride}];",
        "      std::size_t slot = kept;",
        f"      while (slot > 0 && {_precedes(x.dtype, largest, 'v', previous)}) {{",
        f"        if (slot < {params}::kK) {{",
        f"          top[slot * {stride}] = {previous};",
        f"          top_index[slot * {stride}] = top_index[(slot - 1) * {stride}];",
        "        }",
        "        --slot;",
        "      }",
        f"      if (slot < {params}::kK) {{",
        f"        top[slot * {stride}] = v;",
        f"        top_index[slot * {stride}] = static_cast<std::int64_t>(i2);",
        f"        if (kept < {params}::kK) ++kept;",
        "      }",
        "    }",
        "  }",
        "}",
    ]


def _topk_flops(node, graph):
    x, axis, k, _ = _topk_params(node, graph)
    return x.elements * max(k, 1)


register("TopK", infer=_topk_infer, emit=_topk_emit, flops=_topk_flops)


# --- EyeLike ------------------------------------------------------------------------------------

def _eyelike_infer(node, graph):
    input_count(node, 1)
    x = graph.tensor(node.inputs[0])
    if len(x.shape) != 2:
        raise CodegenError(f"input must be 2-D, got shape {list(x.shape)}", node=node)
    dtype = attr_int(node, "dtype", x.dtype)
    if dtype not in ir.DTYPES:
        raise CodegenError(f"dtype {ir.dtype_name(dtype)} is not supported", node=node)
    k = attr_int(node, "k", 0)
    value = np.eye(x.shape[0], x.shape[1], k=k, dtype=ir.numpy_type(dtype))
    return [(dtype, x.shape, value)]


register("EyeLike", infer=_eyelike_infer)
