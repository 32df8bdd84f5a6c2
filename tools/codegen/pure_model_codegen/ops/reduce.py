"""Reductions: ReduceSum, ReduceMean, ReduceMax, ... over a set of axes, and ArgMax/ArgMin.

The axes are an attribute up to ReduceSum-11 and the other Reduce*-13, an optional input from
ReduceSum-13 and the other Reduce*-18 on; as an input they must be known at generation time,
since they decide the output's shape. No axes means every axis, unless noop_with_empty_axes is
set: then the op is the identity.

A reduction is written as loops over the kept dimensions, each with a local accumulator and an
inner loop nest over the reduced dimensions (adjacent dimensions of the same kind merge, so a
reduction over the last axis is two loops). Reductions over an empty set give the spec's
conventions: 0 for sums, 1 for ReduceProd, -inf/+inf (the type's lowest/highest for integers) for
ReduceMax/ReduceMin, -inf for ReduceLogSum and ReduceLogSumExp, NaN for the mean of floats.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, normalize_axis, register, require_dtype
from pure_model_codegen.ops.shape_ops import ValuesGraph, constant_input

_FLOATS = (1, 11)
_SIGNED = (3, 5, 6, 7)
_UNSIGNED = (2, 4, 12, 13)
_NUMERIC = _FLOATS + _SIGNED + _UNSIGNED


def _axes_are_input(op_type, opset):
    return opset >= (13 if op_type == "ReduceSum" else 18)


def _reduced_axes(node, graph):
    """Sorted reduced axes of the input, or None for the identity (noop_with_empty_axes)."""
    rank = len(graph.tensor(node.inputs[0]).shape)
    if _axes_are_input(node.op_type, node.opset):
        input_count(node, 1, 2)
        value = constant_input(node, graph, 1, "axes")
        axes = None if value is None else [int(a) for a in np.asarray(value).reshape(-1)]
        noop = attr_int(node, "noop_with_empty_axes", 0)
    else:
        input_count(node, 1)
        axes = attr_ints(node, "axes")
        noop = 0
    if not axes:
        return None if noop else list(range(rank))
    normalized = sorted(normalize_axis(node, a, rank) for a in axes)
    if len(set(normalized)) != len(normalized):
        raise CodegenError(f"axes {axes} repeat an axis", node=node)
    return normalized


def _out_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if d in axes else n for d, n in enumerate(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)


def _merged_dims(shape, axes):
    """([(extent, stride)] kept, [(extent, stride)] reduced): the loops of the reduction.

    Dimensions of extent 1 are dropped; adjacent dimensions of the same kind merge.
    """
    strides = [int(np.prod(shape[d + 1:])) for d in range(len(shape))]
    kept, reduced = [], []
    previous = None
    for d, n in enumerate(shape):
        if n == 1:
            continue
        kind = d in axes
        target = reduced if kind else kept
        if previous == kind and target and target[-1][1] == n * strides[d]:
            target[-1] = (target[-1][0] * n, strides[d])
        else:
            target.append((n, strides[d]))
        previous = kind
    return kept, reduced


def _index(names, dims):
    terms = [f"{name} * {stride}" if stride != 1 else name for name, (_, stride) in zip(names, dims)]
    return " + ".join(terms) if terms else "0"


def _loop_nest(dims, prefix, body, depth0=0):
    """for-loops over `dims` named prefix0, prefix1, ... around `body` (a list of lines)."""
    lines = []
    for depth, (extent, _) in enumerate(dims):
        name = f"{prefix}{depth + depth0}"
        lines.append("  " * depth + f"for (std::size_t {name} = 0; {name} < {extent}; ++{name}) {{")
    lines += ["  " * len(dims) + line for line in body]
    for depth in reversed(range(len(dims))):
        lines.append("  " * depth + "}")
    return lines


# --- Reduce* ------------------------------------------------------------------------------------

def _acc_type(dtype):
    if dtype in _FLOATS:
        return "double"
    if dtype in _SIGNED:
        return "std::int64_t"
    if dtype in _UNSIGNED:
        return "std::uint64_t"
    return "bool"


def _numpy_reduce(kind, x, axes, keepdims):
    """numpy semantics of each reduction, with the spec's empty-set values."""
    axes = tuple(axes)
    dtype = x.dtype
    wide = x.astype(np.float64) if dtype.kind == "f" else x
    if kind == "Sum":
        out = np.sum(wide, axis=axes, keepdims=keepdims)
    elif kind == "Mean":
        count = int(np.prod([x.shape[a] for a in axes]))
        total = np.sum(wide, axis=axes, keepdims=keepdims)
        if dtype.kind == "f":
            out = total / count if count else np.full(total.shape, np.nan)
        else:
            out = np.trunc(total.astype(np.float64) / count) if count else np.zeros(total.shape)
    elif kind == "Prod":
        out = np.prod(wide, axis=axes, keepdims=keepdims)
    elif kind in ("Max", "Min"):
        if x.size == 0 or any(x.shape[a] == 0 for a in axes):
            shape = np.sum(x, axis=axes, keepdims=keepdims).shape
            if dtype.kind == "f":
                fill = -np.inf if kind == "Max" else np.inf
            elif dtype.kind == "b":
                fill = kind == "Min"
            else:
                fill = np.iinfo(dtype).min if kind == "Max" else np.iinfo(dtype).max
            out = np.full(shape, fill, dtype=dtype)
        else:
            out = (np.max if kind == "Max" else np.min)(x, axis=axes, keepdims=keepdims)
    elif kind == "L1":
        out = np.sum(np.abs(wide), axis=axes, keepdims=keepdims)
    elif kind == "L2":
        out = np.sqrt(np.sum(wide * wide, axis=axes, keepdims=keepdims))
    elif kind == "SumSquare":
        out = np.sum(wide * wide, axis=axes, keepdims=keepdims)
    elif kind == "LogSum":
        out = np.log(np.sum(wide, axis=axes, keepdims=keepdims))
    elif kind == "LogSumExp":
        finite = np.where(np.isinf(wide), -np.inf, wide)
        if x.size and all(x.shape[a] for a in axes):
            m = np.max(finite, axis=axes, keepdims=True)
        else:
            m = np.full(np.sum(wide, axis=axes, keepdims=True).shape, -np.inf)
        m = np.where(np.isinf(m), 0.0, m)
        out = np.log(np.sum(np.exp(wide - m), axis=axes, keepdims=True)) + m
        if not keepdims:
            out = out.reshape(np.sum(wide, axis=axes, keepdims=False).shape)
    else:
        raise AssertionError(kind)
    return np.asarray(out).astype(dtype)


