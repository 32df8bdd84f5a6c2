"""Ops that move or rename data: views, Transpose, Concat, Gather, and shape computations.

Views (Reshape, Flatten, Squeeze, Unsqueeze, Identity) cost nothing at run time: the output is
the input's bytes under a new shape. Shape, Constant, Cast, Slice and friends usually compute
shapes; once input shapes are bound they fold away at generation time, and the build fails
clearly when one of them is left with data that is only known at run time.
"""

import math

import numpy as np

from pure_model_codegen import cpp, ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_int, attr_ints, input_count, normalize_axis, register


def constant_input(node, graph, index, what, integer=False, required=False):
    """The value of input `index`, which must be a constant; None if omitted (unless `required`)."""
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name:
        if required:
            raise CodegenError(f"{what} (input {index}) is required", node=node)
        return None
    tensor = graph.tensor(name)
    if not tensor.is_constant:
        raise CodegenError(
            f"{what} ('{name}') must be known at generation time, but it depends on the model's inputs", node=node
        )
    if integer and tensor.value.dtype.kind not in "iu":
        raise CodegenError(f"{what} ('{name}') must be an integer tensor, got {ir.dtype_name(tensor.dtype)}",
                           node=node)
    return tensor.value


# --- views -------------------------------------------------------------------------------------

def _reshape_target(node, graph):
    x = graph.tensor(node.inputs[0])
    if node.opset < 5:
        shape = attr_ints(node, "shape")
        if shape is None:
            raise CodegenError("required attribute 'shape' is missing", node=node)
    else:
        input_count(node, 2)
        shape = [int(v) for v in np.asarray(constant_input(node, graph, 1, "shape", integer=True,
                                                              required=True)).reshape(-1)]
    allow_zero = attr_int(node, "allowzero", 0)
    out = []
    for i, d in enumerate(shape):
        if d == 0 and not allow_zero:
            if i >= len(x.shape):
                raise CodegenError(f"shape {shape} copies dimension {i}, but the input has rank {len(x.shape)}", node=node)
            out.append(x.shape[i])
        else:
            out.append(d)
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise CodegenError(f"shape {shape} is invalid (at most one -1, no other negatives)", node=node)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or x.elements % known:
            raise CodegenError(f"cannot reshape {list(x.shape)} to {shape}", node=node)
        out[out.index(-1)] = x.elements // known
    if math.prod(out) != x.elements:
        raise CodegenError(f"cannot reshape {list(x.shape)} ({x.elements} elements) to {out}", node=node)
    return tuple(out)


