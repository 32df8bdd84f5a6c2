"""Transformer pieces and small linear algebra: RotaryEmbedding, SwiGLU, Det; float32 and float64."""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, input_count, register, require_dtype
from pure_model_codegen.ops.elementwise import literal

_FLOATS = (1, 11)


# --- RotaryEmbedding ----------------------------------------------------------------------------
#
# Rotates pairs of elements of each head by the angle of its position: (x1, x2) ->
# (cos * x1 - sin * x2, sin * x1 + cos * x2), over the first rotary_embedding_dim elements of the
# head (the rest pass through). The pairs are the two halves of that span, or neighbours when
# interleaved. With position_ids the caches are [max position, dim / 2] tables indexed by each
# token's position at run time; without, they are [batch, sequence, dim / 2].

def _rotary_geometry(node, graph):
    input_count(node, 3, 4)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    cos = require_dtype(node, graph, node.inputs[1], (x.dtype,))
    sin = require_dtype(node, graph, node.inputs[2], (x.dtype,))
    if len(x.shape) == 4:
        batch, heads, length, head_size = x.shape
        if node.attrs.get("num_heads") not in (None, heads):
            raise CodegenError(f"num_heads={node.attrs['num_heads']} disagrees with the input's {heads} heads",
                               node=node)
    elif len(x.shape) == 3:
        batch, length, hidden = x.shape
        heads = attr_int(node, "num_heads")
        if heads < 1 or hidden % heads:
            raise CodegenError(f"num_heads {heads} must be positive and divide the hidden size {hidden}", node=node)
        head_size = hidden // heads
    else:
        raise CodegenError(f"input must be 3-D or 4-D, got shape {list(x.shape)}", node=node)
    dim = attr_int(node, "rotary_embedding_dim", 0) or head_size
    if dim > head_size or dim % 2:
        raise CodegenError(f"rotary_embedding_dim {dim} must be even and at most the head size {head_size}",
                           node=node)
    positions = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3] else ""
    if positions:
        ids = require_dtype(node, graph, positions, (7,))
        if tuple(ids.shape) != (batch, length):
            raise CodegenError(f"position_ids has shape {list(ids.shape)}, expected [{batch}, {length}]", node=node)
        if len(cos.shape) != 2 or cos.shape[1] != dim // 2:
            raise CodegenError(f"cos_cache has shape {list(cos.shape)}, expected [max position, {dim // 2}]",
                               node=node)
    elif tuple(cos.shape) != (batch, length, dim // 2):
        raise CodegenError(f"cos_cache has shape {list(cos.shape)}, expected [{batch}, {length}, {dim // 2}] "
                           "without position_ids", node=node)
    if sin.shape != cos.shape:
        raise CodegenError(f"sin_cache has shape {list(sin.shape)}, cos_cache {list(cos.shape)}", node=node)
    return x, batch, heads, length, head_size, dim, positions, cos.shape[0]


def _rotary_infer(node, graph):
    x, *_ = _rotary_geometry(node, graph)
    return [(x.dtype, x.shape)]


def _rotary_emit(node, ctx):
    x, batch, heads, length, head_size, dim, positions, table_rows = _rotary_geometry(node, ctx.graph)
    t = ir.cpp_type(x.dtype)
    params = ctx.param_struct(node, [("kBatch", batch), ("kHeads", heads), ("kLength", length),
                                     ("kHeadSize", head_size), ("kHalf", dim // 2)])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    cos, sin = ctx.ptr(node.inputs[1]), ctx.ptr(node.inputs[2])
    if len(x.shape) == 4:
        row = f"((i0 * {params}::kHeads + i1) * {params}::kLength + i2) * {params}::kHeadSize"
    else:
        row = f"((i0 * {params}::kLength + i2) * {params}::kHeads + i1) * {params}::kHeadSize"
    interleaved = attr_int(node, "interleaved", 0)
    first, second = ("2 * i3", "2 * i3 + 1") if interleaved else ("i3", f"i3 + {params}::kHalf")
    lines = [f"for (std::size_t i0 = 0; i0 < {params}::kBatch; ++i0) {{",
             f"  for (std::size_t i2 = 0; i2 < {params}::kLength; ++i2) {{"]
    if positions:
        nan = f"std::numeric_limits<{t}>::quiet_NaN()"
        lines += [f"    const std::int64_t position = {ctx.ptr(positions)}[i0 * {params}::kLength + i2];",
                  f"    // A position outside the {table_rows} rows of the caches reads no memory: NaN.",
                  f"    const bool known = position >= 0 && position < {table_rows};",
                  f"    const std::size_t angle_row = known ? static_cast<std::size_t>(position) * {params}::kHalf : 0;"]
        cos_at, sin_at = (f"known ? {c}[angle_row + i3] : {nan}" for c in (cos, sin))
    else:
        lines.append(f"    const std::size_t angle_row = (i0 * {params}::kLength + i2) * {params}::kHalf;")
        cos_at, sin_at = f"{cos}[angle_row + i3]", f"{sin}[angle_row + i3]"
    lines += [f"    for (std::size_t i1 = 0; i1 < {params}::kHeads; ++i1) {{",
              f"      const {t}* const in_head = {src} + {row};",
              f"      {t}* const out_head = {dst} + {row};",
              f"      for (std::size_t i3 = 0; i3 < {params}::kHalf; ++i3) {{",
              f"        const {t} cosine = {cos_at};",
              f"        const {t} sine = {sin_at};",
              f"        const {t} x1 = in_head[{first}];",
              f"        const {t} x2 = in_head[{second}];",
              f"        out_head[{first}] = cosine * x1 - sine * x2;",
              f"        out_head[{second}] = sine * x1 + cosine * x2;",
              "      }"]
    if dim < head_size:
        lines.append(f"      for (std::size_t i3 = {dim}; i3 < {params}::kHeadSize; ++i3) out_head[i3] = in_head[i3];")
    lines += ["    }", "  }", "}"]
    return lines


register("RotaryEmbedding", infer=_rotary_infer, emit=_rotary_emit)


# --- SwiGLU -------------------------------------------------------------------------------------

def _swiglu_infer(node, graph):
    input_count(node, 2)
    a = require_dtype(node, graph, node.inputs[0], _FLOATS)
    b = require_dtype(node, graph, node.inputs[1], (a.dtype,))
    if a.shape != b.shape:
        raise CodegenError(f"A {list(a.shape)} and B {list(b.shape)} must have the same shape (SwiGLU does not "
                           "broadcast)", node=node)
    return [(a.dtype, a.shape)]


def _swiglu_emit(node, ctx):
    a = ctx.graph.tensor(node.inputs[0])
    alpha = literal(attr_float(node, "alpha", 1.0), a.dtype)
    one = literal(1, a.dtype)
    gate, value, dst = (ctx.ptr(n) for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    return [f"for (std::size_t i0 = 0; i0 < {a.elements}; ++i0) {{",
            f"  const {ir.cpp_type(a.dtype)} v = {gate}[i0];",
            f"  {dst}[i0] = v / ({one} + std::exp(-{alpha} * v)) * {value}[i0];",
            "}"]


register("SwiGLU", infer=_swiglu_infer, emit=_swiglu_emit)


# --- Det ----------------------------------------------------------------------------------------

def _det_infer(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    if len(x.shape) < 2 or x.shape[-1] != x.shape[-2]:
        raise CodegenError(f"input must be [..., M, M], got {list(x.shape)}", node=node)
    return [(x.dtype, tuple(x.shape[:-2]))]


def _det_scratch(node, graph):
    m = graph.tensor(node.inputs[0]).shape[-1]
    return m * m * 8


def _det_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    m = x.shape[-1]
    params = ctx.param_struct(node, [("kMatrices", int(np.prod(x.shape[:-2]))), ("kSize", m)])
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    t = ir.cpp_type(x.dtype)
    lines = [
        f"double* const lu = {ctx.scratch(node, 'double')};",
        f"for (std::size_t i0 = 0; i0 < {params}::kMatrices; ++i0) {{",
        f"  for (std::size_t i1 = 0; i1 < {params}::kSize * {params}::kSize; ++i1) "
        f"lu[i1] = {src}[i0 * {params}::kSize * {params}::kSize + i1];",
        "  // Gaussian elimination with partial pivoting: the product of the pivots, negated per swap.",
        "  double det = 1;",
        f"  for (std::size_t i1 = 0; i1 < {params}::kSize; ++i1) {{",
        "    std::size_t pivot = i1;",
        f"    for (std::size_t i2 = i1 + 1; i2 < {params}::kSize; ++i2) {{",
        f"      if (std::fabs(lu[i2 * {params}::kSize + i1]) > std::fabs(lu[pivot * {params}::kSize + i1])) pivot = i2;",
        "    }",
        "    if (pivot != i1) {",
        f"      for (std::size_t i2 = 0; i2 < {params}::kSize; ++i2) {{",
        f"        const double swapped = lu[i1 * {params}::kSize + i2];",
        f"        lu[i1 * {params}::kSize + i2] = lu[pivot * {params}::kSize + i2];",
        f"        lu[pivot * {params}::kSize + i2] = swapped;",
        "      }",
        "      det = -det;",
        "    }",
        f"    const double diagonal = lu[i1 * {params}::kSize + i1];",
        "    det *= diagonal;",
        "    if (diagonal == 0) break;",
        f"    for (std::size_t i2 = i1 + 1; i2 < {params}::kSize; ++i2) {{",
        f"      const double factor = lu[i2 * {params}::kSize + i1] / diagonal;",
        f"      for (std::size_t i3 = i1; i3 < {params}::kSize; ++i3) "
        f"lu[i2 * {params}::kSize + i3] -= factor * lu[i1 * {params}::kSize + i3];",
        "    }",
        "  }",
        f"  {dst}[i0] = static_cast<{t}>(det);",
        "}",
    ]
    return ["{"] + ["  " + line for line in lines] + ["}"]


register("Det", infer=_det_infer, emit=_det_emit, scratch=_det_scratch)
