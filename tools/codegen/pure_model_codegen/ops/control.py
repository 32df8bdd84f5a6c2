"""Control flow: If, Loop and Scan, whose bodies are subgraphs (ir.Subgraph).

None of them reaches emission as itself. Shape propagation expands each where it meets it
(`expand`), once the values it depends on are as known as they will get:

- If: a condition known at generation time (a constant, folded from shapes, or a bound input)
  inlines the chosen branch and drops the other. A run-time condition inlines both branches,
  each step guarded by the condition (`_guard`: it runs only when the condition has that value),
  and a select step (`If` with `_select`) copies the taken branch's outputs into the If's. The
  branches must then give outputs of the same shapes and element types.
- Loop: the trip count must be known at generation time; the body is unrolled, one copy per
  iteration, with the iteration number a constant in each (so slices by it fold). A loop-carried
  condition known at generation time ends the unrolling; one known only at run time guards each
  later iteration, whose carried values pass through selects as for If. Scan outputs need every
  iteration to run: a run-time condition with scan outputs is refused.
- Scan (version 9 and later): unrolled over the scan axis, which is static; each iteration reads
  its slice of every scan input (Gather at a constant index) and the scan outputs are the
  iterations' values stacked along their axes, in either direction.

Unrolled steps are ordinary steps, so the memory plan needs nothing special for them; guarded
steps keep their guard tensor alive (memory.py, eliminate_dead.py). Each inlined tensor and node
is renamed under the node it came from, so names never collide.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, register

# Unrolled steps beyond this would give source files no compiler wants to read.
MAX_UNROLLED_NODES = 1 << 14


def guard_of(node):
    """The guard of a step: ((condition tensor, value it must have), ...); empty when unguarded."""
    return tuple(node.attrs.get("_guard", ()))


def _subgraph(node, name, graph):
    sub = node.attrs.get(name)
    if not isinstance(sub, ir.Subgraph):
        raise CodegenError(f"attribute '{name}' must be a graph", node=node)
    # Whatever it reads from the enclosing graphs must exist where the node runs.
    missing = sorted(n for n in sub.outer_references() if n not in graph.tensors)
    if missing:
        raise CodegenError(f"subgraph '{sub.name}' reads '{missing[0]}', which is not defined before the node "
                           "(not a tensor of the enclosing graphs, or produced later)", node=node)
    return sub


def _inline(node, sub, prefix, bindings, graph, guard):
    """Copies of the subgraph's nodes, renamed under `prefix`, with its formal inputs bound.

    bindings: formal input name -> outer tensor name. Returns (nodes, {subgraph output: outer
    name}). Names the subgraph does not define (outer-scope references) keep their names."""
    mapping = dict(bindings)
    for name, tensor in sub.constants.items():
        new = f"{prefix}/{name}"
        graph.tensors[new] = ir.Tensor(new, tensor.dtype, tensor.shape, tensor.value)
        mapping[name] = new
    for inner in sub.nodes:
        for out in inner.outputs:
            if out:
                mapping[out] = f"{prefix}/{out}"
    nodes = []
    for inner in sub.nodes:
        attrs = {k: (v.renamed(mapping) if isinstance(v, ir.Subgraph) else v) for k, v in inner.attrs.items()}
        if guard:
            attrs["_guard"] = tuple(guard) + tuple(attrs.get("_guard", ()))
        nodes.append(ir.Node(op_type=inner.op_type, name=f"{prefix}/{inner.name}",
                             inputs=[mapping.get(n, n) if n else "" for n in inner.inputs],
                             outputs=[mapping[n] if n else "" for n in inner.outputs], attrs=attrs,
                             domain=inner.domain, opset=inner.opset))
    outputs = {name: mapping.get(name, name) for name in sub.outputs}
    return nodes, outputs


def _check_size(node, count):
    if count > MAX_UNROLLED_NODES:
        raise CodegenError(f"unrolls to more than {MAX_UNROLLED_NODES} steps", node=node)


def _constant_bool(graph, name):
    """True/False for a condition known at generation time, None for a run-time one."""
    tensor = graph.tensor(name)
    if tensor.elements != 1:
        raise CodegenError(f"condition '{name}' has {tensor.elements} elements; it must have one")
    if not tensor.is_constant:
        return None
    return bool(np.asarray(tensor.value).reshape(-1)[0])


def _copy(node, source, target, guard):
    attrs = {"_guard": tuple(guard)} if guard else {}
    return ir.Node("Identity", f"{node.name}/{target}", [source], [target], attrs, opset=node.opset)


def _select(node, name, cond, then_names, else_names, outputs, guard):
    attrs = {"_select": True}
    if guard:
        attrs["_guard"] = tuple(guard)
    return ir.Node("If", name, [cond] + list(then_names) + list(else_names), list(outputs), attrs,
                   opset=node.opset)


# --- If -----------------------------------------------------------------------------------------

def _expand_if(node, graph):
    input_count(node, 1)
    then_branch, else_branch = _subgraph(node, "then_branch", graph), _subgraph(node, "else_branch", graph)
    for branch in (then_branch, else_branch):
        if branch.inputs:
            raise CodegenError(f"branch '{branch.name}' has inputs; If branches take none", node=node)
        if len(branch.outputs) != len(node.outputs):
            raise CodegenError(f"branch '{branch.name}' has {len(branch.outputs)} outputs, the If {len(node.outputs)}",
                               node=node)
    cond = node.inputs[0]
    known = _constant_bool(graph, cond)
    guard = guard_of(node)
    if known is not None:
        taken = then_branch if known else else_branch
        nodes, outs = _inline(node, taken, f"{node.name}/{'then' if known else 'else'}", {}, graph, guard)
        for sub_out, out in zip(taken.outputs, node.outputs):
            if out:
                nodes.append(_copy(node, outs[sub_out], out, guard))
        return nodes
    then_nodes, then_outs = _inline(node, then_branch, f"{node.name}/then", {}, graph, guard + ((cond, True),))
    else_nodes, else_outs = _inline(node, else_branch, f"{node.name}/else", {}, graph, guard + ((cond, False),))
    return then_nodes + else_nodes + [_select(
        node, node.name, cond, [then_outs[o] for o in then_branch.outputs], [else_outs[o] for o in else_branch.outputs],
        node.outputs, guard)]


def _select_infer(node, graph):
    if not node.attrs.get("_select"):
        raise CodegenError("If must be expanded before its shapes are known (a generator bug)", node=node)
    count = len(node.outputs)
    cond = graph.tensor(node.inputs[0])
    if cond.dtype != 9 or cond.elements != 1:
        raise CodegenError(f"condition '{cond.name}' is {cond.describe()}; it must be one bool", node=node)
    results = []
    for i in range(count):
        a, b = graph.tensor(node.inputs[1 + i]), graph.tensor(node.inputs[1 + count + i])
        if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
            raise CodegenError(
                f"output {i} is {a.describe()} in one branch and {b.describe()} in the other; with a condition "
                "known only at run time both branches must give the same shapes and element types (bind the "
                "inputs it depends on with input_values to choose the branch at generation time)", node=node)
        results.append((a.dtype, a.shape))
    return results


def _select_emit(node, ctx):
    count = len(node.outputs)
    cond = ctx.ptr(node.inputs[0])
    lines = []
    for i, out in enumerate(node.outputs):
        if not out:
            continue
        tensor = ctx.graph.tensor(out)
        then_ptr, else_ptr = ctx.ptr(node.inputs[1 + i]), ctx.ptr(node.inputs[1 + count + i])
        # Either branch may be a constant, which ctx.copy reads however it is stored.
        lines.append(f"if ({cond}[0]) {{ {ctx.copy(ctx.ptr(out), then_ptr, tensor.nbytes)} }} "
                     f"else {{ {ctx.copy(ctx.ptr(out), else_ptr, tensor.nbytes)} }}")
    return lines


def _select_evaluate(node, values):
    count = len(node.outputs)
    taken = 1 if bool(np.asarray(values[0]).reshape(-1)[0]) else 1 + count
    return [values[taken + i] for i in range(count)]


register("If", infer=_select_infer, evaluate=_select_evaluate, emit=_select_emit, flops=lambda node, graph: 0)


# --- Loop ---------------------------------------------------------------------------------------

def _scalar_constant(graph, name, dtype, value):
    if name not in graph.tensors:
        graph.tensors[name] = ir.Tensor(name, dtype, (), np.asarray(value, dtype=ir.numpy_type(dtype)))
    return name


def _expand_loop(node, graph):
    """One iteration per call: the iteration's steps, then the Loop again for the next (or the end)."""
    body = _subgraph(node, "body", graph)
    input_count(node, 2, 1 << 20)
    carried = len(node.inputs) - 2
    if len(body.inputs) != carried + 2:
        raise CodegenError(f"the body takes {len(body.inputs)} inputs; with {carried} loop-carried values it must "
                           f"take {carried + 2}", node=node)
    scans = len(body.outputs) - 1 - carried
    if scans < 0 or len(node.outputs) != carried + scans:
        raise CodegenError(f"the body gives {len(body.outputs)} outputs, which do not match {carried} loop-carried "
                           f"values and the Loop's {len(node.outputs)} outputs", node=node)
    state = node.attrs.get("_state")
    if state is None:
        trip = node.inputs[0]
        if not trip:
            raise CodegenError("has no trip count; the generator unrolls loops and needs one known at generation "
                               "time", node=node)
        trips = graph.tensor(trip)
        if not trips.is_constant:
            raise CodegenError(f"trip count '{trip}' depends on the model's inputs; it must be a constant (bind "
                               "it with input_values)", node=node)
        count = int(np.asarray(trips.value).reshape(-1)[0])
        if count > 0:
            _check_size(node, count * len(body.nodes))
        cond = node.inputs[1] or _scalar_constant(graph, "true@control", 9, True)
        state = dict(iteration=0, count=max(count, 0), cond=cond, values=list(node.inputs[2:]), scans=[])
    iteration, cond = state["iteration"], state["cond"]
    running = _constant_bool(graph, cond)
    guard = guard_of(node)
    if running is None and scans:
        raise CodegenError(f"has scan outputs and its condition '{cond}' depends on the model's inputs; scan "
                           "outputs need a count known at generation time", node=node)
    if iteration >= state["count"] or running is False:
        return _finish_loop(node, graph, state, body, carried, guard)
    prefix = f"{node.name}/{iteration}"
    number = _scalar_constant(graph, f"{prefix}/iteration", 7, iteration)
    inner_guard = guard if running else guard + ((cond, True),)
    bindings = dict(zip(body.inputs, [number, cond] + state["values"]))
    nodes, outs = _inline(node, body, prefix, bindings, graph, inner_guard)
    new_cond, new_values = outs[body.outputs[0]], [outs[o] for o in body.outputs[1:1 + carried]]
    scan_values = [outs[o] for o in body.outputs[1 + carried:]]
    if running is None:
        # Carried values and the condition go on only where this iteration ran.
        # Where it did not run, `cond` is false: it stays the condition from then on.
        selected = [f"{prefix}/carried{i}" for i in range(carried)]
        nodes.append(_select(node, f"{prefix}/continue", cond, [new_cond] + new_values, [cond] + state["values"],
                             [f"{prefix}/cond"] + selected, guard))
        new_cond, new_values = f"{prefix}/cond", selected
    following = ir.Node(node.op_type, node.name, list(node.inputs), list(node.outputs), dict(node.attrs),
                        node.domain, node.opset)
    following.attrs["_state"] = dict(iteration=iteration + 1, count=state["count"], cond=new_cond,
                                     values=new_values, scans=state["scans"] + [scan_values])
    return nodes + [following]


