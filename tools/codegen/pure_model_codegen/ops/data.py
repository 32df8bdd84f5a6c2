"""Data movement at run time: Split, Pad, Tile, Expand, DepthToSpace, SpaceToDepth, and the
index-driven ops Gather (see shape_ops), GatherElements, GatherND, ScatterElements, ScatterND.

Every op here works on any element type: it only moves elements. Shapes, and the parameters
that decide them (split sizes, pads, repeats, ...), must be known at generation time; indices of
the gather/scatter ops may come at run time. A run-time index out of range is clamped into the
axis (ONNX calls it an error; the generated code must not read or write outside a buffer).
"""

import numpy as np

from pure_model_codegen import cpp, ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, normalize_axis, register
from pure_model_codegen.ops.shape_ops import ValuesGraph, constant_input

_INDEX_TYPES = (6, 7)


def _strides(shape):
    return [int(np.prod(shape[d + 1:])) for d in range(len(shape))]


def literal(value, dtype):
    """A C++ literal of `value` in the element type `dtype`."""
    value = np.asarray(value).astype(ir.numpy_type(dtype)).reshape(-1)[0]
    if ir.is_storage(dtype):
        return cpp.storage_literal(value, dtype)
    if dtype == 1:
        return cpp.float_literal(value)
    if dtype == 11:
        return cpp.float_literal(value).replace("<float>", "<double>") if not np.isfinite(value) else repr(float(value))
    if dtype == 9:
        return "true" if value else "false"
    if dtype == 7 and int(value) == -(1 << 63):
        return "std::numeric_limits<std::int64_t>::lowest()"
    suffix = {7: "LL", 12: "U", 13: "ULL"}.get(dtype, "")
    return f"static_cast<{ir.cpp_type(dtype)}>({int(value)}{suffix})"


def _copy(ctx, node, src_name, dst_name, dims, fill=None):
    """cpp.gather_copy with the node's tables and pointers."""
    if ctx.graph.tensor(dst_name).elements == 0:
        return empty_output(ctx, dst_name)
    return cpp.gather_copy(dims, ctx.ptr(src_name), ctx.ptr(dst_name),
                           lambda label, values: ctx.int_table(node, f"{dst_name}_{label}", values), fill)


def empty_output(ctx, name):
    """The step of an op whose output has no elements: nothing to do, but the buffer is named."""
    return [f"(void){ctx.ptr(name)};  // The output is empty: nothing to compute."]


def _free(node, graph):
    return 0


def _ints(node, graph, index, what):
    value = constant_input(node, graph, index, what)
    return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


# --- Split --------------------------------------------------------------------------------------

