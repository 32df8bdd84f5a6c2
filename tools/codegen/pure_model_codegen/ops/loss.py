"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss, float32 and float64.

The input is [N, C] or [N, C, d1, ...], the target [N] or [N, d1, ...] (int32 or int64 class
indices). Each position's loss is -input[n][target][d...] times weight[target] (1 without
weights), or 0 where the target equals ignore_index; SoftmaxCrossEntropyLoss first takes the
log-softmax over C (and can return it as its second output). Reductions: none (the loss per
position), sum, and mean (the sum divided by the sum of the weights of the positions not
ignored, so NaN when every position is ignored). The spec leaves targets outside [0, C)
undefined; the generated code reads nothing out of bounds for them and gives NaN.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, input_count, register, require_dtype
from pure_model_codegen.ops.elementwise import literal

_FLOATS = (1, 11)
_INDICES = (6, 7)


def _geometry(node, graph):
    """(batch, classes, positions per sample, reduction, ignore_index or None)."""
    input_count(node, 2, 3)
    x = require_dtype(node, graph, node.inputs[0], _FLOATS)
    target = require_dtype(node, graph, node.inputs[1], _INDICES)
    if len(x.shape) < 2:
        raise CodegenError(f"input must have rank >= 2 (N, C, ...), got {list(x.shape)}", node=node)
    expected = (x.shape[0],) + tuple(x.shape[2:])
    if tuple(target.shape) != expected:
        raise CodegenError(f"target has shape {list(target.shape)}, expected {list(expected)}", node=node)
    classes = x.shape[1]
    if len(node.inputs) > 2 and node.inputs[2]:
        weight = require_dtype(node, graph, node.inputs[2], (x.dtype,))
        if tuple(weight.shape) != (classes,):
            raise CodegenError(f"weight has shape {list(weight.shape)}, expected [{classes}]", node=node)
    reduction = node.attrs.get("reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        raise CodegenError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}", node=node)
    ignore = attr_int(node, "ignore_index") if "ignore_index" in node.attrs else None
    outputs = [o for o in node.outputs if o]
    if node.op_type == "NegativeLogLikelihoodLoss" and len(node.outputs) > 1:
        raise CodegenError(f"has {len(node.outputs)} outputs; NegativeLogLikelihoodLoss has 1", node=node)
    if len(outputs) > 2 or len(node.outputs) > 2:
        raise CodegenError(f"has {len(node.outputs)} outputs; SoftmaxCrossEntropyLoss has at most 2", node=node)
    positions = int(np.prod(x.shape[2:]))
    return x, target, x.shape[0], classes, positions, reduction, ignore


def _infer(node, graph):
    x, target, *_, reduction, _ = _geometry(node, graph)
    loss = (x.dtype, tuple(target.shape) if reduction == "none" else ())
    return [loss, (x.dtype, tuple(x.shape))][:len(node.outputs)]


def _emit(node, ctx):
    x, target, batch, classes, positions, reduction, ignore = _geometry(node, ctx.graph)
    t = ir.cpp_type(x.dtype)
    softmax = node.op_type == "SoftmaxCrossEntropyLoss"
    log_prob = ctx.ptr(node.outputs[1]) if len(node.outputs) > 1 and node.outputs[1] else None
    src, labels, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0])
    weights = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    params = ctx.param_struct(node, [("kBatch", batch), ("kClasses", classes), ("kPositions", positions)])
    at = f"(i0 * {params}::kClasses + {{}}) * {params}::kPositions + i1"
    lines = []
    if reduction != "none":
        lines.append("double loss_sum = 0;")
    if reduction == "mean":
        lines.append("double weight_sum = 0;")
    lines += [f"for (std::size_t i0 = 0; i0 < {params}::kBatch; ++i0) {{",
              f"  for (std::size_t i1 = 0; i1 < {params}::kPositions; ++i1) {{"]
    body = []
    if softmax:
        # log_softmax over the classes, shifted by the largest value so exp() cannot overflow.
        body += [f"{t} row_max = {src}[{at.format(0)}];",
                 f"for (std::size_t i2 = 1; i2 < {params}::kClasses; ++i2) row_max = std::fmax(row_max, "
                 f"{src}[{at.format('i2')}]);",
                 "double exp_sum = 0;",
                 f"for (std::size_t i2 = 0; i2 < {params}::kClasses; ++i2) exp_sum += std::exp(static_cast<double>("
                 f"{src}[{at.format('i2')}] - row_max));",
                 f"const {t} log_norm = row_max + static_cast<{t}>(std::log(exp_sum));"]
        if log_prob:
            body.append(f"for (std::size_t i2 = 0; i2 < {params}::kClasses; ++i2) {log_prob}[{at.format('i2')}] = "
                        f"{src}[{at.format('i2')}] - log_norm;")
    body += [f"const std::int64_t label = static_cast<std::int64_t>({labels}[i0 * {params}::kPositions + i1]);",
             f"{t} loss_value = 0;",
             f"{t} class_weight = 0;"]
    picked = f"{src}[{at.format('label')}]" + (" - log_norm" if softmax else "")
    take = [f"class_weight = {weights + '[label]' if weights else literal(1, x.dtype)};",
            f"loss_value = -({picked}) * class_weight;"]
    bad = [f"loss_value = std::numeric_limits<{t}>::quiet_NaN();", f"class_weight = {literal(1, x.dtype)};"]
    choose = [f"if (label < 0 || label >= {params}::kClasses) {{"] + ["  " + ln for ln in bad] + ["} else {"] + \
        ["  " + ln for ln in take] + ["}"]
    if ignore is not None:
        body += [f"// Target {ignore} (ignore_index) contributes nothing, not even to the mean's weights.",
                 f"if (label != {ignore}LL) {{"] + ["  " + ln for ln in choose] + ["}"]
    else:
        body += choose
    if reduction == "none":
        body.append(f"{dst}[i0 * {params}::kPositions + i1] = loss_value;")
    else:
        body.append("loss_sum += loss_value;")
    if reduction == "mean":
        body.append("weight_sum += class_weight;")
    lines += ["    " + ln for ln in body] + ["  }", "}"]
    if reduction == "sum":
        lines.append(f"{dst}[0] = static_cast<{t}>(loss_sum);")
    elif reduction == "mean":
        lines.append(f"{dst}[0] = static_cast<{t}>(loss_sum / weight_sum);")
    return ["{"] + ["  " + ln for ln in lines] + ["}"]


def _flops(node, graph):
    x = graph.tensor(node.inputs[0])
    return x.elements * (3 if node.op_type == "SoftmaxCrossEntropyLoss" else 0) + graph.tensor(node.inputs[1]).elements


register("NegativeLogLikelihoodLoss", infer=_infer, emit=_emit, flops=_flops)
register("SoftmaxCrossEntropyLoss", infer=_infer, emit=_emit, flops=_flops)
