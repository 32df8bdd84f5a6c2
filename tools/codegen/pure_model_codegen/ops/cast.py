"""Cast and CastLike: element type conversion, folded at generation time or run as a loop.

Conversions follow C++'s static_cast, which is what ONNX specifies for the types the IR has:
floats to integers truncate toward zero (out-of-range values are undefined in ONNX too), any
nonzero value (NaN included) becomes true, bool becomes 0 or 1. float16 and bfloat16 go through
float (exactly), and values are rounded into them to nearest even, from a double directly, as
numpy and ml_dtypes do. The attributes `saturate` and `round_mode` only concern float8 targets,
which the generator does not have.
"""

import numpy as np
from onnx import TensorProto

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, input_count, register


def _type_name(code):
    try:
        return TensorProto.DataType.Name(code).lower()
    except ValueError:
        return f"#{code}"


def _target(node, graph):
    if node.op_type == "CastLike":
        return graph.tensor(node.inputs[1]).dtype
    to = attr_int(node, "to")
    if to not in ir.DTYPES:
        raise CodegenError(f"cast to element type {_type_name(to)} is not supported (the generator has "
                           f"{', '.join(ir.dtype_name(d) for d in sorted(ir.DTYPES))})", node=node)
    return to


def _infer(node, graph):
    input_count(node, 2 if node.op_type == "CastLike" else 1)
    return [(_target(node, graph), graph.tensor(node.inputs[0]).shape)]


def _evaluate(node, values):
    to = values[1].dtype if node.op_type == "CastLike" else ir.numpy_type(attr_int(node, "to"))
    return [np.asarray(values[0]).astype(to)]


def _emit(node, ctx):
    x, out = ctx.graph.tensor(node.inputs[0]), ctx.graph.tensor(node.outputs[0])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    if x.dtype == out.dtype:
        return [f"std::memcpy({dst}, {src}, {out.nbytes});"]
    return [f"for (std::size_t i = 0; i < {out.elements}; ++i) {dst}[i] = {_convert(x.dtype, out.dtype, f'{src}[i]')};"]


def _convert(source, target, element):
    """C++ converting `element` of type `source` to type `target`."""
    value = ir.widen(source, element)
    if ir.is_narrow_float(target):
        if source not in (1, 11):
            value = f"static_cast<float>({value})"
        return ir.narrow(target, value)
    if target == 9 and ir.is_narrow_float(source):
        return f"{value} != 0.0f"
    return f"static_cast<{ir.cpp_type(target)}>({value})"


register("Cast", infer=_infer, evaluate=_evaluate, emit=_emit, narrow_floats=True)
register("CastLike", infer=_infer, evaluate=_evaluate, emit=_emit, narrow_floats=True)