def _split_sizes(node, graph):
    x = graph.tensor(node.inputs[0])
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(x.shape))
    extent = x.shape[axis]
    outputs = len(node.outputs)
    if node.opset >= 13:
        split = _ints(node, graph, 1, "split")
    elif node.opset >= 2:
        input_count(node, 1)
        split = attr_ints(node, "split")
    else:  # Split-1: an attribute, or a second input
        split = _ints(node, graph, 1, "split") if len(node.inputs) > 1 and node.inputs[1] else attr_ints(node, "split")
    num_outputs = node.attrs.get("num_outputs") if node.opset >= 18 else None
    if split is not None and num_outputs is not None:
        raise CodegenError("has both the split input and the num_outputs attribute", node=node)
    if split is not None:
        if len(split) != outputs or any(s < 0 for s in split) or sum(split) != extent:
            raise CodegenError(f"split {split} does not cut axis {axis} of extent {extent} into {outputs} outputs",
                               node=node)
        return axis, split
    if num_outputs is not None:
        if num_outputs != outputs:
            raise CodegenError(f"num_outputs is {num_outputs} but the node has {outputs} outputs", node=node)
        chunk = -(-extent // num_outputs)
        sizes = [min(chunk, max(extent - k * chunk, 0)) for k in range(num_outputs)]
        return axis, sizes
    if extent % outputs:
        raise CodegenError(f"axis {axis} of extent {extent} does not split into {outputs} equal parts", node=node)
    return axis, [extent // outputs] * outputs


def _split_infer(node, graph):
    input_count(node, 1, 2)
    x = graph.tensor(node.inputs[0])
    axis, sizes = _split_sizes(node, graph)
    return [(x.dtype, x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]


def _split_evaluate(node, values):
    axis, sizes = _split_sizes(node, ValuesGraph(node, values))
    cuts = np.cumsum(sizes)[:-1]
    return [np.ascontiguousarray(part) for part in np.split(values[0], cuts, axis=axis)]


def _split_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    axis, sizes = _split_sizes(node, ctx.graph)
    strides = _strides(x.shape)
    lines, start = [], 0
    for name, size in zip(node.outputs, sizes):
        if name:
            dims = [(range(n), s) for n, s in zip(x.shape, strides)]
            dims[axis] = (range(start, start + size), strides[axis])
            lines += [f"// '{cpp.comment_text(name)}'"] + _copy(ctx, node, node.inputs[0], name, dims)
        start += size
    return lines


register("Split", infer=_split_infer, evaluate=_split_evaluate, emit=_split_emit, flops=_free, narrow_floats=True)


# --- Pad ----------------------------------------------------------------------------------------

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad_params(node, graph):
    """(pads begin, pads end per axis, mode, constant value text or input name or None)."""
    x = graph.tensor(node.inputs[0])
    rank = len(x.shape)
    mode = node.attrs.get("mode", "constant")
    if mode not in _PAD_MODES or (mode == "wrap" and node.opset < 19):
        raise CodegenError(f"mode '{mode}' is not a padding mode", node=node)
    value_name = None
    if node.opset < 11:
        input_count(node, 1)
        pads = attr_ints(node, "pads" if node.opset >= 2 else "paddings")
        if pads is None:
            raise CodegenError("attribute 'pads' is missing", node=node)
        value = float(node.attrs.get("value", 0.0))
        axes = list(range(rank))
    else:
        input_count(node, 2, 4)
        pads = _ints(node, graph, 1, "pads")
        value = 0
        if len(node.inputs) > 2 and node.inputs[2]:
            value_name = node.inputs[2]
            if graph.tensor(value_name).is_constant:
                value, value_name = graph.tensor(value_name).value, None
        axes = _ints(node, graph, 3, "axes") if node.opset >= 18 else None
        axes = list(range(rank)) if axes is None else [normalize_axis(node, a, rank) for a in axes]
    if len(set(axes)) != len(axes) or len(pads) != 2 * len(axes):
        raise CodegenError(f"pads {pads} do not match {len(axes)} axes", node=node)
    begin, end = [0] * rank, [0] * rank
    for k, a in enumerate(axes):
        begin[a], end[a] = pads[k], pads[k + len(axes)]
    for a in range(rank):
        if x.shape[a] + begin[a] + end[a] < 0:
            raise CodegenError(f"pads {pads} remove more than axis {a} holds", node=node)
    return begin, end, mode, value, value_name


def _pad_coords(n, begin, end, mode):
    """Source coordinate of each output position along one axis (None: the constant)."""
    source = np.arange(n)
    lo, hi = max(-begin, 0), n - max(-end, 0)  # negative pads crop
    source = source[lo:max(hi, lo)]
    b, e = max(begin, 0), max(end, 0)
    if mode == "constant" or (b == 0 and e == 0):
        return [None] * b + [int(c) for c in source] + [None] * e
    if len(source) == 0:
        raise ValueError(f"cannot pad an empty axis in mode '{mode}'")
    if mode == "reflect" and len(source) == 1:
        return [int(source[0])] * (b + 1 + e)
    return [int(c) for c in np.pad(source, (b, e), mode={"edge": "edge", "reflect": "reflect", "wrap": "wrap"}[mode])]


def _pad_infer(node, graph):
    x = graph.tensor(node.inputs[0])
    begin, end, mode, _, value_name = _pad_params(node, graph)
    if value_name and graph.tensor(value_name).dtype != x.dtype:
        raise CodegenError("constant_value has another type than the data", node=node)
    if mode != "constant" and any(n == 0 and (b > 0 or e > 0) for n, b, e in zip(x.shape, begin, end)):
        raise CodegenError(f"cannot pad an empty axis in mode '{mode}'", node=node)
    return [(x.dtype, tuple(n + b + e for n, b, e in zip(x.shape, begin, end)))]


def _pad_evaluate(node, values):
    graph = ValuesGraph(node, values)
    x = values[0]
    begin, end, mode, value, _ = _pad_params(node, graph)
    out = x
    for a in range(x.ndim):
        coords = _pad_coords(x.shape[a], begin[a], end[a], mode)
        taken = np.take(out, [0 if c is None else c for c in coords], axis=a) if x.shape[a] else \
            np.zeros(out.shape[:a] + (len(coords),) + out.shape[a + 1:], x.dtype)
        mask = np.array([c is None for c in coords]).reshape([-1 if d == a else 1 for d in range(x.ndim)])
        out = np.where(mask, np.asarray(value).astype(x.dtype).reshape(-1)[0] if np.size(value) else 0, taken)
    return [out.astype(x.dtype)]


def _pad_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    begin, end, mode, value, value_name = _pad_params(node, ctx.graph)
    fill = f"{ctx.ptr(value_name)}[0]" if value_name else literal(value, x.dtype)
    dims = [(_pad_coords(n, b, e, mode), s) for n, b, e, s in zip(x.shape, begin, end, _strides(x.shape))]
    if ctx.graph.tensor(node.outputs[0]).elements == 0:
        return empty_output(ctx, node.outputs[0])
    return _copy(ctx, node, node.inputs[0], node.outputs[0], dims, fill)


register("Pad", infer=_pad_infer, evaluate=_pad_evaluate, emit=_pad_emit, flops=_free, narrow_floats=True)


# --- Tile, Expand -------------------------------------------------------------------------------

def _repeats(node, graph):
    x = graph.tensor(node.inputs[0])
    repeats = _ints(node, graph, 1, "repeats")
    if repeats is None or len(repeats) != len(x.shape) or any(r < 0 for r in repeats):
        raise CodegenError(f"repeats {repeats} do not fit rank {len(x.shape)}", node=node)
    return repeats


def _tile_check(node, version):
    if version < 6:
        raise CodegenError("Tile-1 (tiles and axis inputs) is not supported", node=node)


def _tile_infer(node, graph):
    input_count(node, 2)
    x = graph.tensor(node.inputs[0])
    return [(x.dtype, tuple(n * r for n, r in zip(x.shape, _repeats(node, graph))))]


def _tile_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    repeats = _repeats(node, ctx.graph)
    dims = []
    for n, r, s in zip(x.shape, repeats, _strides(x.shape)):
        dims += [([0] * r, 0), (range(n), s)]  # the output axis as (repeat, position)
    return _copy(ctx, node, node.inputs[0], node.outputs[0], dims)


register("Tile", infer=_tile_infer, emit=_tile_emit, flops=_free, narrow_floats=True,
         evaluate=lambda node, values: [np.tile(values[0], [int(r) for r in values[1].reshape(-1)])],
         check=_tile_check)


def _expand_shape(node, graph):
    x = graph.tensor(node.inputs[0])
    shape = _ints(node, graph, 1, "shape")
    if shape is None:
        raise CodegenError("the shape input is omitted", node=node)
    rank = max(len(shape), len(x.shape))
    a = (1,) * (rank - len(x.shape)) + tuple(x.shape)
    b = (1,) * (rank - len(shape)) + tuple(shape)
    out = []
    for d, (m, n) in enumerate(zip(a, b)):
        if m != n and m != 1 and n != 1:
            raise CodegenError(f"cannot expand {list(x.shape)} to {shape} (dimension {d})", node=node)
        out.append(m if n == 1 else n)
    return tuple(out)


def _expand_infer(node, graph):
    input_count(node, 2)
    return [(graph.tensor(node.inputs[0]).dtype, _expand_shape(node, graph))]


def _expand_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    out = _expand_shape(node, ctx.graph)
    padded = (1,) * (len(out) - len(x.shape)) + tuple(x.shape)
    strides = _strides(padded)
    dims = [(range(n) if m == n else [0] * n, s) for n, m, s in zip(out, padded, strides)]
    return _copy(ctx, node, node.inputs[0], node.outputs[0], dims)


register("Expand", infer=_expand_infer, emit=_expand_emit, flops=_free, narrow_floats=True,
         evaluate=lambda node, values: [
             np.broadcast_to(values[0], _expand_shape(node, ValuesGraph(node, values))).copy()])


# --- DepthToSpace, SpaceToDepth -----------------------------------------------------------------

def _block(node, graph, to_space):
    x = graph.tensor(node.inputs[0])
    if len(x.shape) != 4:
        raise CodegenError(f"expects a 4-D input, got {x.describe()}", node=node)
    b = attr_int(node, "blocksize")
    mode = node.attrs.get("mode", "DCR")  # SpaceToDepth has it from version 28 on
    if b < 1 or mode not in ("DCR", "CRD"):
        raise CodegenError(f"blocksize {b} / mode {mode} are not valid", node=node)
    n, c, h, w = x.shape
    if to_space and c % (b * b):
        raise CodegenError(f"{c} channels do not divide by blocksize^2 = {b * b}", node=node)
    if not to_space and (h % b or w % b):
        raise CodegenError(f"spatial size {h}x{w} does not divide by blocksize {b}", node=node)
    return b, mode


def _block_views(shape, b, mode, to_space):
    """(input viewed as 6-D, permutation): both ops are a transpose of a 6-D view of the input."""
    n, c, h, w = shape
    if to_space:
        if mode == "DCR":
            return (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
        return (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
    if mode == "DCR":
        return (n, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4)
    return (n, c, h // b, b, w // b, b), (0, 1, 3, 5, 2, 4)


def _make_block(op_type, to_space):
    def infer(node, graph):
        input_count(node, 1)
        x = graph.tensor(node.inputs[0])
        b, _ = _block(node, graph, to_space)
        n, c, h, w = x.shape
        shape = (n, c // (b * b), h * b, w * b) if to_space else (n, c * b * b, h // b, w // b)
        return [(x.dtype, shape)]

    def evaluate(node, values):
        x = values[0]
        b, mode = _block(node, ValuesGraph(node, values), to_space)
        view, perm = _block_views(x.shape, b, mode, to_space)
        out_shape = infer(node, ValuesGraph(node, values))[0][1]
        return [np.ascontiguousarray(np.transpose(x.reshape(view), perm)).reshape(out_shape)]

    def emit(node, ctx):
        x = ctx.graph.tensor(node.inputs[0])
        b, mode = _block(node, ctx.graph, to_space)
        view, perm = _block_views(x.shape, b, mode, to_space)
        strides = _strides(view)
        dims = [(range(view[p]), strides[p]) for p in perm]
        return _copy(ctx, node, node.inputs[0], node.outputs[0], dims)

    register(op_type, infer=infer, evaluate=evaluate, emit=emit, flops=_free, narrow_floats=True)


_make_block("DepthToSpace", True)
_make_block("SpaceToDepth", False)


# --- index-driven ops: GatherElements, GatherND, ScatterElements, ScatterND, OneHot -----------------

def _index_type(node, graph, index, what="indices"):
    tensor = graph.tensor(node.inputs[index])
    if tensor.dtype not in _INDEX_TYPES:
        raise CodegenError(f"{what} must be int32 or int64, got {ir.dtype_name(tensor.dtype)}", node=node)
    return tensor


def _clamped(var, expr, extent, indent="  "):
    """Lines declaring `var`, the run-time index `expr` made non-negative and clamped into [0, extent)."""
    return [f"{indent}std::int64_t {var} = static_cast<std::int64_t>({expr});",
            f"{indent}if ({var} < 0) {var} += {extent};",
            f"{indent}{var} = {var} < 0 ? 0 : ({var} > {extent - 1} ? {extent - 1} : {var});"]


def _loops(extents, body):
    """Nested loops i0, i1, ... over `extents` around `body`."""
    lines = []
    for d, n in enumerate(extents):
        lines.append("  " * d + f"for (std::size_t i{d} = 0; i{d} < {n}; ++i{d}) {{")
    lines += ["  " * len(extents) + line for line in body]
    for d in reversed(range(len(extents))):
        lines.append("  " * d + "}")
    return lines


def _flat(names, shape):
    strides = _strides(shape)
    terms = [n if s == 1 else f"{n} * {s}" for n, s in zip(names, strides) if s]
    return " + ".join(terms) or "0"


def _check_elements_indices(node, graph, data, indices, axis):
    if len(indices.shape) != len(data.shape):
        raise CodegenError(f"indices {indices.describe()} and data {data.describe()} differ in rank", node=node)
    for d, (m, n) in enumerate(zip(indices.shape, data.shape)):
        if d != axis and m > n:
            raise CodegenError(f"indices dimension {d} ({m}) exceeds the data's ({n})", node=node)
    if data.shape[axis] == 0 and indices.elements:
        raise CodegenError(f"axis {axis} of the data is empty", node=node)


def _np_index(indices, extent):
    idx = indices.astype(np.int64)
    return np.clip(np.where(idx < 0, idx + extent, idx), 0, max(extent - 1, 0))


def _gather_elements_infer(node, graph):
    input_count(node, 2)
    data, indices = graph.tensor(node.inputs[0]), _index_type(node, graph, 1)
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(data.shape))
    _check_elements_indices(node, graph, data, indices, axis)
    return [(data.dtype, indices.shape)]


def _gather_elements_evaluate(node, values):
    data, indices = values
    axis = normalize_axis(node, attr_int(node, "axis", 0), data.ndim)
    return [np.take_along_axis(data, _np_index(indices, data.shape[axis]), axis=axis)]


def _gather_elements_emit(node, ctx):
    data, indices = ctx.graph.tensor(node.inputs[0]), ctx.graph.tensor(node.inputs[1])
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(data.shape))
    if indices.elements == 0:
        return empty_output(ctx, node.outputs[0])
    names = [f"i{d}" for d in range(len(indices.shape))]
    strides = _strides(data.shape)
    source = " + ".join([f"{n} * {s}" if s != 1 else n for d, (n, s) in enumerate(zip(names, strides)) if d != axis]
                        + [f"at * {strides[axis]}" if strides[axis] != 1 else "at"])
    flat = _flat(names, indices.shape)
    src, idx, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0])
    body = _clamped("at", f"{idx}[{flat}]", data.shape[axis], "") + [f"{dst}[{flat}] = {src}[{source}];"]
    return _loops(indices.shape, body)


register("GatherElements", infer=_gather_elements_infer, evaluate=_gather_elements_evaluate,
         emit=_gather_elements_emit, flops=_free, narrow_floats=True)


def _scatter_reduction(node):
    reduction = node.attrs.get("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        raise CodegenError(f"reduction '{reduction}' is not supported", node=node)
    return reduction


def _combine(reduction, target, value, floating):
    if reduction == "none":
        return f"{target} = {value};"
    if reduction == "add":
        return f"{target} += {value};"
    if reduction == "mul":
        return f"{target} *= {value};"
    better = ">" if reduction == "max" else "<"
    nan = f" || {value} != {value}" if floating else ""
    return f"if ({value} {better} {target}{nan}) {target} = {value};"


def _np_combine(reduction, out, where, values):
    if reduction == "none":
        for w, v in zip(where, values):
            out[w] = v
    else:
        fn = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction]
        for w, v in zip(where, values):
            out[w] = fn(out[w], v)


def _scatter_elements_infer(node, graph):
    input_count(node, 3)
    data, indices = graph.tensor(node.inputs[0]), _index_type(node, graph, 1)
    updates = graph.tensor(node.inputs[2])
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(data.shape))
    _check_elements_indices(node, graph, data, indices, axis)
    if updates.shape != indices.shape or updates.dtype != data.dtype:
        raise CodegenError(f"updates {updates.describe()} must match the indices' shape and the data's type",
                           node=node)
    if _scatter_reduction(node) != "none" and data.dtype == 9:
        raise CodegenError("reductions over bool data are not supported", node=node)
    return [(data.dtype, data.shape)]


def _scatter_elements_evaluate(node, values):
    data, indices, updates = values
    axis = normalize_axis(node, attr_int(node, "axis", 0), data.ndim)
    out = data.copy()
    idx = _np_index(indices, data.shape[axis])
    where = []
    for pos in np.ndindex(*indices.shape):
        target = list(pos)
        target[axis] = int(idx[pos])
        where.append(tuple(target))
    _np_combine(_scatter_reduction(node), out, where, [updates[pos] for pos in np.ndindex(*indices.shape)])
    return [out]


def _scatter_elements_emit(node, ctx):
    data, indices = ctx.graph.tensor(node.inputs[0]), ctx.graph.tensor(node.inputs[1])
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(data.shape))
    dst = ctx.ptr(node.outputs[0])
    if data.elements == 0:
        return empty_output(ctx, node.outputs[0])
    lines = [ctx.copy(dst, ctx.ptr(node.inputs[0]), data.nbytes)]
    if indices.elements == 0:
        return lines
    names = [f"i{d}" for d in range(len(indices.shape))]
    strides = _strides(data.shape)
    target = " + ".join([f"{n} * {s}" if s != 1 else n for d, (n, s) in enumerate(zip(names, strides)) if d != axis]
                        + [f"at * {strides[axis]}" if strides[axis] != 1 else "at"])
    flat = _flat(names, indices.shape)
    idx, upd = ctx.ptr(node.inputs[1]), ctx.ptr(node.inputs[2])
    body = _clamped("at", f"{idx}[{flat}]", data.shape[axis], "")
    body.append(_combine(_scatter_reduction(node), f"{dst}[{target}]", f"{upd}[{flat}]", data.dtype in (1, 11)))
    return lines + _loops(indices.shape, body)


register("ScatterElements", infer=_scatter_elements_infer, evaluate=_scatter_elements_evaluate,
         emit=_scatter_elements_emit, flops=_free)
# Scatter (opset 9 and 10, deprecated by 11) is ScatterElements without reductions.
register("Scatter", infer=_scatter_elements_infer, evaluate=_scatter_elements_evaluate,
         emit=_scatter_elements_emit, flops=_free)


def _nd_params(node, graph, batch_dims=0):
    data, indices = graph.tensor(node.inputs[0]), _index_type(node, graph, 1)
    if not indices.shape:
        raise CodegenError("indices must have rank 1 or more", node=node)
    k = indices.shape[-1]
    if batch_dims < 0 or batch_dims >= min(len(data.shape), len(indices.shape)) and batch_dims:
        raise CodegenError(f"batch_dims {batch_dims} is out of range", node=node)
    if batch_dims + k > len(data.shape) or tuple(indices.shape[:batch_dims]) != tuple(data.shape[:batch_dims]):
        raise CodegenError(f"indices {indices.describe()} do not address data {data.describe()} "
                           f"(batch_dims {batch_dims})", node=node)
    if any(data.shape[batch_dims + t] == 0 for t in range(k)) and indices.elements:
        raise CodegenError("indexes an empty axis", node=node)
    return data, indices, k


def _gather_nd_infer(node, graph):
    input_count(node, 2)
    b = attr_int(node, "batch_dims", 0)
    data, indices, k = _nd_params(node, graph, b)
    return [(data.dtype, tuple(indices.shape[:-1]) + tuple(data.shape[b + k:]))]


def _gather_nd_evaluate(node, values):
    data, indices = values
    b = attr_int(node, "batch_dims", 0)
    k = indices.shape[-1]
    batch = int(np.prod(data.shape[:b]))
    d = data.reshape((batch,) + data.shape[b:])
    idx = indices.reshape((batch, -1, k)).astype(np.int64)
    out = []
    for bi in range(batch):
        for row in idx[bi]:
            pos = tuple(int(_np_index(np.asarray(row[t]), data.shape[b + t])) for t in range(k))
            out.append(d[bi][pos])
    shape = tuple(indices.shape[:-1]) + tuple(data.shape[b + k:])
    return [np.asarray(out, dtype=data.dtype).reshape(shape)]


def _nd_offset_lines(idx, k, data_shape, b, row_expr):
    """Lines computing `at`, the element offset (within one batch) of the slice that index row `row_expr` picks."""
    strides = _strides(data_shape)
    lines = ["std::int64_t at = 0;"]
    for t in range(k):
        lines += ["{"] + _clamped("v", f"{idx}[{row_expr} + {t}]" if t else f"{idx}[{row_expr}]", data_shape[b + t])
        lines += [f"  at += v * {strides[b + t]};", "}"]
    return lines


def _gather_nd_emit(node, ctx):
    b = attr_int(node, "batch_dims", 0)
    data, indices, k = _nd_params(node, ctx.graph, b)
    if ctx.graph.tensor(node.outputs[0]).elements == 0:
        return empty_output(ctx, node.outputs[0])
    batch = int(np.prod(data.shape[:b]))
    rows = int(np.prod(indices.shape[b:-1]))
    block = int(np.prod(data.shape[b + k:]))
    per_batch = int(np.prod(data.shape[b:]))
    src, idx, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0])
    body = _nd_offset_lines(idx, k, data.shape, b, f"(i0 * {rows} + i1) * {k}")
    body += [f"for (std::size_t j = 0; j < {block}; ++j) {{",
             f"  {dst}[(i0 * {rows} + i1) * {block} + j] = {src}[i0 * {per_batch} + static_cast<std::size_t>(at) + j];",
             "}"]
    return _loops([batch, rows], body)


