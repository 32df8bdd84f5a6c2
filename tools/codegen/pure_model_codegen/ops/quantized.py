"""Quantized operators: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and the integer
products ConvInteger, MatMulInteger, QLinearConv and QLinearMatMul.

The semantics are ONNX's, exactly: rounding half to even, saturation to the output type, int32
accumulation (wrapping, as ONNX's int32 arithmetic does), zero points per tensor or per output
channel / column. Where ONNX leaves the arithmetic's precision open, it follows onnx's reference
evaluator (QuantizeLinear divides an int32 input in double; QLinearConv and QLinearMatMul scale
the int32 sums in double by a multiplier computed in float). Quantized types are those the IR
has: int8 and uint8 (and int16, uint16 from version 21); 4-bit, 2-bit and float8 types fail
with an unsupported-element-type error. Kernels: runtime/include/pure_model/quantized.h.

Constant weights of the integer products are packed at generation time, in their own 8-bit type,
into the layout the integer kernels read (see "Integer products" below and quantized.h); weights
that are model inputs are packed into scratch at run time.
"""

import math

import numpy as np

from pure_model_codegen import ir, tensor_data
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, check_table_size, input_count, normalize_axis, register, \
    require_dtype
from pure_model_codegen.ops import conv, gemm

FLOAT, UINT8, INT8, UINT16, INT16, INT32 = 1, 2, 3, 4, 5, 6
_EIGHT_BIT = (UINT8, INT8)


def _version(node):
    from pure_model_codegen.passes.check_ops import op_version  # the passes import this package

    return op_version(node)


def _optional(node, index):
    """The name of optional input `index`, or None when it is omitted."""
    return node.inputs[index] if len(node.inputs) > index and node.inputs[index] else None


def _typed_null(dtype):
    # Typed, so that the kernels can deduce their element types from the other arguments.
    return f"static_cast<const {ir.cpp_type(dtype)}*>(nullptr)"


def _scalar_or_vector(node, graph, name, label, length=None):
    """True when tensor `name` holds one value per entry of a dimension of `length`, False when it
    is one value for the whole tensor; anything else is an error."""
    tensor = graph.tensor(name)
    if tensor.elements == 1 and len(tensor.shape) <= 1:
        return False
    if length is not None and tuple(tensor.shape) == (length,):
        return True
    expected = "a scalar" + (f" or a 1-D tensor of {length}" if length is not None else "")
    raise CodegenError(f"{label} '{name}' has shape {list(tensor.shape)}; expected {expected}", node=node)


def _zero_point(node, graph, index, of_name, label, length=None):
    """(name or None, per-entry?) of the optional zero point input `index` of input `of_name`."""
    name = _optional(node, index)
    if name is None:
        return None, False
    _same_type(node, graph, name, of_name, label)
    return name, _scalar_or_vector(node, graph, name, label, length)


def _same_type(node, graph, name, of_name, label):
    zero, of = graph.tensor(name), graph.tensor(of_name)
    if zero.dtype != of.dtype:
        raise CodegenError(f"{label} '{name}' is {ir.dtype_name(zero.dtype)} but '{of_name}' is "
                           f"{ir.dtype_name(of.dtype)}; they must have the same type", node=node)


# --- QuantizeLinear and DequantizeLinear ---------------------------------------------------

def _quant_types(version):
    return _EIGHT_BIT + ((UINT16, INT16) if version >= 21 else ())


