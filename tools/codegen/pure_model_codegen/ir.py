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
# The 16-bit floats are storage types (runtime/include/pure_model/narrow_floats.h): C++ has no
# portable arithmetic on them, so steps widen them to float (see NARROW_FLOATS).
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


# Float types kept in storage structs, each with the C++ function that rounds a float (or double)
# into it; their elements are read with pure_model::ToFloat().
NARROW_FLOATS = {
    10: "pure_model::RoundToFloat16",
    16: "pure_model::RoundToBFloat16",
}


def is_narrow_float(code):
    return code in NARROW_FLOATS


def widen(code, expr):
    """C++ reading the element `expr` of type `code` as a value to compute with."""
    return f"pure_model::ToFloat({expr})" if code in NARROW_FLOATS else expr


def narrow(code, expr):
    """C++ storing the computed (float or double) value `expr` as an element of type `code`."""
    return f"{NARROW_FLOATS[code]}({expr})" if code in NARROW_FLOATS else expr


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
