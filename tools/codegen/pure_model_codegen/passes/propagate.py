"""Shape and dtype propagation with constant folding.

Walks the nodes in order. Each op's `infer` gives its outputs' dtypes and shapes (and checks its
attributes); a node whose inputs are all constants and whose op can evaluate in numpy is folded:
its outputs become constants and the node disappears. With input shapes bound, this removes the
Shape -> Gather -> Concat -> Reshape chains that exporters write.
"""

import collections
import math

import numpy as np

from pure_model_codegen import ir, ops
from pure_model_codegen.ops import control
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.passes import widen_narrow

# Folding a huge op at generation time would bloat the weights; beyond this, leave it to run time.
MAX_FOLDED_ELEMENTS = 1 << 22


def _check_inputs_known(graph, node, known):
    for name in list(node.inputs) + [cond for cond, _ in control.guard_of(node)]:
        # Constants that expanding control flow added (a branch's initializers) count as known.
        if name and name not in known and not (name in graph.tensors and graph.tensors[name].is_constant):
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


def _evaluate(op, node, inputs):
    """Folds `node` in numpy. The values are the model's own constants, so numpy may reject them
    (an integer to a negative power, say): that is bad input, reported against the node."""
    with np.errstate(all="ignore"):
        try:
            return op.evaluate(node, [t.value if t is not None else None for t in inputs])
        except CodegenError:
            raise
        except (ValueError, TypeError, ArithmeticError, IndexError, OverflowError) as e:
            raise CodegenError(f"cannot be evaluated at generation time: {type(e).__name__}: {e}",
                               node=node) from None


def _infer(op, node, graph):
    results = op.infer(node, graph)
    named = [o for o in node.outputs if o]
    if len(results) < len(node.outputs) and any(node.outputs[len(results):]):
        raise CodegenError(f"produces {len(results)} outputs, the model names {len(named)}", node=node)
    checked = []
    for name, (dtype, shape, *rest) in zip(node.outputs, results):
        shape = ir.check_shape(shape, f"output '{name}'", node=node)
        checked.append((dtype, shape, rest[0] if rest else None))
    return checked


def _check_declared_outputs(graph):
    for name in graph.outputs:
        declared_dtype, declared_dims = graph.declared_outputs.get(name, (None, None))
        tensor = graph.tensor(name)
        if declared_dtype is not None and declared_dtype != tensor.dtype:
            raise CodegenError(f"graph output '{name}' is declared {ir.dtype_name(declared_dtype)} but the graph "
                               f"computes {tensor.describe()}")
        if declared_dims is not None and (
                len(declared_dims) != len(tensor.shape)
                or any(d is not None and d != t for d, t in zip(declared_dims, tensor.shape))):
            shown = ",".join("?" if d is None else str(d) for d in declared_dims)
            computed = ",".join(str(d) for d in tensor.shape)
            if name in graph.stated_outputs:
                raise CodegenError(f"output_shapes gives graph output '{name}' shape [{shown}] but the graph "
                                   f"computes {tensor.describe()}")
            # Exporters do write declarations their own graphs contradict; the generated header
            # must state the truth, so the user confirms it rather than the generator guessing.
            raise CodegenError(f"graph output '{name}' is declared with shape [{shown}] but the graph computes "
                               f"{tensor.describe()} (if the declaration is wrong, state the computed shape "
                               f"with output_shapes = {{\"{name}\": \"{computed}\"}})")


def run(graph):
    known = set(graph.tensors)
    kept = []
    widener = widen_narrow.Widener(graph)
    pending = collections.deque(graph.nodes)
    added = 0
    while pending:
        node = pending.popleft()
        try:
            _check_inputs_known(graph, node, known)
            # If, Loop and Scan become the steps of their bodies here, once the values that decide
            # how (a condition, a trip count) are as known as they will get.
            expanded = control.expand(node, graph)
            if expanded is not None:
                added += len(expanded)
                if added > control.MAX_UNROLLED_NODES:
                    raise CodegenError(f"control flow expands to more than {control.MAX_UNROLLED_NODES} steps")
                pending.extendleft(reversed(expanded))
                continue
            parts = widener.split(node)
            for part in parts:
                if not _propagate_node(graph, part, known):
                    kept.append(part)
                widener.check(part)
        except CodegenError as e:
            e.node = e.node or node
            guard = control.guard_of(node)
            if guard and "branch of an If decided at run time" not in e.message:
                # Models often rely on the run-time choice: the other branch would not fit the
                # inputs they are given. Say how to decide it at generation time instead.
                conditions = " and ".join(f"'{c}' is {str(v).lower()}" for c, v in guard)
                e.message += (f" (in a branch of an If decided at run time, taken when {conditions}; if the "
                              "model's inputs never take it, bind the inputs its condition depends on with "
                              "input_values)")
            raise
    for name in graph.outputs:
        if name not in known:
            raise CodegenError(f"graph output '{name}' is not produced by any node or input")
    _check_declared_outputs(graph)
    graph.nodes = kept
    return graph


def _propagate_node(graph, node, known):
    """Shapes the node's outputs; True when it folded away (its outputs are constants now)."""
    op = ops.lookup(node)
    results = _infer(op, node, graph)
    values = [r[2] for r in results]
    inputs = [graph.tensor(name) if name else None for name in node.inputs]
    foldable = (
        op.evaluate is not None
        and all(t is None or t.is_constant for t in inputs)
        and all(math.prod(r[1]) <= MAX_FOLDED_ELEMENTS for r in results)
    )
    if foldable and any(v is None for v in values):
        values = _evaluate(op, node, inputs)
        if len(values) < len(results):
            raise CodegenError(f"folding gave {len(values)} outputs, inference {len(results)}", node=node)
    for name, (dtype, shape, _), value in zip(node.outputs, results, values):
        if not name:
            continue
        if name in known:
            raise CodegenError(f"output '{name}' is already defined elsewhere in the graph", node=node)
        if value is not None:
            # order="C" keeps a scalar 0-d (np.ascontiguousarray would make it shape [1]).
            value = np.asarray(np.asarray(value).astype(ir.numpy_type(dtype), copy=False), order="C")
            if tuple(value.shape) != tuple(shape):
                raise CodegenError(f"folding gave shape {list(value.shape)}, inference {list(shape)}", node=node)
        graph.tensors[name] = ir.Tensor(name, dtype, shape, value)
        known.add(name)
    return all(v is not None for v in values[: len(node.outputs)]) and all(
        graph.tensors[o].is_constant for o in node.outputs if o)
