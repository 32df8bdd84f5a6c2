"""Normalizations over groups of elements, float32 and float64: LayerNormalization,
RMSNormalization, GroupNormalization, InstanceNormalization, LpNormalization, LRN and
MeanVarianceNormalization.

The first four normalise contiguous blocks of the input: the trailing axes from `axis` on
(Layer, RMS), a group of channels with their spatial positions (Group), one channel's spatial
positions (Instance). Each block's statistics are accumulated in double whatever stash_type
says, then each element is scaled (and shifted) with the scale and bias of its position in the
block (Layer, RMS) or of its channel (Group, Instance). (GroupNormalization-18, with one scale
per group, is deprecated: onnx's checker refuses it before the generator sees it.)
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, input_count, normalize_axis, register, require_dtype
from pure_model_codegen.ops.elementwise import literal

_FLOATS = (1, 11)


def _optional_input(node, index):
    return node.inputs[index] if len(node.inputs) > index and node.inputs[index] else ""


def _stash_type(node, x):
    stash = attr_int(node, "stash_type", 1)
    if stash not in _FLOATS:
        raise CodegenError(f"stash_type {ir.dtype_name(stash)} is not supported (float32 and float64 are)", node=node)
    return stash


def _require_shape(node, graph, index, label, shape, dtype):
    name = _optional_input(node, index)
    if not name:
        return None
    tensor = require_dtype(node, graph, name, (dtype,))
    if tuple(tensor.shape) != tuple(shape):
        raise CodegenError(f"{label} has shape {list(tensor.shape)}; this generator supports {list(shape)} here",
                           node=node)
    return name


def _blocks(node, graph):
    """(x, blocks, block size, scale index, bias index, mean/variance or RMS, epsilon) for the block ops.

    The scale and bias indices are C++ expressions of i0 (the block) and i1 (the element in it).
    """
    op = node.op_type
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    shape = tuple(x.shape)
    rank = len(shape)
    epsilon = attr_float(node, "epsilon", 1e-5)
    if op in ("LayerNormalization", "RMSNormalization"):
        input_count(node, 2, 3 if op == "LayerNormalization" else 2)
        _stash_type(node, x)
        axis = normalize_axis(node, attr_int(node, "axis", -1), rank)
        block = int(np.prod(shape[axis:]))
        _require_shape(node, graph, 1, "scale", shape[axis:], x.dtype)
        _require_shape(node, graph, 2, "bias", shape[axis:], x.dtype)
        return x, int(np.prod(shape[:axis])), block, "i1", "i1", op == "LayerNormalization", epsilon
    least = 3 if op == "InstanceNormalization" else 2
    if rank < least:
        raise CodegenError(f"input must have rank >= {least} (N, C, ...), got {list(shape)}", node=node)
    channels, spatial = shape[1], int(np.prod(shape[2:]))
    if op == "InstanceNormalization":
        input_count(node, 3)
        for index, label in ((1, "scale"), (2, "B")):
            _require_shape(node, graph, index, label, (channels,), x.dtype)
        return x, shape[0] * channels, spatial, f"i0 % {channels}", f"i0 % {channels}", True, epsilon
    input_count(node, 3)
    groups = attr_int(node, "num_groups")
    if groups < 1 or channels % groups:
        raise CodegenError(f"num_groups {groups} must be positive and divide the {channels} channels", node=node)
    _stash_type(node, x)
    per_group = channels // groups
    index = f"(i0 % {groups}) * {per_group} + i1 / {spatial}"
    for position, label in ((1, "scale"), (2, "bias")):
        _require_shape(node, graph, position, label, (channels,), x.dtype)
    return x, shape[0] * groups, per_group * spatial, index, index, True, epsilon


def _block_infer(node, graph):
    x, blocks, *_ = _blocks(node, graph)
    results = [(x.dtype, x.shape)]
    if node.op_type == "LayerNormalization":
        if len(node.outputs) > 3:
            raise CodegenError(f"has {len(node.outputs)} outputs; LayerNormalization has at most 3", node=node)
        axis = normalize_axis(node, attr_int(node, "axis", -1), len(x.shape))
        stats = tuple(x.shape[:axis]) + (1,) * (len(x.shape) - axis)
        stash = _stash_type(node, x)
        results += [(stash, stats), (stash, stats)]
    elif len(node.outputs) > 1:
        raise CodegenError(f"has {len(node.outputs)} outputs; {node.op_type} has 1", node=node)
    return results[:len(node.outputs)]


def _block_emit(node, ctx):
    x, blocks, size, scale_index, bias_index, centred, epsilon = _blocks(node, ctx.graph)
    t = ir.cpp_type(x.dtype)
    params = ctx.param_struct(node, [("kBlocks", blocks), ("kBlockSize", size)])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    scale = _optional_input(node, 1)
    bias = _optional_input(node, 2)
    lines = [f"for (std::size_t i0 = 0; i0 < {params}::kBlocks; ++i0) {{",
             f"  const {t}* const in_block = {src} + i0 * {params}::kBlockSize;",
             f"  {t}* const out_block = {dst} + i0 * {params}::kBlockSize;"]
    if centred:
        lines += ["  double mean = 0;",
                  f"  for (std::size_t i1 = 0; i1 < {params}::kBlockSize; ++i1) mean += in_block[i1];",
                  f"  mean /= {params}::kBlockSize;",
                  "  double variance = 0;",
                  f"  for (std::size_t i1 = 0; i1 < {params}::kBlockSize; ++i1) {{",
                  "    const double centred = in_block[i1] - mean;",
                  "    variance += centred * centred;",
                  "  }",
                  f"  variance /= {params}::kBlockSize;"]
    else:
        lines += ["  double mean = 0;  // centred at zero: RMS normalisation",
                  "  double variance = 0;  // the mean square",
                  f"  for (std::size_t i1 = 0; i1 < {params}::kBlockSize; ++i1) variance += static_cast<double>("
                  "in_block[i1]) * in_block[i1];",
                  f"  variance /= {params}::kBlockSize;"]
    eps = repr(float(np.float32(epsilon))) if x.dtype == 1 else repr(float(epsilon))
    lines.append(f"  const double inv_std = 1.0 / std::sqrt(variance + {eps});")
    value = f"static_cast<{t}>((in_block[i1] - mean) * inv_std)"
    if scale:
        value += f" * {ctx.ptr(scale)}[{scale_index}]"
    if bias:
        value += f" + {ctx.ptr(bias)}[{bias_index}]"
    lines.append(f"  for (std::size_t i1 = 0; i1 < {params}::kBlockSize; ++i1) out_block[i1] = {value};")
    for index, stat in ((1, "mean"), (2, "inv_std")):
        if len(node.outputs) > index and node.outputs[index]:
            out = ctx.graph.tensor(node.outputs[index])
            lines.append(f"  {ctx.ptr(node.outputs[index])}[i0] = static_cast<{ir.cpp_type(out.dtype)}>({stat});")
    lines.append("}")
    return lines


def _block_flops(node, graph):
    return 6 * graph.tensor(node.inputs[0]).elements


for _op in ("LayerNormalization", "RMSNormalization", "GroupNormalization", "InstanceNormalization"):
    register(_op, infer=_block_infer, emit=_block_emit, flops=_block_flops)


# --- LpNormalization ---------------------------------------------------------------------------

def _lp_geometry(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    axis = normalize_axis(node, attr_int(node, "axis", -1), len(x.shape))
    p = attr_int(node, "p", 2)
    if p not in (1, 2):
        raise CodegenError(f"p must be 1 or 2, got {p}", node=node)
    shape = x.shape
    return x, int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:])), p


def _lp_infer(node, graph):
    x, *_ = _lp_geometry(node, graph)
    return [(x.dtype, x.shape)]


def _lp_emit(node, ctx):
    x, outer, extent, inner, p = _lp_geometry(node, ctx.graph)
    t = ir.cpp_type(x.dtype)
    params = ctx.param_struct(node, [("kOuter", outer), ("kAxis", extent), ("kInner", inner)])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    term = "std::fabs(v)" if p == 1 else "v * v"
    norm = "acc" if p == 1 else "std::sqrt(acc)"
    at = f"(i0 * {params}::kAxis + i2) * {params}::kInner + i1"
    return [
        f"for (std::size_t i0 = 0; i0 < {params}::kOuter; ++i0) {{",
        f"  for (std::size_t i1 = 0; i1 < {params}::kInner; ++i1) {{",
        "    double acc = 0;",
        f"    for (std::size_t i2 = 0; i2 < {params}::kAxis; ++i2) {{",
        f"      const double v = {src}[{at}];",
        f"      acc += {term};",
        "    }",
        f"    const double norm = {norm};",
        "    // A zero vector stays zero rather than 0 / 0.",
        f"    for (std::size_t i2 = 0; i2 < {params}::kAxis; ++i2) {dst}[{at}] = norm == 0 ? {literal(0, x.dtype)} : "
        f"static_cast<{t}>({src}[{at}] / norm);",
        "  }",
        "}",
    ]


register("LpNormalization", infer=_lp_infer, emit=_lp_emit)


# --- LRN ----------------------------------------------------------------------------------------

def _lrn_geometry(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    if len(x.shape) < 3:
        raise CodegenError(f"input must have rank >= 3 (N, C, spatial...), got {list(x.shape)}", node=node)
    size = attr_int(node, "size")
    if size < 1:
        raise CodegenError(f"size must be positive, got {size}", node=node)
    return x, size


def _lrn_infer(node, graph):
    x, _ = _lrn_geometry(node, graph)
    return [(x.dtype, x.shape)]


def _lrn_emit(node, ctx):
    x, size = _lrn_geometry(node, ctx.graph)
    t = ir.cpp_type(x.dtype)
    alpha, beta, bias = (attr_float(node, name, default) for name, default in
                         (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    channels, spatial = x.shape[1], int(np.prod(x.shape[2:]))
    params = ctx.param_struct(node, [("kBatch", x.shape[0]), ("kChannels", channels), ("kSpatial", spatial),
                                     ("kBefore", (size - 1) // 2), ("kAfter", -(-(size - 1) // 2))])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    at = f"(i0 * {params}::kChannels + {{}}) * {params}::kSpatial + i2"

    def lit(value):
        return repr(float(np.float32(value)))

    return [
        f"for (std::size_t i0 = 0; i0 < {params}::kBatch; ++i0) {{",
        f"  for (std::size_t i1 = 0; i1 < {params}::kChannels; ++i1) {{",
        "    // The window of channels around i1, cut at the edges.",
        f"    const std::size_t first = i1 < {params}::kBefore ? 0 : i1 - {params}::kBefore;",
        f"    const std::size_t last = i1 + {params}::kAfter < {params}::kChannels ? i1 + {params}::kAfter : "
        f"{params}::kChannels - 1;",
        f"    for (std::size_t i2 = 0; i2 < {params}::kSpatial; ++i2) {{",
        "      double acc = 0;",
        "      for (std::size_t i3 = first; i3 <= last; ++i3) {",
        f"        const double v = {src}[{at.format('i3')}];",
        "        acc += v * v;",
        "      }",
        f"      {dst}[{at.format('i1')}] = static_cast<{t}>({src}[{at.format('i1')}] / "
        f"std::pow({lit(bias)} + {lit(alpha)} / {size} * acc, {lit(beta)}));",
        "    }",
        "  }",
        "}",
    ]


register("LRN", infer=_lrn_infer, emit=_lrn_emit)


# --- MeanVarianceNormalization ------------------------------------------------------------------
#
# (x - mean) / (std + 1e-9) over any set of axes, as the spec's function body computes it: the
# standard deviation from E[x^2] - E[x]^2. The kept axes are loops outside, the normalised ones a
# loop nest inside, run twice (statistics, then output).

_MVN_EPSILON = 1e-9


def _mvn_axes(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    rank = len(x.shape)
    axes = node.attrs.get("axes", [0, 2, 3])
    if not isinstance(axes, (list, tuple)) or not all(isinstance(a, int) for a in axes):
        raise CodegenError(f"attribute 'axes' must be a list of ints, got {axes!r}", node=node)
    normalized = sorted({normalize_axis(node, a, rank) for a in axes})
    if len(normalized) != len(axes):
        raise CodegenError(f"axes {list(axes)} repeat an axis", node=node)
    return x, normalized


def _mvn_infer(node, graph):
    x, _ = _mvn_axes(node, graph)
    return [(x.dtype, x.shape)]


def _nest(dims, first, body):
    """for-loops i<first>, i<first + 1>, ... over `dims` [(name, extent)] around `body`."""
    lines = []
    for depth, (_, extent) in enumerate(dims):
        var = f"i{first + depth}"
        lines.append("  " * depth + f"for (std::size_t {var} = 0; {var} < {extent}; ++{var}) {{")
    lines += ["  " * len(dims) + line for line in body]
    lines += ["  " * depth + "}" for depth in reversed(range(len(dims)))]
    return lines


def _mvn_emit(node, ctx):
    x, axes = _mvn_axes(node, ctx.graph)
    shape = x.shape
    t = ir.cpp_type(x.dtype)
    strides = [int(np.prod(shape[d + 1:])) for d in range(len(shape))]
    kept = [(d, shape[d]) for d in range(len(shape)) if d not in axes]
    reduced = [(d, shape[d]) for d in axes]
    count = int(np.prod([n for _, n in reduced]))
    variables = {d: f"i{n}" for n, (d, _) in enumerate(kept + reduced)}
    at = " + ".join(f"{variables[d]} * {strides[d]}" for d in range(len(shape))) or "0"
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    inner = len(kept)
    body = ["double mean = 0;", "double variance = 0;  // E[x^2] first"]
    body += _nest(reduced, inner, [f"const double v = {src}[{at}];", "mean += v;", "variance += v * v;"])
    body += [f"mean /= {count};",
             f"variance = variance / {count} - mean * mean;",
             f"const double norm = std::sqrt(variance) + {_MVN_EPSILON!r};"]
    body += _nest(reduced, inner, [f"{dst}[{at}] = static_cast<{t}>(({src}[{at}] - mean) / norm);"])
    lines = _nest(kept, 0, body)
    return lines if kept else ["{"] + ["  " + line for line in lines] + ["}"]


register("MeanVarianceNormalization", infer=_mvn_infer, emit=_mvn_emit)