def _flatten_target(node, graph):
    x = graph.tensor(node.inputs[0])
    axis = attr_int(node, "axis", 1)
    rank = len(x.shape)
    if not -rank <= axis <= rank:
        raise CodegenError(f"axis {axis} is out of range for rank {rank}", node=node)
    axis = axis + rank if axis < 0 else axis
    return (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


def _axes(node, graph):
    if node.opset < 13:
        return attr_ints(node, "axes")
    value = constant_input(node, graph, 1, "axes", integer=True)
    return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def _squeeze_target(node, graph):
    x = graph.tensor(node.inputs[0])
    axes = _axes(node, graph)
    rank = len(x.shape)
    if axes is None:
        return tuple(d for d in x.shape if d != 1)
    axes = {normalize_axis(node, a, rank) for a in axes}
    for a in axes:
        if x.shape[a] != 1:
            raise CodegenError(f"cannot squeeze axis {a} of size {x.shape[a]}", node=node)
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _unsqueeze_target(node, graph):
    x = graph.tensor(node.inputs[0])
    axes = _axes(node, graph)
    if not axes:
        raise CodegenError("axes are required", node=node)
    rank = len(x.shape) + len(axes)
    axes = sorted(normalize_axis(node, a, rank) for a in axes)
    if len(set(axes)) != len(axes):
        raise CodegenError(f"axes {axes} repeat", node=node)
    dims = iter(x.shape)
    return tuple(1 if i in axes else next(dims) for i in range(rank))


def _make_view(op_type, target):
    def infer(node, graph):
        x = graph.tensor(node.inputs[0])
        return [(x.dtype, target(node, graph) if target else x.shape)]

    def evaluate(node, values):
        return [values[0].reshape(target(node, ValuesGraph(node, values)) if target else values[0].shape)]

    register(op_type, infer=infer, evaluate=evaluate, view=True, narrow_floats=True)


class ValuesGraph:
    """Lets the shape helpers, written against an ir.Graph, read folded numpy values: the input
    tensors of a node being folded, by name."""

    def __init__(self, node, values):
        self._tensors = {}
        for name, value in zip(node.inputs, values):
            if name and value is not None:
                arr = np.asarray(value)
                self._tensors[name] = ir.Tensor(name, ir.dtype_of_numpy(arr.dtype), arr.shape, arr)

    def tensor(self, name):
        return self._tensors[name]


_make_view("Reshape", _reshape_target)
_make_view("Flatten", _flatten_target)
_make_view("Squeeze", _squeeze_target)
_make_view("Unsqueeze", _unsqueeze_target)
_make_view("Identity", None)


# --- data movement -----------------------------------------------------------------------------

def _perm(node, rank):
    perm = attr_ints(node, "perm") or list(reversed(range(rank)))
    if sorted(perm) != list(range(rank)):
        raise CodegenError(f"perm {perm} is not a permutation of 0..{rank - 1}", node=node)
    return perm


def _transpose_infer(node, graph):
    input_count(node, 1)
    x = graph.tensor(node.inputs[0])
    return [(x.dtype, tuple(x.shape[p] for p in _perm(node, len(x.shape))))]


# A transpose of the last two axes (after merging) at least this large, both axes at least this
# long, runs in square tiles: walking the output in order would read the input a column at a time,
# one cache line per element; a tile reads and writes whole lines. 16 x 16 where both extents are
# multiples of 16, else 8 x 8 (measured on 512x256, 6400x24, 64x64: 3 to 6 times faster).
_TILED_TRANSPOSE_ELEMENTS = 4096
_TILED_TRANSPOSE_EXTENT = 16


def _transpose_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    perm = _perm(node, len(x.shape))
    out_shape = [x.shape[p] for p in perm]
    in_strides = [int(np.prod(x.shape[d + 1:])) for d in range(len(x.shape))]
    # Walk the output in order; each output axis steps the input by the stride of its source axis.
    # Output axes that step through the input together merge into one loop.
    dims = []
    for extent, stride in ((out_shape[i], in_strides[perm[i]]) for i in range(len(perm)) if out_shape[i] != 1):
        if dims and dims[-1][1] == extent * stride:
            dims[-1] = (dims[-1][0] * extent, stride)
        else:
            dims.append((extent, stride))
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    if not dims:
        return [f"{dst}[0] = {src}[0];"]
    names = [f"i{d}" for d in range(len(dims))]
    src_index = " + ".join(f"{name} * {stride}" for name, (_, stride) in zip(names, dims))
    out_index = " + ".join(
        f"{name} * {int(np.prod([e for e, _ in dims[d + 1:]]))}" for d, name in enumerate(names))
    body = [f"{dst}[{out_index}] = {src}[{src_index}];"]
    tiled = (len(dims) >= 2 and dims[-2][1] == 1 and dims[-1][1] != 1
             and min(dims[-2][0], dims[-1][0]) >= _TILED_TRANSPOSE_EXTENT
             and dims[-2][0] * dims[-1][0] >= _TILED_TRANSPOSE_ELEMENTS)
    lines = []
    loops = dims[:-2] if tiled else dims
    for depth, (extent, _) in enumerate(loops):
        lines.append("  " * depth + f"for (std::size_t {names[depth]} = 0; {names[depth]} < {extent}; ++{names[depth]}) {{")
    depth = len(loops)
    if tiled:
        tile = 16 if dims[-2][0] % 16 == 0 and dims[-1][0] % 16 == 0 else 8
        tile_names = [f"i{len(dims)}", f"i{len(dims) + 1}"]  # the first index of the tile along each
        for name, (extent, _) in zip(tile_names, dims[-2:]):
            lines.append("  " * depth + f"for (std::size_t {name} = 0; {name} < {extent}; {name} += {tile}) {{")
            depth += 1
        for name, tile_name, (extent, _) in zip(names[-2:], tile_names, dims[-2:]):
            end = f"{tile_name} + {tile}" if extent % tile == 0 else f"({tile_name} + {tile} < {extent} ? {tile_name} + {tile} : {extent})"
            lines.append("  " * depth + f"for (std::size_t {name} = {tile_name}; {name} < {end}; ++{name}) {{")
            depth += 1
    lines += ["  " * depth + line for line in body]
    for d in reversed(range(depth)):
        lines.append("  " * d + "}")
    return lines


register(
    "Transpose",
    infer=_transpose_infer,
    evaluate=lambda node, values: [np.ascontiguousarray(np.transpose(values[0], _perm(node, values[0].ndim)))],
    emit=_transpose_emit,
    flops=lambda node, graph: 0,
    narrow_floats=True,
)


def _concat_axis(node, graph):
    tensors = [graph.tensor(n) for n in node.inputs if n]
    if not tensors:
        raise CodegenError("has no inputs (every input name is empty)", node=node)
    rank = len(tensors[0].shape)
    axis = normalize_axis(node, attr_int(node, "axis"), rank)
    return tensors, axis


def _concat_infer(node, graph):
    input_count(node, 1, 1 << 20)
    tensors, axis = _concat_axis(node, graph)
    first = tensors[0]
    for t in tensors[1:]:
        if t.dtype != first.dtype:
            raise CodegenError(f"input '{t.name}' is {ir.dtype_name(t.dtype)}, '{first.name}' is "
                               f"{ir.dtype_name(first.dtype)}", node=node)
        if len(t.shape) != len(first.shape) or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise CodegenError(f"input shapes {list(first.shape)} and {list(t.shape)} differ off axis {axis}",
                               node=node)
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in tensors)
    return [(first.dtype, tuple(shape))]


