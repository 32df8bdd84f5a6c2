"""The generator's intermediate form: a small, typed, fully shaped dataflow graph.

The frontend builds it from ONNX; passes rewrite it; the emitter turns it into C++. Tensors are
referred to by name. Every tensor has a static shape once the frontend has bound the inputs, and
a constant tensor carries its numpy value.
"""

import dataclasses
import math
from typing import Any, Dict, List, Optional

import ml_dtypes
import numpy as np

from pure_model_codegen.errors import CodegenError

# ONNX TensorProto.DataType numbers, the C++ type, and the numpy type of each supported dtype.
# The 16-bit floats, float8 and the 4- and 2-bit types are storage structs
# (runtime/include/pure_model/narrow_floats.h): C++ has no portable arithmetic on them, so steps
# read them as float (or int) and round what they store (see STORAGE).
DTYPES = {
    1: ("float32", "float", np.float32),
    2: ("uint8", "std::uint8_t", np.uint8),
    3: ("int8", "std::int8_t", np.int8),
    4: ("uint16", "std::uint16_t", np.uint16),
    5: ("int16", "std::int16_t", np.int16),
    6: ("int32", "std::int32_t", np.int32),
    7: ("int64", "std::int64_t", np.int64),
    9: ("bool", "bool", np.bool_),
    11: ("float64", "double", np.float64),
    12: ("uint32", "std::uint32_t", np.uint32),
    13: ("uint64", "std::uint64_t", np.uint64),
    10: ("float16", "pure_model::Float16", np.float16),
    16: ("bfloat16", "pure_model::BFloat16", ml_dtypes.bfloat16),
    17: ("float8e4m3fn", "pure_model::Float8E4M3FN", ml_dtypes.float8_e4m3fn),
    18: ("float8e4m3fnuz", "pure_model::Float8E4M3FNUZ", ml_dtypes.float8_e4m3fnuz),
    19: ("float8e5m2", "pure_model::Float8E5M2", ml_dtypes.float8_e5m2),
    20: ("float8e5m2fnuz", "pure_model::Float8E5M2FNUZ", ml_dtypes.float8_e5m2fnuz),
    21: ("uint4", "pure_model::UInt4", ml_dtypes.uint4),
    22: ("int4", "pure_model::Int4", ml_dtypes.int4),
    23: ("float4e2m1", "pure_model::Float4E2M1", ml_dtypes.float4_e2m1fn),
    25: ("uint2", "pure_model::UInt2", ml_dtypes.uint2),
    26: ("int2", "pure_model::Int2", ml_dtypes.int2),
}
DTYPE_BY_NAME = {name: code for code, (name, _, _) in DTYPES.items()}


# Size limits. The kernels index with 32-bit ints and take dimensions as `int` template
# parameters, so no dimension and no tensor may exceed 2^31 - 1 elements; the arena and the
# embedded weights are each capped at 16 GiB. Checked wherever a shape enters the graph (inputs,
# initializers, every inferred output) so that an absurd shape fails clearly instead of
# overflowing a size in Python, numpy or the generated C++.
MAX_DIM = (1 << 31) - 1
MAX_ELEMENTS = (1 << 31) - 1
MAX_TOTAL_BYTES = 16 << 30


def check_shape(shape, what, node=None):
    """Raises a CodegenError naming `what` unless `shape` is a list of sane dimensions."""
    dims = [int(d) for d in shape]
    for i, d in enumerate(dims):
        if d < 0:
            raise CodegenError(f"{what} has a negative dimension {d} (dimension {i} of {dims})", node=node)
        if d > MAX_DIM:
            raise CodegenError(f"{what} has dimension {i} = {d}, more than the {MAX_DIM} (2^31 - 1) the generated "
                               "code can index", node=node)
    elements = math.prod(dims)
    if elements > MAX_ELEMENTS:
        raise CodegenError(f"{what} of shape {dims} has {elements} elements, more than the {MAX_ELEMENTS} "
                           "(2^31 - 1) a tensor may have", node=node)
    return tuple(dims)


def dtype_name(code):
    return DTYPES[code][0] if code in DTYPES else f"dtype#{code}"


def cpp_type(code):
    return DTYPES[code][1]


def numpy_type(code):
    return DTYPES[code][2]


# Element types kept in storage structs: the C++ function that reads an element as a value to
# compute with (float, or int for the 4- and 2-bit integers) and the one that stores a value.
STORAGE = {
    10: ("pure_model::ToFloat", "pure_model::RoundToFloat16"),
    16: ("pure_model::ToFloat", "pure_model::RoundToBFloat16"),
    17: ("pure_model::ToFloat", "pure_model::RoundToFloat8E4M3FN"),
    18: ("pure_model::ToFloat", "pure_model::RoundToFloat8E4M3FNUZ"),
    19: ("pure_model::ToFloat", "pure_model::RoundToFloat8E5M2"),
    20: ("pure_model::ToFloat", "pure_model::RoundToFloat8E5M2FNUZ"),
    23: ("pure_model::ToFloat", "pure_model::RoundToFloat4E2M1"),
    21: ("pure_model::ToInt", "pure_model::WrapToUInt4"),
    22: ("pure_model::ToInt", "pure_model::WrapToInt4"),
    25: ("pure_model::ToInt", "pure_model::WrapToUInt2"),
    26: ("pure_model::ToInt", "pure_model::WrapToInt2"),
}
STORAGE_FLOATS = (10, 16, 17, 18, 19, 20, 23)
FLOAT8 = (17, 18, 19, 20)
# ONNX packs these two (or four) to a byte in a TensorProto; the generated code keeps one a byte.
PACKED = (21, 22, 23, 25, 26)
# The storage floats that ops compute on (in float); the others only convert and move.
NARROW_FLOATS = (10, 16)


