"""ConvTranspose in 1-D, 2-D and 3-D, float32: groups, strides, dilations, pads, auto_pad,
output_padding, output_shape and bias.

The kernel (pure_model::ConvTranspose in spatial.h) multiplies the weights with panels of input
positions using the matrix-product micro-kernel of Conv, then adds each product into the output
element its tap reaches. Constant weights are packed for it at generation time.
"""

import math

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, register, require_dtype
from pure_model_codegen.ops.conv import GEMM_COLS, GEMM_ROWS, spatial_attrs

_FLOAT = (1,)


def _per_axis(node, name, rank, default):
    values = attr_ints(node, name)
    if values is None:
        return [default] * rank
    if len(values) != rank:
        raise CodegenError(f"{name} has {len(values)} values, expected {rank}", node=node)
    return values


def _geometry(node, graph):
    input_count(node, 2, 3)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    w = require_dtype(node, graph, node.inputs[1], _FLOAT)
    if len(x.shape) not in (3, 4, 5):
        raise CodegenError(f"only 1-D, 2-D and 3-D ConvTranspose is supported; input '{x.name}' has rank "
                           f"{len(x.shape)}", node=node)
    if len(w.shape) != len(x.shape):
        raise CodegenError(f"weight rank {len(w.shape)} does not match input rank {len(x.shape)}", node=node)
    rank = len(x.shape) - 2
    n, c = x.shape[:2]
    group = attr_int(node, "group", 1)
    if group < 1 or c % group:
        raise CodegenError(f"group {group} does not divide the {c} input channels", node=node)
    if w.shape[0] != c:
        raise CodegenError(f"weight shape {list(w.shape)} expects {w.shape[0]} input channels, input has {c}",
                           node=node)
    m = w.shape[1] * group
    kernel = list(w.shape[2:])
    declared = attr_ints(node, "kernel_shape")
    if declared and list(declared) != kernel:
        raise CodegenError(f"kernel_shape {declared} disagrees with the weight's shape {kernel}", node=node)
    strides, dilations = spatial_attrs(node, rank)
    output_padding = _per_axis(node, "output_padding", rank, 0)
    if any(p < 0 or (p >= s and p >= d) for p, s, d in zip(output_padding, strides, dilations)):
        raise CodegenError(f"output_padding {output_padding} must be non-negative and below the stride or "
                           "dilation of its axis", node=node)
    spatial = list(x.shape[2:])
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode("utf-8", "replace")
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise CodegenError(f"auto_pad '{auto_pad}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER", node=node)
    # The extent the taps cover before any padding is cut off.
    full = [s * (i - 1) + p + (k - 1) * d + 1
            for s, i, p, k, d in zip(strides, spatial, output_padding, kernel, dilations)]
    output_shape = attr_ints(node, "output_shape")
    if output_shape is not None and len(output_shape) == rank + 2:
        output_shape = output_shape[2:]  # some exporters include N and C
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is None:
            out = [i * s for i, s in zip(spatial, strides)]
        else:
            out = list(output_shape)
            if len(out) != rank:
                raise CodegenError(f"output_shape {output_shape} should hold {rank} spatial extents", node=node)
        # The spec: the padding that gives this output, the odd element at the end for
        # SAME_UPPER and at the start otherwise.
        begin = []
        for total in (f - o for f, o in zip(full, out)):
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    else:
        pads = [0] * (2 * rank) if auto_pad == "VALID" else _per_axis(node, "pads", 2 * rank, 0)
        if any(p < 0 for p in pads):
            raise CodegenError(f"negative pads {pads} are not supported", node=node)
        begin = pads[:rank]
        out = [f - b - e for f, b, e in zip(full, begin, pads[rank:])]
    if any(o < 1 for o in out):
        raise CodegenError(f"the output would have spatial shape {out}", node=node)
    if len(node.inputs) > 2 and node.inputs[2]:
        b = require_dtype(node, graph, node.inputs[2], _FLOAT)
        if tuple(b.shape) != (m,):
            raise CodegenError(f"bias shape {list(b.shape)} must be [{m}]", node=node)
    return dict(n=n, c=c, m=m, group=group, spatial=spatial, kernel=kernel, strides=strides, dilations=dilations,
                begin=begin, out=out)


def _infer(node, graph):
    g = _geometry(node, graph)
    return [(1, tuple([g["n"], g["m"]] + g["out"]))]


def _as_3d(values, fill):
    return [fill] * (3 - len(values)) + list(values)


def pack_weights(weights, group):
    """[C, M/group, K...] -> [group][panels][C/group][GEMM_ROWS]: PackConvTransposeWeights's layout."""
    c = weights.shape[0]
    rows = int(np.prod(weights.shape[1:]))
    panels = -(-rows // GEMM_ROWS)
    matrix = np.zeros((group, c // group, panels * GEMM_ROWS), np.float32)
    matrix[:, :, :rows] = weights.reshape(group, c // group, rows)
    return np.ascontiguousarray(matrix.reshape(group, c // group, panels, GEMM_ROWS).transpose(0, 2, 1, 3))


def _emit(node, ctx):
    g = _geometry(node, ctx.graph)
    weights = ctx.graph.tensor(node.inputs[1])
    fields = [("kN", g["n"]), ("kC", g["c"]), ("kM", g["m"]), ("kGroups", g["group"])]
    for prefix, values, fill in (("k", g["spatial"], 1), ("kK", g["kernel"], 1), ("kO", g["out"], 1),
                                 ("kStride", g["strides"], 1), ("kPad", g["begin"], 0), ("kDil", g["dilations"], 1)):
        for axis, value in zip("DHW", _as_3d(values, fill)):
            fields.append((prefix + axis, value))
    fields.append(("kPrepacked", weights.is_constant))
    params = ctx.param_struct(node, fields)
    if weights.is_constant:
        w = ctx.derived_constant(node, "packed_weights", pack_weights(weights.value, g["group"]),
                                 comment=f"packed per group in panels of {GEMM_ROWS} rows")
    else:
        w = ctx.ptr(node.inputs[1])
    bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else "nullptr"
    return [f"pure_model::ConvTranspose<{params}>({ctx.ptr(node.inputs[0])}, {w}, {bias}, "
            f"{ctx.ptr(node.outputs[0])}, {ctx.scratch(node)});"]


def _scratch(node, graph):
    g = _geometry(node, graph)
    floats = g["c"] // g["group"] * GEMM_COLS
    if not graph.tensor(node.inputs[1]).is_constant:
        rows = g["m"] // g["group"] * math.prod(g["kernel"])
        floats += g["c"] * -(-rows // GEMM_ROWS) * GEMM_ROWS
    return 4 * floats


def _flops(node, graph):
    g = _geometry(node, graph)
    return 2 * g["n"] * g["c"] * math.prod(g["spatial"]) * (g["m"] // g["group"]) * math.prod(g["kernel"])


register("ConvTranspose", infer=_infer, emit=_emit, scratch=_scratch, flops=_flops)