def _layout(node, version, x_shape, scale_shape, zero_shape):
    """How the scale (and zero point) map onto x: the [outer][axis][inner] view of x, the block
    size and the scale's strides, as QuantParamIndex in quantized.h reads them."""
    x_shape, scale_shape = tuple(x_shape), tuple(scale_shape)
    if zero_shape is not None and tuple(zero_shape) != scale_shape:
        raise CodegenError(f"the zero point's shape {list(zero_shape)} differs from the scale's {list(scale_shape)}",
                           node=node)
    block = attr_int(node, "block_size", 0) if version >= 21 else 0
    if block < 0:
        raise CodegenError(f"block_size must not be negative, got {block}", node=node)
    if math.prod(scale_shape) == 1 and (len(scale_shape) <= 1 or (block and len(scale_shape) == len(x_shape))):
        return dict(outer=1, axis=1, inner=math.prod(x_shape), block=1, strides=(0, 0, 0))
    if version < 13:
        raise CodegenError(f"the scale has shape {list(scale_shape)}; before version 13 it must be a scalar",
                           node=node)
    if not x_shape:
        raise CodegenError(f"the scale has shape {list(scale_shape)} but the input is a scalar", node=node)
    axis = normalize_axis(node, attr_int(node, "axis", 1), len(x_shape))
    outer, length, inner = math.prod(x_shape[:axis]), x_shape[axis], math.prod(x_shape[axis + 1:])
    if not block:
        if scale_shape != (length,):
            raise CodegenError(f"the scale has shape {list(scale_shape)}: neither a scalar nor the {length} entries "
                               f"of axis {axis} of the input {list(x_shape)}", node=node)
        return dict(outer=outer, axis=length, inner=inner, block=1, strides=(0, 1, 0))
    blocks = -(-length // block)
    expected = x_shape[:axis] + (blocks,) + x_shape[axis + 1:]
    if scale_shape != expected:
        raise CodegenError(f"the scale has shape {list(scale_shape)}; blocks of {block} along axis {axis} of the "
                           f"input {list(x_shape)} need {list(expected)}", node=node)
    return dict(outer=outer, axis=length, inner=inner, block=block, strides=(blocks * inner, inner, 1))


def _param_index(layout, shape):
    """For every element of x (of `shape`), the flat index of its scale and zero point."""
    o = np.arange(layout["outer"]).reshape(-1, 1, 1)
    a = np.arange(layout["axis"]).reshape(1, -1, 1)
    i = np.arange(layout["inner"]).reshape(1, 1, -1)
    so, sa, si = layout["strides"]
    index = o * so + (a // layout["block"]) * sa + i * si
    return np.broadcast_to(index, (layout["outer"], layout["axis"], layout["inner"])).reshape(shape)


def _layout_params(node, ctx, layout, has_zero):
    so, sa, si = layout["strides"]
    return ctx.param_struct(node, [
        ("kOuter", layout["outer"]), ("kAxis", layout["axis"]), ("kInner", layout["inner"]),
        ("kBlock", layout["block"]), ("kScaleOuter", so), ("kScaleAxis", sa), ("kScaleInner", si),
        ("kHasZeroPoint", has_zero),
    ])


def _quantize_output(node, version, zero_dtype):
    declared = attr_int(node, "output_dtype", 0) if version >= 21 else 0
    if zero_dtype is not None and declared and declared != zero_dtype:
        raise CodegenError(f"output_dtype {tensor_data.type_name(declared)} differs from the zero point's type "
                           f"{ir.dtype_name(zero_dtype)}", node=node)
    dtype = zero_dtype if zero_dtype is not None else declared or UINT8
    allowed = _quant_types(version)
    if dtype not in allowed:
        names = ", ".join(ir.dtype_name(d) for d in allowed)
        raise CodegenError(f"quantizes to unsupported element type {tensor_data.type_name(dtype)} (QuantizeLinear-"
                           f"{version} here produces {names})", node=node)
    saturate = attr_int(node, "saturate", 1) if version >= 19 else 1
    if saturate not in (0, 1):
        raise CodegenError(f"saturate must be 0 or 1, got {saturate}", node=node)
    return dtype


def _division_type(node, version, x_dtype, scale_dtype):
    """The C++ type QuantizeLinear divides in: the `precision` attribute's, else float for float
    operands and double where either is an integer (numpy's true division, as the reference)."""
    precision = attr_int(node, "precision", 0) if version >= 23 else 0
    if precision:
        if precision not in (FLOAT, 11):
            raise CodegenError(f"precision {tensor_data.type_name(precision)} is not supported (float32 or float64)",
                               node=node)
        return ir.cpp_type(precision)
    return "float" if x_dtype == FLOAT and scale_dtype == FLOAT else "double"


def _quantize_infer(node, graph):
    input_count(node, 2, 3)
    version = _version(node)
    x = require_dtype(node, graph, node.inputs[0], (FLOAT, INT32))
    scale = require_dtype(node, graph, node.inputs[1], (FLOAT, INT32) if version >= 23 else (FLOAT,))
    zero = _optional(node, 2)
    zero_tensor = graph.tensor(zero) if zero else None
    dtype = _quantize_output(node, version, zero_tensor.dtype if zero else None)
    _layout(node, version, x.shape, scale.shape, zero_tensor.shape if zero else None)
    _division_type(node, version, x.dtype, scale.dtype)
    return [(dtype, x.shape)]


def _quantize_evaluate(node, values):
    version = _version(node)
    x, scale = values[0], values[1]
    zero = values[2] if len(values) > 2 else None
    dtype = _quantize_output(node, version, None if zero is None else ir.dtype_of_numpy(zero.dtype))
    layout = _layout(node, version, x.shape, scale.shape, None if zero is None else zero.shape)
    compute = np.float32 if _division_type(node, version, ir.dtype_of_numpy(x.dtype),
                                           ir.dtype_of_numpy(scale.dtype)) == "float" else np.float64
    index = _param_index(layout, x.shape)
    value = np.rint(x.astype(compute) / scale.reshape(-1)[index].astype(compute))
    if zero is not None:
        value = value + zero.reshape(-1)[index].astype(compute)
    info = np.iinfo(ir.numpy_type(dtype))
    value = np.where(np.isnan(value), info.min, np.clip(value, info.min, info.max))
    return [value.astype(ir.numpy_type(dtype))]


def _quantize_emit(node, ctx):
    version = _version(node)
    x, scale = ctx.graph.tensor(node.inputs[0]), ctx.graph.tensor(node.inputs[1])
    out = ctx.graph.tensor(node.outputs[0])
    zero = _optional(node, 2)
    layout = _layout(node, version, x.shape, scale.shape, ctx.graph.tensor(zero).shape if zero else None)
    params = _layout_params(node, ctx, layout, zero is not None)
    compute = _division_type(node, version, x.dtype, scale.dtype)
    zero_ptr = ctx.ptr(zero) if zero else _typed_null(out.dtype)
    return [f"pure_model::QuantizeLinear<{params}, {compute}>({ctx.ptr(x.name)}, {ctx.ptr(scale.name)}, {zero_ptr}, "
            f"{ctx.ptr(out.name)});"]


def _dequantize_infer(node, graph):
    input_count(node, 2, 3)
    version = _version(node)
    x = require_dtype(node, graph, node.inputs[0], _quant_types(version) + (INT32,))
    scale = require_dtype(node, graph, node.inputs[1], (FLOAT,))
    zero = _optional(node, 2)
    if zero:
        _same_type(node, graph, zero, x.name, "x_zero_point")
    _layout(node, version, x.shape, scale.shape, graph.tensor(zero).shape if zero else None)
    declared = attr_int(node, "output_dtype", 0) if version >= 23 else 0
    if declared and declared != FLOAT:
        raise CodegenError(f"dequantizes to unsupported element type {tensor_data.type_name(declared)} (float32 "
                           "here)", node=node)
    return [(FLOAT, x.shape)]


def _dequantize_evaluate(node, values):
    version = _version(node)
    x, scale = values[0], values[1]
    zero = values[2] if len(values) > 2 else None
    layout = _layout(node, version, x.shape, scale.shape, None if zero is None else zero.shape)
    index = _param_index(layout, x.shape)
    value = x.astype(np.float32)
    if zero is not None:
        value = value - zero.reshape(-1)[index].astype(np.float32)
    return [(value * scale.reshape(-1)[index].astype(np.float32)).astype(np.float32)]


def _dequantize_emit(node, ctx):
    version = _version(node)
    x, scale = ctx.graph.tensor(node.inputs[0]), ctx.graph.tensor(node.inputs[1])
    zero = _optional(node, 2)
    layout = _layout(node, version, x.shape, scale.shape, ctx.graph.tensor(zero).shape if zero else None)
    params = _layout_params(node, ctx, layout, zero is not None)
    zero_ptr = ctx.ptr(zero) if zero else _typed_null(x.dtype)
    return [f"pure_model::DequantizeLinear<{params}>({ctx.ptr(x.name)}, {ctx.ptr(scale.name)}, {zero_ptr}, "
            f"{ctx.ptr(node.outputs[0])});"]


# The arithmetic of one element (a division, a rounding, a clamp) is not counted finer. Versions
# 25 and 28 only add element types the IR lacks (2-bit, float6), refused like the other narrow ones.
register("QuantizeLinear", infer=_quantize_infer, evaluate=_quantize_evaluate, emit=_quantize_emit, max_version=28)
register("DequantizeLinear", infer=_dequantize_infer, evaluate=_dequantize_evaluate, emit=_dequantize_emit,
         max_version=28)


# --- DynamicQuantizeLinear ------------------------------------------------------------------

def _dynamic_infer(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], (FLOAT,))
    return [(UINT8, x.shape), (FLOAT, ()), (UINT8, ())]


def _dynamic_evaluate(node, values):
    x = values[0].astype(np.float32)
    lo = np.float32(min(0.0, float(x.min()))) if x.size else np.float32(0)
    hi = np.float32(max(0.0, float(x.max()))) if x.size else np.float32(0)
    scale = np.float32(np.float32(1) if hi == lo else hi - lo) / np.float32(255)
    zero = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)).astype(np.float32)
    y = np.clip(np.rint(x / scale) + zero, 0, 255)
    return [y.astype(np.uint8), np.array(scale, np.float32), np.array(zero, np.uint8)]


