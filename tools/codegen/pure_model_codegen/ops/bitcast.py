"""BitCast (opset 26): the input's bytes, unchanged, read as another element type of the same width.

A copy rather than a view: the generated code names each tensor by a pointer of its own element
type, so the bytes move once through memcpy (which also keeps the reinterpretation well defined
in C++). The 4- and 2-bit types are refused: the IR keeps one element per byte, so their bit
patterns are not the packed ones BitCast speaks of.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, input_count, register

# Element types whose storage holds exactly their ONNX bit width.
_BITS = {code: 8 * np.dtype(ir.numpy_type(code)).itemsize for code in ir.DTYPES if code not in (21, 22, 23, 25, 26)}


def _target(node, graph):
    input_count(node, 1)
    x = graph.tensor(node.inputs[0])
    to = attr_int(node, "to")
    for label, code in (("input", x.dtype), ("target 'to'", to)):
        if code not in _BITS:
            raise CodegenError(f"{label} type {ir.dtype_name(code)} is not supported by BitCast here", node=node)
    if _BITS[x.dtype] != _BITS[to]:
        raise CodegenError(f"{ir.dtype_name(x.dtype)} ({_BITS[x.dtype]} bits) and {ir.dtype_name(to)} "
                           f"({_BITS[to]} bits) differ in width", node=node)
    return x, to


def _infer(node, graph):
    x, to = _target(node, graph)
    return [(to, x.shape)]


def _evaluate(node, values):
    to = attr_int(node, "to")
    return [np.ascontiguousarray(values[0]).view(ir.numpy_type(to))]


def _emit(node, ctx):
    x, _ = _target(node, ctx.graph)
    return [f"std::memcpy({ctx.ptr(node.outputs[0])}, {ctx.ptr(node.inputs[0])}, {x.nbytes});"]


register("BitCast", infer=_infer, evaluate=_evaluate, emit=_emit, narrow_floats=True)
