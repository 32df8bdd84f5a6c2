"""Attention (opsets 23, 24 and 25): scaled dot-product attention, float32 and float64.

Q, K and V are 4-D [batch, heads, sequence, head size] or 3-D [batch, sequence, heads * head
size] (then q_num_heads and kv_num_heads give the heads). Grouped-query attention shares each
key/value head among q_num_heads / kv_num_heads query heads. The attention bias of a query row
is the sum of the mask (boolean: False is -inf; float: added, its last dimension padded with
-inf up to the total sequence length), the causal frontier (key j is seen by query i iff
j <= i + offset, offset being the past length or, for an external cache, nonpad_kv_seqlen - the
query length), the sliding window of opset 25, and the padding that nonpad_kv_seqlen marks.

The step works one query row at a time: scores against every key (scale, softcap, bias) into a
row of scratch, a softmax over it, then the weighted sum of the values. A row whose bias is -inf
everywhere has no key to attend and gives zeros, as the spec says (not NaN). With past_key and
past_value, the keys and values are first concatenated into present_key / present_value (or
into scratch when those outputs are not wanted); 3-D keys and values are gathered the same way.

The optional qk_matmul_output is the scaled QK product (mode 0, as the spec says: before the
softcap), after the softcap (1), with the bias added (2) or the softmax probabilities (3).
"""

import math

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, input_count, register, require_dtype
from pure_model_codegen.ops.elementwise import literal

_FLOATS = (1, 11)
_Q, _K, _V, _MASK, _PAST_KEY, _PAST_VALUE, _NONPAD = range(7)
_Y, _PRESENT_KEY, _PRESENT_VALUE, _QK = range(4)


def _optional(names, index):
    return names[index] if len(names) > index and names[index] else ""


