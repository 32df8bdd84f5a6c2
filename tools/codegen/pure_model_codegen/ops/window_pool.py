"""Pooling written as one loop per window tap, for what pool.py's 2-D kernels do not cover:
LpPool (1-D to 3-D, the p-norm of each window, padding counting as zeros), and 3-D MaxPool and
AveragePool and MaxPool's Indices output (pool.py hands those over to window_lines).

Padding, auto_pad, strides, dilations and ceil_mode follow the other pools (conv.resolve_padding).
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, register, require_dtype
from pure_model_codegen.ops.conv import resolve_padding, spatial_attrs

_FLOATS = (1, 11)


def kernel_attrs(node, x):
    """(kernel_shape, strides, dilations) of a 1-D to 3-D pool over `x`, checked."""
    if len(x.shape) not in (3, 4, 5):
        raise CodegenError(f"only 1-D to 3-D pooling is supported; input has rank {len(x.shape)}", node=node)
    rank = len(x.shape) - 2
    kernel = attr_ints(node, "kernel_shape")
    if not kernel or len(kernel) != rank or any(k < 1 for k in kernel):
        raise CodegenError(f"kernel_shape must hold {rank} positive values, got {kernel}", node=node)
    return (kernel,) + tuple(spatial_attrs(node, rank))


def _geometry(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    kernel, strides, dilations = kernel_attrs(node, x)
    if node.opset < 2:
        p = node.attrs.get("p", 2.0)
        if float(p) != int(p):
            raise CodegenError(f"p must be a whole number, got {p}", node=node)
        p = int(p)
    else:
        p = attr_int(node, "p", 2)
    if p < 1:
        raise CodegenError(f"p must be at least 1, got {p}", node=node)
    begin, _, out = resolve_padding(node, list(x.shape[2:]), kernel, strides, dilations, attr_ints(node, "pads"),
                                    node.attrs.get("auto_pad", "NOTSET"), attr_int(node, "ceil_mode", 0))
    return x, kernel, strides, dilations, begin, out, p


def _infer(node, graph):
    x, *_, out, _ = _geometry(node, graph)
    return [(x.dtype, tuple(x.shape[:2]) + tuple(out))]


def _emit(node, ctx):
    x, kernel, strides, dilations, begin, out, p = _geometry(node, ctx.graph)
    return window_lines(node, ctx, "lp", kernel, strides, dilations, begin, None, out, p=p)


def window_lines(node, ctx, kind, kernel, strides, dilations, begin, end, out, p=2, count_include_pad=False,
                 indices=None, storage_order=0):
    """C++ lines pooling input 0 into output 0: kind "lp", "max" or "average".

    `end` (the end pads) matters only to average pooling with count_include_pad, whose divisor
    counts the taps inside the padded input. `indices` names MaxPool's Indices output: each
    maximum's flat position in the input, row-major, or column-major over the spatial axes with
    storage_order=1.
    """
    x = ctx.graph.tensor(node.inputs[0])
    rank = len(kernel)
    spatial = list(x.shape[2:])
    fields = [("kChannels", x.shape[0] * x.shape[1])]
    for d in range(rank):
        fields += [(f"kIn{d}", spatial[d]), (f"kOut{d}", out[d]), (f"kKernel{d}", kernel[d]),
                   (f"kStride{d}", strides[d]), (f"kDilation{d}", dilations[d]), (f"kPadBegin{d}", begin[d])]
        if kind == "average" and count_include_pad:
            fields.append((f"kPaddedIn{d}", spatial[d] + begin[d] + end[d]))
    params = ctx.param_struct(node, fields)
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    t = ir.cpp_type(x.dtype)
    lines = [f"for (std::size_t i0 = 0; i0 < {params}::kChannels; ++i0) {{"]
    depth = 1
    for d in range(rank):
        lines.append("  " * depth + f"for (std::size_t i{d + 1} = 0; i{d + 1} < {params}::kOut{d}; ++i{d + 1}) {{")
        depth += 1
    floating = x.dtype in _FLOATS
    if kind == "max":
        lowest = f"-std::numeric_limits<{t}>::infinity()" if floating else f"std::numeric_limits<{t}>::lowest()"
        lines.append("  " * depth + f"{t} best = {lowest};")
        if indices:
            lines.append("  " * depth + "std::int64_t at = 0;")
    else:
        lines.append("  " * depth + "double acc = 0;")
    if kind == "average":
        lines.append("  " * depth + "int taps = 0;")
    for d in range(rank):
        k, pos = f"i{rank + 1 + d}", f"at{d}"
        lines += ["  " * depth + f"for (std::size_t {k} = 0; {k} < {params}::kKernel{d}; ++{k}) {{",
                  "  " * depth + "  // Signed: the window may start in the padding.",
                  "  " * depth + f"  const std::ptrdiff_t {pos} = static_cast<std::ptrdiff_t>({k} * "
                  f"{params}::kDilation{d} + i{d + 1} * {params}::kStride{d}) - {params}::kPadBegin{d};"]
        if kind == "average" and count_include_pad:
            # Past the padded input (a ceil_mode window) nothing counts, in front of it all taps do.
            lines.append("  " * depth + f"  if ({pos} >= {params}::kPaddedIn{d} - {params}::kPadBegin{d}) continue;")
        else:
            lines.append("  " * depth + f"  if ({pos} < 0 || {pos} >= {params}::kIn{d}) continue;")
        depth += 1
    flat = "i0"
    for d in range(rank):
        flat = f"({flat}) * {params}::kIn{d} + static_cast<std::size_t>(at{d})"
    if kind == "average" and count_include_pad:
        inside = " && ".join(f"at{d} >= 0 && at{d} < {params}::kIn{d}" for d in range(rank))
        lines += ["  " * depth + "++taps;", "  " * depth + f"if ({inside}) acc += {src}[{flat}];"]
    elif kind == "average":
        lines += ["  " * depth + "++taps;", "  " * depth + f"acc += {src}[{flat}];"]
    elif kind == "max":
        lines += ["  " * depth + f"const {t} v = {src}[{flat}];",
                  "  " * depth + ("// NaN propagates, as in the 2-D kernels." if floating else
                                  "// The first of equal maxima wins."),
                  "  " * depth + ("if (v > best || v != v) {" if floating else "if (v > best) {"),
                  "  " * depth + "  best = v;"]
        if indices:
            lines.append("  " * depth + f"  at = static_cast<std::int64_t>({_index_expr(params, rank, storage_order)});")
        lines.append("  " * depth + "}")
    else:
        term = {1: "std::fabs(v)", 2: "v * v"}.get(p, f"std::pow(std::fabs(v), {p})")
        lines += ["  " * depth + f"const double v = {src}[{flat}];", "  " * depth + f"acc += {term};"]
    for _ in range(rank):
        depth -= 1
        lines.append("  " * depth + "}")
    result = {"max": "best", "average": "taps > 0 ? acc / taps : 0.0"}.get(
        kind, {1: "acc", 2: "std::sqrt(acc)"}.get(p, f"std::pow(acc, 1.0 / {p})"))
    out_flat = "i0"
    for d in range(rank):
        out_flat = f"({out_flat}) * {params}::kOut{d} + i{d + 1}"
    lines.append("  " * depth + f"{dst}[{out_flat}] = static_cast<{t}>({result});")
    if indices:
        lines.append("  " * depth + f"{ctx.ptr(indices)}[{out_flat}] = at;")
    while depth > 0:
        depth -= 1
        lines.append("  " * depth + "}")
    return lines


def _index_expr(params, rank, storage_order):
    """The flat input position of tap (at0, at1, ...) of channel i0, for MaxPool's Indices."""
    dims = list(range(rank)) if storage_order == 0 else list(reversed(range(rank)))
    flat = ""
    for d in dims:
        term = f"static_cast<std::size_t>(at{d})"
        flat = term if not flat else f"({flat}) * {params}::kIn{d} + {term}"
    size = " * ".join(f"{params}::kIn{d}" for d in range(rank))
    return f"i0 * {size} + {flat}"


def _flops(node, graph):
    x, kernel, *_, out, _ = _geometry(node, graph)
    return 2 * x.shape[0] * x.shape[1] * int(np.prod(out)) * int(np.prod(kernel))


register("LpPool", infer=_infer, emit=_emit, flops=_flops)
