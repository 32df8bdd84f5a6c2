"""FusedElementwise: a group of float32 elementwise nodes computed in one loop.

passes/fuse_elementwise.py makes these nodes (models cannot: the op lives in the generator's own
domain). The loop walks the output once; each operand's element is loaded once (an operand of one
element once, before the loop), every member node computes its value in a local as its own step
would (ops/elementwise.py: fused_step), and the values that something outside the group reads
are stored. With a nearest Resize member that repeats elements fh x fw times, the loop sees the
output as [..., H, fh, W, fw] and the Resize's input as [..., H, 1, W, 1], broadcast like any
other operand.
"""

from pure_model_codegen import cpp
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import register

# The node type and domain of a fused step; models cannot name it (check_ops runs first).
OP_TYPE = "FusedElementwise"
DOMAIN = "pure_model"


def _members(node):
    members = node.attrs.get("_members")
    if not members:
        raise CodegenError("is the generator's own fused step; a model cannot use it", node=node)
    return members


def _infer(node, graph):
    _members(node)
    return [(1, graph.tensor(name).shape) for name in node.outputs]


def _index(strides):
    terms = [f"i{d}" + (f" * {s}" if s != 1 else "") for d, s in enumerate(strides) if s]
    return " + ".join(terms) if terms else "0"


def _split(shape, rank, factors, enlarged):
    """`shape` (right-aligned to `rank`) as seen by a loop over [..., H, fh, W, fw]: an axis of
    the output's extent splits into (extent / f, f), a broadcast one into (1, 1), and the input of
    an enlarging Resize's [..., H, W] into (H, 1) and (W, 1)."""
    shape = (1,) * (rank - len(shape)) + tuple(shape)
    split = list(shape[:-2])
    for extent, factor in zip(shape[-2:], factors):
        split += [extent, 1] if enlarged or extent == 1 else [extent // factor, factor]
    return split


def _emit(node, ctx):
    graph = ctx.graph
    shape = graph.tensor(node.outputs[0]).shape
    operand_shapes = [graph.tensor(n).shape for n in node.inputs]
    if "_enlargement" in node.attrs:
        factors, enlarged = node.attrs["_enlargement"], node.attrs["_enlarged"]
        operand_shapes = [_split(s, len(shape), factors, n in enlarged) for n, s in zip(node.inputs, operand_shapes)]
        shape = _split(shape, len(shape), factors, False)
    dims, strides = cpp.collapse_broadcast(shape, operand_shapes + [shape])
    # loads[d]: operands that change only in loops 0 .. d - 1, read before loop d opens, so that
    # a per-channel operand is read once per channel and a scalar once per run.
    loads = [[] for _ in range(len(dims) + 1)]
    values, body = {}, []
    for name, operand_strides in zip(node.inputs, strides):
        values[name] = f"v{len(values)}"
        depth = max((d + 1 for d, s in enumerate(operand_strides) if s), default=0)
        loads[depth].append(f"const float {values[name]} = {ctx.ptr(name)}[{_index(operand_strides)}];")
    for member, (operands, code) in zip(_members(node), node.attrs["_steps"]):
        result = f"v{len(values)}"
        body.append(f"// {cpp.comment_text(member.name)} ({member.op_type})")
        body += code([values[n] for n in operands], result)
        values[member.outputs[0]] = result
    for name in node.outputs:
        body.append(f"{ctx.ptr(name)}[{_index(strides[-1])}] = {values[name]};")
    lines = loads[len(dims)] + body
    for d in reversed(range(len(dims))):
        lines = loads[d] + [f"for (std::size_t i{d} = 0; i{d} < {dims[d]}; ++i{d}) {{"] + cpp.indent(lines) + ["}"]
    return ["{"] + cpp.indent(lines) + ["}"]


def _flops(node, graph):
    return len(_members(node)) * graph.tensor(node.outputs[0]).elements


register(OP_TYPE, infer=_infer, emit=_emit, flops=_flops, domain=DOMAIN)
