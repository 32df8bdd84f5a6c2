"""A build report for one generated model: what it computes and what it costs.

Written as JSON next to the sources (the `pure_model_report` output group) and summarised in
one line on stderr, which Bazel shows as the action's output.
"""

import collections
import json

from pure_model_codegen import ops


def _node_flops(node, graph):
    """Floating-point operations of one node (a multiply-add counts two)."""
    op = ops.lookup(node)
    if op.flops is not None:
        return op.flops(node, graph)
    return 0 if op.view else graph.tensor(node.outputs[0]).elements


def build(graph, files, *, model_label, cpu, arena_bytes, weight_bytes):
    ops = collections.Counter(node.op_type for node in graph.nodes)
    fused = sum(1 for node in graph.nodes if "_fused_activation" in node.attrs)
    return {
        "model": model_label,
        "cpu": cpu,
        "steps": len(graph.nodes),
        "ops": dict(sorted(ops.items())),
        "fused_activations": fused,
        "flops": int(sum(_node_flops(node, graph) for node in graph.nodes)),
        "arena_bytes": arena_bytes,
        "weight_bytes": weight_bytes,
        "generated_bytes": {kind: len(text if isinstance(text, bytes) else text.encode("utf-8"))
                            for kind, text in sorted(files.items())},
    }


def to_json(report):
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def summary_line(report):
    return (f"{report['model']} ({report['cpu']}): {report['steps']} steps, {report['flops'] / 1e6:.2f} MFLOP, "
            f"arena {report['arena_bytes']} B, weights {report['weight_bytes']} B, "
            f"source {report['generated_bytes'].get('source', 0)} B")
