"""Fuses connected float32 elementwise nodes of one output shape into one loop.

Exported models spell small functions as chains of elementwise nodes: PP-OCR's hardswish is
Add, Clip, Mul, Div (and a scalar Mul and Add around it), magika's GELU nine Mul, Add and Tanh
nodes. Run one by one, each node is a full pass over memory; as one FusedElementwise step
(ops/fused_elementwise.py) every element is loaded once, computed in registers through the whole
chain and stored once.

A node joins the group of a node whose output it reads when both have the same output shape and
guard, and every tensor the group has computed so far is read outside the group only by nodes
that come after it (the fused step runs where its last node was). Other operands (graph inputs,
constants, tensors computed elsewhere) are read as they are and may broadcast. A group's
tensors that something outside it reads, or that are graph outputs, are still stored; the others
never reach memory. A nearest Resize that repeats elements a whole number of times joins too
(its input read through a repeating view), so the enlarged tensor is never stored either.

Models that quantize at run time are left alone: the compiler may contract a Mul and the Add
after it into one fused multiply-add once both are in one loop, and in those models a last-bit
difference can move a value across a quantization step (see runtime_quantization.py).
"""

import dataclasses
from typing import List, Optional

from pure_model_codegen import ir
from pure_model_codegen.ops import control, elementwise
from pure_model_codegen.ops.fused_elementwise import DOMAIN, OP_TYPE
from pure_model_codegen.passes import runtime_quantization


@dataclasses.dataclass(eq=False)
class _Group:
    shape: tuple
    guard: tuple
    members: List[ir.Node]
    enlargement: Optional[tuple] = None  # (fh, fw) of the nearest Resize members: one per group


def _can_merge(groups, node, consumers, position):
    """Whether `node` and these groups may become one: nothing outside reads a member's output before it."""
    inside = {id(node)} | {id(m) for g in groups for m in g.members}
    for group in groups:
        for member in group.members:
            for reader in consumers.get(member.outputs[0], []):
                if id(reader) not in inside and position[id(reader)] <= position[id(node)]:
                    return False
    return True


def _groups(graph):
    consumers = graph.consumers()
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    group_of = {}  # tensor computed by a group member -> its group
    groups = []
    for node in graph.nodes:
        step = elementwise.fused_step(node, graph)
        if step is None:
            continue
        shape, guard = graph.tensor(node.outputs[0]).shape, control.guard_of(node)
        enlargement = elementwise.fused_enlargement(node, graph)
        candidates = []
        for name in step[0]:
            group = group_of.get(name)
            if (group is not None and group not in candidates and group.shape == shape and group.guard == guard
                    and None in (enlargement, group.enlargement)):
                candidates.append(group)
        # Resize members of the groups merged must repeat elements alike.
        while len({g.enlargement for g in candidates} - {None}) > 1:
            candidates.pop()
        if candidates and not _can_merge(candidates, node, consumers, position):
            candidates = [g for g in candidates if _can_merge([g], node, consumers, position)][:1]
        if candidates:
            target = candidates[0]
            target.enlargement = enlargement or next((g.enlargement for g in candidates if g.enlargement), None)
            for other in candidates[1:]:
                target.members.extend(other.members)
                for member in other.members:
                    group_of[member.outputs[0]] = target
                groups.remove(other)
            target.members.sort(key=lambda m: position[id(m)])
            target.members.append(node)
        else:
            target = _Group(shape, guard, [node], enlargement)
            groups.append(target)
        group_of[node.outputs[0]] = target
    return [g for g in groups if len(g.members) > 1]


def run(graph):
    if runtime_quantization.quantizes_at_run_time(graph):
        return graph
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    replaced = {}  # id(last member) -> the fused node; id(other member) -> None
    for group in _groups(graph):
        members = group.members
        inside = {id(m) for m in members}
        computed = {m.outputs[0] for m in members}
        operands = []
        for member in members:
            for name in elementwise.fused_step(member, graph)[0]:
                if name not in computed and name not in operands:
                    operands.append(name)
        stored = [m.outputs[0] for m in members
                  if m.outputs[0] in outputs or any(id(c) not in inside for c in consumers.get(m.outputs[0], []))]
        last = members[-1]
        # Each member's code is taken now, while the tensors it reads are all still in the graph.
        attrs = {"_members": members, "_steps": [elementwise.fused_step(m, graph) for m in members]}
        if group.guard:
            attrs["_guard"] = list(group.guard)
        if group.enlargement:
            attrs["_enlargement"] = group.enlargement
            attrs["_enlarged"] = sorted({m.inputs[0] for m in members if elementwise.fused_enlargement(m, graph)})
        fused = ir.Node(OP_TYPE, last.name, operands, stored, attrs, domain=DOMAIN, opset=1)
        for member in members:
            replaced[id(member)] = None
            if member.outputs[0] not in stored:
                del graph.tensors[member.outputs[0]]
        replaced[id(last)] = fused
    graph.nodes = [replaced.get(id(n), n) for n in graph.nodes if replaced.get(id(n), n) is not None]
    return graph
