"""Static memory plan: where every tensor of the graph lives while Run() executes.

Graph inputs stay in the caller's buffers, graph outputs are written straight into the caller's
output buffers, constants are read-only data, and every other tensor gets a 64-byte aligned slot
in one arena. Two tensors share arena bytes only when their lifetimes (first write to last read,
in step order) do not overlap, or when the steps that write them never both run (the branches of
an If decided at run time). Views (Reshape, Flatten, ...) share their source's storage and
extend its lifetime; a view that is a graph output becomes a copy into the output buffer.
"""

import dataclasses
from typing import Dict, List

from pure_model_codegen import ops
from pure_model_codegen.ops import control

ALIGNMENT = 64


@dataclasses.dataclass
class Storage:
    kind: str  # "input", "output", "constant" or "arena"
    index: int = 0  # input/output position
    offset: int = 0  # arena byte offset


@dataclasses.dataclass
class Plan:
    storage: Dict[str, Storage]  # for every tensor the generated code touches
    alias_of: Dict[str, str]  # view output -> the tensor whose storage it shares
    copies: List[str]  # view nodes (by name) that must copy because their output is a graph output
    arena_bytes: int
    extra_output_copies: List[tuple]  # (output index, source tensor) for outputs not written by a step
    scratch: Dict[str, int]  # node name -> arena offset of the working space it uses while it runs


def _align(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _exclusive(guard, other):
    """Whether steps under these guards never both run: one needs a condition the other negates."""
    negated = {(cond, not value) for cond, value in other}
    return any(term in negated for term in guard)


def plan(graph):
    storage = {}
    for i, name in enumerate(graph.inputs):
        storage[name] = Storage("input", index=i)
    for name, tensor in graph.tensors.items():
        if tensor.is_constant:
            storage[name] = Storage("constant")
    extra_copies = []
    for i, name in enumerate(graph.outputs):
        if name in storage:  # an input, a constant, or listed twice: copied at the end of Run()
            extra_copies.append((i, name))
        else:
            storage[name] = Storage("output", index=i)

    alias_of, copies = {}, []
    for node in graph.nodes:
        if not ops.lookup(node).view:
            continue
        if node.outputs[0] in storage:  # a graph output: its bytes must land in the caller's buffer
            copies.append(node.name)
        else:
            source = node.inputs[0]
            alias_of[node.outputs[0]] = alias_of.get(source, source)

    # Lifetimes of arena tensors, in steps; an alias keeps its root alive. A step's working space
    # is one more tensor, alive during that step only.
    first, last, sizes = {}, {}, {}
    guards = {}  # the guard of the step that defines each arena tensor (see ops/control.py)
    scratch_names = {}
    for step, node in enumerate(graph.nodes):
        op = ops.lookup(node)
        scratch_bytes = op.scratch(node, graph) if op.scratch else 0
        if scratch_bytes:
            name = f"{node.name}#scratch"
            scratch_names[node.name] = name
            first[name] = last[name] = step
            sizes[name] = scratch_bytes
            guards[name] = control.guard_of(node)
        for name in node.outputs:
            root = alias_of.get(name, name)
            if name and root not in storage:  # inputs, outputs and constants live elsewhere
                if root not in first:
                    first[root] = step
                    guards[root] = control.guard_of(node)
                last[root] = max(last.get(root, step), step)
        for name in list(node.inputs) + [cond for cond, _ in control.guard_of(node)]:
            if name:
                root = alias_of.get(name, name)
                if root in first:
                    last[root] = step

    placed = []  # (offset, size, first, last, guard)
    arena_bytes = 0
    for name in first:
        sizes.setdefault(name, graph.tensor(name).nbytes if name in graph.tensors else 0)
    order = sorted(first, key=lambda n: (-sizes[n], first[n], n))
    for name in order:
        size = _align(max(sizes[name], 1))
        # Tensors of the two branches of a run-time If never both hold data: they may share bytes.
        busy = sorted((o, s) for o, s, f, l, g in placed
                      if not (l < first[name] or last[name] < f or _exclusive(g, guards[name])))
        offset = 0
        for o, s in busy:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first[name], last[name], guards[name]))
        storage[name] = Storage("arena", offset=offset)
        arena_bytes = max(arena_bytes, offset + size)
    for name, root in alias_of.items():
        storage[name] = storage[root]
    scratch = {node: storage.pop(name).offset for node, name in scratch_names.items()}
    return Plan(storage, alias_of, copies, arena_bytes, extra_copies, scratch)

