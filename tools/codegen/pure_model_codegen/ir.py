"""The generator's intermediate form: a small, typed, fully shaped dataflow graph.

The frontend builds it from ONNX; passes rewrite it; the emitter turns it into C++. Tensors are
referred to by name. Every tensor has a static shape once the frontend has bound the inputs, and
a constant tensor carries its numpy value.
"""

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np

# ONNX TensorProto.DataType numbers, the C++ type, and the numpy type of each supported dtype.
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
}
DTYPE_BY_NAME = {name: code for code, (name, _, _) in DTYPES.items()}


def dtype_name(code):
    return DTYPES[code][0] if code in DTYPES else f"dtype#{code}"


def cpp_type(code):
    return DTYPES[code][1]


def numpy_type(code):
    return DTYPES[code][2]


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
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

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

    def tensor(self, name):
        return self.tensors[name]

    def producers(self):
        return {out: node for node in self.nodes for out in node.outputs if out}

    def consumers(self):
        result = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    result.setdefault(name, []).append(node)
        return result
