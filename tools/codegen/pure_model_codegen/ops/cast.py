"""Cast and CastLike: element type conversion, folded at generation time or run as a loop.

Conversions follow C++'s static_cast, which is what ONNX specifies for the plain types: floats to
integers truncate toward zero (out-of-range values are undefined in ONNX too), any nonzero value
(NaN included) becomes true, bool becomes 0 or 1. The storage types (runtime/include/pure_model/
narrow_floats.h) convert as numpy and ml_dtypes do, which is what onnx's reference evaluator
computes: they widen to float exactly; a value rounds into a float type to nearest even (into
float16 from a double directly, into the others through float); into float8, `saturate` (default
1) clamps what is out of range (infinities too) to the largest finite value, and without it such
values become infinity or NaN; into the 4- and 2-bit integers, values truncate toward zero and
wrap around. `round_mode` only concerns float8e8m0, which the generator does not have.
"""

import ml_dtypes
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


def _saturate(node):
    saturate = attr_int(node, "saturate", 1)
    if saturate not in (0, 1):
        raise CodegenError(f"attribute 'saturate' must be 0 or 1, got {saturate}", node=node)
    return bool(saturate)


def _evaluate(node, values):
    x = np.asarray(values[0])
    to = values[1].dtype if node.op_type == "CastLike" else ir.numpy_type(attr_int(node, "to"))
    if ir.dtype_of_numpy(to) in ir.FLOAT8 and _saturate(node) and x.dtype.kind == "f":
        info = ml_dtypes.finfo(to)
        x = np.clip(x, float(info.min), float(info.max))
    return [x.astype(to)]


def _emit(node, ctx):
    x, out = ctx.graph.tensor(node.inputs[0]), ctx.graph.tensor(node.outputs[0])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    if x.dtype == out.dtype:
        return [ctx.copy(dst, src, out.nbytes)]
    value = _convert(x.dtype, out.dtype, f"{src}[i]", _saturate(node))
    return [f"for (std::size_t i = 0; i < {out.elements}; ++i) {dst}[i] = {value};"]


def _convert(source, target, element, saturate):
    """C++ converting `element` of type `source` to type `target`."""
    value = ir.widen(source, element)  # a float, or an int for the small integers
    floating = source in (1, 11) + ir.STORAGE_FLOATS
    if target in ir.STORAGE_FLOATS:
        # float16 has a double overload (rounding once); the others round through float.
        if source not in (1, 11) or (source == 11 and target != 10):
            value = f"static_cast<float>({value})"
        return ir.narrow(target, value if saturate or target not in ir.FLOAT8 else f"{value}, false")
    if ir.is_storage(target):  # the small integers
        value = f"pure_model::TruncateToInt64({value})" if floating else f"static_cast<std::int64_t>({value})"
        return ir.narrow(target, value)
    if target == 9 and source in ir.STORAGE_FLOATS:
        return f"{value} != 0.0f"
    return f"static_cast<{ir.cpp_type(target)}>({value})"


register("Cast", infer=_infer, evaluate=_evaluate, emit=_emit, narrow_floats=True)
register("CastLike", infer=_infer, evaluate=_evaluate, emit=_emit, narrow_floats=True)
