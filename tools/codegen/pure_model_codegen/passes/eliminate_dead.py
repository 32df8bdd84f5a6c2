"""Removes nodes whose outputs nothing reads, and constants that no remaining node uses."""


def run(graph):
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(name in live for name in node.outputs if name):
            kept.append(node)
            live.update(name for name in node.inputs if name)
    graph.nodes = list(reversed(kept))
    live.update(graph.inputs)
    graph.tensors = {name: t for name, t in graph.tensors.items() if name in live}
    return graph
