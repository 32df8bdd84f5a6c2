"""Folds an inference BatchNormalization into the Conv that produces its input.

BN(conv(x)) = conv(x) * scale + shift per output channel, so the Conv's weights are scaled and
its bias becomes bias * scale + shift: one pass over the tensor less, and the Conv's fused
epilogue can then apply the activation that usually follows. Only done when the Conv's output
has no other reader and is not a graph output.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.ops import control
from pure_model_codegen.ops.normalization import batchnorm_scale_shift


def run(graph):
    producers = graph.producers()
    consumers = graph.consumers()
    removed = set()
    for node in graph.nodes:
        if node.op_type != "BatchNormalization" or node.domain:
            continue
        source = node.inputs[0]
        conv = producers.get(source)
        if (conv is None or conv.op_type != "Conv" or conv.domain or len(consumers.get(source, [])) != 1
                or source in graph.outputs or "_fused_activation" in conv.attrs
                or control.guard_of(conv) != control.guard_of(node)):
            continue
        weight = graph.tensor(conv.inputs[1])
        bias_name = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else None
        if not weight.is_constant or (bias_name and not graph.tensor(bias_name).is_constant):
            continue
        scale, shift = batchnorm_scale_shift(node, graph)
        channels = weight.shape[0]
        folded_weight = (weight.value.astype(np.float64) * scale.reshape((channels,) + (1,) * (weight.value.ndim - 1)))
        bias = graph.tensor(bias_name).value.astype(np.float64) if bias_name else np.zeros(channels)
        folded_bias = bias * scale + shift
        # New constants under new names: the originals may feed other nodes.
        weight_name = f"{conv.inputs[1]}@folded:{node.name}"
        bias_out = f"{bias_name or conv.name + '.bias'}@folded:{node.name}"
        graph.tensors[weight_name] = ir.Tensor(weight_name, 1, weight.shape, folded_weight.astype(np.float32))
        graph.tensors[bias_out] = ir.Tensor(bias_out, 1, (channels,), folded_bias.astype(np.float32))
        conv.inputs = [conv.inputs[0], weight_name, bias_out]
        conv.outputs[conv.outputs.index(source)] = node.outputs[0]
        conv.attrs["_folded_batchnorm"] = node.name
        del graph.tensors[source]
        removed.add(id(node))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return graph
