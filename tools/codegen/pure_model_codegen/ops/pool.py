"""Pooling: MaxPool, AveragePool (1-D to 3-D), GlobalAveragePool, GlobalMaxPool.

1-D and 2-D float32 MaxPool and AveragePool run in the 2-D kernels of kernels.h; 3-D ones, other
element types (float64; int8 and uint8 for MaxPool from opset 12) and MaxPool with its Indices
output, in the tap-by-tap loops of window_pool.py.
"""

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, register, require_dtype
from pure_model_codegen.ops.conv import resolve_padding
from pure_model_codegen.ops.window_pool import kernel_attrs, window_lines

_FLOAT = (1,)


def _pool_geometry(node, graph):
    input_count(node, 1)
    if len(node.outputs) > (2 if node.op_type == "MaxPool" else 1):
        raise CodegenError(f"has {len(node.outputs)} outputs, more than {node.op_type} has", node=node)
    allowed = _FLOAT + (11,) + ((2, 3) if node.op_type == "MaxPool" and node.opset >= 12 else ())
    x = require_dtype(node, graph, node.inputs[0], allowed)
    kernel, strides, dilations = kernel_attrs(node, x)
    if node.op_type == "AveragePool" and any(d != 1 for d in dilations) and node.opset < 19:
        raise CodegenError("dilations need AveragePool opset 19", node=node)
    begin, end, out = resolve_padding(
        node, list(x.shape[2:]), kernel, strides, dilations, attr_ints(node, "pads"),
        node.attrs.get("auto_pad", "NOTSET"), attr_int(node, "ceil_mode", 0),
    )
    # A window that lies entirely in the padding has no value (onnxruntime refuses such pads too).
    if any(p >= k for p, k in zip(begin + end, kernel + kernel)):
        raise CodegenError(f"pads {begin + end} must each be smaller than kernel_shape {kernel}", node=node)
    return x, kernel, strides, dilations, begin, end, out


def _indices_output(node):
    return node.outputs[1] if len(node.outputs) > 1 and node.outputs[1] else ""


def _pool_infer(node, graph):
    x, *_, out = _pool_geometry(node, graph)
    shape = tuple(x.shape[:2]) + tuple(out)
    return [(x.dtype, shape), (7, shape)][:len(node.outputs)]


def _two_d(values, fill):
    return values if len(values) == 2 else [fill] + list(values)


def _pool_emit(node, ctx):
    x, kernel, strides, dilations, begin, end, out = _pool_geometry(node, ctx.graph)
    indices = _indices_output(node)
    if len(kernel) == 3 or indices or x.dtype not in _FLOAT:
        storage_order = attr_int(node, "storage_order", 0)
        if storage_order not in (0, 1):
            raise CodegenError(f"storage_order must be 0 or 1, got {storage_order}", node=node)
        kind = "max" if node.op_type == "MaxPool" else "average"
        return window_lines(node, ctx, kind, kernel, strides, dilations, begin, end, out,
                            count_include_pad=bool(attr_int(node, "count_include_pad", 0)), indices=indices,
                            storage_order=storage_order)
    h, w = _two_d(list(x.shape[2:]), 1)
    kh, kw = _two_d(kernel, 1)
    oh, ow = _two_d(out, 1)
    pt, pl = _two_d(begin, 0)
    pb, pr = _two_d(end, 0)
    params = ctx.param_struct(node, [
        ("kNC", x.shape[0] * x.shape[1]), ("kH", h), ("kW", w), ("kKH", kh), ("kKW", kw), ("kOH", oh), ("kOW", ow),
        ("kStrideH", _two_d(strides, 1)[0]), ("kStrideW", _two_d(strides, 1)[1]),
        ("kPadTop", pt), ("kPadLeft", pl), ("kPadBottom", pb), ("kPadRight", pr),
        ("kDilH", _two_d(dilations, 1)[0]), ("kDilW", _two_d(dilations, 1)[1]),
        ("kCountIncludePad", bool(attr_int(node, "count_include_pad", 0))),
    ])
    kernel_fn = "MaxPool2D" if node.op_type == "MaxPool" else "AveragePool2D"
    return [f"pure_model::{kernel_fn}<{params}>({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])});"]


register("MaxPool", infer=_pool_infer, emit=_pool_emit)
register("AveragePool", infer=_pool_infer, emit=_pool_emit)


def _global_infer(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    if len(x.shape) < 3:
        raise CodegenError(f"input must have rank >= 3 (N, C, spatial...), got {list(x.shape)}", node=node)
    return [(1, tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2))]


def _make_global(op_type, kernel_fn, reduce_fn):
    def evaluate(node, values):
        axes = tuple(range(2, values[0].ndim))
        return [reduce_fn(values[0], axis=axes, keepdims=True).astype(values[0].dtype)]

    def emit(node, ctx):
        x = ctx.graph.tensor(node.inputs[0])
        nc = x.shape[0] * x.shape[1]
        spatial = int(np.prod(x.shape[2:]))
        return [f"pure_model::{kernel_fn}<{nc}, {spatial}>({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])});"]

    register(op_type, infer=_global_infer, evaluate=evaluate, emit=emit)


_make_global("GlobalAveragePool", "GlobalAveragePool", np.mean)
_make_global("GlobalMaxPool", "GlobalMaxPool", np.max)