def _geometry(node, graph):
    """The shapes of the computation, checked against each other, as a dict."""
    input_count(node, 3, 6 if node.opset < 24 else 7)
    if len(node.outputs) > 4:
        raise CodegenError(f"has {len(node.outputs)} outputs; Attention has at most 4", node=node)
    q = require_dtype(node, graph, node.inputs[_Q], _FLOATS)
    k = require_dtype(node, graph, node.inputs[_K], (q.dtype,))
    v = require_dtype(node, graph, node.inputs[_V], (q.dtype,))
    rank = len(q.shape)
    if rank not in (3, 4) or len(k.shape) != rank or len(v.shape) != rank:
        raise CodegenError(f"Q, K and V must all be 3-D or all 4-D, got shapes {list(q.shape)}, {list(k.shape)}, "
                           f"{list(v.shape)}", node=node)
    q_heads_attr = node.attrs.get("q_num_heads")
    kv_heads_attr = node.attrs.get("kv_num_heads")
    batch = q.shape[0]
    if rank == 3:
        q_heads, kv_heads = attr_int(node, "q_num_heads"), attr_int(node, "kv_num_heads")
        if q_heads < 1 or kv_heads < 1:
            raise CodegenError(f"q_num_heads {q_heads} and kv_num_heads {kv_heads} must be positive", node=node)
        for label, tensor, heads in (("Q", q, q_heads), ("K", k, kv_heads), ("V", v, kv_heads)):
            if tensor.shape[2] % heads:
                raise CodegenError(f"{label} hidden size {tensor.shape[2]} is not a multiple of its {heads} heads",
                                   node=node)
        q_len, kv_len = q.shape[1], k.shape[1]
        head_size, k_head_size, v_head_size = q.shape[2] // q_heads, k.shape[2] // kv_heads, v.shape[2] // kv_heads
        v_len = v.shape[1]
    else:
        if node.opset >= 25 and (q_heads_attr is not None or kv_heads_attr is not None):
            raise CodegenError("q_num_heads and kv_num_heads must not be given for 4-D inputs", node=node)
        _, q_heads, q_len, head_size = q.shape
        _, kv_heads, kv_len, k_head_size = k.shape
        _, v_heads, v_len, v_head_size = v.shape
        if v_heads != kv_heads:
            raise CodegenError(f"K has {kv_heads} heads but V has {v_heads}", node=node)
        for label, given, actual in (("q_num_heads", q_heads_attr, q_heads), ("kv_num_heads", kv_heads_attr, kv_heads)):
            if given is not None and given != actual:
                raise CodegenError(f"{label}={given} disagrees with the 4-D inputs' {actual} heads", node=node)
    if k.shape[0] != batch or v.shape[0] != batch:
        raise CodegenError(f"Q, K and V disagree on the batch size: {list(q.shape)}, {list(k.shape)}, "
                           f"{list(v.shape)}", node=node)
    if k_head_size != head_size:
        raise CodegenError(f"K's head size {k_head_size} differs from Q's {head_size}", node=node)
    if v_len != kv_len:
        raise CodegenError(f"K has {kv_len} positions but V has {v_len}", node=node)
    if q_heads % kv_heads:
        raise CodegenError(f"q_num_heads {q_heads} is not a multiple of kv_num_heads {kv_heads}", node=node)

    past_key, past_value = _optional(node.inputs, _PAST_KEY), _optional(node.inputs, _PAST_VALUE)
    if bool(past_key) != bool(past_value):
        raise CodegenError("past_key and past_value must be given together", node=node)
    past_len = 0
    if past_key:
        pk = require_dtype(node, graph, past_key, (q.dtype,))
        pv = require_dtype(node, graph, past_value, (q.dtype,))
        past_len = pk.shape[2] if len(pk.shape) == 4 else -1
        if tuple(pk.shape) != (batch, kv_heads, past_len, head_size):
            raise CodegenError(f"past_key has shape {list(pk.shape)}, expected [{batch}, {kv_heads}, past length, "
                               f"{head_size}]", node=node)
        if tuple(pv.shape) != (batch, kv_heads, past_len, v_head_size):
            raise CodegenError(f"past_value has shape {list(pv.shape)}, expected [{batch}, {kv_heads}, {past_len}, "
                               f"{v_head_size}]", node=node)
    nonpad = _optional(node.inputs, _NONPAD)
    if nonpad:
        if past_key:
            raise CodegenError("nonpad_kv_seqlen cannot be combined with past_key and past_value", node=node)
        lengths = require_dtype(node, graph, nonpad, (7,))
        if tuple(lengths.shape) != (batch,):
            raise CodegenError(f"nonpad_kv_seqlen has shape {list(lengths.shape)}, expected [{batch}]", node=node)
    total = past_len + kv_len

    mask_shape = None
    mask = _optional(node.inputs, _MASK)
    if mask:
        m = require_dtype(node, graph, mask, (9, q.dtype))
        mask_shape = tuple(m.shape)
        target = (batch, q_heads, q_len, total)
        if not 1 <= len(mask_shape) <= 4:
            raise CodegenError(f"attn_mask has rank {len(mask_shape)}; it must broadcast to {list(target)}", node=node)
        padded = (1,) * (4 - len(mask_shape)) + mask_shape
        if mask_shape[-1] > total or any(d not in (1, t) for d, t in zip(padded[:3], target[:3])):
            raise CodegenError(f"attn_mask shape {list(mask_shape)} does not broadcast to {list(target)}", node=node)

    softmax_precision = node.attrs.get("softmax_precision")
    if softmax_precision is not None and softmax_precision not in _FLOATS:
        name = {10: "float16", 16: "bfloat16"}.get(softmax_precision, ir.dtype_name(softmax_precision))
        raise CodegenError(f"softmax_precision {name} is not supported (float32 and "
                           "float64 are)", node=node)
    mode = attr_int(node, "qk_matmul_output_mode", 0)
    if mode not in (0, 1, 2, 3):
        raise CodegenError(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode}", node=node)
    windows = (attr_int(node, "left_window_size", -1), attr_int(node, "right_window_size", -1))
    if any(w < -1 for w in windows):
        raise CodegenError(f"left_window_size and right_window_size must be -1 or more, got {list(windows)}",
                           node=node)
    scale = node.attrs.get("scale")
    scale = 1 / math.sqrt(head_size) if scale is None else attr_float(node, "scale", None)
    return dict(dtype=q.dtype, rank=rank, batch=batch, q_heads=q_heads, kv_heads=kv_heads, q_len=q_len,
                kv_len=kv_len, past_len=past_len, total=total, head_size=head_size, v_head_size=v_head_size,
                mask_shape=mask_shape, mask_bool=bool(mask) and graph.tensor(mask).dtype == 9, nonpad=bool(nonpad),
                past=bool(past_key), scale=scale, softcap=attr_float(node, "softcap", 0.0),
                causal=attr_int(node, "is_causal", 0), mode=mode, windows=windows,
                softmax_dtype=q.dtype if softmax_precision is None else softmax_precision)