def _dynamic_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    y, scale, zero = (ctx.ptr(name) for name in node.outputs[:3])
    return [f"pure_model::DynamicQuantizeLinear<{x.elements}>({ctx.ptr(x.name)}, {y}, {scale}, {zero});"]


def _dynamic_flops(node, graph):
    return 3 * graph.tensor(node.inputs[0]).elements  # min/max, the division, the rounding


register("DynamicQuantizeLinear", infer=_dynamic_infer, evaluate=_dynamic_evaluate, emit=_dynamic_emit,
         flops=_dynamic_flops, max_version=11)


# --- Integer products: shared planning -------------------------------------------------------
#
# The kernels (quantized.h) multiply int16 pairs of k into int32 sums, exactly. Their operands,
# as the generator packs constant weights (in their own 8-bit type, zero point not subtracted):
# a convolution's weights as groups of _GROUP_ROWS output channels, [ceil(M / 4)][K2][4][2]
# (K2 = ceil(K / 2)), broadcast pair by pair; MatMulInteger's B as panels of _LANES columns,
# [ceil(N / 16)][K2][16][2], loaded as vectors. Zeros pad both.

_GROUP_ROWS = 4  # kQGroupRows
_LANES = 16  # kQLanes
# Output positions gathered at a time are a multiple of every target's register tile (1 or 3
# panels of 16) and hold about this many bytes of int16 panels, to stay in the L2 cache.
_CHUNK_MULTIPLE = 96
_PANEL_BUDGET_BYTES = 196608


