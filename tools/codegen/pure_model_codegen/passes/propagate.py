"""Shape and dtype propagation with constant folding.

Walks the nodes in order. Each op's `infer` gives its outputs' dtypes and shapes (and checks its
attributes); a node whose inputs are all constants and whose op can evaluate in numpy is folded:
its outputs become constants and the node disappears. With input shapes bound, this removes the
Shape -> Gather -> Concat -> Reshape chains that exporters write.
"""

import numpy as np

from pure_model_codegen import ir, ops
from pure_model_codegen.errors import CodegenError

# Folding a huge op at generation time would bloat the weights; beyond this, leave it to run time.
MAX_FOLDED_ELEMENTS = 1 << 22


def _check_inputs_known(graph, node, known):
    for name in node.inputs:
        if name and name not in known:
            producers = graph.producers()
            if name in producers:
                raise CodegenError(
                    f"input '{name}' is produced by node '{producers[name].name}', which comes later: "
                    "the graph has a cycle or is not topologically sorted",
                    node=node,
                )
            raise CodegenError(
                f"input '{name}' is not produced by any node, initializer or graph input", node=node
            )


def run(graph):
    known = set(graph.tensors)
    kept = []
    for node in graph.nodes:
        _check_inputs_known(graph, node, known)
        op = ops.lookup(node)
        results = op.infer(node, graph)
        if len(results) < len([o for o in node.outputs if o]):
            raise CodegenError(f"produces {len(results)} outputs, the model names {len(node.outputs)}", node=node)
        values = [r[2] if len(r) > 2 else None for r in results]
        inputs = [graph.tensor(name) if name else None for name in node.inputs]
        foldable = (
            op.evaluate is not None
            and all(t is None or t.is_constant for t in inputs)
            and all(int(np.prod(r[1])) <= MAX_FOLDED_ELEMENTS for r in results)
        )
        if foldable and any(v is None for v in values):
            values = op.evaluate(node, [t.value if t is not None else None for t in inputs])
        for name, (dtype, shape, *_), value in zip(node.outputs, results, values):
            if not name:
                continue
            if name in known:
                raise CodegenError(f"output '{name}' is already defined elsewhere in the graph", node=node)
            if any(int(d) < 0 for d in shape):
                raise CodegenError(f"output '{name}' would have a negative dimension {list(shape)}", node=node)
            if value is not None:
                value = np.ascontiguousarray(np.asarray(value).astype(ir.numpy_type(dtype), copy=False))
                if tuple(value.shape) != tuple(shape):
                    raise CodegenError(f"folding gave shape {list(value.shape)}, inference {list(shape)}", node=node)
            graph.tensors[name] = ir.Tensor(name, dtype, tuple(int(d) for d in shape), value)
            known.add(name)
        if all(v is not None for v in values[: len(node.outputs)]) and all(
                graph.tensors[o].is_constant for o in node.outputs if o):
            continue  # folded: its outputs are constants now
        kept.append(node)
    for name in graph.outputs:
        if name not in known:
            raise CodegenError(f"graph output '{name}' is not produced by any node or input")
    graph.nodes = kept
    return graph