def _concat_emit(node, ctx):
    tensors, axis = _concat_axis(node, ctx.graph)
    out = ctx.graph.tensor(node.outputs[0])
    outer = int(np.prod(out.shape[:axis]))
    item = np.dtype(ir.numpy_type(out.dtype)).itemsize
    out_row = int(np.prod(out.shape[axis:])) * item
    dst = ctx.ptr(node.outputs[0])
    lines = [f"for (std::size_t o = 0; o < {outer}; ++o) {{",
             f"  unsigned char* row = reinterpret_cast<unsigned char*>({dst}) + o * {out_row};"]
    offset = 0
    for t in tensors:
        row = int(np.prod(t.shape[axis:])) * item
        if row:
            lines.append("  " + ctx.copy(f"row + {offset}", f"{ctx.bytes_of(ctx.ptr(t.name))} + o * {row}", row))
        offset += row
    lines.append("}")
    return lines


register(
    "Concat",
    infer=_concat_infer,
    evaluate=lambda node, values: [np.concatenate(values, axis=attr_int(node, "axis"))],
    emit=_concat_emit,
    flops=lambda node, graph: 0,
    narrow_floats=True,
)


def _gather_infer(node, graph):
    input_count(node, 2)
    data, indices = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
    if indices.dtype not in (6, 7):
        raise CodegenError(f"indices must be int32 or int64, got {ir.dtype_name(indices.dtype)}", node=node)
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(data.shape))
    if indices.is_constant:
        bad = (indices.value < -data.shape[axis]) | (indices.value >= data.shape[axis])
        if bad.any():
            raise CodegenError(f"index {int(indices.value[bad].flat[0])} is out of range for axis {axis} "
                               f"of size {data.shape[axis]}", node=node)
    return [(data.dtype, tuple(data.shape[:axis]) + tuple(indices.shape) + tuple(data.shape[axis + 1:]))]