register("GatherND", infer=_gather_nd_infer, evaluate=_gather_nd_evaluate, emit=_gather_nd_emit, flops=_free,
         narrow_floats=True)


def _scatter_nd_infer(node, graph):
    input_count(node, 3)
    data, indices, k = _nd_params(node, graph)
    updates = graph.tensor(node.inputs[2])
    expected = tuple(indices.shape[:-1]) + tuple(data.shape[k:])
    if updates.shape != expected or updates.dtype != data.dtype:
        raise CodegenError(f"updates {updates.describe()} must be {ir.dtype_name(data.dtype)}{list(expected)}",
                           node=node)
    if _scatter_reduction(node) != "none" and data.dtype == 9:
        raise CodegenError("reductions over bool data are not supported", node=node)
    return [(data.dtype, data.shape)]


def _scatter_nd_evaluate(node, values):
    data, indices, updates = values
    k = indices.shape[-1]
    out = data.copy()
    rows = indices.reshape(-1, k)
    ups = updates.reshape((rows.shape[0],) + data.shape[k:])
    where = [tuple(int(_np_index(np.asarray(r[t]), data.shape[t])) for t in range(k)) for r in rows]
    _np_combine(_scatter_reduction(node), out, where, list(ups))
    return [out]


def _scatter_nd_emit(node, ctx):
    data, indices, k = _nd_params(node, ctx.graph)
    dst = ctx.ptr(node.outputs[0])
    if data.elements == 0:
        return empty_output(ctx, node.outputs[0])
    lines = [ctx.copy(dst, ctx.ptr(node.inputs[0]), data.nbytes)]
    rows = int(np.prod(indices.shape[:-1]))
    block = int(np.prod(data.shape[k:]))
    if rows == 0 or block == 0:
        return lines
    idx, upd = ctx.ptr(node.inputs[1]), ctx.ptr(node.inputs[2])
    body = _nd_offset_lines(idx, k, data.shape, 0, f"i0 * {k}")
    body += [f"for (std::size_t j = 0; j < {block}; ++j) {{",
             "  " + _combine(_scatter_reduction(node), f"{dst}[static_cast<std::size_t>(at) + j]",
                             f"{upd}[i0 * {block} + j]", data.dtype in (1, 11)),
             "}"]
    return lines + _loops([rows], body)