def _align(n):
    return -(-n // 64) * 64


def _scratch_layout(regions):
    """Byte offsets of named scratch regions (each 64-byte aligned) and their total; an empty
    region (an empty tensor's) gets an offset too, that nothing reads through."""
    offsets, total = {}, 0
    for name, size in regions:
        offsets[name] = total
        total += _align(size)
    return offsets, max(total, 64)  # some scratch, for the pointers to point into


def _pairs(k):
    return -(-k // 2)


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


def _pack_blocks(matrix, block):
    """A [rows, K] matrix in blocks of `block` rows by pairs of k, [ceil(rows / block)][K2][block][2],
    as QPackBlocks packs one at run time: pair groups (block 4) of a convolution's weights, lane
    panels (block 16) of MatMulInteger's B with its columns as the rows."""
    rows, k = matrix.shape
    padded = np.zeros((_round_up(rows, block), 2 * _pairs(k)), matrix.dtype)
    padded[:rows, :k] = matrix
    return padded.reshape(len(padded) // block, block, _pairs(k), 2).transpose(0, 2, 1, 3)


def _scratch_ptr(ctx, node, offsets, region, cpp_type):
    return f"reinterpret_cast<{cpp_type}*>({ctx.scratch(node, 'unsigned char')} + {offsets[region]})"


def _requantize_inputs(node, graph, labels, length):
    """Checks QLinearConv's / QLinearMatMul's scales (inputs 1, 4 and 6, float32; that of the
    weights, input 4, a scalar or one per `length` output channels or columns) and output zero
    point (input 7); returns (output dtype, per-channel scale?)."""
    per_channel = False
    for index, label in zip((1, 4, 6), labels):
        require_dtype(node, graph, node.inputs[index], (FLOAT,))
        per_channel |= _scalar_or_vector(node, graph, node.inputs[index], label, length if index == 4 else None)
    out = require_dtype(node, graph, node.inputs[7], _EIGHT_BIT)
    _scalar_or_vector(node, graph, out.name, "y_zero_point")
    return out.dtype, per_channel


# --- ConvInteger and QLinearConv -----------------------------------------------------------

_CONV_PORTS = {"ConvInteger": (0, 1, 2, 3), "QLinearConv": (0, 3, 2, 5)}  # x, w, x zero point, w zero point


def _conv_plan(node, graph):
    x_index, w_index, xz_index, wz_index = _CONV_PORTS[node.op_type]
    if node.op_type == "ConvInteger":
        input_count(node, 2, 4)
    else:
        input_count(node, 8, 9)
    x = require_dtype(node, graph, node.inputs[x_index], _EIGHT_BIT)
    w = require_dtype(node, graph, node.inputs[w_index], _EIGHT_BIT)
    if len(x.shape) not in (3, 4):
        raise CodegenError(f"only 1-D and 2-D convolution is supported; input '{x.name}' has rank {len(x.shape)}",
                           node=node)
    if len(w.shape) != len(x.shape):
        raise CodegenError(f"weight rank {len(w.shape)} does not match input rank {len(x.shape)}", node=node)
    group = attr_int(node, "group", 1)
    n, c = x.shape[:2]
    m = w.shape[0]
    if group < 1 or c % group or m % group or w.shape[1] * group != c:
        raise CodegenError(f"group {group} does not fit input channels {c} and weights {list(w.shape)}", node=node)
    kernel = list(w.shape[2:])
    if attr_ints(node, "kernel_shape") not in (None, kernel):
        raise CodegenError(f"kernel_shape {attr_ints(node, 'kernel_shape')} disagrees with the weight's shape {kernel}",
                           node=node)
    strides, dilations = conv.spatial_attrs(node, len(kernel))
    begin, _, out = conv.resolve_padding(node, list(x.shape[2:]), kernel, strides, dilations, attr_ints(node, "pads"),
                                         node.attrs.get("auto_pad", "NOTSET"))
    x_zero, _ = _zero_point(node, graph, xz_index, x.name, "x_zero_point")
    w_zero, w_per_channel = _zero_point(node, graph, wz_index, w.name, "w_zero_point", m)
    pad = [1] * (2 - len(kernel))  # a 1-D convolution runs as a 2-D one with one row
    plan = dict(x=x.name, w=w.name, x_zero=x_zero, w_zero=w_zero, w_per_channel=w_per_channel, n=n, c=c, m=m,
                group=group, shape=(n, m, *out), spatial=pad + list(x.shape[2:]), kernel=pad + kernel, strides=pad + strides,
                dilations=pad + dilations, begin=[0] * len(pad) + begin, out=pad + out)
    plan["k"] = c // group * math.prod(kernel)
    plan["positions"] = math.prod(out)
    weights_constant = w.is_constant and (w_zero is None or graph.tensor(w_zero).is_constant)
    plan["packed_constant"] = weights_constant
    (h, wd), (kh, kw), (oh, ow) = plan["spatial"], plan["kernel"], plan["out"]
    # The zero-padded image the gather reads: the input plus its top and left padding, and as
    # much past the bottom and right as the last window reaches.
    plan["padded"] = (max(h + plan["begin"][0], (oh - 1) * plan["strides"][0] + (kh - 1) * plan["dilations"][0] + 1),
                      max(wd + plan["begin"][1], (ow - 1) * plan["strides"][1] + (kw - 1) * plan["dilations"][1] + 1))
    pairs = _pairs(plan["k"])
    plan["per_group"] = _round_up(m // group, _GROUP_ROWS) * pairs * 2
    chunk = max(_CHUNK_MULTIPLE, _PANEL_BUDGET_BYTES // max(pairs * 4, 1) // _CHUNK_MULTIPLE * _CHUNK_MULTIPLE)
    plan["chunk"] = min(chunk, _round_up(plan["positions"], _LANES))
    plan["offsets"], plan["scratch"] = _scratch_layout([
        ("weights", group * plan["per_group"] * 2),
        ("image", c // group * math.prod(plan["padded"]) * 2),
        ("panels", pairs * 2 * plan["chunk"] * 2),
        ("packed", 0 if weights_constant else group * plan["per_group"]),
        ("acc", n * m * plan["positions"] * 4 if node.op_type == "QLinearConv" else 0),
    ])
    plan["flops"] = 2 * n * m * plan["positions"] * plan["k"]
    return plan


def _conv_emit_products(node, ctx, plan, y):
    """Lines computing the int32 convolution into `y`."""
    graph = ctx.graph
    m_group = plan["m"] // plan["group"]
    (h, w), (kh, kw), (oh, ow) = plan["spatial"], plan["kernel"], plan["out"]
    params = ctx.param_struct(node, [
        ("kN", plan["n"]), ("kGroups", plan["group"]), ("kC", plan["c"] // plan["group"]), ("kH", h), ("kW", w),
        ("kM", m_group), ("kKH", kh), ("kKW", kw), ("kOH", oh), ("kOW", ow),
        ("kStrideH", plan["strides"][0]), ("kStrideW", plan["strides"][1]), ("kPadTop", plan["begin"][0]),
        ("kPadLeft", plan["begin"][1]), ("kDilH", plan["dilations"][0]), ("kDilW", plan["dilations"][1]),
        ("kPaddedH", plan["padded"][0]), ("kPaddedW", plan["padded"][1]), ("kChunkCols", plan["chunk"]),
        ("kPerChannelZero", plan["w_per_channel"]),
    ])
    x_dtype, w_dtype = graph.tensor(plan["x"]).dtype, graph.tensor(plan["w"]).dtype
    lines = []
    if plan["packed_constant"]:
        weights = graph.tensor(plan["w"]).value.reshape(plan["group"], m_group, -1)
        packed = ctx.derived_constant(
            node, "packed_weights", np.concatenate([_pack_blocks(g, _GROUP_ROWS).reshape(-1) for g in weights]),
            comment=f"in groups of {_GROUP_ROWS} output channels by pairs of k", dtype=w_dtype)
    else:
        packed = _scratch_ptr(ctx, node, plan["offsets"], "packed", ir.cpp_type(w_dtype))
        k = plan["k"]
        lines += [
            "// The weights are an input: packed into groups of output channels.",
            f"for (std::size_t g = 0; g < {plan['group']}; ++g) {{",
            f"  pure_model::QPackBlocks<pure_model::kQGroupRows, {m_group}, {k}, {k}, 1>("
            f"{ctx.ptr(plan['w'])} + g * {m_group * k}, {packed} + g * {plan['per_group']});",
            "}",
        ]
    x_zero = ctx.ptr(plan["x_zero"]) if plan["x_zero"] else _typed_null(x_dtype)
    w_zero = ctx.ptr(plan["w_zero"]) if plan["w_zero"] else _typed_null(w_dtype)
    scratch = ", ".join(_scratch_ptr(ctx, node, plan["offsets"], region, "std::int16_t")
                        for region in ("weights", "image", "panels"))
    lines.append(f"pure_model::ConvInteger2D<{params}>({ctx.ptr(plan['x'])}, {x_zero}, {packed}, {w_zero}, {y}, "
                 f"{scratch});")
    return lines


def _conv_integer_infer(node, graph):
    return [(INT32, _conv_plan(node, graph)["shape"])]


def _conv_integer_emit(node, ctx):
    return _conv_emit_products(node, ctx, _conv_plan(node, ctx.graph), ctx.ptr(node.outputs[0]))


def _qlinear_conv_infer(node, graph):
    plan = _conv_plan(node, graph)
    dtype, _ = _requantize_inputs(node, graph, ("x_scale", "w_scale", "y_scale"), plan["m"])
    bias = _optional(node, 8)
    if bias:
        b = require_dtype(node, graph, bias, (INT32,))
        if tuple(b.shape) != (plan["m"],):
            raise CodegenError(f"bias shape {list(b.shape)} must be [{plan['m']}]", node=node)
    return [(dtype, plan["shape"])]


def _qlinear_conv_emit(node, ctx):
    plan = _conv_plan(node, ctx.graph)
    bias = ctx.ptr(node.inputs[8]) if _optional(node, 8) else "nullptr"
    return _emit_requantized(node, ctx, plan, _conv_emit_products, ("x_scale", "w_scale", "y_scale"), plan["m"],
                             plan["positions"], bias)


def _emit_requantized(node, ctx, plan, emit_products, labels, channels, inner, bias):
    """QLinearConv / QLinearMatMul: the int32 products into scratch, then requantized into the output."""
    _, per_channel = _requantize_inputs(node, ctx.graph, labels, channels)
    acc = _scratch_ptr(ctx, node, plan["offsets"], "acc", "std::int32_t")
    outer = ctx.graph.tensor(node.outputs[0]).elements // (channels * inner)
    scales = ", ".join(ctx.ptr(node.inputs[i]) for i in (1, 4, 6, 7))
    return emit_products(node, ctx, plan, acc) + [
        f"pure_model::Requantize<{outer}, {channels}, {inner}, {str(per_channel).lower()}>({acc}, {bias}, {scales}, "
        f"{ctx.ptr(node.outputs[0])});"]


def _register_product(op_type, plan, infer, emit, max_version):
    register(op_type, infer=infer, emit=emit, flops=lambda node, graph: plan(node, graph)["flops"],
             scratch=lambda node, graph: plan(node, graph)["scratch"], max_version=max_version)


_register_product("ConvInteger", _conv_plan, _conv_integer_infer, _conv_integer_emit, 10)
_register_product("QLinearConv", _conv_plan, _qlinear_conv_infer, _qlinear_conv_emit, 10)


# --- MatMulInteger and QLinearMatMul ---------------------------------------------------------

_MATMUL_PORTS = {"MatMulInteger": (0, 1, 2, 3), "QLinearMatMul": (0, 3, 2, 5)}  # a, b, a zero, b zero


def _matmul_plan(node, graph):
    a_index, b_index, az_index, bz_index = _MATMUL_PORTS[node.op_type]
    if node.op_type == "MatMulInteger":
        input_count(node, 2, 4)
    else:
        input_count(node, 8)
    a = require_dtype(node, graph, node.inputs[a_index], _EIGHT_BIT)
    b = require_dtype(node, graph, node.inputs[b_index], _EIGHT_BIT)
    if not a.shape or not b.shape:
        raise CodegenError("the inputs must have rank >= 1", node=node)
    # numpy.matmul's rules: 1-D operands gain a dimension that the result then drops.
    a_shape = (1,) + tuple(a.shape) if len(a.shape) == 1 else tuple(a.shape)
    b_shape = tuple(b.shape) + (1,) if len(b.shape) == 1 else tuple(b.shape)
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    if b_shape[-2] != k:
        raise CodegenError(f"inner dimensions differ: {list(a.shape)} x {list(b.shape)}", node=node)
    try:
        batch = tuple(int(d) for d in np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    except ValueError:
        raise CodegenError(f"batch dimensions of {list(a.shape)} and {list(b.shape)} do not broadcast",
                           node=node) from None
    out = batch + (m, n)
    if len(a.shape) == 1:
        out = out[:-2] + out[-1:]
    if len(b.shape) == 1:
        out = out[:-1]
    a_zero, a_per_row = _zero_point(node, graph, az_index, a.name, "a_zero_point", m)
    if a_per_row and m != 1:
        raise CodegenError("a zero point per row of A is not supported (one for the whole tensor only)", node=node)
    b_zero, b_per_column = _zero_point(node, graph, bz_index, b.name, "b_zero_point", n)
    # Without batch dimensions of B, A's batches are just more rows of one product.
    single = len(b_shape) == 2
    calls = 1 if single else math.prod(batch)
    check_table_size(node, "batch offsets", calls)
    rows = math.prod(batch) * m if single else m
    weights_constant = single and b.is_constant and (b_zero is None or graph.tensor(b_zero).is_constant)
    pairs = _pairs(k)
    offsets, scratch = _scratch_layout([
        ("a_pairs", _round_up(rows, _GROUP_ROWS) * pairs * 2 * 2),
        ("a_sums", rows * 4),
        ("packed", 0 if weights_constant else _round_up(n, _LANES) * pairs * 2),
        ("acc", math.prod(out) * 4 if node.op_type == "QLinearMatMul" else 0),
    ])
    return dict(a=a.name, b=b.name, a_zero=a_zero, b_zero=b_zero, b_per_column=b_per_column, m=m, k=k, n=n,
                a_shape=a_shape, b_shape=b_shape, batch=batch, out=out, single=single, calls=calls, rows=rows,
                packed_constant=weights_constant, offsets=offsets, scratch=scratch, flops=2 * math.prod(out) * k)


def _matmul_emit_products(node, ctx, plan, y):
    graph = ctx.graph
    m, k, n, rows = plan["m"], plan["k"], plan["n"], plan["rows"]
    a_dtype, b_dtype = graph.tensor(plan["a"]).dtype, graph.tensor(plan["b"]).dtype
    a = ctx.ptr(plan["a"])
    a_zero = ctx.ptr(plan["a_zero"]) if plan["a_zero"] else _typed_null(a_dtype)
    b_zero = ctx.ptr(plan["b_zero"]) if plan["b_zero"] else _typed_null(b_dtype)
    a_scratch = (f'{_scratch_ptr(ctx, node, plan["offsets"], "a_pairs", "std::int16_t")}, '
                 f'{_scratch_ptr(ctx, node, plan["offsets"], "a_sums", "std::int32_t")}')
    per_column = str(plan["b_per_column"]).lower()
    if plan["packed_constant"]:
        columns = graph.tensor(plan["b"]).value.reshape(k, n).T
        packed = ctx.derived_constant(node, "packed_b", _pack_blocks(columns, _LANES),
                                      comment=f"in panels of {_LANES} columns by pairs of k", dtype=b_dtype)
        return [f"pure_model::MatMulInteger<{rows}, {k}, {n}, {per_column}>({a}, {a_zero}, {packed}, {b_zero}, {y}, "
                f"{a_scratch});"]
    # Only B's run-time form is read: ctx.ptr embeds a constant B (B with batch dimensions), and
    # only when it is not packed at generation time.
    b = ctx.ptr(plan["b"])
    packed = _scratch_ptr(ctx, node, plan["offsets"], "packed", ir.cpp_type(b_dtype))
    pack = f"pure_model::QPackBlocks<pure_model::kQLanes, {n}, {k}, 1, {n}>({b}{{b_offset}}, {packed});"
    product = (f"pure_model::MatMulInteger<{rows}, {k}, {n}, {per_column}>({a}{{a_offset}}, {a_zero}, {packed}, "
               f"{b_zero}, {y}{{y_offset}}, {a_scratch});")
    if plan["single"]:
        return ["// B is an input: packed into panels of columns.",
                pack.format(b_offset=""), product.format(a_offset="", y_offset="")]
    a_table = ctx.int_table(node, "a_offsets", gemm._batch_offsets(plan["a_shape"][:-2], plan["batch"], m * k))
    b_table = ctx.int_table(node, "b_offsets", gemm._batch_offsets(plan["b_shape"][:-2], plan["batch"], k * n))
    return [f"for (std::size_t batch = 0; batch < {plan['calls']}; ++batch) {{",
            "  " + pack.format(b_offset=f" + {b_table}[batch]"),
            "  " + product.format(a_offset=f" + {a_table}[batch]", y_offset=f" + batch * {m * n}"),
            "}"]


def _matmul_integer_infer(node, graph):
    return [(INT32, _matmul_plan(node, graph)["out"])]


def _matmul_integer_emit(node, ctx):
    return _matmul_emit_products(node, ctx, _matmul_plan(node, ctx.graph), ctx.ptr(node.outputs[0]))


_QLINEAR_MATMUL_SCALES = ("a_scale", "b_scale", "y_scale")


def _qlinear_matmul_infer(node, graph):
    plan = _matmul_plan(node, graph)
    dtype, _ = _requantize_inputs(node, graph, _QLINEAR_MATMUL_SCALES, plan["n"])
    return [(dtype, plan["out"])]


def _qlinear_matmul_emit(node, ctx):
    plan = _matmul_plan(node, ctx.graph)
    return _emit_requantized(node, ctx, plan, _matmul_emit_products, _QLINEAR_MATMUL_SCALES, plan["n"], 1, "nullptr")


_register_product("MatMulInteger", _matmul_plan, _matmul_integer_infer, _matmul_integer_emit, 10)
# Version 21 only adds float16/bfloat16 scales and float8 operands (the float8 ones refused).
_register_product("QLinearMatMul", _matmul_plan, _qlinear_matmul_infer, _qlinear_matmul_emit, 21)
