"""Fuses an activation into the Conv or Gemm that produces its input.

`Conv -> Relu` becomes one Conv that applies Relu as it writes each output, which saves a full
pass over the tensor. Only done when the activation is the producer's sole reader and the
producer's output is not itself a graph output.
"""

import numpy as np

from pure_model_codegen.ops import control
from pure_model_codegen.ops.elementwise import KERNEL_ATTR, clip_bounds, clip_bounds_known

_PRODUCERS = {"Conv", "Gemm"}


def _activation(node, graph):
    if node.op_type == "Relu":
        return ("kRelu", -np.inf, np.inf)
    if node.op_type == "Sigmoid" and KERNEL_ATTR not in node.attrs:
        # Conv and Gemm apply the kernels' Sigmoid; another choice (runtime_quantization.py) stays apart.
        return ("kSigmoid", -np.inf, np.inf)
    if node.op_type == "Clip" and clip_bounds_known(node, graph):
        lo, hi = clip_bounds(node, graph)
        return ("kClip", lo, hi)
    return None


def run(graph):
    producers = graph.producers()
    consumers = graph.consumers()
    removed = set()
    for node in graph.nodes:
        activation = _activation(node, graph)
        if activation is None or node.domain:
            continue
        source = node.inputs[0]
        producer = producers.get(source)
        if (producer is None or producer.op_type not in _PRODUCERS or producer.domain
                or "_fused_activation" in producer.attrs or len(consumers.get(source, [])) != 1
                or source in graph.outputs or control.guard_of(producer) != control.guard_of(node)):
            continue
        producer.attrs["_fused_activation"] = activation
        producer.attrs["_fused_from"] = node.name
        # The producer now writes the activation's output directly.
        producer.outputs[producer.outputs.index(source)] = node.outputs[0]
        del graph.tensors[source]
        removed.add(id(node))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return graph
