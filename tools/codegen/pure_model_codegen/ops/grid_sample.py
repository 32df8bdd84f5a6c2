"""GridSample (opsets 16, 20, 22) over 2-D and 3-D float32 images: nearest, linear and cubic
sampling with zeros, border or reflection padding, corners aligned or not.

The grid is data, so the taps are found at run time (pure_model::GridSample in spatial.h), once
per output position for all channels.
"""

import math

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, input_count, register, require_dtype

_FLOAT = (1,)
# GridSample-16 named the interpolations bilinear and bicubic; 20 renamed them for any rank.
_MODES = {16: {"nearest": "kNearest", "bilinear": "kLinear", "bicubic": "kCubic"},
          20: {"nearest": "kNearest", "linear": "kLinear", "cubic": "kCubic"}}
_PADDINGS = {"zeros": "kZeros", "border": "kBorder", "reflection": "kReflection"}


def _text(node, name, default):
    value = node.attrs.get(name, default)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _geometry(node, graph):
    input_count(node, 2)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    grid = require_dtype(node, graph, node.inputs[1], _FLOAT)
    ranks = (4,) if node.opset < 20 else (4, 5)
    if len(x.shape) not in ranks:
        raise CodegenError(f"input '{x.name}' has rank {len(x.shape)}; GridSample-{node.opset} is supported for "
                           f"rank {' or '.join(map(str, ranks))} (2-D{' and 3-D' if len(ranks) > 1 else ''} images)",
                           node=node)
    dims = len(x.shape) - 2
    if len(grid.shape) != dims + 2 or grid.shape[0] != x.shape[0] or grid.shape[-1] != dims:
        raise CodegenError(f"grid {grid.describe()} must be [N, spatial..., {dims}] for input {x.describe()}",
                           node=node)
    modes = _MODES[16 if node.opset < 20 else 20]
    mode = _text(node, "mode", "bilinear" if node.opset < 20 else "linear")
    if mode not in modes:
        raise CodegenError(f"mode '{mode}' is not one of {', '.join(modes)}", node=node)
    if mode.endswith("cubic") and dims == 3:
        raise CodegenError("cubic sampling of 3-D images is not supported (ONNX leaves it undefined)", node=node)
    padding = _text(node, "padding_mode", "zeros")
    if padding not in _PADDINGS:
        raise CodegenError(f"padding_mode '{padding}' is not one of {', '.join(_PADDINGS)}", node=node)
    align = attr_int(node, "align_corners", 0)
    if align not in (0, 1):
        raise CodegenError(f"align_corners must be 0 or 1, got {align}", node=node)
    return x, grid, dims, modes[mode], _PADDINGS[padding], bool(align)


def _infer(node, graph):
    x, grid, *_ = _geometry(node, graph)
    return [(1, tuple(x.shape[:2]) + tuple(grid.shape[1:-1]))]


def _emit(node, ctx):
    x, grid, dims, mode, padding, align = _geometry(node, ctx.graph)
    spatial = [1] * (3 - dims) + list(x.shape[2:])
    out = [1] * (3 - dims) + list(grid.shape[1:-1])
    params = ctx.param_struct(node, [
        ("kN", x.shape[0]), ("kC", x.shape[1]), ("kD", spatial[0]), ("kH", spatial[1]), ("kW", spatial[2]),
        ("kOD", out[0]), ("kOH", out[1]), ("kOW", out[2]), ("kDims", dims),
        ("kMode", ("pure_model::GridMode", "pure_model::GridMode::" + mode)),
        ("kPadding", ("pure_model::GridPadding", "pure_model::GridPadding::" + padding)),
        ("kAlignCorners", align),
    ])
    return [f"pure_model::GridSample<{params}>({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.inputs[1])}, "
            f"{ctx.ptr(node.outputs[0])});"]


def _flops(node, graph):
    x, grid, dims, mode, *_ = _geometry(node, graph)
    taps = {"kNearest": 1, "kLinear": 2, "kCubic": 4}[mode] ** dims
    return 2 * taps * x.shape[1] * math.prod(grid.shape[:-1])


register("GridSample", infer=_infer, emit=_emit, flops=_flops, max_version=22)
