"""Convolution: Conv in 1-D, 2-D and 3-D, float32, with groups, dilations, strides and padding."""

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, register, require_dtype

_FLOAT = (1,)


def resolve_padding(node, spatial_in, kernel, strides, dilations, pads_attr, auto_pad, ceil_mode=0):
    """Returns (pads_begin, pads_end, out_dims) for ONNX's conv/pool padding rules."""
    rank = len(spatial_in)
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise CodegenError(f"auto_pad '{auto_pad}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER", node=node)
    begin, end, out = [], [], []
    for i in range(rank):
        effective = (kernel[i] - 1) * dilations[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-spatial_in[i] // strides[i])
            total = max(0, (o - 1) * strides[i] + effective - spatial_in[i])
            small, large = total // 2, total - total // 2
            b, e = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        elif auto_pad == "VALID":
            b = e = 0
        else:
            pads = pads_attr or [0] * (2 * rank)
            if len(pads) != 2 * rank:
                raise CodegenError(f"pads has {len(pads)} values, expected {2 * rank}", node=node)
            if any(p < 0 for p in pads):
                raise CodegenError(f"negative pads {pads} are not supported", node=node)
            b, e = pads[i], pads[i + rank]
        span = spatial_in[i] + b + e - effective
        if span < 0:
            raise CodegenError(
                f"kernel (extent {effective}) is larger than the padded input ({spatial_in[i] + b + e})", node=node
            )
        if ceil_mode:
            o = -(-span // strides[i]) + 1
            # The last window must start inside the input or the left padding.
            if (o - 1) * strides[i] >= spatial_in[i] + b:
                o -= 1
        else:
            o = span // strides[i] + 1
        begin.append(b)
        end.append(e)
        out.append(o)
    return begin, end, out


def spatial_attrs(node, spatial_rank):
    strides = attr_ints(node, "strides") or [1] * spatial_rank
    dilations = attr_ints(node, "dilations") or [1] * spatial_rank
    for label, values in (("strides", strides), ("dilations", dilations)):
        if len(values) != spatial_rank:
            raise CodegenError(f"{label} has {len(values)} values, expected {spatial_rank}", node=node)
        if any(v < 1 for v in values):
            raise CodegenError(f"{label} must be positive, got {values}", node=node)
    return strides, dilations


def _conv_geometry(node, graph):
    # A fourth input is a residual that passes/fuse_residual.py folded into the convolution.
    input_count(node, 2, 4 if "_fused_residual" in node.attrs else 3)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    w = require_dtype(node, graph, node.inputs[1], _FLOAT)
    if len(x.shape) not in (3, 4, 5):
        raise CodegenError(
            f"only 1-D, 2-D and 3-D convolution is supported; input '{x.name}' has rank {len(x.shape)}", node=node
        )
    if len(w.shape) != len(x.shape):
        raise CodegenError(f"weight rank {len(w.shape)} does not match input rank {len(x.shape)}", node=node)
    spatial_rank = len(x.shape) - 2
    group = attr_int(node, "group", 1)
    n, c = x.shape[:2]
    m = w.shape[0]
    if group < 1:
        raise CodegenError(f"group must be at least 1, got {group}", node=node)
    if c % group or m % group:
        raise CodegenError(f"group {group} does not divide input channels {c} and output channels {m}", node=node)
    if w.shape[1] * group != c:
        raise CodegenError(
            f"weight shape {list(w.shape)} expects {w.shape[1] * group} input channels, input has {c}", node=node
        )
    kernel = list(w.shape[2:])
    declared = attr_ints(node, "kernel_shape")
    if declared and list(declared) != kernel:
        raise CodegenError(f"kernel_shape {declared} disagrees with the weight's shape {kernel}", node=node)
    strides, dilations = spatial_attrs(node, spatial_rank)
    begin, end, out = resolve_padding(
        node, list(x.shape[2:]), kernel, strides, dilations, attr_ints(node, "pads"), node.attrs.get("auto_pad", "NOTSET")
    )
    if len(node.inputs) > 2 and node.inputs[2]:
        b = require_dtype(node, graph, node.inputs[2], _FLOAT)
        if tuple(b.shape) != (m,):
            raise CodegenError(f"bias shape {list(b.shape)} must be [{m}]", node=node)
    return dict(n=n, c=c, m=m, group=group, spatial=list(x.shape[2:]), kernel=kernel, strides=strides,
                dilations=dilations, begin=begin, end=end, out=out)


def _kernel_geometry(node, graph):
    """The geometry the kernels run. A 2-D convolution one column wide (input, kernel and output
    width 1, no padding across) is the 1-D convolution along its rows over the same memory; the
    kernels gather runs along rows, so one long row beats hundreds of rows one element long
    (Magika's [256, 512, 1] -> [512, 508, 1] convolution: 4.3 ms -> 3.1 ms at AVX-512)."""
    g = _conv_geometry(node, graph)
    if (len(g["spatial"]) == 2 and g["spatial"][1] == 1 and g["kernel"][1] == 1 and g["out"][1] == 1
            and g["begin"][1] == 0 and g["end"][1] == 0):
        g = dict(g, **{key: g[key][:1] for key in ("spatial", "kernel", "out", "strides", "dilations", "begin", "end")})
    return g


def _infer(node, graph):
    g = _conv_geometry(node, graph)
    return [(1, tuple([g["n"], g["m"]] + g["out"]))]


def _as_2d(values, fill):
    return values if len(values) == 2 else [fill] + values


def _planar(g):
    """A 1-D or 2-D geometry as 2-D (a 1-D convolution is one row): the (H, W) pairs of input size,
    kernel, output size, strides, dilations and leading padding."""
    return (_as_2d(g["spatial"], 1), _as_2d(g["kernel"], 1), _as_2d(g["out"], 1), _as_2d(g["strides"], 1),
            _as_2d(g["dilations"], 1), _as_2d(g["begin"], 0))


def _emit_3d(node, ctx, g):
    activation = node.attrs.get("_fused_activation", ("kNone", float("-inf"), float("inf")))
    fields = [("kN", g["n"]), ("kC", g["c"]), ("kM", g["m"]), ("kGroups", g["group"])]
    for axis, (size, kernel, out, stride, dilation, pad) in zip("DHW", zip(
            g["spatial"], g["kernel"], g["out"], g["strides"], g["dilations"], g["begin"])):
        fields += [(f"k{axis}", size), (f"kK{axis}", kernel), (f"kO{axis}", out), (f"kStride{axis}", stride),
                   (f"kDil{axis}", dilation), ({"D": "kPadFront", "H": "kPadTop", "W": "kPadLeft"}[axis], pad)]
    fields += [("kActivation", ("pure_model::Activation", "pure_model::Activation::" + activation[0])),
               ("kClipLo", float(activation[1])), ("kClipHi", float(activation[2]))]
    params = ctx.param_struct(node, fields)
    bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else "nullptr"
    residual = f", {ctx.ptr(node.inputs[3])}" if "_fused_residual" in node.attrs else ""
    return [f"pure_model::Conv3D<{params}>({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.inputs[1])}, {bias}, "
            f"{ctx.ptr(node.outputs[0])}{residual});"]


def _emit(node, ctx):
    g = _kernel_geometry(node, ctx.graph)
    if len(g["spatial"]) == 3:
        return _emit_3d(node, ctx, g)
    (h, w), (kh, kw), (oh, ow), (sh, sw), (dh, dw), (pt, pl) = _planar(g)
    activation = node.attrs.get("_fused_activation", ("kNone", float("-inf"), float("inf")))
    fields = [
        ("kN", g["n"]), ("kC", g["c"]), ("kH", h), ("kW", w), ("kM", g["m"]), ("kKH", kh), ("kKW", kw),
        ("kOH", oh), ("kOW", ow), ("kStrideH", sh), ("kStrideW", sw), ("kPadTop", pt), ("kPadLeft", pl),
        ("kDilH", dh), ("kDilW", dw), ("kGroups", g["group"]),
        ("kActivation", ("pure_model::Activation", "pure_model::Activation::" + activation[0])),
        ("kClipLo", float(activation[1])), ("kClipHi", float(activation[2])),
    ]
    bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else "nullptr"
    residual = f", {ctx.ptr(node.inputs[3])}" if "_fused_residual" in node.attrs else ""
    if _uses_gemm(node, ctx.graph):
        kernel, block_k, size = _gemm_kernel(node, ctx.graph)
        rows = _CHANNEL_ROWS if kernel == "Conv2DGemmChannels" else GEMM_ROWS
        layout = [("kBlockK", block_k), ("kTilePositions" if kernel == "Conv2DGemmChannels" else "kChunkCols", size)]
        params = ctx.param_struct(node, fields + layout)
        weights = ctx.graph.tensor(node.inputs[1]).value
        packed = ctx.derived_constant(node, "packed_weights", pack_gemm_weights(weights, rows),
                                      comment=f"packed in panels of {rows} output channels")
        return [f"pure_model::{kernel}<{params}>({ctx.ptr(node.inputs[0])}, {packed}, {bias}, "
                f"{ctx.ptr(node.outputs[0])}, {ctx.scratch(node)}{residual});"]
    params = ctx.param_struct(node, fields)
    if _is_depthwise(node, ctx.graph):
        return [f"pure_model::DepthwiseConv2D<{params}>({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.inputs[1])}, "
                f"{bias}, {ctx.ptr(node.outputs[0])}, {ctx.scratch(node)}{residual});"]
    return [f"pure_model::Conv2D<{params}>({ctx.ptr(node.inputs[0])}, {ctx.ptr(node.inputs[1])}, {bias}, "
            f"{ctx.ptr(node.outputs[0])}{residual});"]


def add_residual(node, tensor_name, add_node_name):
    """Makes the Conv `node` add `tensor_name` to its output (see passes/fuse_residual.py)."""
    while len(node.inputs) < 3:
        node.inputs.append("")  # the optional bias slot stays empty
    node.inputs.append(tensor_name)
    node.attrs["_fused_residual"] = add_node_name


# kGemmRows in runtime/include/pure_model/kernels.h must equal GEMM_ROWS.
GEMM_ROWS = 8
GEMM_COLS = 32  # the widest kGemmCols of any target: GemmMicroKernel's users size scratch for it


def _uses_gemm(node, graph):
    # Ungrouped convolutions with constant weights run as a packed matrix product; grouped and
    # depthwise ones (little arithmetic per byte) keep the direct kernel.
    return (attr_int(node, "group", 1) == 1 and graph.tensor(node.inputs[1]).is_constant
            and len(graph.tensor(node.inputs[1]).shape) <= 4)


def pack_gemm_weights(weights, rows=GEMM_ROWS):
    """[M, C, KH, KW] -> [ceil(M / rows)][C * KH * KW][rows], zero rows padding the last panel."""
    m = weights.shape[0]
    matrix = weights.reshape(m, -1).astype(np.float32)
    panels = -(-m // rows)
    padded = np.zeros((panels * rows, matrix.shape[1]), np.float32)
    padded[:m] = matrix
    return np.ascontiguousarray(padded.reshape(panels, rows, -1).transpose(0, 2, 1))


# The L2 cache the blocking is planned for: 1 MiB on current x86-64 and many aarch64 cores.
_L2_BYTES = 1 << 20


# Conv2DGemm (kernels.h) cuts K into blocks of at most this many rows: one gathered tile of a
# block (48 columns wide with AVX-512) then takes 24 KiB, which stays in L1 while every panel of W
# passes it.
_BLOCK_K = 128
# Conv2DGemm's widest tile (kConvTileCols with AVX-512), a multiple of every target's; spare floats
# after each part of its scratch (kConvSpareFloats).
_TILE_COLS = 48
_SPARE_FLOATS = 16
# Conv2DGemmDirect computes over the padded rows' width: worth it while the padding adds at most
# this share of columns. Pointwise convolutions with fewer positions than this (where the gathered
# last tile weighs more) run as fast gathered.
_DIRECT_WASTE = 0.05
_DIRECT_POINTWISE_POSITIONS = 1024
# ... and with at most this many output channels: with more, the gathered kernel is faster (gcc 16,
# AVX-512, thread CPU time: 16 -> 96 channels at 112 x 112, 0.19 ms gathered vs 0.44 ms direct;
# 64 -> 128 at 56 x 56, 0.22 vs 0.32 ms; but 144 -> 24 at 56 x 56, 0.115 vs 0.092 ms).
_DIRECT_POINTWISE_ROWS = 32


def _gemm_block_k(k):
    """kBlockK: K in blocks of equal size, a multiple of 8, of at most _BLOCK_K rows."""
    blocks = -(-k // _BLOCK_K)
    per_block = -(-k // blocks)
    return min(k, -(-per_block // 8) * 8)


def _chunk(columns, column_bytes):
    """As many columns (whole tiles) as keep column_bytes each within half of L2, at most all."""
    fitting = max(_TILE_COLS, _L2_BYTES // 2 // column_bytes // _TILE_COLS * _TILE_COLS)
    return min(fitting, -(-columns // _TILE_COLS) * _TILE_COLS)


def _gemm_kernel(node, graph):
    """(kernel, kBlockK, kChunkCols or kTilePositions) of a convolution run as a matrix product:
    Conv2DGemmChannels for few output positions (see _channel_tile); Conv2DGemmDirect for unit
    strides where the padding adds few columns to the grid it computes over (at most
    _DIRECT_WASTE of them; ResNet-18's 28 x 28 layers, 2 of 30, run as fast gathered), and for
    pointwise ones with many positions and few output channels; else Conv2DGemm. The chunk: Conv2DGemm gathers one
    block's chunk of positions, Conv2DGemmDirect sums one over all rows of W, within half of L2."""
    g = _kernel_geometry(node, graph)
    k = g["c"] * int(np.prod(g["kernel"]))
    block_k = _gemm_block_k(k)
    tile = _channel_tile(node, graph)
    if tile is not None:
        return "Conv2DGemmChannels", block_k, tile
    padded = _padded_input(g)
    _, _, (oh, ow), (sh, sw), _, _ = _planar(g)
    rows = -(-g["m"] // GEMM_ROWS) * GEMM_ROWS
    positions = int(np.prod(g["out"]))
    if padded is not None and sh == sw == 1 and (padded[1] - ow) <= _DIRECT_WASTE * padded[1]:
        return "Conv2DGemmDirect", block_k, _chunk(oh * padded[1], rows * 4)
    if _direct_pointwise(g) and positions >= _DIRECT_POINTWISE_POSITIONS and g["m"] <= _DIRECT_POINTWISE_ROWS:
        return "Conv2DGemmDirect", block_k, _chunk(positions, rows * 4)
    return "Conv2DGemm", block_k, _chunk(positions, block_k * 4)


def _direct_pointwise(g):
    """ConvDirectSource<P>::kPointwise: a 1 x 1 convolution whose X is its input as it is."""
    (h, w), (kh, kw), (oh, ow), (sh, sw), _, (pt, pl) = _planar(g)
    return kh == kw == sh == sw == 1 and pt == pl == 0 and (oh, ow) == (h, w)


# Conv2DGemmChannels (kernels.h): panels of kConvChannelRows output channels; tiles of at most
# this many positions (kConvChannelPositionsMax with AVX-512, the most of any target).
_CHANNEL_ROWS = 32
_CHANNEL_TILE_MAX = 14
# Beyond this many output positions the channels kernel's sums ([position][channel] scratch) and
# their transposing pass cost more than the padding it saves (measured: ResNet-18's 28 x 28 layers
# run 10% slower that way, its 14 x 14 ones 7% faster).
_CHANNEL_POSITIONS_MAX = 256


def _channel_tile(node, graph):
    """kTilePositions for Conv2DGemmChannels (vectors across output channels), or None where
    Conv2DGemm (vectors across positions) pads less: layers with few positions, such as 7 x 7 = 49
    in 16-float vectors (64, 31% padding) against 7 tiles of 7."""
    g = _kernel_geometry(node, graph)
    positions = int(np.prod(g["out"]))
    if positions > _CHANNEL_POSITIONS_MAX:
        return None
    # The least padded tile, the largest of equals (fewer loads per multiply-add).
    tile = min(range(_CHANNEL_TILE_MAX, 0, -1), key=lambda t: -(-positions // t) * t)
    channel_share = g["m"] / (-(-g["m"] // _CHANNEL_ROWS) * _CHANNEL_ROWS) * positions / (-(-positions // tile) * tile)
    position_share = positions / (-(-positions // 16) * 16)
    return tile if channel_share >= position_share else None


def _padded_input(g):
    """(rows, row floats, floats) of ConvPaddedInput<P> in kernels.h: the zero-padded copy of one
    image's input, rows split into stride phases, that convolutions other than unpadded 1 x 1 ones
    gather from; None for those."""
    (h, w), (kh, kw), (oh, ow), (sh, sw), (dh, dw), (pt, pl) = _planar(g)
    if kh == 1 and kw == 1 and pt == 0 and pl == 0:
        return None
    rows = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)
    row_floats = -(-max(w + pl, (ow - 1) * sw + (kw - 1) * dw + 1) // sw) * sw
    spare = _SPARE_FLOATS + _TILE_COLS + (kw - 1) * dw
    return rows, row_floats, g["c"] * rows * row_floats + spare


def _is_depthwise(node, graph):
    g = _conv_geometry(node, graph)
    return g["group"] > 1 and g["group"] == g["c"] == g["m"] and len(g["spatial"]) <= 2


def _scratch(node, graph):
    if _is_depthwise(node, graph):
        return _kernel_geometry(node, graph)["spatial"][-1] * 4  # a row of zeros
    if not _uses_gemm(node, graph):
        return 0
    kernel, block_k, size = _gemm_kernel(node, graph)
    g = _kernel_geometry(node, graph)
    padded = _padded_input(g)
    floats = padded[2] if padded else 0
    if kernel == "Conv2DGemmChannels":
        # Sums and gathered rows for every target's tile (whole tiles: up to 13 positions more).
        positions = int(np.prod(g["out"])) + _CHANNEL_TILE_MAX - 1
        floats += positions * (-(-g["m"] // _CHANNEL_ROWS) * _CHANNEL_ROWS + block_k) + _SPARE_FLOATS
    elif kernel == "Conv2DGemmDirect":
        floats += -(-g["m"] // GEMM_ROWS) * GEMM_ROWS * size
        if _direct_pointwise(g):
            floats += block_k * _TILE_COLS + _SPARE_FLOATS  # the last tile, gathered
    else:
        floats += block_k * size + _SPARE_FLOATS
    return floats * 4


def _flops(node, graph):
    g = _conv_geometry(node, graph)
    outputs = g["n"] * g["m"] * int(np.prod(g["out"]))
    return 2 * outputs * (g["c"] // g["group"]) * int(np.prod(g["kernel"]))


register("Conv", infer=_infer, emit=_emit, flops=_flops, scratch=_scratch)