def _stack(node, name, elements, axis, out, guard):
    """Nodes that stack `elements` (of equal shapes) along a new `axis` into tensor `out`.

    Unsqueeze in its attribute form (opset 11), which needs no shape: the elements' shapes are not
    known yet when a Scan is expanded."""
    extra = {"_guard": tuple(guard)} if guard else {}
    nodes, parts = [], []
    for i, element in enumerate(elements):
        part = f"{name}/{i}"
        nodes.append(ir.Node("Unsqueeze", part, [element], [part], dict(extra, axes=[axis]), opset=11))
        parts.append(part)
    nodes.append(ir.Node("Concat", f"{name}/concat", parts, [out], dict(extra, axis=axis), opset=11))
    return nodes


def _finish_loop(node, graph, state, body, carried, guard):
    nodes = [_copy(node, source, out, guard) for source, out in zip(state["values"], node.outputs[:carried]) if out]
    for j, out in enumerate(node.outputs[carried:]):
        if not out:
            continue
        if not state["scans"]:
            raise CodegenError(f"runs no iteration, so the shape of scan output '{out}' is unknown", node=node)
        nodes += _stack(node, f"{node.name}/scan{j}", [s[j] for s in state["scans"]], 0, out, guard)
    return nodes


# --- Scan ---------------------------------------------------------------------------------------

