"""Fuses a residual Add into the Conv that produces one of its operands.

`y = Add(Conv(x), skip)` becomes one Conv that adds `skip` as it stores each output, saving a
full pass over the tensor (ResNet and MobileNetV2 blocks end this way). Done only when the Conv
has no activation of its own yet (the activation must come after the add, and the next pass can
still fuse one that follows the Add), its output has no other reader and is not a graph output,
and `skip` has exactly the output's shape (no broadcasting) and is computed, not constant.
"""

from pure_model_codegen.ops import control
from pure_model_codegen.ops.conv import add_residual


def run(graph):
    producers = graph.producers()
    consumers = graph.consumers()
    position = {id(node): i for i, node in enumerate(graph.nodes)}
    removed = set()
    for node in graph.nodes:
        if node.op_type != "Add" or node.domain or len(node.inputs) != 2:
            continue
        for conv_side in (0, 1):
            source, skip = node.inputs[conv_side], node.inputs[1 - conv_side]
            conv = producers.get(source)
            if (conv is None or conv.op_type != "Conv" or conv.domain or id(conv) in removed
                    or "_fused_activation" in conv.attrs or "_fused_residual" in conv.attrs
                    or len(consumers.get(source, [])) != 1 or source in graph.outputs
                    or control.guard_of(conv) != control.guard_of(node)):
                continue
            skip_tensor, out = graph.tensor(skip), graph.tensor(source)
            if skip_tensor.is_constant or skip_tensor.shape != out.shape or skip_tensor.dtype != out.dtype:
                continue
            # The skip must exist when the Conv runs: computed before it (or a graph input).
            skip_producer = producers.get(skip)
            if skip_producer is not None and position[id(skip_producer)] > position[id(conv)]:
                continue
            add_residual(conv, skip, node.name)
            conv.outputs[conv.outputs.index(source)] = node.outputs[0]
            del graph.tensors[source]
            removed.add(id(node))
            break
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return graph
