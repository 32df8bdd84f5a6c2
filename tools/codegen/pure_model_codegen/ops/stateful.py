"""Stateful sequence blocks of opset 27, float32: LinearAttention and CausalConvWithState.

Both carry a state from one call to the next (past_state in, present_state out), so a decoder
runs token by token with the same generated model.

LinearAttention keeps, per key/value head, a d_k x d_v matrix S updated token by token:
  linear       S += k v^T
  gated        S = exp(g) S + k v^T
  delta        S += k (beta (v - S^T k))^T
  gated_delta  S = exp(g) S, then as delta
and each query head reads o = scale q^T S after its token's update. Query, key, value, decay and
beta are [batch, tokens, heads * size]; decay holds one value per head or one per key element.

CausalConvWithState is a depthwise 1-D convolution over [past_state, input] (zeros for a missing
past), bias and an optional SiLU fused; present_state is the last k - 1 positions of that.
"""

import math

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, input_count, register, require_dtype

_FLOAT = (1,)


def _named(names, index):
    return names[index] if len(names) > index and names[index] else ""


# --- LinearAttention ----------------------------------------------------------------------------

def _linear_geometry(node, graph):
    input_count(node, 3, 6)
    rule = node.attrs.get("update_rule", "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise CodegenError(f"update_rule must be linear, gated, delta or gated_delta, got {rule!r}", node=node)
    q_heads, kv_heads = attr_int(node, "q_num_heads"), attr_int(node, "kv_num_heads")
    if q_heads < 1 or kv_heads < 1 or q_heads % kv_heads:
        raise CodegenError(f"q_num_heads {q_heads} must be a positive multiple of kv_num_heads {kv_heads}",
                           node=node)
    q, k, v = (require_dtype(node, graph, node.inputs[i], _FLOAT) for i in range(3))
    if any(len(t.shape) != 3 for t in (q, k, v)):
        raise CodegenError(f"query, key and value must be [batch, tokens, heads * size], got {list(q.shape)}, "
                           f"{list(k.shape)}, {list(v.shape)}", node=node)
    batch, tokens = q.shape[:2]
    if k.shape[:2] != (batch, tokens) or v.shape[:2] != (batch, tokens):
        raise CodegenError("query, key and value disagree on batch or tokens", node=node)
    if q.shape[2] % q_heads or k.shape[2] % kv_heads or v.shape[2] % kv_heads:
        raise CodegenError("a hidden size is not a multiple of its number of heads", node=node)
    d_k, d_v = q.shape[2] // q_heads, v.shape[2] // kv_heads
    if k.shape[2] // kv_heads != d_k:
        raise CodegenError(f"key head size {k.shape[2] // kv_heads} differs from the query's {d_k}", node=node)
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    decay, beta = _named(node.inputs, 4), _named(node.inputs, 5)
    if gated != bool(decay) or delta != bool(beta):
        raise CodegenError(f"update_rule '{rule}' takes {'a' if gated else 'no'} decay and {'a' if delta else 'no'} "
                           "beta input", node=node)
    decay_width = beta_width = None
    if decay:
        d = require_dtype(node, graph, decay, _FLOAT)
        decay_width = d.shape[2] if len(d.shape) == 3 else None
        if d.shape[:2] != (batch, tokens) or decay_width not in (kv_heads, kv_heads * d_k):
            raise CodegenError(f"decay has shape {list(d.shape)}, expected [{batch}, {tokens}, {kv_heads} or "
                               f"{kv_heads * d_k}]", node=node)
    if beta:
        b = require_dtype(node, graph, beta, _FLOAT)
        beta_width = b.shape[2] if len(b.shape) == 3 else None
        if b.shape[:2] != (batch, tokens) or beta_width not in (kv_heads, 1):
            raise CodegenError(f"beta has shape {list(b.shape)}, expected [{batch}, {tokens}, {kv_heads} or 1]",
                               node=node)
    past = _named(node.inputs, 3)
    if past:
        p = require_dtype(node, graph, past, _FLOAT)
        if tuple(p.shape) != (batch, kv_heads, d_k, d_v):
            raise CodegenError(f"past_state has shape {list(p.shape)}, expected [{batch}, {kv_heads}, {d_k}, {d_v}]",
                               node=node)
    scale = attr_float(node, "scale", 0.0) or 1 / math.sqrt(d_k)
    return dict(batch=batch, tokens=tokens, q_heads=q_heads, kv_heads=kv_heads, d_k=d_k, d_v=d_v, gated=gated,
                delta=delta, decay_width=decay_width, beta_width=beta_width, past=past, scale=scale)


def _linear_infer(node, graph):
    g = _linear_geometry(node, graph)
    return [(1, (g["batch"], g["tokens"], g["q_heads"] * g["d_v"])),
            (1, (g["batch"], g["kv_heads"], g["d_k"], g["d_v"]))][:len(node.outputs)]


def _linear_scratch(node, graph):
    g = _linear_geometry(node, graph)
    state = 0 if _named(node.outputs, 1) else g["batch"] * g["kv_heads"] * g["d_k"] * g["d_v"]
    return (state + g["d_v"]) * 4


def _linear_emit(node, ctx):
    g = _linear_geometry(node, ctx.graph)
    params = ctx.param_struct(node, [
        ("kBatch", g["batch"]), ("kTokens", g["tokens"]), ("kQueryHeads", g["q_heads"]),
        ("kKvHeads", g["kv_heads"]), ("kKeySize", g["d_k"]), ("kValueSize", g["d_v"]), ("kScale", g["scale"])])
    p = params
    query, key, value = (ctx.ptr(node.inputs[i]) for i in range(3))
    present = _named(node.outputs, 1)
    scratch = ctx.scratch(node)
    state_size = g["batch"] * g["kv_heads"] * g["d_k"] * g["d_v"]
    states = ctx.ptr(present) if present else scratch
    update = f"{scratch} + {state_size}" if not present else scratch
    group = g["q_heads"] // g["kv_heads"]
    lines = ["{",
             f"  float* const update = {update};  // the token's contribution to each row of S",
             f"  for (std::size_t i0 = 0; i0 < {p}::kBatch; ++i0) {{",
             f"    for (std::size_t i1 = 0; i1 < {p}::kKvHeads; ++i1) {{",
             f"      float* const state = {states} + (i0 * {p}::kKvHeads + i1) * {p}::kKeySize * {p}::kValueSize;"]
    if g["past"]:
        lines.append(f"      std::memcpy(state, {ctx.ptr(g['past'])} + (i0 * {p}::kKvHeads + i1) * {p}::kKeySize * "
                     f"{p}::kValueSize, sizeof(float) * {p}::kKeySize * {p}::kValueSize);")
    else:
        lines.append(f"      for (std::size_t i2 = 0; i2 < {p}::kKeySize * {p}::kValueSize; ++i2) state[i2] = 0;")
    lines += [f"      for (std::size_t i2 = 0; i2 < {p}::kTokens; ++i2) {{",
              f"        const std::size_t token = i0 * {p}::kTokens + i2;",
              f"        const float* const key_row = {key} + (token * {p}::kKvHeads + i1) * {p}::kKeySize;",
              f"        const float* const value_row = {value} + (token * {p}::kKvHeads + i1) * {p}::kValueSize;"]
    body = []
    if g["gated"]:
        decay = ctx.ptr(node.inputs[4])
        if g["decay_width"] == g["kv_heads"]:
            body += [f"const float gate = std::exp({decay}[token * {p}::kKvHeads + i1]);",
                     f"for (std::size_t i3 = 0; i3 < {p}::kKeySize * {p}::kValueSize; ++i3) state[i3] *= gate;"]
        else:
            body += [f"for (std::size_t i3 = 0; i3 < {p}::kKeySize; ++i3) {{",
                     f"  const float gate = std::exp({decay}[(token * {p}::kKvHeads + i1) * {p}::kKeySize + i3]);",
                     f"  for (std::size_t i4 = 0; i4 < {p}::kValueSize; ++i4) state[i3 * {p}::kValueSize + i4] *= gate;",
                     "}"]
    if g["delta"]:
        beta = ctx.ptr(node.inputs[5])
        beta_at = "token" if g["beta_width"] == 1 else f"token * {p}::kKvHeads + i1"
        body += [f"const float rate = {beta}[{beta_at}];",
                 "// What S already recalls for this key is replaced, at the rate beta.",
                 f"for (std::size_t i4 = 0; i4 < {p}::kValueSize; ++i4) {{",
                 "  float recalled = 0;",
                 f"  for (std::size_t i3 = 0; i3 < {p}::kKeySize; ++i3) recalled += state[i3 * {p}::kValueSize + i4] * "
                 "key_row[i3];",
                 "  update[i4] = rate * (value_row[i4] - recalled);",
                 "}"]
    else:
        body.append(f"for (std::size_t i4 = 0; i4 < {p}::kValueSize; ++i4) update[i4] = value_row[i4];")
    body += [f"for (std::size_t i3 = 0; i3 < {p}::kKeySize; ++i3) {{",
             f"  for (std::size_t i4 = 0; i4 < {p}::kValueSize; ++i4) state[i3 * {p}::kValueSize + i4] += key_row[i3] "
             "* update[i4];",
             "}",
             f"// Query heads i1 * {group} .. i1 * {group} + {group - 1} read this state." if group > 1 else
             "// The query head of this state reads it.",
             f"for (std::size_t i5 = i1 * {group}; i5 < (i1 + 1) * {group}; ++i5) {{",
             f"  const float* const query_row = {query} + (token * {p}::kQueryHeads + i5) * {p}::kKeySize;",
             f"  float* const out_row = {ctx.ptr(node.outputs[0])} + (token * {p}::kQueryHeads + i5) * {p}::kValueSize;",
             f"  for (std::size_t i4 = 0; i4 < {p}::kValueSize; ++i4) {{",
             "    float acc = 0;",
             f"    for (std::size_t i3 = 0; i3 < {p}::kKeySize; ++i3) acc += query_row[i3] * state[i3 * {p}::kValueSize "
             "+ i4];",
             f"    out_row[i4] = {p}::kScale * acc;",
             "  }",
             "}"]
    lines += ["        " + line for line in body]
    lines += ["      }", "    }", "  }", "}"]
    return lines


register("LinearAttention", infer=_linear_infer, emit=_linear_emit, scratch=_linear_scratch)


# --- CausalConvWithState ------------------------------------------------------------------------

def _conv_geometry(node, graph):
    input_count(node, 2, 4)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    w = require_dtype(node, graph, node.inputs[1], _FLOAT)
    if len(x.shape) != 3:
        raise CodegenError(f"input must be [batch, channels, length], got {list(x.shape)}", node=node)
    batch, channels, length = x.shape
    if len(w.shape) != 3 or w.shape[:2] != (channels, 1) or w.shape[2] < 1:
        raise CodegenError(f"weight has shape {list(w.shape)}, expected [{channels}, 1, kernel]", node=node)
    kernel = w.shape[2]
    bias, past = _named(node.inputs, 2), _named(node.inputs, 3)
    if bias and tuple(require_dtype(node, graph, bias, _FLOAT).shape) != (channels,):
        raise CodegenError(f"bias must have shape [{channels}]", node=node)
    if past and tuple(require_dtype(node, graph, past, _FLOAT).shape) != (batch, channels, kernel - 1):
        raise CodegenError(f"past_state must have shape [{batch}, {channels}, {kernel - 1}]", node=node)
    activation = node.attrs.get("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise CodegenError(f"activation must be none, silu or swish, got {activation!r}", node=node)
    return batch, channels, length, kernel, bias, past, activation != "none"


def _conv_infer(node, graph):
    batch, channels, length, kernel, *_ = _conv_geometry(node, graph)
    return [(1, (batch, channels, length)), (1, (batch, channels, kernel - 1))][:len(node.outputs)]


def _conv_emit(node, ctx):
    batch, channels, length, kernel, bias, past, silu = _conv_geometry(node, ctx.graph)
    p = ctx.param_struct(node, [("kRows", batch * channels), ("kChannels", channels), ("kLength", length),
                                ("kKernel", kernel), ("kPast", kernel - 1)])
    src, weights, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0])
    history = f"{ctx.ptr(past)} + i0 * {p}::kPast" if past else None
    # Position j of the padded row: the past (or zero) before the input.
    if kernel == 1:
        padded = "in_row[j]"
    elif history:
        padded = f"(j < {p}::kPast ? history[j] : in_row[j - {p}::kPast])"
    else:
        padded = f"(j < {p}::kPast ? 0.0f : in_row[j - {p}::kPast])"
    lines = [f"for (std::size_t i0 = 0; i0 < {p}::kRows; ++i0) {{",
             f"  const float* const in_row = {src} + i0 * {p}::kLength;",
             f"  const float* const taps = {weights} + (i0 % {p}::kChannels) * {p}::kKernel;"]
    if history and kernel > 1:
        lines.append(f"  const float* const history = {history};")
    value = "acc * (1.0f / (1.0f + std::exp(-acc)))" if silu else "acc"
    lines += [f"  for (std::size_t i1 = 0; i1 < {p}::kLength; ++i1) {{",
              f"    float acc = {ctx.ptr(bias) + f'[i0 % {p}::kChannels]' if bias else '0'};",
              f"    for (std::size_t i2 = 0; i2 < {p}::kKernel; ++i2) {{",
              "      const std::size_t j = i1 + i2;",
              f"      acc += taps[i2] * {padded};",
              "    }",
              f"    {dst}[i0 * {p}::kLength + i1] = {value};",
              "  }"]
    present = _named(node.outputs, 1)
    if present and kernel > 1:
        lines += ["  // The last kernel - 1 positions of the padded row carry over to the next call.",
                  f"  for (std::size_t i1 = 0; i1 < {p}::kPast; ++i1) {{",
                  f"    const std::size_t j = {p}::kLength + i1;",
                  f"    {ctx.ptr(present)}[i0 * {p}::kPast + i1] = {padded};",
                  "  }"]
    lines.append("}")
    return lines


register("CausalConvWithState", infer=_conv_infer, emit=_conv_emit)