def _expand_scan(node, graph):
    body = _subgraph(node, "body", graph)
    scan_inputs = attr_int(node, "num_scan_inputs")
    states = len(node.inputs) - scan_inputs
    if scan_inputs < 1 or states < 0:
        raise CodegenError(f"num_scan_inputs {scan_inputs} does not fit its {len(node.inputs)} inputs", node=node)
    scan_outputs = len(node.outputs) - states
    if len(body.inputs) != len(node.inputs) or len(body.outputs) != len(node.outputs) or scan_outputs < 0:
        raise CodegenError(f"the body's {len(body.inputs)} inputs and {len(body.outputs)} outputs do not match the "
                           f"Scan's {len(node.inputs)} and {len(node.outputs)}", node=node)

    def per_input(attr, count, default):
        values = attr_ints(node, attr, [default] * count)
        if len(values) != count:
            raise CodegenError(f"attribute '{attr}' has {len(values)} entries, not {count}", node=node)
        return values

    in_axes = per_input("scan_input_axes", scan_inputs, 0)
    in_dirs = per_input("scan_input_directions", scan_inputs, 0)
    out_axes = per_input("scan_output_axes", scan_outputs, 0)
    out_dirs = per_input("scan_output_directions", scan_outputs, 0)
    for attr, values in (("scan_input_directions", in_dirs), ("scan_output_directions", out_dirs)):
        if any(d not in (0, 1) for d in values):
            raise CodegenError(f"attribute '{attr}' must hold 0 (forward) or 1 (reverse), got {values}", node=node)
    lengths = set()
    sources = []
    for name, axis in zip(node.inputs[states:], in_axes):
        tensor = graph.tensor(name)
        rank = len(tensor.shape)
        if not -rank <= axis < rank:
            raise CodegenError(f"scan input axis {axis} is out of range for '{name}' of rank {rank}", node=node)
        axis = axis + rank if axis < 0 else axis
        lengths.add(tensor.shape[axis])
        sources.append((name, axis))
    if len(lengths) != 1:
        raise CodegenError(f"the scan inputs have different lengths {sorted(lengths)} along their axes", node=node)
    length = lengths.pop()
    if length == 0 and scan_outputs:
        raise CodegenError("scans a length of 0, so the shapes of its scan outputs are unknown", node=node)
    _check_size(node, length * (len(body.nodes) + scan_inputs))
    guard = guard_of(node)
    extra = {"_guard": tuple(guard)} if guard else {}
    values = list(node.inputs[:states])
    collected = [[] for _ in range(scan_outputs)]
    nodes = []
    for t in range(length):
        prefix = f"{node.name}/{t}"
        slices = []
        for j, ((name, axis), direction) in enumerate(zip(sources, in_dirs)):
            index = _scalar_constant(graph, f"{prefix}/index{j}", 7, length - 1 - t if direction else t)
            element = f"{prefix}/in{j}"
            nodes.append(ir.Node("Gather", element, [name, index], [element], dict(extra, axis=axis),
                                 opset=node.opset))
            slices.append(element)
        inlined, outs = _inline(node, body, prefix, dict(zip(body.inputs, values + slices)), graph, guard)
        nodes += inlined
        values = [outs[o] for o in body.outputs[:states]]
        for j, o in enumerate(body.outputs[states:]):
            collected[j].append(outs[o])
    nodes += [_copy(node, source, out, guard) for source, out in zip(values, node.outputs[:states]) if out]
    for j, out in enumerate(node.outputs[states:]):
        if out:
            elements = collected[j][::-1] if out_dirs[j] else collected[j]
            nodes += _stack(node, f"{node.name}/scan{j}", elements, out_axes[j], out, guard)
    return nodes


def _not_expanded(node, graph):
    raise CodegenError(f"{node.op_type} must be expanded before its shapes are known (a generator bug)", node=node)


def _scan_check(node, version):
    if version < 9:
        raise CodegenError("Scan-8 (with sequence_lens and a batch axis) is not supported; Scan-9 and later are",
                           node=node)


register("Loop", infer=_not_expanded)
register("Scan", infer=_not_expanded, check=_scan_check)

_EXPANDERS = {"If": _expand_if, "Loop": _expand_loop, "Scan": _expand_scan}


def expand(node, graph):
    """The nodes that replace a control-flow node, or None for any other node."""
    if node.domain or node.op_type not in _EXPANDERS or node.attrs.get("_select"):
        return None
    try:
        return _EXPANDERS[node.op_type](node, graph)
    except CodegenError as e:
        e.node = e.node or node
        raise


def guard_condition(node, ctx):
    """The C++ condition under which a guarded step runs, or None for an unguarded one."""
    terms = []
    for name, value in guard_of(node):
        terms.append(f"{'' if value else '!'}{ctx.ptr(name)}[0]")
    return " && ".join(terms) if terms else None
