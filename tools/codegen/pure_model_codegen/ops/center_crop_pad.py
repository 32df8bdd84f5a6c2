"""CenterCropPad (opset 18): crops or zero-pads chosen axes to a target extent around the center,
for any element type. The target shape must be known at generation time; the step is one
gather (cpp.gather_copy) with zeros for the padding."""

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_ints, input_count, normalize_axis, register
from pure_model_codegen.ops.data import empty_output, literal
from pure_model_codegen.ops.shape_ops import ValuesGraph, constant_input
from pure_model_codegen import cpp


def _coordinates(node, graph):
    """Per input axis, the source coordinate of each output coordinate (None for padding)."""
    input_count(node, 2)
    x = graph.tensor(node.inputs[0])
    rank = len(x.shape)
    target = [int(v) for v in np.asarray(constant_input(node, graph, 1, "shape", integer=True,
                                                        required=True)).reshape(-1)]
    given = attr_ints(node, "axes")
    axes = list(range(rank)) if given is None else [normalize_axis(node, a, rank, "axes entry") for a in given]
    if len(set(axes)) != len(axes):
        raise CodegenError(f"axes {given} repeat an axis", node=node)
    if len(target) != len(axes):
        raise CodegenError(f"shape has {len(target)} values for {len(axes)} axes", node=node)
    if any(t < 0 for t in target):
        raise CodegenError(f"shape {target} must not be negative", node=node)
    coords = [list(range(n)) for n in x.shape]
    for axis, size in zip(axes, target):
        extent = x.shape[axis]
        if size <= extent:  # crop: the odd element comes off the end
            start = (extent - size) // 2
            coords[axis] = list(range(start, start + size))
        else:  # pad: the odd element goes at the end
            before = (size - extent) // 2
            coords[axis] = [None] * before + list(range(extent)) + [None] * (size - extent - before)
    return x, coords


def _infer(node, graph):
    x, coords = _coordinates(node, graph)
    return [(x.dtype, tuple(len(c) for c in coords))]


def _evaluate(node, values):
    x, coords = _coordinates(node, ValuesGraph(node, values))
    data = np.asarray(values[0])
    result = np.zeros([len(c) for c in coords], data.dtype)
    source = tuple(np.asarray([c for c in axis if c is not None], np.int64) for axis in coords)
    target = tuple(np.asarray([i for i, c in enumerate(axis) if c is not None], np.int64) for axis in coords)
    result[np.ix_(*target)] = data[np.ix_(*source)]
    return [result]


def _emit(node, ctx):
    x, coords = _coordinates(node, ctx.graph)
    if ctx.graph.tensor(node.outputs[0]).elements == 0:
        return empty_output(ctx, node.outputs[0])
    strides = [int(np.prod(x.shape[d + 1:])) for d in range(len(x.shape))]
    return cpp.gather_copy(list(zip(coords, strides)), ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]),
                           lambda label, values: ctx.int_table(node, label, values), literal(0, x.dtype))


register("CenterCropPad", infer=_infer, evaluate=_evaluate, emit=_emit, flops=lambda node, graph: 0)