def _infer(node, graph):
    g = _geometry(node, graph)
    b, hq, hkv, s, t = g["batch"], g["q_heads"], g["kv_heads"], g["q_len"], g["total"]
    if g["rank"] == 3:
        y = (b, s, hq * g["v_head_size"])
    else:
        y = (b, hq, s, g["v_head_size"])
    shapes = [y, (b, hkv, t, g["head_size"]), (b, hkv, t, g["v_head_size"]), (b, hq, s, t)]
    return [(g["dtype"], shape) for shape, _ in zip(shapes, node.outputs)]


def _gathers(node, g):
    """(keys gathered, values gathered): whether the step builds [batch, kv heads, total, size] copies."""
    copies = g["past"] or g["rank"] == 3
    return (copies or bool(_optional(node.outputs, _PRESENT_KEY)),
            copies or bool(_optional(node.outputs, _PRESENT_VALUE)))


def _element_bytes(dtype):
    return 8 if dtype == 11 else 4


def _scratch(node, graph):
    g = _geometry(node, graph)
    keys, values = _gathers(node, g)
    size = _element_bytes(g["dtype"])
    rows = g["batch"] * g["kv_heads"] * g["total"]
    total = g["total"] * _element_bytes(g["softmax_dtype"])  # the scores of one query row
    if keys and not _optional(node.outputs, _PRESENT_KEY):
        total += rows * g["head_size"] * size
    if values and not _optional(node.outputs, _PRESENT_VALUE):
        total += rows * g["v_head_size"] * size
    return total


def _flops(node, graph):
    g = _geometry(node, graph)
    pairs = g["batch"] * g["q_heads"] * g["q_len"] * g["total"]
    return 2 * pairs * (g["head_size"] + g["v_head_size"]) + 4 * pairs


def _source_offset(rank3, heads, length, size):
    """C++ offset of row (i0 = batch, i1 = head, i2 = position) of Q, K or V in its own layout."""
    if rank3:
        return f"((i0 * {length} + i2) * {heads} + i1) * {size}"
    return f"((i0 * {heads} + i1) * {length} + i2) * {size}"


def _gather_lines(what, dst, src, past, g, size):
    """Concatenates past (if any) and the new rows of K or V into dst [batch, kv heads, total, size]."""
    kv_heads, past_len, total = g["kv_heads"], g["past_len"], g["total"]
    new_row = _source_offset(g["rank"] == 3, kv_heads, g["kv_len"], size).replace("i2", f"(i2 - {past_len})")
    if not past:
        new_row = _source_offset(g["rank"] == 3, kv_heads, g["kv_len"], size)
    lines = [f"// {what}: [batch, kv heads, {'past + ' if past else ''}new positions, {size}].",
             f"for (std::size_t i0 = 0; i0 < {g['batch']}; ++i0) {{",
             f"  for (std::size_t i1 = 0; i1 < {kv_heads}; ++i1) {{",
             f"    for (std::size_t i2 = 0; i2 < {total}; ++i2) {{"]
    dst_row = f"{dst} + ((i0 * {kv_heads} + i1) * {total} + i2) * {size}"
    if past:
        lines += [f"      const auto* row = i2 < {past_len} ? {past} + ((i0 * {kv_heads} + i1) * {past_len} + i2) * {size}"
                  f" : {src} + {new_row};"]
    else:
        lines += [f"      const auto* row = {src} + {new_row};"]
    lines += [f"      std::memcpy({dst_row}, row, {size} * sizeof(*row));", "    }", "  }", "}"]
    return lines


def _mask_index(shape, g):
    """C++ index into the mask for (i0 = batch, i1 = query head, i2 = query, i3 = key)."""
    padded = (1,) * (4 - len(shape)) + tuple(shape)
    terms, stride = [], 1
    for axis in reversed(range(4)):
        if padded[axis] != 1 or axis == 3:
            terms.append(f"i{axis}" if stride == 1 else f"i{axis} * {stride}")
        stride *= padded[axis]
    return " + ".join(reversed(terms))