register("ScatterND", infer=_scatter_nd_infer, evaluate=_scatter_nd_evaluate, emit=_scatter_nd_emit, flops=_free)


# --- CumSum, CumProd, Trilu, ReverseSequence, OneHot, Range, Compress ------------------------------

_NUMERIC = (1, 11, 2, 3, 4, 5, 6, 7, 12, 13)


def _cumsum_axis(node, graph):
    """The axis, or None when it is known only at run time."""
    x = graph.tensor(node.inputs[0])
    if not graph.tensor(node.inputs[1]).is_constant:
        if graph.tensor(node.inputs[1]).elements != 1 or graph.tensor(node.inputs[1]).dtype not in _INDEX_TYPES:
            raise CodegenError("axis must be one int32 or int64", node=node)
        return None
    axis = _ints(node, graph, 1, "axis")
    if axis is None or len(axis) != 1:
        raise CodegenError("axis must be one integer", node=node)
    return normalize_axis(node, axis[0], len(x.shape))


def _cumsum_infer(node, graph):
    input_count(node, 2)
    x = graph.tensor(node.inputs[0])
    if x.dtype not in _NUMERIC:
        raise CodegenError(f"input is {ir.dtype_name(x.dtype)}; {node.op_type} supports numbers", node=node)
    _cumsum_axis(node, graph)
    return [(x.dtype, x.shape)]