def is_narrow_float(code):
    return code in NARROW_FLOATS


def is_storage(code):
    return code in STORAGE


def widen(code, expr):
    """C++ reading the element `expr` of type `code` as a value to compute with."""
    return f"{STORAGE[code][0]}({expr})" if code in STORAGE else expr


def narrow(code, expr):
    """C++ storing the computed value `expr` (float, double or, for the small integers, an
    integer) as an element of type `code`."""
    return f"{STORAGE[code][1]}({expr})" if code in STORAGE else expr


def compute_type(code):
    """The element type steps compute in: float for the narrow floats, else the type itself."""
    return 1 if code in NARROW_FLOATS else code


def dtype_of_numpy(np_dtype):
    for code, (_, _, np_type) in DTYPES.items():
        if np.dtype(np_type) == np.dtype(np_dtype):
            return code
    raise KeyError(np_dtype)


@dataclasses.dataclass
class Tensor:
    name: str
    dtype: int
    shape: tuple
    value: Optional[np.ndarray] = None  # set for constants (initializers and folded values)

    @property
    def is_constant(self):
        return self.value is not None

    @property
    def elements(self):
        return math.prod(int(d) for d in self.shape)

    @property
    def nbytes(self):
        return self.elements * np.dtype(numpy_type(self.dtype)).itemsize

    def describe(self):
        return f"{dtype_name(self.dtype)}[{','.join(str(d) for d in self.shape)}]"


@dataclasses.dataclass
class Node:
    op_type: str
    name: str
    inputs: List[str]  # "" marks an omitted optional input, as in ONNX
    outputs: List[str]
    attrs: Dict[str, Any]
    domain: str = ""
    opset: int = 0

    def describe(self):
        domain = self.domain or "ai.onnx"
        return f"node '{self.name}' ({domain}.{self.op_type}, opset {self.opset})"


@dataclasses.dataclass
class Subgraph:
    """The body of a control-flow node (If's branches, Loop's and Scan's bodies), as imported.

    Its nodes may read tensors of the enclosing graphs by name (outer-scope references): any name
    the subgraph does not define itself. ops/control.py inlines copies of it into the graph.
    """

    name: str
    inputs: List[str]  # formal inputs, bound to outer tensors when inlined
    outputs: List[str]
    nodes: List[Node]
    constants: Dict[str, Tensor]  # its initializers

    def defined(self):
        return set(self.inputs) | set(self.constants) | {o for n in self.nodes for o in n.outputs if o}

    def outer_references(self):
        """Names its nodes (and those of the subgraphs inside them) read from enclosing graphs."""
        defined = self.defined()
        names = set()
        for node in self.nodes:
            names.update(n for n in node.inputs if n)
            for value in node.attrs.values():
                if isinstance(value, Subgraph):
                    names.update(value.outer_references())
        return names - defined

    def renamed(self, mapping):
        """A copy whose outer-scope references are renamed by `mapping` (names it defines stay)."""
        local = {k: v for k, v in mapping.items() if k not in self.defined()}
        nodes = []
        for node in self.nodes:
            attrs = {k: (v.renamed(local) if isinstance(v, Subgraph) else v) for k, v in node.attrs.items()}
            nodes.append(dataclasses.replace(node, inputs=[local.get(n, n) for n in node.inputs], attrs=attrs))
        return dataclasses.replace(self, nodes=nodes)


@dataclasses.dataclass
class Graph:
    """The model after import: inputs and outputs in ONNX order, nodes in a valid execution order."""

    model_path: str
    inputs: List[str]
    outputs: List[str]
    nodes: List[Node]
    tensors: Dict[str, Tensor]
    opsets: Dict[str, int]
    # Graph output -> (dtype or None, [dim or None] or None) as the model declares it; the
    # computed outputs must agree, or callers would size their buffers wrongly.
    declared_outputs: Dict[str, tuple] = dataclasses.field(default_factory=dict)
    # Graph outputs whose declared shape the user replaced (output_shapes).
    stated_outputs: frozenset = frozenset()
    # Graph inputs bound to values at generation time (--input_value): constants now, not inputs.
    # Kept here (in model order) for the header to document even when no step reads them.
    bound_inputs: Dict[str, "Tensor"] = dataclasses.field(default_factory=dict)

    def tensor(self, name):
        tensor = self.tensors.get(name)
        if tensor is None:
            if not name:
                raise CodegenError("a required input is omitted (its name is empty)")
            raise CodegenError(f"tensor '{name}' is not defined at this point of the graph")
        return tensor

    def producers(self):
        return {out: node for node in self.nodes for out in node.outputs if out}

    def consumers(self):
        result = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    result.setdefault(name, []).append(node)
        return result
