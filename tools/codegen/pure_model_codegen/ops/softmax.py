"""Softmax and LogSoftmax, with the pre-13 "flatten to 2-D" semantics and the 13+ axis semantics.

On float16 and bfloat16 they round after each step as numpy does (pure_model::NarrowSoftmax);
rounding once at the end would land an ulp or two away from onnx's reference evaluator.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.ops import attr_int, input_count, normalize_axis, register, require_dtype

_FLOAT = (1,) + ir.NARROW_FLOATS


def axis_groups(node, shape):
    """(outer, axis extent, inner) of the reduction the op performs over `shape` (also Hardmax's)."""
    rank = len(shape)
    if node.opset < 13:
        axis = normalize_axis(node, attr_int(node, "axis", 1), rank)
        return int(np.prod(shape[:axis])), int(np.prod(shape[axis:])), 1
    axis = normalize_axis(node, attr_int(node, "axis", -1), rank)
    return int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))


def _infer(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    axis_groups(node, x.shape)
    return [(x.dtype, x.shape)]


def _make(op_type, log):
    def emit(node, ctx):
        x = ctx.graph.tensor(node.inputs[0])
        outer, axis, inner = axis_groups(node, x.shape)
        kernel = "NarrowSoftmax" if ir.is_narrow_float(x.dtype) else "Softmax"
        return [f"pure_model::{kernel}<{outer}, {axis}, {inner}, {'true' if log else 'false'}>("
                f"{ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])});"]

    register(op_type, infer=_infer, emit=emit, narrow_floats=True)


_make("Softmax", False)
_make("LogSoftmax", True)
