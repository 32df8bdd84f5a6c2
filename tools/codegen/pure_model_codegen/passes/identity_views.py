"""Turns Slice and Expand nodes that keep every element in place into views.

Exporters leave such nodes behind (magika's jax2tf graph slices its 512x256 activations to
their full extent on both sides of its Conv, and expands its LayerNorm statistics to the shape
they already have). Each would copy its whole input; as an Identity it costs nothing (a view of
the same bytes, see memory.py). The step's comment still names the node's own op.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.ops.shape_ops import constant_input, slice_params


def _keeps_everything(node, graph):
    if node.domain or len(node.outputs) != 1:
        return False
    x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if node.op_type == "Expand":
        return True
    if node.op_type != "Slice":
        return False
    values = [None] + [constant_input(node, graph, i, "slice parameter") for i in range(1, len(node.inputs))]
    slices = slice_params(node, x.shape, values)
    return all(range(*s.indices(n)) == range(n) for s, n in zip(slices, x.shape))


def run(graph):
    for i, node in enumerate(graph.nodes):
        if node.op_type in ("Slice", "Expand") and _keeps_everything(node, graph):
            attrs = {k: v for k, v in node.attrs.items() if k == "_guard"}
            attrs["_identity_of"] = node.op_type
            graph.nodes[i] = ir.Node("Identity", node.name, [node.inputs[0]], list(node.outputs), attrs,
                                     opset=node.opset)
    return graph