def _gather_evaluate(node, values):
    return [np.take(values[0], values[1].astype(np.int64), axis=attr_int(node, "axis", 0))]


def _gather_emit(node, ctx):
    data = ctx.graph.tensor(node.inputs[0])
    axis = normalize_axis(node, attr_int(node, "axis", 0), len(data.shape))
    item = np.dtype(ir.numpy_type(data.dtype)).itemsize
    outer = int(np.prod(data.shape[:axis]))
    extent = data.shape[axis]
    block = int(np.prod(data.shape[axis + 1:])) * item
    indices_tensor = ctx.graph.tensor(node.inputs[1])
    if ctx.graph.tensor(node.outputs[0]).elements == 0:
        return [f"(void){ctx.ptr(node.outputs[0])};  // The output is empty: nothing to copy."]
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    count = indices_tensor.elements
    if indices_tensor.is_constant:
        flat = [int(i) % extent for i in np.asarray(indices_tensor.value).reshape(-1)]
        index = f"{ctx.int_table(node, 'indices', flat)}[j]"
        pick = []
    elif extent == 0:
        raise CodegenError(f"gathers from axis {axis}, which is empty", node=node)
    else:
        # Indices known only at run time: negative ones count from the end; out of range ones
        # are clamped into the axis (ONNX calls them an error; this must not read out of bounds).
        pick = [f"    std::int64_t at = static_cast<std::int64_t>({ctx.ptr(node.inputs[1])}[j]);",
                f"    if (at < 0) at += {extent};",
                f"    at = at < 0 ? 0 : (at > {extent - 1} ? {extent - 1} : at);"]
        index = "static_cast<std::size_t>(at)"
    return [
        f"for (std::size_t o = 0; o < {outer}; ++o) {{",
        f"  for (std::size_t j = 0; j < {count}; ++j) {{",
    ] + pick + [
        "    " + ctx.copy(f"reinterpret_cast<unsigned char*>({dst}) + (o * {count} + j) * {block}",
                         f"{ctx.bytes_of(src)} + (o * {extent} + {index}) * {block}", block),
        "  }",
        "}",
    ]


register("Gather", infer=_gather_infer, evaluate=_gather_evaluate, emit=_gather_emit, flops=lambda node, graph: 0,
         narrow_floats=True)


# --- shape computations, folded at generation time ----------------------------------------------

def _shape_infer(node, graph):
    # Shapes are all static here, so the value is known whether or not the data is.
    x = graph.tensor(node.inputs[0])
    start, end = _shape_range(node, len(x.shape))
    value = np.asarray(x.shape[start:end], dtype=np.int64)
    return [(7, value.shape, value)]


def _shape_range(node, rank):
    start = attr_int(node, "start", 0)
    end = attr_int(node, "end", rank)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return start, end


register("Shape", infer=_shape_infer, narrow_floats=True)


def _size_infer(node, graph):
    # Like Shape: known from the bound shapes alone.
    value = np.asarray(graph.tensor(node.inputs[0]).elements, dtype=np.int64)
    return [(7, (), value)]


register("Size", infer=_size_infer, narrow_floats=True)


def _constant_value(node):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = node.attrs[key]
            if key == "value":
                if not isinstance(value, np.ndarray):
                    raise CodegenError("attribute 'value' must be a tensor", node=node)
                return value
            dtype = np.float32 if "float" in key else np.int64
            try:
                return np.asarray(value, dtype=dtype)
            except (TypeError, ValueError, OverflowError):
                raise CodegenError(f"attribute '{key}' does not hold {'floats' if 'float' in key else 'ints'}",
                                   node=node) from None
    raise CodegenError("Constant needs one of value, value_float(s), value_int(s); "
                       f"it has {', '.join(sorted(node.attrs)) or 'no attributes'}", node=node)