def _reduce_lines(kind, dtype, ctype, count, x, index):
    """Statements that reduce `x[index]` over the inner loops into `acc`; returns (init, body, result)."""
    acc = _acc_type(dtype)
    floating = dtype in _FLOATS
    value = f"static_cast<{acc}>({x}[{index}])"
    if kind in ("Max", "Min"):
        limit = "infinity()" if floating else ("max()" if kind == "Min" else "lowest()")
        sign = "-" if floating and kind == "Max" else ""
        init = [f"{ctype} acc = {sign}std::numeric_limits<{ctype}>::{limit};"]
        better = ">" if kind == "Max" else "<"
        # NaN wins, as in numpy: once acc is NaN no comparison replaces it.
        test = f"v {better} acc || v != v" if floating else f"v {better} acc"
        body = [f"const {ctype} v = {x}[{index}];", f"if ({test}) acc = v;"]
        return init, body, "acc"
    if kind == "LogSumExp":
        init = [f"{acc} acc = 0;"]
        body = [f"acc += std::exp({value} - shift);"]
        return init, body, "shift + std::log(acc)"
    init = [f"{acc} acc = {1 if kind == 'Prod' else 0};"]
    if kind == "Prod":
        body = [f"acc *= {value};"]
    elif kind in ("SumSquare", "L2"):
        body = [f"const {acc} v = {value};", "acc += v * v;"]
    elif kind == "L1":
        if dtype in _UNSIGNED:
            body = [f"acc += {value};"]
        else:
            body = [f"const {acc} v = {value};", "acc += v < 0 ? -v : v;"]
    else:
        body = [f"acc += {value};"]
    result = {"L2": "std::sqrt(acc)", "LogSum": "std::log(acc)"}.get(kind, "acc")
    if kind == "Mean":
        # Integers: numpy's mean divides in floating point and truncates toward zero.
        result = f"acc / {count}" if floating else f"static_cast<{acc}>(static_cast<double>(acc) / {count})"
    return init, body, result


# Sums over outer axes of a tensor whose innermost axis is kept (LayerNorm's statistics over the
# sequence, say) walk the input in memory order instead: one accumulator per innermost output
# position, in scratch, each reduced row added to all of them at once (vectorised, and never a
# strided read). The same additions per output, in the same order.
_COLUMNWISE = {"Sum": "acc[{j}]", "Mean": "acc[{j}] / {count}", "SumSquare": "acc[{j}]", "L2": "std::sqrt(acc[{j}])"}