def _cumsum_evaluate(node, values):
    x = values[0]
    axis = _cumsum_axis(node, ValuesGraph(node, values))
    y = np.flip(x, axis) if attr_int(node, "reverse", 0) else x
    product = node.op_type == "CumProd"
    out = (np.cumprod if product else np.cumsum)(y, axis=axis, dtype=x.dtype)
    if attr_int(node, "exclusive", 0):
        first = (np.ones_like if product else np.zeros_like)(np.take(out, [0], axis=axis))
        out = np.concatenate([first, np.delete(out, -1, axis=axis)], axis=axis) \
            if x.shape[axis] else out
    return [np.ascontiguousarray(np.flip(out, axis) if attr_int(node, "reverse", 0) else out)]


def _cumsum_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    axis = _cumsum_axis(node, ctx.graph)
    if x.elements == 0:
        return empty_output(ctx, node.outputs[0])
    if axis is not None:
        return _cumsum_lines(node, ctx, axis)
    # The axis comes at run time: one loop nest per axis (negative counts from the end; out of
    # range is clamped), chosen by the value.
    rank = len(x.shape)
    lines = _clamped("at", f"{ctx.ptr(node.inputs[1])}[0]", rank, "")
    for a in range(rank):
        lines.append(("if" if a == 0 else "} else if") + f" (at == {a}) {{")
        lines += ["  " + line for line in _cumsum_lines(node, ctx, a)]
    return lines + ["}"]


