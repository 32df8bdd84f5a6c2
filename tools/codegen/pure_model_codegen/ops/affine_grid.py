"""AffineGrid (opset 20): the sampling grid of GridSample for a batch of affine matrices, 2-D
and 3-D, float32. The size must be known at generation time; the normalised base coordinates of
each axis are computed then, and Run() applies theta to them."""

import math

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, input_count, register, require_dtype
from pure_model_codegen.ops.shape_ops import constant_input


def _geometry(node, graph):
    input_count(node, 2)
    theta = require_dtype(node, graph, node.inputs[0], (1,))
    size = [int(v) for v in np.asarray(constant_input(node, graph, 1, "size", integer=True,
                                                      required=True)).reshape(-1)]
    if len(size) not in (4, 5):
        raise CodegenError(f"size {size} must be [N, C, H, W] or [N, C, D, H, W]", node=node)
    dims = len(size) - 2
    if tuple(theta.shape) != (size[0], dims, dims + 1):
        raise CodegenError(f"theta {theta.describe()} must be [{size[0]}, {dims}, {dims + 1}] for size {size}",
                           node=node)
    if any(s < 1 for s in size[2:]):
        raise CodegenError(f"size {size} has an empty spatial axis", node=node)
    align = attr_int(node, "align_corners", 0)
    if align not in (0, 1):
        raise CodegenError(f"align_corners must be 0 or 1, got {align}", node=node)
    return theta, size, dims, bool(align)


def _base(extent, align):
    """Normalised coordinates in [-1, 1] of the extent's positions: centers, or corners aligned."""
    if align:
        step = 2.0 / (extent - 1) if extent > 1 else 0.0
        return np.asarray([-1 + i * step for i in range(extent)])
    step = 2.0 / extent
    return np.asarray([-1 + step / 2 + i * step for i in range(extent)])


def _infer(node, graph):
    _, size, dims, _ = _geometry(node, graph)
    return [(1, tuple([size[0]] + size[2:] + [dims]))]


def _emit(node, ctx):
    theta, size, dims, align = _geometry(node, ctx.graph)
    spatial = size[2:]
    # Coordinates in the grid's order: x along the last axis (W), then y (H), then z (D).
    names = [ctx.derived_constant(node, f"base_{axis}", _base(extent, align).astype(np.float32),
                                  comment="normalised coordinates of the positions along the axis")
             for axis, extent in zip("xyz", reversed(spatial))]
    t, out = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    # Loop counters i0 (image), i1... (positions, outermost axis first) and the local `row`: names
    # the generator never gives a tensor.
    loops = [f"i{k}" for k in range(dims + 1)]
    extents = [size[0]] + spatial
    lines = []
    for depth, (var, extent) in enumerate(zip(loops, extents)):
        lines.append("  " * depth + f"for (std::size_t {var} = 0; {var} < {extent}; ++{var}) {{")
    pad = "  " * len(loops)
    position = " + ".join(f"{v} * {math.prod(extents[i + 1:])}" if math.prod(extents[i + 1:]) > 1 else v
                          for i, v in enumerate(loops))
    lines.append(pad + f"const float* row = {t} + i0 * {dims * (dims + 1)};")
    # The positions' own coordinates: x from the innermost loop, y from the next, z from the next.
    coords = [f"{name}[{loops[-1 - a]}]" for a, name in enumerate(names)]
    for k in range(dims):
        terms = [f"row[{k * (dims + 1) + j}] * {c}" for j, c in enumerate(coords)]
        lines.append(pad + f"{out}[({position}) * {dims} + {k}] = {' + '.join(terms)} + row[{k * (dims + 1) + dims}];")
    for depth in reversed(range(len(loops))):
        lines.append("  " * depth + "}")
    return lines


def _flops(node, graph):
    _, size, dims, _ = _geometry(node, graph)
    return 2 * (dims + 1) * dims * size[0] * math.prod(size[2:])


register("AffineGrid", infer=_infer, emit=_emit, flops=_flops)