def _columnwise(kind, dtype, kept, reduced):
    """The innermost kept extent, when the reduction runs column-wise (see _COLUMNWISE), else 0."""
    if kind not in _COLUMNWISE or dtype not in _FLOATS or not kept or not reduced or kept[-1][1] != 1:
        return 0
    return kept[-1][0] if kept[-1][0] >= 8 else 0


def _columnwise_lines(kind, dtype, kept, reduced, src, dst, scratch, count):
    ctype = ir.cpp_type(dtype)
    inner = len(kept) - 1
    j = f"i{inner}"
    index = _index([f"i{d}" for d in range(len(kept) + len(reduced))], kept + reduced)
    value = f"static_cast<double>({src}[{index}])"
    add = f"acc[{j}] += v * v;" if kind in ("SumSquare", "L2") else f"acc[{j}] += v;"
    out_index = " + ".join(f"i{d}" + (f" * {int(np.prod([e for e, _ in kept[d + 1:]]))}" if d + 1 < len(kept) else "")
                           for d in range(len(kept)))
    result = _COLUMNWISE[kind].format(j=j, count=count)
    block = [f"double* const acc = {scratch};",
             *_loop_nest([kept[-1]], "i", ["acc[" + j + "] = 0;"], inner),
             *_loop_nest(reduced, "i", _loop_nest([kept[-1]], "i", [f"const double v = {value};", add], inner),
                         len(kept)),
             *_loop_nest([kept[-1]], "i", [f"{dst}[{out_index}] = static_cast<{ctype}>({result});"], inner)]
    return _loop_nest(kept[:-1], "i", block) if len(kept) > 1 else ["{"] + ["  " + line for line in block] + ["}"]


def _empty_value(kind, dtype):
    """C++ text of the reduction of no values."""
    ctype = ir.cpp_type(dtype)
    if kind in ("Max", "Min"):
        if dtype == 9:
            return "false" if kind == "Max" else "true"
        if dtype in _FLOATS:
            return ("-" if kind == "Max" else "") + f"std::numeric_limits<{ctype}>::infinity()"
        return f"std::numeric_limits<{ctype}>::{'lowest' if kind == 'Max' else 'max'}()"
    if kind in ("LogSum", "LogSumExp"):
        return f"-std::numeric_limits<{ctype}>::infinity()"
    if kind == "Mean" and dtype in _FLOATS:
        return f"std::numeric_limits<{ctype}>::quiet_NaN()"
    return "1" if kind == "Prod" else "0"


def _make_reduce(kind, dtypes):
    op_type = "Reduce" + kind

    def infer(node, graph):
        x = require_dtype(node, graph, node.inputs[0], dtypes)
        axes = _reduced_axes(node, graph)
        if axes is None:
            return [(x.dtype, x.shape)]
        return [(x.dtype, _out_shape(x.shape, axes, attr_int(node, "keepdims", 1)))]

    def evaluate(node, values):
        x = values[0]
        axes = _reduced_axes(node, ValuesGraph(node, values))
        if axes is None:
            return [x.copy()]
        return [_numpy_reduce(kind, x, axes, bool(attr_int(node, "keepdims", 1)))]

    def emit(node, ctx):
        x = ctx.graph.tensor(node.inputs[0])
        out = ctx.graph.tensor(node.outputs[0])
        axes = _reduced_axes(node, ctx.graph)
        if out.elements == 0:
            return [f"(void){ctx.ptr(node.outputs[0])};  // The output is empty: nothing to compute."]
        dst = ctx.ptr(node.outputs[0])
        if axes is None:
            return [ctx.copy(dst, ctx.ptr(node.inputs[0]), x.nbytes)]
        ctype = ir.cpp_type(x.dtype)
        count = int(np.prod([x.shape[a] for a in axes]))
        if count == 0:  # over an empty set every output is the same constant; the input is never read
            return [f"for (std::size_t i = 0; i < {out.elements}; ++i) {dst}[i] = {_empty_value(kind, x.dtype)};"]
        src = ctx.ptr(node.inputs[0])
        kept, reduced = _merged_dims(x.shape, axes)
        if _columnwise(kind, x.dtype, kept, reduced):
            return _columnwise_lines(kind, x.dtype, kept, reduced, src, dst, ctx.scratch(node, "double"), count)
        outer = [f"i{d}" for d in range(len(kept))]
        inner = [f"i{d}" for d in range(len(kept), len(kept) + len(reduced))]
        index = _index(outer + inner, kept + reduced)
        init, body, result = _reduce_lines(kind, x.dtype, ctype, count, src, index)
        block = list(init)
        if kind == "LogSumExp":
            # Shifted by the largest finite value, so that exp() cannot overflow.
            block = ["double shift = -std::numeric_limits<double>::infinity();"]
            if reduced:
                block += _loop_nest(reduced, "i", [f"const double v = {src}[{index}];",
                                                   "if (v > shift && v != std::numeric_limits<double>::infinity()) "
                                                   "shift = v;"], len(kept))
            block += ["if (shift == -std::numeric_limits<double>::infinity()) shift = 0;"] + init
        block += _loop_nest(reduced, "i", body, len(kept)) if reduced else body
        out_index = " + ".join(
            f"i{d}" + (f" * {int(np.prod([e for e, _ in kept[d + 1:]]))}" if d + 1 < len(kept) else "")
            for d in range(len(kept))) or "0"
        block.append(f"{dst}[{out_index}] = static_cast<{ctype}>({result});")
        if kept:
            return _loop_nest(kept, "i", block)
        return ["{"] + ["  " + line for line in block] + ["}"]

    def flops(node, graph):
        return graph.tensor(node.inputs[0]).elements

    def scratch(node, graph):
        x = graph.tensor(node.inputs[0])
        axes = _reduced_axes(node, graph)
        if axes is None or x.elements == 0:
            return 0
        return 8 * _columnwise(kind, x.dtype, *_merged_dims(x.shape, axes))

    register(op_type, infer=infer, evaluate=evaluate, emit=emit, flops=flops, scratch=scratch)