def _cumsum_lines(node, ctx, axis):
    x = ctx.graph.tensor(node.inputs[0])
    outer, extent, inner = int(np.prod(x.shape[:axis])), x.shape[axis], int(np.prod(x.shape[axis + 1:]))
    ctype = ir.cpp_type(x.dtype)
    product = node.op_type == "CumProd"
    # A product of integers wraps around in 64-bit unsigned arithmetic, as numpy's does in the
    # element type once truncated (a signed product could overflow, which C++ leaves undefined).
    acc = "double" if x.dtype in (1, 11) else ("std::uint64_t" if product else ctype)
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    position = f"{extent - 1} - o" if attr_int(node, "reverse", 0) else "o"
    at = f"i * {extent * inner} + ({position}) * {inner} + j"
    fold = f"acc *= static_cast<{acc}>({src}[{at}]);" if product else f"acc += {src}[{at}];"
    if attr_int(node, "exclusive", 0):
        step = [f"{dst}[{at}] = static_cast<{ctype}>(acc);", fold]
    else:
        step = [fold, f"{dst}[{at}] = static_cast<{ctype}>(acc);"]
    return ([f"for (std::size_t i = 0; i < {outer}; ++i) {{",
         f"  for (std::size_t j = 0; j < {inner}; ++j) {{",
         f"    {acc} acc = {1 if product else 0};",
         f"    for (std::size_t o = 0; o < {extent}; ++o) {{"]
        + ["      " + line for line in step]
        + ["    }", "  }", "}"])


register("CumSum", infer=_cumsum_infer, evaluate=_cumsum_evaluate, emit=_cumsum_emit)
register("CumProd", infer=_cumsum_infer, evaluate=_cumsum_evaluate, emit=_cumsum_emit)