def _emit(node, ctx):
    g = _geometry(node, ctx.graph)
    t = ir.cpp_type(g["dtype"])
    s = ir.cpp_type(g["softmax_dtype"])
    size = _element_bytes(g["dtype"])
    hq, hkv, total, d, dv = g["q_heads"], g["kv_heads"], g["total"], g["head_size"], g["v_head_size"]
    rank3 = g["rank"] == 3
    params = ctx.param_struct(node, [
        ("kBatch", g["batch"]), ("kQueryHeads", hq), ("kKvHeads", hkv), ("kQueryLength", g["q_len"]),
        ("kPastLength", g["past_len"]), ("kTotalLength", total), ("kHeadSize", d), ("kValueHeadSize", dv),
        ("kScale", (t, literal(g["scale"], g["dtype"]))),
    ])
    inputs = node.inputs
    scratch = ctx.scratch(node, "unsigned char")

    def scratch_at(offset, cpp_type):
        return ctx.scratch(node, cpp_type) if offset == 0 else f"reinterpret_cast<{cpp_type}*>({scratch} + {offset})"

    lines = ["{"]
    body = []
    offset = 0
    keys, values = _gathers(node, g)
    sources = {}
    for what, gathered, index, past_index, out_index, width in (
            ("keys", keys, _K, _PAST_KEY, _PRESENT_KEY, d), ("values", values, _V, _PAST_VALUE, _PRESENT_VALUE, dv)):
        if not gathered:
            sources[what] = ctx.ptr(inputs[index])
            continue
        present = _optional(node.outputs, out_index)
        if present:
            dst = ctx.ptr(present)
        else:
            dst = scratch_at(offset, t)
            offset += g["batch"] * hkv * total * width * size
        name = f"{what[:-1]}_rows"
        body.append(f"{t}* const {name} = {dst};")
        past = ctx.ptr(inputs[past_index]) if g["past"] else None
        body += _gather_lines(f"The {what}", name, ctx.ptr(inputs[index]), past, g, width)
        sources[what] = name
    body.append(f"{s}* const probs = {scratch_at(offset, s)};")

    q_row = _source_offset(rank3, hq, g["q_len"], d)
    y_row = _source_offset(rank3, hq, g["q_len"], dv)
    qk = _optional(node.outputs, _QK)
    qk_row = f"{ctx.ptr(qk)} + ((i0 * {hq} + i1) * {g['q_len']} + i2) * {total}" if qk else None
    group = hq // hkv
    kv_head = "i1" if group == 1 else f"i1 / {group}"
    neg_inf = f"-std::numeric_limits<{s}>::infinity()"
    loop = [
        f"for (std::size_t i0 = 0; i0 < {params}::kBatch; ++i0) {{",
        f"  for (std::size_t i1 = 0; i1 < {params}::kQueryHeads; ++i1) {{",
        f"    // Query head i1 reads key/value head i1 / {group}." if group > 1 else
        "    // Each query head has its own key/value head.",
        f"    const {t}* const key_head = {sources['keys']} + (i0 * {params}::kKvHeads + {kv_head}) * "
        f"{params}::kTotalLength * {params}::kHeadSize;",
        f"    const {t}* const value_head = {sources['values']} + (i0 * {params}::kKvHeads + {kv_head}) * "
        f"{params}::kTotalLength * {params}::kValueHeadSize;",
        f"    for (std::size_t i2 = 0; i2 < {params}::kQueryLength; ++i2) {{",
        f"      const {t}* const query_row = {ctx.ptr(inputs[_Q])} + {q_row};",
    ]
    if qk:
        loop.append(f"      {t}* const qk_row = {qk_row};")
    offset_expr = None
    if g["nonpad"]:
        nonpad = ctx.ptr(inputs[_NONPAD])
        loop.append(f"      const std::int64_t valid_keys = {nonpad}[i0];")
        offset_expr = f"valid_keys - {params}::kQueryLength"
    elif g["past"]:
        offset_expr = f"{params}::kPastLength"
    else:
        offset_expr = "0"
    inner = [f"{t} dot = 0;",
             f"for (std::size_t i4 = 0; i4 < {params}::kHeadSize; ++i4) dot += query_row[i4] * key_head[i3 * "
             f"{params}::kHeadSize + i4];",
             f"{t} score = dot * {params}::kScale;"]
    if qk and g["mode"] == 0:
        inner.append("qk_row[i3] = score;")
    if g["softcap"] > 0:
        cap = literal(g["softcap"], g["dtype"])
        inner.append(f"score = {cap} * std::tanh(score / {cap});")
    if qk and g["mode"] == 1:
        inner.append("qk_row[i3] = score;")
    inner.append(f"{s} key_bias = 0;")
    if g["mask_shape"] is not None:
        mask = ctx.ptr(inputs[_MASK])
        width = g["mask_shape"][-1]
        index = _mask_index(g["mask_shape"], g)
        guard = "" if width == total else f"i3 >= {width} || "
        if g["mask_bool"]:
            inner.append(f"if ({guard}!{mask}[{index}]) key_bias = {neg_inf};")
        elif guard:
            inner.append(f"key_bias = i3 < {width} ? static_cast<{s}>({mask}[{index}]) : {neg_inf};")
        else:
            inner.append(f"key_bias = static_cast<{s}>({mask}[{index}]);")
    # Signed arithmetic: with an external cache the offset can be negative.
    position = f"static_cast<std::int64_t>(i2) + {offset_expr} - static_cast<std::int64_t>(i3)"
    conditions = []
    if g["causal"]:
        conditions.append("ahead > 0")
    left, right = g["windows"]
    if left >= 0:
        conditions.append(f"behind > {left}")
    if right >= 0:
        conditions.append(f"ahead > {right}")
    if conditions:
        inner.append(f"const std::int64_t behind = {position};  // how far the key lies before the query")
        inner.append("const std::int64_t ahead = -behind;")
        inner.append(f"if ({' || '.join(conditions)}) key_bias = {neg_inf};")
    if g["nonpad"]:
        inner.append(f"if (static_cast<std::int64_t>(i3) >= valid_keys) key_bias = {neg_inf};")
    widened = "score" if s == t else f"static_cast<{s}>(score)"
    has_bias = g["mask_shape"] is not None or conditions or g["nonpad"]
    if has_bias:
        inner += [f"if (key_bias != {neg_inf}) attended = true;", f"probs[i3] = {widened} + key_bias;"]
    else:
        inner = [line for line in inner if "key_bias" not in line] + [f"probs[i3] = {widened};"]
    if qk and g["mode"] == 2:
        inner.append("qk_row[i3] = probs[i3];" if s == t else f"qk_row[i3] = static_cast<{t}>(probs[i3]);")
    inner.append("if (probs[i3] > best) best = probs[i3];")

    loop += ["      // Scores against every key, with the bias of mask, causal frontier and padding."
             if has_bias else "      // Scores against every key.",
             *(["      bool attended = false;  // whether any key has a finite bias"] if has_bias else []),
             f"      {s} best = {neg_inf};",
             f"      for (std::size_t i3 = 0; i3 < {params}::kTotalLength; ++i3) {{"]
    loop += ["        " + line for line in inner]
    loop += ["      }",
             "      // Softmax; a row with no key to attend gives zeros, not NaN.",
             f"      if ({'attended && ' if has_bias else ''}best != {neg_inf}) {{",
             f"        {s} acc = 0;",
             f"        for (std::size_t i3 = 0; i3 < {params}::kTotalLength; ++i3) {{",
             "          probs[i3] = std::exp(probs[i3] - best);",
             "          acc += probs[i3];",
             "        }",
             f"        for (std::size_t i3 = 0; i3 < {params}::kTotalLength; ++i3) probs[i3] /= acc;",
             "      } else {",
             f"        for (std::size_t i3 = 0; i3 < {params}::kTotalLength; ++i3) probs[i3] = 0;",
             "      }"]
    if qk and g["mode"] == 3:
        loop.append(f"      for (std::size_t i3 = 0; i3 < {params}::kTotalLength; ++i3) qk_row[i3] = "
                    f"static_cast<{t}>(probs[i3]);")
    loop += ["      // The probabilities weigh the values.",
             f"      {t}* const out_row = {ctx.ptr(node.outputs[_Y])} + {y_row};",
             f"      for (std::size_t i4 = 0; i4 < {params}::kValueHeadSize; ++i4) out_row[i4] = 0;",
             f"      for (std::size_t i3 = 0; i3 < {params}::kTotalLength; ++i3) {{",
             f"        const {t} prob = {'probs[i3]' if s == t else f'static_cast<{t}>(probs[i3])'};",
             f"        const {t}* const value_row = value_head + i3 * {params}::kValueHeadSize;",
             f"        for (std::size_t i4 = 0; i4 < {params}::kValueHeadSize; ++i4) out_row[i4] += prob * value_row[i4];",
             "      }",
             "    }",
             "  }",
             "}"]
    body += loop
    lines += ["  " + line for line in body] + ["}"]
    return lines


register("Attention", infer=_infer, emit=_emit, flops=_flops, scratch=_scratch)