for _kind, _dtypes in (("Sum", _NUMERIC), ("Mean", _NUMERIC), ("Prod", _NUMERIC), ("Max", _NUMERIC + (9,)),
                       ("Min", _NUMERIC + (9,)), ("L1", _NUMERIC), ("SumSquare", _NUMERIC), ("L2", _FLOATS),
                       ("LogSum", _FLOATS), ("LogSumExp", _FLOATS)):
    _make_reduce(_kind, _dtypes)


# --- ArgMax, ArgMin -----------------------------------------------------------------------------

def _arg_params(node, shape):
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(shape))
    keepdims = attr_int(node, "keepdims", 1)
    last = attr_int(node, "select_last_index", 0)
    return axis, keepdims, last


def _make_arg(op_type, largest):
    def infer(node, graph):
        input_count(node, 1)
        x = require_dtype(node, graph, node.inputs[0], _NUMERIC)
        axis, keepdims, _ = _arg_params(node, x.shape)
        if x.shape[axis] == 0:
            raise CodegenError(f"axis {axis} is empty: there is no {'largest' if largest else 'smallest'} element",
                               node=node)
        return [(7, _out_shape(x.shape, [axis], keepdims))]

    def evaluate(node, values):
        x = values[0]
        axis, keepdims, last = _arg_params(node, x.shape)
        pick = np.argmax if largest else np.argmin
        if last:
            result = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis)
        else:
            result = pick(x, axis=axis)
        if keepdims:
            result = np.expand_dims(result, axis)
        return [np.asarray(result, dtype=np.int64)]

    def emit(node, ctx):
        x = ctx.graph.tensor(node.inputs[0])
        axis, _, last = _arg_params(node, x.shape)
        out = ctx.graph.tensor(node.outputs[0])
        if out.elements == 0:
            return [f"(void){ctx.ptr(node.outputs[0])};  // The output is empty: nothing to compute."]
        outer, extent, inner = int(np.prod(x.shape[:axis])), x.shape[axis], int(np.prod(x.shape[axis + 1:]))
        ctype = ir.cpp_type(x.dtype)
        src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        better = ">" if largest else "<"
        test = f"v {better}{'=' if last else ''} best"
        if x.dtype in _FLOATS:
            # numpy's rule: the first NaN (the last, with select_last_index) wins over any number.
            test = f"v != v || (best == best && {test})" if last else f"best == best && (v != v || {test})"
        return [
            f"for (std::size_t i = 0; i < {outer}; ++i) {{",
            f"  for (std::size_t j = 0; j < {inner}; ++j) {{",
            f"    const {ctype}* row = {src} + i * {extent * inner} + j;",
            f"    {ctype} best = row[0];",
            "    std::int64_t at = 0;",
            f"    for (std::size_t o = 1; o < {extent}; ++o) {{",
            f"      const {ctype} v = row[o * {inner}];",
            f"      if ({test}) {{",
            "        best = v;",
            "        at = static_cast<std::int64_t>(o);",
            "      }",
            "    }",
            f"    {dst}[i * {inner} + j] = at;",
            "  }",
            "}",
        ]

    register(op_type, infer=infer, evaluate=evaluate, emit=emit)


_make_arg("ArgMax", True)
_make_arg("ArgMin", False)
