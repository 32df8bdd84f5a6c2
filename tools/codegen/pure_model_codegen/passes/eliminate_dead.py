"""Removes nodes whose outputs nothing reads, and constants that no remaining node uses."""

from pure_model_codegen.ops import control


def run(graph):
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(name in live for name in node.outputs if name):
            kept.append(node)
            live.update(name for name in node.inputs if name)
            live.update(cond for cond, _ in control.guard_of(node))
    graph.nodes = list(reversed(kept))
    live.update(graph.inputs)
    # A kept node writes all its outputs, read or not.
    live.update(name for node in kept for name in node.outputs if name)
    graph.tensors = {name: t for name, t in graph.tensors.items() if name in live}
    return graph
