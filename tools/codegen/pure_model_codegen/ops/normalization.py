"""BatchNormalization in inference mode, folded into a per-channel scale and shift."""

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, input_count, register, require_dtype

_FLOAT = (1,)


def batchnorm_scale_shift(node, graph):
    """(scale, shift) with y = x * scale + shift, from the node's constant parameters."""
    input_count(node, 5)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    if len(x.shape) < 2:
        raise CodegenError(f"input must have rank >= 2 (N, C, ...), got {list(x.shape)}", node=node)
    if node.attrs.get("training_mode", 0):
        raise CodegenError("training_mode=1 is not supported: generated models run inference only", node=node)
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        raise CodegenError("running mean/variance outputs (training mode) are not supported", node=node)
    channels = x.shape[1]
    params = []
    for label, name in zip(("scale", "B", "input_mean", "input_var"), node.inputs[1:]):
        tensor = require_dtype(node, graph, name, _FLOAT)
        if not tensor.is_constant:
            raise CodegenError(f"{label} ('{name}') must be a constant to be folded", node=node)
        if tensor.shape != (channels,):
            raise CodegenError(f"{label} ('{name}') has shape {list(tensor.shape)}, expected [{channels}]", node=node)
        params.append(tensor.value.astype(np.float64))
    scale, bias, mean, var = params
    epsilon = attr_float(node, "epsilon", 1e-5)
    if node.opset < 7 and attr_int(node, "spatial", 1) != 1:
        raise CodegenError("spatial=0 is not supported", node=node)
    factor = scale / np.sqrt(var + epsilon)
    return factor.astype(np.float32), (bias - mean * factor).astype(np.float32)


def _infer(node, graph):
    x = graph.tensor(node.inputs[0])
    batchnorm_scale_shift(node, graph)
    return [(x.dtype, x.shape)]


def _emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    scale, shift = batchnorm_scale_shift(node, ctx.graph)
    scale_name = ctx.derived_constant(node, "scale", scale)
    shift_name = ctx.derived_constant(node, "shift", shift)
    spatial = int(np.prod(x.shape[2:])) if len(x.shape) > 2 else 1
    return [f"pure_model::ChannelAffine<{x.shape[0]}, {x.shape[1]}, {spatial}>({ctx.ptr(node.inputs[0])}, "
            f"{scale_name}, {shift_name}, {ctx.ptr(node.outputs[0])});"]


def _check(node, version):
    # Before version 7 the op trains unless is_test=1 (its default is 0); generated models only
    # run inference, so anything else would compute something other than the model says.
    if version < 7 and not node.attrs.get("is_test", 0):
        raise CodegenError(f"BatchNormalization-{version} without is_test=1 runs in training mode, "
                           "which generated models do not support", node=node)


register("BatchNormalization", infer=_infer, emit=_emit, check=_check)