def _trilu_k(node, graph):
    """k, or None when it is known only at run time."""
    if len(node.inputs) > 1 and node.inputs[1] and not graph.tensor(node.inputs[1]).is_constant:
        if graph.tensor(node.inputs[1]).dtype != 7 or graph.tensor(node.inputs[1]).elements != 1:
            raise CodegenError("k must be one int64", node=node)
        return None
    k = _ints(node, graph, 1, "k")
    return 0 if k is None else k[0]


def _trilu_infer(node, graph):
    input_count(node, 1, 2)
    x = graph.tensor(node.inputs[0])
    if len(x.shape) < 2:
        raise CodegenError(f"expects rank 2 or more, got {x.describe()}", node=node)
    _trilu_k(node, graph)
    return [(x.dtype, x.shape)]


def _trilu_evaluate(node, values):
    k = _trilu_k(node, ValuesGraph(node, values))
    x = values[0]
    return [np.triu(x, k) if attr_int(node, "upper", 1) else np.tril(x, k)]


def _trilu_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    if x.elements == 0:
        return empty_output(ctx, node.outputs[0])
    k = _trilu_k(node, ctx.graph)
    rows, cols = x.shape[-2:]
    batch = int(np.prod(x.shape[:-2]))
    # Keeps element (i1, j) when j - i1 >= k (upper) or <= k (lower), in unsigned arithmetic.
    upper = attr_int(node, "upper", 1)
    if k is None:  # k comes at run time: compare in signed arithmetic
        prologue = [f"const std::int64_t at = {ctx.ptr(node.inputs[1])}[0];"]
        column, row = "static_cast<std::int64_t>(j)", "static_cast<std::int64_t>(i1) + at"
    else:
        prologue = []
        column, row = ("j", f"i1 + {k}") if k >= 0 else (f"j + {-k}", "i1")
    keep = f"{column} {'>=' if upper else '<='} {row}"
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    at = f"(i0 * {rows} + i1) * {cols} + j"
    return prologue + _loops([batch, rows], [
        f"for (std::size_t j = 0; j < {cols}; ++j) {{",
        f"  {dst}[{at}] = {keep} ? {src}[{at}] : {literal(0, x.dtype)};",
        "}"])


register("Trilu", infer=_trilu_infer, evaluate=_trilu_evaluate, emit=_trilu_emit, flops=_free, narrow_floats=True)


def _reverse_sequence_axes(node, graph):
    x = graph.tensor(node.inputs[0])
    lens = _index_type(node, graph, 1, "sequence_lens")
    if len(x.shape) < 2:
        raise CodegenError(f"expects rank 2 or more, got {x.describe()}", node=node)
    batch_axis = normalize_axis(node, attr_int(node, "batch_axis", 1), len(x.shape))
    time_axis = normalize_axis(node, attr_int(node, "time_axis", 0), len(x.shape))
    if {batch_axis, time_axis} != {0, 1} or lens.shape != (x.shape[batch_axis],):
        raise CodegenError("batch_axis and time_axis must be 0 and 1, and sequence_lens one per batch", node=node)
    return batch_axis, time_axis


def _reverse_sequence_infer(node, graph):
    input_count(node, 2)
    _reverse_sequence_axes(node, graph)
    x = graph.tensor(node.inputs[0])
    return [(x.dtype, x.shape)]


def _reverse_sequence_evaluate(node, values):
    x, lens = values
    batch_axis, time_axis = _reverse_sequence_axes(node, ValuesGraph(node, values))
    out = x.copy()
    steps = x.shape[time_axis]
    for b, n in enumerate(lens.reshape(-1)):
        n = int(min(max(n, 0), steps))
        index = [slice(None)] * x.ndim
        index[batch_axis] = b
        index[time_axis] = slice(0, n)
        out[tuple(index)] = np.flip(x[tuple(index)], axis=time_axis - (batch_axis < time_axis))
    return [out]


def _reverse_sequence_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    batch_axis, time_axis = _reverse_sequence_axes(node, ctx.graph)
    if x.elements == 0:
        return empty_output(ctx, node.outputs[0])
    batches, steps = x.shape[batch_axis], x.shape[time_axis]
    inner = int(np.prod(x.shape[2:]))
    stride_b, stride_t = (inner, batches * inner) if time_axis == 0 else (steps * inner, inner)
    src, lens, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0])
    # Sequence lengths come at run time: clamped into [0, time steps].
    return _loops([batches], [
        f"std::int64_t at = static_cast<std::int64_t>({lens}[i0]);",
        f"at = at < 0 ? 0 : (at > {steps} ? {steps} : at);",
        f"for (std::size_t o = 0; o < {steps}; ++o) {{",
        "  const std::size_t v = static_cast<std::int64_t>(o) < at ? static_cast<std::size_t>(at) - 1 - o : o;",
        f"  for (std::size_t j = 0; j < {inner}; ++j) {{",
        f"    {dst}[i0 * {stride_b} + o * {stride_t} + j] = {src}[i0 * {stride_b} + v * {stride_t} + j];",
        "  }",
        "}"])


register("ReverseSequence", infer=_reverse_sequence_infer, evaluate=_reverse_sequence_evaluate,
         emit=_reverse_sequence_emit, flops=_free, narrow_floats=True)


