"""Fails early, naming the node, when the graph uses an op the generator does not implement."""

from pure_model_codegen import ops


def run(graph):
    for node in graph.nodes:
        ops.lookup(node)
    return graph
