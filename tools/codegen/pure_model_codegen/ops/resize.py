"""Resampling: Resize (opsets 10, 11, 13, 18, 19) and the older Upsample (opsets 7 and 9).

Resize is separable: every output element is a weighted sum over a box of input elements whose
weights are a product of one weight per resized axis. The generator therefore works out, per
resized axis and at generation time, which input coordinates (taps) each output coordinate reads
and with what weight, and the generated code applies one axis at a time:

  nearest         one tap per output coordinate: the whole op is one gather (any element type),
                  written by cpp.gather_copy with index tables where the pattern is not affine;
  linear, cubic   (also antialiased) one pass per resized axis through pure_model::ResampleAxis
                  (float32), with the taps and weights as tables; passes that shrink run first, and
                  intermediate results live in the node's scratch.

The coordinate arithmetic follows the ONNX definition (in float64, as onnx's reference does):
every coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside, antialias,
axes, keep_aspect_ratio_policy, and tf_crop_and_resize with its roi and extrapolation_value.
Resize-10 and Upsample map coordinates asymmetrically and round nearest down when enlarging and
up when shrinking, as ONNX Runtime does for them. Scales, sizes (and the roi, for
tf_crop_and_resize) must be known at generation time: they decide the output's shape.
"""

import math

import numpy as np

from pure_model_codegen import cpp, ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, attr_ints, input_count, normalize_axis, register
from pure_model_codegen.ops.data import empty_output, literal
from pure_model_codegen.ops.shape_ops import ValuesGraph, constant_input

_FLOAT = 1

# Coordinate transformation modes by the Resize version that introduced or dropped them.
_COORDINATE_MODES = {
    11: ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
         "tf_crop_and_resize"),
    13: ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize"),
    19: ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
         "tf_crop_and_resize"),
}
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
# Resize-10 and Upsample have no nearest_mode: floor when enlarging an axis, ceil when shrinking it.
_LEGACY_NEAREST = "legacy"


def _text(node, name, default):
    value = node.attrs.get(name, default)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise CodegenError(f"attribute '{name}' must be a string, got {value!r}", node=node)
    return value


def _choice(node, name, default, allowed):
    value = _text(node, name, default)
    if value not in allowed:
        raise CodegenError(f"{name} '{value}' is not one of {', '.join(allowed)} (at this opset)", node=node)
    return value


def _floats(node, graph, index, what):
    value = constant_input(node, graph, index, what)
    if value is None or np.asarray(value).size == 0:
        return None
    return [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]


def _attributes(node):
    """The node's interpolation settings as one dict, with the defaults of its op and version."""
    legacy = node.op_type == "Upsample" or node.opset < 11
    modes = ("nearest", "linear") if legacy else ("nearest", "linear", "cubic")
    mode = _choice(node, "mode", "nearest", modes)
    if legacy:
        return dict(mode=mode, coordinates="asymmetric", nearest=_LEGACY_NEAREST, cubic_a=-0.75, exclude=False,
                    extrapolation=0.0, antialias=False, policy="stretch")
    version = 19 if node.opset >= 19 else 13 if node.opset >= 13 else 11
    newer = node.opset >= 18
    settings = dict(
        mode=mode,
        coordinates=_choice(node, "coordinate_transformation_mode", "half_pixel", _COORDINATE_MODES[version]),
        nearest=_choice(node, "nearest_mode", "round_prefer_floor", _NEAREST_MODES),
        cubic_a=attr_float(node, "cubic_coeff_a", -0.75),
        exclude=bool(attr_int(node, "exclude_outside", 0)),
        extrapolation=attr_float(node, "extrapolation_value", 0.0),
        antialias=bool(attr_int(node, "antialias", 0)) if newer else False,
        policy=_choice(node, "keep_aspect_ratio_policy", "stretch", ("stretch", "not_larger", "not_smaller"))
        if newer else "stretch",
    )
    if settings["antialias"] and mode == "nearest":
        raise CodegenError("antialias applies to the linear and cubic modes only, not to nearest", node=node)
    return settings