def _constant_infer(node, graph):
    value = _constant_value(node)
    return [(ir.dtype_of_numpy(value.dtype), tuple(value.shape), value)]


register("Constant", infer=_constant_infer, narrow_floats=True)


def _constant_of_shape_value(node):
    value = node.attrs.get("value")
    if value is None:
        return np.zeros(1, np.float32)
    if not isinstance(value, np.ndarray) or value.size != 1:
        raise CodegenError("attribute 'value' must be a tensor of one element", node=node)
    return value.reshape(-1)


def _constant_of_shape_infer(node, graph):
    input_count(node, 1)
    shape = constant_input(node, graph, 0, "shape", integer=True)
    if shape is None:
        raise CodegenError("the shape input is omitted", node=node)
    value = _constant_of_shape_value(node)
    return [(ir.dtype_of_numpy(value.dtype), tuple(int(d) for d in np.asarray(shape).reshape(-1)))]


register("ConstantOfShape", infer=_constant_of_shape_infer, narrow_floats=True,
         evaluate=lambda node, values: [np.full(tuple(int(d) for d in values[0].reshape(-1)),
                                                _constant_of_shape_value(node)[0])])


def slice_params(node, shape, values):
    rank = len(shape)
    if node.opset < 10:
        starts, ends, axes = attr_ints(node, "starts"), attr_ints(node, "ends"), attr_ints(node, "axes")
        steps = None
        if starts is None or ends is None:
            raise CodegenError("attributes 'starts' and 'ends' are required", node=node)
    else:
        given = []
        for index, label in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")):
            value = values[index] if len(values) > index else None
            if value is None:
                if index <= 2:
                    raise CodegenError(f"input '{label}' is required", node=node)
                given.append(None)
                continue
            value = np.asarray(value)
            if value.dtype.kind not in "iu":
                raise CodegenError(f"input '{label}' must be int32 or int64, got {value.dtype}", node=node)
            given.append([int(v) for v in value.reshape(-1)])
        starts, ends, axes, steps = given
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise CodegenError(f"starts, ends, axes and steps differ in length ({len(starts)}, {len(ends)}, "
                           f"{len(axes)}, {len(steps)})", node=node)
    slices = [slice(None)] * rank
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        axis = normalize_axis(node, a, rank)
        if axis in seen:
            raise CodegenError(f"axis {axis} is sliced twice", node=node)
        seen.add(axis)
        if st == 0:
            raise CodegenError(f"step 0 on axis {axis}", node=node)
        slices[axis] = slice(s, e, st)
    return tuple(slices)


def _slice_infer(node, graph):
    input_count(node, 1, 5)
    x = graph.tensor(node.inputs[0])
    values = [None] + [constant_input(node, graph, i, "slice parameter") for i in range(1, len(node.inputs))]
    slices = slice_params(node, x.shape, values)
    return [(x.dtype, tuple(len(range(*sl.indices(d))) for sl, d in zip(slices, x.shape)))]


def _slice_emit(node, ctx):
    # The parameters are constants (infer checks it); the data may be known only at run time.
    x = ctx.graph.tensor(node.inputs[0])
    values = [None] + [constant_input(node, ctx.graph, i, "slice parameter") for i in range(1, len(node.inputs))]
    slices = slice_params(node, x.shape, values)
    if ctx.graph.tensor(node.outputs[0]).elements == 0:
        return [f"(void){ctx.ptr(node.outputs[0])};  // The output is empty: nothing to copy."]
    strides = [int(np.prod(x.shape[d + 1:])) for d in range(len(x.shape))]
    dims = [(range(*sl.indices(n)), stride) for sl, n, stride in zip(slices, x.shape, strides)]
    return cpp.gather_copy(dims, ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]),
                           lambda label, table: ctx.int_table(node, label, table))


register("Slice", infer=_slice_infer, emit=_slice_emit, flops=lambda node, graph: 0, narrow_floats=True,
         evaluate=lambda node, values: [np.ascontiguousarray(values[0][slice_params(node, values[0].shape, values)])])