def _one_hot_params(node, graph):
    indices = graph.tensor(node.inputs[0])
    if indices.dtype not in _NUMERIC:
        raise CodegenError(f"indices are {ir.dtype_name(indices.dtype)}; OneHot needs numbers", node=node)
    depth = constant_input(node, graph, 1, "depth")
    if depth is None or np.asarray(depth).size != 1:
        raise CodegenError("depth must be one number", node=node)
    depth = int(np.asarray(depth).reshape(-1)[0])
    if depth < 1:
        raise CodegenError(f"depth {depth} must be positive", node=node)
    values = graph.tensor(node.inputs[2])
    if values.elements != 2:
        raise CodegenError(f"values must hold two elements (off, on), got {values.describe()}", node=node)
    rank = len(indices.shape) + 1
    axis = attr_int(node, "axis", -1)
    if not -rank <= axis < rank:
        raise CodegenError(f"axis {axis} is out of range for rank {rank}", node=node)
    return depth, axis + rank if axis < 0 else axis, values.dtype


def _one_hot_infer(node, graph):
    input_count(node, 3)
    depth, axis, dtype = _one_hot_params(node, graph)
    shape = graph.tensor(node.inputs[0]).shape
    return [(dtype, tuple(shape[:axis]) + (depth,) + tuple(shape[axis:]))]


def _one_hot_evaluate(node, values):
    indices, _, pair = values
    depth, axis, _ = _one_hot_params(node, ValuesGraph(node, values))
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    hot = np.expand_dims(idx, axis) == np.arange(depth).reshape([-1 if d == axis else 1 for d in range(idx.ndim + 1)])
    pair = pair.reshape(-1)
    return [np.where(hot, pair[1], pair[0]).astype(pair.dtype)]


def _one_hot_emit(node, ctx):
    depth, axis, _ = _one_hot_params(node, ctx.graph)
    shape = ctx.graph.tensor(node.inputs[0]).shape
    if ctx.graph.tensor(node.outputs[0]).elements == 0:
        return empty_output(ctx, node.outputs[0])
    outer, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    idx, pair, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[2]), ctx.ptr(node.outputs[0])
    # An index out of [-depth, depth) matches no position: the whole row is 'off'.
    return _loops([outer, depth], [
        f"for (std::size_t j = 0; j < {inner}; ++j) {{",
        f"  std::int64_t at = static_cast<std::int64_t>({idx}[i0 * {inner} + j]);",
        f"  if (at < 0) at += {depth};",
        f"  {dst}[(i0 * {depth} + i1) * {inner} + j] = at == static_cast<std::int64_t>(i1) ? {pair}[1] : {pair}[0];",
        "}"])


register("OneHot", infer=_one_hot_infer, evaluate=_one_hot_evaluate, emit=_one_hot_emit, flops=_free)


def _range_value(node, graph):
    start, limit, delta = (constant_input(node, graph, i, "Range's inputs") for i in range(3))
    dtype = graph.tensor(node.inputs[0]).dtype
    if dtype not in _NUMERIC:
        raise CodegenError(f"Range of {ir.dtype_name(dtype)} is not supported", node=node)
    start, limit, delta = (np.asarray(v).reshape(-1)[0] for v in (start, limit, delta))
    if delta == 0:
        raise CodegenError("delta is 0", node=node)
    count = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    if count > ir.MAX_ELEMENTS:
        raise CodegenError(f"Range would have {count} elements", node=node)
    typed = ir.numpy_type(dtype)
    value = (np.asarray(start, typed) + np.arange(count).astype(typed) * np.asarray(delta, typed)).astype(typed)
    return dtype, value


def _range_infer(node, graph):
    input_count(node, 3)
    dtype, value = _range_value(node, graph)
    return [(dtype, value.shape, value)]


register("Range", infer=_range_infer)


def _compress_params(node, graph):
    x = graph.tensor(node.inputs[0])
    condition = constant_input(node, graph, 1, "condition")
    keep = [int(i) for i in np.nonzero(np.asarray(condition).reshape(-1))[0]]
    axis = node.attrs.get("axis")
    extent = x.elements if axis is None else x.shape[normalize_axis(node, attr_int(node, "axis"), len(x.shape))]
    if keep and keep[-1] >= extent:
        raise CodegenError(f"condition selects position {keep[-1]} of an axis of {extent}", node=node)
    return (None if axis is None else normalize_axis(node, axis, len(x.shape))), keep


def _compress_infer(node, graph):
    input_count(node, 2)
    x = graph.tensor(node.inputs[0])
    axis, keep = _compress_params(node, graph)
    if axis is None:
        return [(x.dtype, (len(keep),))]
    return [(x.dtype, x.shape[:axis] + (len(keep),) + x.shape[axis + 1:])]


def _compress_evaluate(node, values):
    axis, keep = _compress_params(node, ValuesGraph(node, values))
    x = values[0]
    return [np.take(x.reshape(-1) if axis is None else x, keep, axis=0 if axis is None else axis)]


def _compress_emit(node, ctx):
    # The condition is a constant (its count decides the shape): a gather of fixed positions.
    x = ctx.graph.tensor(node.inputs[0])
    axis, keep = _compress_params(node, ctx.graph)
    if axis is None:
        dims = [(keep, 1)]
    else:
        strides = _strides(x.shape)
        dims = [(range(n), s) for n, s in zip(x.shape, strides)]
        dims[axis] = (keep, strides[axis])
    return _copy(ctx, node, node.inputs[0], node.outputs[0], dims)


register("Compress", infer=_compress_infer, evaluate=_compress_evaluate, emit=_compress_emit, flops=_free,
         narrow_floats=True)