def _requested(node, graph, rank):
    """(axes, scales or None, sizes or None, roi pairs or None) as the node states them."""
    if node.op_type == "Upsample":
        if node.opset < 9:
            input_count(node, 1)
            scales = node.attrs.get("scales")
            if not isinstance(scales, (list, tuple)) or not scales:
                raise CodegenError("required attribute 'scales' is missing", node=node)
            scales = [float(s) for s in scales]
        else:
            input_count(node, 2)
            scales = _floats(node, graph, 1, "scales")
        return list(range(rank)), scales, None, None
    if node.opset < 11:
        input_count(node, 2)
        return list(range(rank)), _floats(node, graph, 1, "scales"), None, None
    input_count(node, 1 if node.opset >= 13 else 3, 4)
    axes = list(range(rank))
    if node.opset >= 18 and node.attrs.get("axes") is not None:
        given = attr_ints(node, "axes")
        axes = [normalize_axis(node, a, rank, "axes entry") for a in given]
        if len(set(axes)) != len(axes):
            raise CodegenError(f"axes {given} repeat an axis", node=node)
    scales = _floats(node, graph, 2, "scales") if len(node.inputs) > 2 else None
    sizes = None
    if len(node.inputs) > 3 and node.inputs[3]:
        value = constant_input(node, graph, 3, "sizes", integer=True)
        sizes = [int(v) for v in np.asarray(value).reshape(-1)] if np.asarray(value).size else None
    if (scales is None) == (sizes is None):
        raise CodegenError("needs exactly one of scales and sizes" if scales is None
                           else "has both scales and sizes; give only one", node=node)
    given = scales if sizes is None else sizes
    if len(given) != len(axes):
        raise CodegenError(f"{'scales' if sizes is None else 'sizes'} has {len(given)} values, expected "
                           f"{len(axes)} (one per resized axis)", node=node)
    roi = None
    # The roi only matters to tf_crop_and_resize; other modes ignore it, even one computed at run time.
    if _text(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
        value = constant_input(node, graph, 1, "roi")
        # Kept in the roi's own element type: onnx's reference computes the roi terms in it.
        values = None if value is None else list(np.asarray(value).reshape(-1))
        if value is None or np.asarray(value).dtype.kind != "f" or len(values) != 2 * len(axes):
            raise CodegenError(f"tf_crop_and_resize needs a roi of {2 * len(axes)} values (starts, then ends), "
                               f"got {values}", node=node)
        roi = list(zip(values[:len(axes)], values[len(axes):]))
    return axes, scales, sizes, roi


def _plan(node, graph):
    """Everything the op needs: input and output shapes, per-axis scale and roi, settings."""
    x = graph.tensor(node.inputs[0])
    rank = len(x.shape)
    settings = _attributes(node)
    if settings["mode"] != "nearest" and x.dtype != _FLOAT:
        raise CodegenError(f"input '{x.name}' is {ir.dtype_name(x.dtype)}; this op supports float32 here "
                           f"(mode '{settings['mode']}'; nearest takes any element type)", node=node)
    axes, scales, sizes, roi = _requested(node, graph, rank)
    in_shape = list(x.shape)
    scale = [1.0] * rank
    out_shape = list(in_shape)
    roi_of = [(0.0, 1.0)] * rank
    for i, axis in enumerate(axes):
        if roi is not None:
            roi_of[axis] = roi[i]
    if sizes is None:
        for axis, s in zip(axes, scales):
            if not s > 0 or not math.isfinite(s):
                raise CodegenError(f"scales must be positive and finite, got {scales}", node=node)
            scale[axis] = s
            out_shape[axis] = int(s * in_shape[axis])
    else:
        if any(s < 0 for s in sizes):
            raise CodegenError(f"sizes must not be negative, got {sizes}", node=node)
        for axis, s in zip(axes, sizes):
            if in_shape[axis] == 0 and s:
                raise CodegenError(f"cannot resize axis {axis}, which is empty, to {s}", node=node)
            scale[axis] = s / in_shape[axis] if in_shape[axis] else 1.0
            out_shape[axis] = s
        if settings["policy"] != "stretch":
            pick = min if settings["policy"] == "not_larger" else max
            common = pick(scale[a] for a in axes)
            for axis in axes:
                scale[axis] = common
                out_shape[axis] = int(common * in_shape[axis] + 0.5)
    resized = [a for a in range(rank) if not (math.isclose(scale[a], 1.0) and out_shape[a] == in_shape[a]
                                              and math.isclose(roi_of[a][0], 0.0) and math.isclose(roi_of[a][1], 1.0))]
    return dict(x=x, in_shape=in_shape, out_shape=out_shape, scale=scale, roi=roi_of, resized=resized, **settings)


# --- the taps of one axis, at generation time --------------------------------------------------

def _source_coordinates(plan, axis):
    """(x_original per output coordinate, mask of coordinates outside the input or None)."""
    n_in, n_out, scale = plan["in_shape"][axis], plan["out_shape"][axis], plan["scale"][axis]
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in  # the output extent before rounding to whole elements
    mode = plan["coordinates"]
    outside = None
    if mode == "align_corners":
        x = np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_half_pixel_for_nn":
        x = (y + 0.5) / scale
    elif mode == "pytorch_half_pixel":
        x = np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        x = offset + (y + 0.5) / scale - 0.5
    else:  # tf_crop_and_resize; the roi's terms in its own precision, as onnx's reference has them
        start, end = plan["roi"][axis]
        if width == 1:
            x = np.full(n_out, float((end - start) * (n_in - 1) / 2))
        else:
            x = y * float(end - start) * (n_in - 1) / (width - 1)
        x = x + float(start * (n_in - 1))
        outside = (x < 0) | (x > n_in - 1)
    return x, outside


def _ratio_and_start(x, taps):
    """(ratio, first tap) per source coordinate x, for a filter of `taps` (an even number) taps.

    The ratio is x's distance from the input coordinate below it, taken strictly below when x is
    whole, so that it lies in (0, 1]: ONNX states its rounding and weights in it. The taps are
    the `taps` input coordinates nearest x, ties to the smaller ones. The first tap is found on
    the axis shifted by taps / 2, as onnx's reference does: where x is a hair above a whole
    number (1 + 2^-52, say) the shifted sum rounds to it, and the reference then treats x as whole.
    """
    whole = np.floor(x)
    ratio = np.where(x == whole, 1.0, x - whole)
    half = taps // 2
    shifted = x + half
    base = np.floor(shifted)
    start = base - 2 * half + np.where(shifted == base, 0, 1)
    return ratio, start.astype(np.int64)


def _nearest_index(plan, axis, x):
    """The input coordinate each output coordinate copies (before clamping into the axis)."""
    ratio, start = _ratio_and_start(x, 2)  # the two candidates: start and start + 1
    rule = plan["nearest"]
    if rule == _LEGACY_NEAREST:
        rule = "floor" if plan["scale"][axis] >= 1 else "ceil"
    if rule == "round_prefer_floor":
        up = ratio > 0.5
    elif rule == "round_prefer_ceil":
        up = ratio >= 0.5
    elif rule == "floor":
        up = np.zeros(len(x), bool)
    else:
        up = np.ones(len(x), bool)
    up |= ratio == 1  # a whole x is its own nearest coordinate
    return start + up


def _cubic(distance, a):
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _filter_taps(plan, axis, x):
    """(indices [out, taps], weights [out, taps]) of linear or cubic interpolation at x."""
    scale = plan["scale"][axis]
    if plan["mode"] == "linear":
        support, kernel = 1.0, lambda d: np.clip(1 - np.abs(d), 0, 1)
    else:
        support, kernel = 2.0, lambda d: _cubic(d, plan["cubic_a"])
    # Antialiasing stretches the filter by 1 / scale when shrinking, so more inputs contribute.
    stretch = min(scale, 1.0) if plan["antialias"] else 1.0
    first = int(math.floor(-support / stretch) + 1)
    # The taps' offsets from the input coordinate just below x: first, ..., 1 - first.
    offsets = np.arange(first, 1 - first + 1)
    ratio, start = _ratio_and_start(x, len(offsets))
    weights = kernel((offsets[None, :] - ratio[:, None]) * stretch)
    if plan["antialias"]:
        weights = weights / weights.sum(axis=1, keepdims=True)
    indices = start[:, None] + np.arange(len(offsets))[None, :]
    if plan["exclude"]:
        weights = np.where((indices < 0) | (indices >= plan["in_shape"][axis]), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return indices, weights


def _axis_taps(plan, axis):
    """(indices [out, taps] clamped into the axis, weights [out, taps] or None for nearest, outside mask)."""
    x, outside = _source_coordinates(plan, axis)
    last = plan["in_shape"][axis] - 1
    if plan["mode"] == "nearest":
        return np.clip(_nearest_index(plan, axis, x), 0, last)[:, None], None, outside
    indices, weights = _filter_taps(plan, axis, x)
    return np.clip(indices, 0, last), weights, outside


def _pass_order(plan):
    """Resized axes in the order the passes run: the most shrinking first, so later passes see less data."""
    return sorted(plan["resized"], key=lambda a: (plan["out_shape"][a] / max(plan["in_shape"][a], 1), a))


def _pass_shapes(plan):
    """[(axis, shape before the pass, shape after it)] of the interpolating passes."""
    shape, passes = list(plan["in_shape"]), []
    for axis in _pass_order(plan):
        after = list(shape)
        after[axis] = plan["out_shape"][axis]
        passes.append((axis, shape, after))
        shape = after
    return passes


# --- the op ------------------------------------------------------------------------------------

def _infer(node, graph):
    plan = _plan(node, graph)
    return [(plan["x"].dtype, tuple(plan["out_shape"]))]


def _evaluate(node, values):
    plan = _plan(node, ValuesGraph(node, values))
    data = np.asarray(values[0])
    if plan["mode"] == "nearest":
        for axis in plan["resized"]:
            indices, _, outside = _axis_taps(plan, axis)
            data = np.take(data, indices[:, 0], axis=axis)
            if outside is not None and outside.any():
                mask = outside.reshape([-1 if d == axis else 1 for d in range(data.ndim)])
                data = np.where(mask, np.asarray(plan["extrapolation"]).astype(data.dtype), data)
        return [data]
    result = data.astype(np.float64)
    for axis, _, _ in _pass_shapes(plan):
        indices, weights, outside = _axis_taps(plan, axis)
        gathered = np.take(result, indices, axis=axis)  # the taps become axis + 1
        shape = [1] * result.ndim
        shape[axis:axis + 1] = list(weights.shape)
        result = (gathered * weights.reshape(shape)).sum(axis=axis + 1)
        if outside is not None and outside.any():
            mask = outside.reshape([-1 if d == axis else 1 for d in range(result.ndim)])
            result = np.where(mask, plan["extrapolation"], result)
    return [result.astype(data.dtype)]


def _strides(shape):
    return [math.prod(shape[d + 1:]) for d in range(len(shape))]


def _integer_enlargement(plan):
    """(factor along H, factor along W) when nearest resizing only repeats each element of the last
    two axes a whole number of times (PP-OCR's x2, x4, x8 upsampling), else None."""
    rank = len(plan["in_shape"])
    if rank < 2 or any(a < rank - 2 for a in plan["resized"]):
        return None
    factors = []
    for axis in (rank - 2, rank - 1):
        n_in, n_out = plan["in_shape"][axis], plan["out_shape"][axis]
        if axis not in plan["resized"]:
            factors.append(1)
            continue
        indices, _, outside = _axis_taps(plan, axis)
        if n_in == 0 or n_out % n_in or (outside is not None and outside.any()):
            return None
        factor = n_out // n_in
        if list(indices[:, 0]) != [j // factor for j in range(n_out)]:
            return None
        factors.append(factor)
    return factors


def nearest_enlargement(node, graph):
    """(factor along H, factor along W) when the Resize/Upsample `node` only repeats the elements of
    its last two axes whole numbers of times (and at least one more than once), else None."""
    if node.domain:
        return None
    try:
        plan = _plan(node, graph)
    except CodegenError:
        return None
    if plan["mode"] != "nearest" or plan["x"].elements == 0:
        return None
    factors = _integer_enlargement(plan)
    return tuple(factors) if factors and max(factors) > 1 else None


def _emit_enlargement(node, ctx, plan, factors):
    fh, fw = factors
    rows = math.prod(plan["in_shape"][:-1])
    width = plan["in_shape"][-1]
    cpp_type = ir.cpp_type(plan["x"].dtype)
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    lines = [f"// Each input row becomes {fh} output row(s), each element repeated {fw} time(s): the first",
             "// output row is written, the others copied from it.",
             f"for (std::size_t i0 = 0; i0 < {rows}; ++i0) {{",
             f"  const {cpp_type}* in_row = {x} + i0 * {width};",
             f"  {cpp_type}* row = {y} + i0 * {fh * fw * width};"]
    if fw == 1:
        lines.append(f"  std::memcpy(row, in_row, {width} * sizeof({cpp_type}));")
    else:
        lines += [f"  for (std::size_t i1 = 0; i1 < {width}; ++i1) {{",
                  f"    for (std::size_t i2 = 0; i2 < {fw}; ++i2) row[i1 * {fw} + i2] = in_row[i1];",
                  "  }"]
    if fh > 1:
        lines += [f"  for (std::size_t i1 = 1; i1 < {fh}; ++i1) {{",
                  f"    std::memcpy(row + i1 * {fw * width}, row, {fw * width} * sizeof({cpp_type}));",
                  "  }"]
    return lines + ["}"]


def _emit_nearest(node, ctx, plan):
    factors = _integer_enlargement(plan)
    if factors is not None:
        return _emit_enlargement(node, ctx, plan, factors)
    dims = []
    for axis, (n, stride) in enumerate(zip(plan["in_shape"], _strides(plan["in_shape"]))):
        if axis not in plan["resized"]:
            dims.append((range(n), stride))
            continue
        indices, _, outside = _axis_taps(plan, axis)
        coords = [int(i) for i in indices[:, 0]]
        if outside is not None:
            coords = [None if out else c for c, out in zip(coords, outside)]
        dims.append((coords, stride))
    fill = literal(plan["extrapolation"], plan["x"].dtype)
    rows = math.prod(len(coords) for coords, _ in dims[:-1])
    repeats = any(len(set(coords)) < len(coords) for coords, _ in dims[:-1])
    if not repeats or any(c is None for coords, _ in dims for c in coords):
        return cpp.gather_copy(dims, ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]),
                               lambda label, values: ctx.int_table(node, label, values), fill)
    # Enlarging an outer axis repeats whole output rows: each is gathered once, then copied.
    sources = np.zeros([len(coords) for coords, _ in dims[:-1]], np.int64)
    for d, (coords, stride) in enumerate(dims[:-1]):
        sources = sources + (np.asarray(coords, np.int64) * stride).reshape([-1 if k == d else 1
                                                                             for k in range(len(dims) - 1)])
    row_table = ctx.int_table(node, "row_sources", [int(v) for v in sources.reshape(-1)])
    width = len(dims[-1][0])
    cpp_type = ir.cpp_type(plan["x"].dtype)
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    in_width = plan["in_shape"][-1]
    factor = width // in_width if in_width and width % in_width == 0 else 0
    if list(dims[-1][0]) == list(range(in_width)):
        gather = [f"  std::memcpy(row, base, {width} * sizeof({cpp_type}));"]
    elif factor > 1 and list(dims[-1][0]) == [j // factor for j in range(width)]:
        # An integer enlargement: each input element repeats `factor` times, without a table.
        gather = [f"  for (std::size_t i1 = 0; i1 < {in_width}; ++i1) {{",
                  f"    for (std::size_t i2 = 0; i2 < {factor}; ++i2) row[i1 * {factor} + i2] = base[i1];",
                  "  }"]
    else:
        column_table = ctx.int_table(node, "column_sources", [int(c) for c in dims[-1][0]])
        gather = [f"  for (std::size_t i1 = 0; i1 < {width}; ++i1) row[i1] = base[{column_table}[i1]];"]
    return [f"for (std::size_t i0 = 0; i0 < {rows}; ++i0) {{",
            f"  {cpp_type}* row = {y} + i0 * {width};",
            f"  if (i0 != 0 && {row_table}[i0] == {row_table}[i0 - 1]) {{",
            f"    std::memcpy(row, row - {width}, {width} * sizeof({cpp_type}));",
            "    continue;",
            "  }",
            f"  const {cpp_type}* base = {x} + {row_table}[i0];",
            *gather,
            "}"]


def _emit_filter(node, ctx, plan):
    passes = _pass_shapes(plan)
    if not passes:  # every axis keeps its coordinates: a copy
        return [ctx.copy(ctx.ptr(node.outputs[0]), ctx.ptr(node.inputs[0]), plan['x'].nbytes)]
    buffer_floats = _buffer_floats(passes)
    lines = []
    for k, (axis, before, after) in enumerate(passes):
        indices, weights, outside = _axis_taps(plan, axis)
        taps = indices.shape[1]
        params = ctx.param_struct(node, [
            ("kOuter", math.prod(before[:axis])), ("kIn", before[axis]), ("kOut", after[axis]),
            ("kInner", math.prod(before[axis + 1:])), ("kTaps", taps), ("kFill", plan["extrapolation"]),
        ])
        index_table = ctx.int_table(node, f"axis{axis}_taps", [int(i) for i in indices.reshape(-1)])
        weight_table = ctx.derived_constant(node, f"axis{axis}_weights", weights.astype(np.float32),
                                            comment=f"{taps} taps per output coordinate, computed at generation time")
        outside_table = "nullptr"
        if outside is not None and outside.any():
            outside_table = ctx.int_table(node, f"axis{axis}_outside", [int(v) for v in outside])
        source = ctx.ptr(node.inputs[0]) if k == 0 else f"{ctx.scratch(node)} + {((k - 1) % 2) * buffer_floats}"
        target = ctx.ptr(node.outputs[0]) if k == len(passes) - 1 else f"{ctx.scratch(node)} + {(k % 2) * buffer_floats}"
        what = f"axis {axis}: {before[axis]} -> {after[axis]}"
        lines.append(f"// Pass {k + 1} of {len(passes)}, {what}" +
                     (" (into scratch)." if k < len(passes) - 1 else "."))
        lines.append(f"pure_model::ResampleAxis<{params}>({source}, {index_table}, {weight_table}, "
                     f"{outside_table}, {target});")
    return lines


def _buffer_floats(passes):
    """Floats of each of the two scratch buffers the passes alternate between."""
    intermediate = [math.prod(after) for _, _, after in passes[:-1]]
    return -(-max(intermediate, default=0) // 16) * 16  # whole cache lines, so the second stays aligned


def _emit(node, ctx):
    plan = _plan(node, ctx.graph)
    if plan["x"].elements == 0:
        return empty_output(ctx, node.outputs[0])
    if plan["mode"] == "nearest":
        return _emit_nearest(node, ctx, plan)
    return _emit_filter(node, ctx, plan)


def _scratch(node, graph):
    plan = _plan(node, graph)
    if plan["mode"] == "nearest":
        return 0
    passes = _pass_shapes(plan)
    return 4 * _buffer_floats(passes) * min(len(passes) - 1, 2) if passes else 0


def _flops(node, graph):
    plan = _plan(node, graph)
    if plan["mode"] == "nearest":
        return 0
    total = 0
    for axis, _, after in _pass_shapes(plan):
        total += 2 * math.prod(after) * _axis_taps(plan, axis)[0].shape[1]
    return total


register("Resize", infer=_infer, evaluate=_evaluate, emit=_emit, scratch=_scratch, flops=_flops, max_version=19)
# Upsample-10 is deprecated in favour of Resize: models at opset 10 and later must use Resize.
register("Upsample", infer=_infer, evaluate=_evaluate, emit=_emit, scratch=_scratch, flops=_flops, max_version=9)
