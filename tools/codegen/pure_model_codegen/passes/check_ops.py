"""Fails early, naming the node, when the graph uses an op the generator does not implement.

Ops are looked up by type, then by version: ONNX revises an op by giving it a new
`since_version`, and an op module states the newest version whose semantics it implements
(`max_version`; by default every version the locked onnx package knows, for modules written
against all of them). Later revisions fail instead of silently computing the old semantics.
"""

import onnx

from pure_model_codegen import ops
from pure_model_codegen.errors import CodegenError


def op_version(node):
    """The since_version of the op definition that `node` uses at its model's opset."""
    if node.domain:
        # onnx has no schemas for other domains (com.microsoft); their ops are versioned by the
        # domain's opset.
        return node.opset
    try:
        return onnx.defs.get_schema(node.op_type, node.opset, node.domain).since_version
    except onnx.defs.SchemaError:
        raise CodegenError(f"ai.onnx has no {node.op_type} at opset {node.opset}", node=node) from None


def _all_nodes(nodes):
    """The nodes and, depth first, those of the subgraphs in their attributes."""
    from pure_model_codegen import ir

    for node in nodes:
        yield node
        for value in node.attrs.values():
            if isinstance(value, ir.Subgraph):
                yield from _all_nodes(value.nodes)


def run(graph):
    for node in _all_nodes(graph.nodes):
        op = ops.lookup(node)
        version = op_version(node)
        if op.max_version is not None and version > op.max_version:
            raise CodegenError(
                f"unsupported operator version: {node.op_type}-{version} (this generator implements "
                f"{node.op_type} up to version {op.max_version})", node=node)
        if op.check is not None:
            op.check(node, version)
    return graph
