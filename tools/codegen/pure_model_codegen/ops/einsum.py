"""Einsum (float32, float64): any equation, as loops over the output's letters around loops over the summed ones.

Each letter is one loop; an operand's element is addressed by the sum of its letters' strides, so
a letter repeated in one operand reads its diagonal. `...` stands for the same trailing-broadcast
batch dimensions in every operand that has it. Without `->` the output is the letters that occur
once, in alphabetical order, after the broadcast dimensions (numpy's implicit mode).
"""

import re

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import register, require_dtype

_NUMERIC = (1, 11)


def _parse(node, graph):
    """(operand letter lists, output letters, {letter: extent}); ellipsis dims become '0', '1', ..."""
    equation = node.attrs.get("equation")
    if not isinstance(equation, str):
        raise CodegenError("required attribute 'equation' is missing", node=node)
    text = equation.replace(" ", "")
    if not re.fullmatch(r"[A-Za-z.,]*(->[A-Za-z.]*)?", text):
        raise CodegenError(f"equation {equation!r} is not an Einsum equation", node=node)
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(node.inputs) or not all(node.inputs):
        raise CodegenError(f"equation {equation!r} has {len(terms)} operands, the node {len(node.inputs)} inputs",
                           node=node)
    tensors = [require_dtype(node, graph, name, _NUMERIC) for name in node.inputs]
    if any(t.dtype != tensors[0].dtype for t in tensors):
        raise CodegenError("every input must have the same element type", node=node)
    extents, operands, batch_rank = {}, [], 0
    for term, tensor in zip(terms, tensors):
        if term.count("...") > 1 or term.replace("...", "").count("."):
            raise CodegenError(f"operand {term!r} of {equation!r} has a malformed ellipsis", node=node)
        letters = list(term.replace("...", "*"))
        fixed = len(letters) - ("*" in letters)
        if ("*" in letters and len(tensor.shape) < fixed) or ("*" not in letters and len(tensor.shape) != fixed):
            raise CodegenError(f"operand {term!r} does not fit input shape {list(tensor.shape)}", node=node)
        if "*" in letters:
            at = letters.index("*")
            rank = len(tensor.shape) - fixed
            batch_rank = max(batch_rank, rank)
            letters[at:at + 1] = [None] * rank  # named once every operand's batch rank is known
        operands.append(letters)
    for letters, tensor in zip(operands, tensors):
        nones = [i for i, c in enumerate(letters) if c is None]
        for position, index in enumerate(nones):
            letters[index] = str(batch_rank - len(nones) + position)
        for letter, extent in zip(letters, tensor.shape):
            known = extents.get(letter)
            if known is None or known == 1:
                extents[letter] = extent
            elif extent not in (1, known):
                raise CodegenError(f"letter '{letter}' has extents {known} and {extent} in {equation!r}", node=node)
    batch = [str(i) for i in range(batch_rank)]
    if arrow:
        if rhs.count("...") > 1 or rhs.replace("...", "").count("."):
            raise CodegenError(f"the output {rhs!r} of {equation!r} has a malformed ellipsis", node=node)
        output = []
        for c in rhs.replace("...", "*"):
            output += batch if c == "*" else [c]
        if "..." not in rhs and batch_rank:
            raise CodegenError(f"the output {rhs!r} of {equation!r} drops the '...' dimensions", node=node)
    else:
        counts = {}
        for letters in operands:
            for c in letters:
                counts[c] = counts.get(c, 0) + 1
        output = batch + sorted(c for c, n in counts.items() if n == 1 and c not in batch)
    for c in output:
        if c not in extents:
            raise CodegenError(f"output letter '{c}' of {equation!r} is in no operand", node=node)
    if len(set(output)) != len(output):
        raise CodegenError(f"the output of {equation!r} repeats a letter", node=node)
    return tensors, operands, output, extents


def _infer(node, graph):
    if not node.inputs:
        raise CodegenError("expects at least 1 input, got 0", node=node)
    tensors, _, output, extents = _parse(node, graph)
    return [(tensors[0].dtype, tuple(extents[c] for c in output))]


def _emit(node, ctx):
    tensors, operands, output, extents = _parse(node, ctx.graph)
    summed = sorted({c for letters in operands for c in letters} - set(output))
    loop_var = {c: f"i{n}" for n, c in enumerate(output + summed)}
    dtype = tensors[0].dtype
    acc = "double"

    def index(letters, shape):
        terms, stride = [], 1
        for c, extent in reversed(list(zip(letters, shape))):
            if extent != 1:
                terms.append(loop_var[c] if stride == 1 else f"{loop_var[c]} * {stride}")
            stride *= extent
        return " + ".join(reversed(terms)) or "0"

    product = " * ".join(f"static_cast<{acc}>({ctx.ptr(name)}[{index(letters, t.shape)}])"
                         for name, letters, t in zip(node.inputs, operands, tensors))
    out_shape = [extents[c] for c in output]
    lines, depth = [], 0
    for c in output:
        lines.append("  " * depth + f"for (std::size_t {loop_var[c]} = 0; {loop_var[c]} < {extents[c]}; "
                     f"++{loop_var[c]}) {{  // '{c if not c.isdigit() else '...'}'")
        depth += 1
    lines.append("  " * depth + f"{acc} acc = 0;")
    inner = depth
    for c in summed:
        lines.append("  " * depth + f"for (std::size_t {loop_var[c]} = 0; {loop_var[c]} < {extents[c]}; "
                     f"++{loop_var[c]}) {{  // '{c if not c.isdigit() else '...'}', summed")
        depth += 1
    lines.append("  " * depth + f"acc += {product};")
    while depth > inner:
        depth -= 1
        lines.append("  " * depth + "}")
    lines.append("  " * depth + f"{ctx.ptr(node.outputs[0])}[{index(output, out_shape)}] = "
                 f"static_cast<{ir.cpp_type(dtype)}>(acc);")
    while depth > 0:
        depth -= 1
        lines.append("  " * depth + "}")
    if not output:
        lines = ["{"] + ["  " + line for line in lines] + ["}"]
    return lines


def _flops(node, graph):
    _, operands, output, extents = _parse(node, graph)
    letters = {c for letters in operands for c in letters} | set(output)
    return len(operands) * int(np.prod([extents[c] for c in letters]))


register("Einsum", infer=_infer, emit=_emit, flops=_flops)
