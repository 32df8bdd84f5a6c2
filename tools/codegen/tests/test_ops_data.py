"""Reductions and data movement, generated, compiled and run, against onnx's reference evaluator.

Unlike helpers.compile_and_run these cases feed and read every element type, so the driver
here passes raw bytes in and out.
"""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from helpers import run_generated
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(11)

def rand(*shape, dtype=np.float32):
    if np.dtype(dtype).kind == "f":
        return RNG.uniform(-1, 1, shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return RNG.integers(0, 2, shape).astype(bool)
    low = 0 if np.dtype(dtype).kind == "u" else -20
    return RNG.integers(low, 20, shape).astype(dtype)


def make_model(nodes, feeds, outputs, inits=(), opset=18, reference=None):
    """feeds: {name: array} graph inputs; outputs: [name] or [(name, onnx dtype)], shapes unknown."""
    outs = []
    for out in outputs:
        name, dtype = (out, None) if isinstance(out, str) else out
        if dtype is None:
            dtype = helper.np_dtype_to_tensor_dtype(next(iter(feeds.values())).dtype)
        outs.append(helper.make_tensor_value_info(name, dtype, None))
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in feeds.items()],
        outs, [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    # The checker wants output shapes: take them (and the dtypes) from the reference evaluator.
    results = reference(feeds) if reference else ReferenceEvaluator(model).run(None, feeds)
    del model.graph.output[:]
    model.graph.output.extend(
        helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, np.asarray(r).shape)
        for o, r in zip(outs, results))
    return model


def run_model(tmp_path, model, feeds, reference=None):
    """(generated outputs, reference outputs) as {name: array}."""
    workdir = str(tmp_path)
    path = os.path.join(workdir, "model.onnx")
    onnx.save(model, path)
    # The reference evaluator widens some integer results (ReduceSumSquare of int32 to int64): the
    # model's declared output types are what the generated code must produce.
    declared = [helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type) for o in model.graph.output]
    results = reference(feeds) if reference else ReferenceEvaluator(model).run(None, feeds)
    expected = [np.asarray(r).astype(d) for r, d in zip(results, declared)]
    names = [o.name for o in model.graph.output]
    got, files = run_generated(path, feeds, expected, workdir)
    return dict(zip(names, got)), dict(zip(names, (np.asarray(e) for e in expected))), files


def check(tmp_path, nodes, feeds, outputs, inits=(), opset=18, rtol=1e-4, reference=None):
    """`reference(feeds)` -> [arrays] replaces onnx's reference evaluator where that cannot run the case."""
    model = make_model(nodes, feeds, outputs, inits, opset, reference)
    got, expected, files = run_model(tmp_path, model, feeds, reference)
    for name, ref in expected.items():
        assert got[name].shape == ref.shape, f"{name}: shape {got[name].shape}, expected {ref.shape}"
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(got[name], ref, rtol=rtol, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], ref, err_msg=name)
    return files


# --- reductions ---------------------------------------------------------------------------------

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


def _reduce_input(op, shape, dtype=np.float32):
    x = rand(*shape, dtype=dtype)
    if op == "ReduceLogSum":
        x = np.abs(x) + np.asarray(0.1, dtype)
    if op == "ReduceProd" and np.dtype(dtype).kind == "f":
        x = (np.sign(x) * (0.5 + np.abs(x))).astype(dtype)
    if op == "ReduceProd" and np.dtype(dtype).kind != "f":
        x = (x % 3).astype(dtype)
    return x


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("axes,keepdims", [(None, 1), ([1], 0), ([0, 2], 1), ([-1], 1), ([1, 3], 0)])
def test_reduce_axes_input(tmp_path, op, axes, keepdims):
    x = _reduce_input(op, (2, 3, 4, 5))
    inits, inputs = {}, ["x"]
    if axes is not None:
        inits["axes"] = np.asarray(axes, np.int64)
        inputs.append("axes")
    check(tmp_path, [helper.make_node(op, inputs, ["y"], keepdims=keepdims)], {"x": x}, ["y"], inits, opset=18)


def test_reduce_over_outer_axes_runs_column_wise(tmp_path):
    # The innermost axis kept and at least 8 long: accumulators per column, in scratch.
    x = rand(2, 5, 3, 9)
    nodes = [helper.make_node(op, ["x", "axes"], [op.lower()], keepdims=keepdims)
             for op, keepdims in (("ReduceSum", 0), ("ReduceMean", 1), ("ReduceSumSquare", 0), ("ReduceL2", 1))]
    check(tmp_path, nodes, {"x": x}, [n.output[0] for n in nodes], {"axes": np.asarray([1, 2], np.int64)}, opset=18)


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_axes_attribute(tmp_path, op):
    x = _reduce_input(op, (3, 2, 4))
    node = helper.make_node(op, ["x"], ["y"], axes=[0, 2], keepdims=0)
    check(tmp_path, [node], {"x": x}, ["y"], opset=11 if op != "ReduceSum" else 11)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                "ReduceSumSquare"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64, np.uint8])
def test_reduce_dtypes(tmp_path, op, dtype):
    x = _reduce_input(op, (3, 4, 2), dtype)
    check(tmp_path, [helper.make_node(op, ["x", "axes"], ["y"])], {"x": x}, ["y"],
          {"axes": np.asarray([1], np.int64)}, opset=18)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_bool(tmp_path, op):
    x = rand(3, 4, dtype=bool)
    x[0] = True
    x[1] = False
    check(tmp_path, [helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)], {"x": x}, ["y"],
          {"axes": np.asarray([1], np.int64)}, opset=20)


def test_reduce_noop_with_empty_axes(tmp_path):
    x = rand(2, 3)
    check(tmp_path, [helper.make_node("ReduceSum", ["x", "axes"], ["y"], noop_with_empty_axes=1)], {"x": x}, ["y"],
          {"axes": np.zeros(0, np.int64)}, opset=13)
    nodes = [helper.make_node("ReduceMax", ["x"], ["y"], noop_with_empty_axes=1, keepdims=0)]
    check(tmp_path, nodes, {"x": x}, ["y"], opset=18)


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_empty_set(tmp_path, op):
    # Reducing an axis of extent 0: every output element is the spec's empty-set value.
    x = np.zeros((2, 0, 4), np.float32)
    check(tmp_path, [helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)], {"x": x}, ["y"],
          {"axes": np.asarray([1], np.int64)}, opset=18)


def test_reduce_nan_and_inf(tmp_path):
    x = rand(3, 4)
    x[0, 1] = np.nan
    x[1, 2] = np.inf
    x[2, :2] = -np.inf  # (all -inf: the reference evaluator gives NaN, the spec's formula -inf)
    nodes = [helper.make_node("ReduceMax", ["x", "axes"], ["a"], keepdims=0),
             helper.make_node("ReduceMin", ["x", "axes"], ["b"], keepdims=0),
             helper.make_node("ReduceLogSumExp", ["x", "axes"], ["c"], keepdims=0)]
    check(tmp_path, nodes, {"x": x}, ["a", "b", "c"], {"axes": np.asarray([1], np.int64)})


def test_reduce_logsumexp_large_values(tmp_path):
    x = (rand(2, 5) * 200).astype(np.float32)
    check(tmp_path, [helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[1])], {"x": x}, ["y"], opset=13)


def test_reduce_dynamic_axes_refused(tmp_path):
    x = rand(2, 3)
    model = make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"])],
                       {"x": x, "axes": np.asarray([1], np.int64)}, ["y"], opset=13)
    path = os.path.join(str(tmp_path), "m.onnx")
    onnx.save(model, path)
    with pytest.raises(CodegenError, match="axes"):
        cli.generate_files(path, {"x": (2, 3), "axes": (1,)}, cpu="generic", namespace="t", class_name="Model",
                           header_include="model.h", model_label="test")


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": 1, "keepdims": 0}, {"axis": -1, "select_last_index": 1},
                                   {"axis": 0, "keepdims": 0, "select_last_index": 1}])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_arg(tmp_path, op, attrs, dtype):
    x = RNG.integers(0, 3, (3, 4, 5)).astype(dtype)  # many ties
    check(tmp_path, [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, [("y", TensorProto.INT64)], opset=13)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_nan(tmp_path, op, last):
    x = rand(4, 6)
    x[1, 2] = x[1, 4] = np.nan
    x[3, 0] = np.nan
    check(tmp_path, [helper.make_node(op, ["x"], ["y"], axis=1, select_last_index=last)], {"x": x},
          [("y", TensorProto.INT64)], opset=13)


# --- data movement ------------------------------------------------------------------------------

ALL_TYPES = [np.float32, np.int64, np.int32, np.uint8, np.int8, np.float64, np.uint16, bool]


@pytest.mark.parametrize("params", [
    ([1, 0], [3, 4], None, None),
    ([0, -1], [10, -4], [0, 1], None),
    ([-1, 10], [-10, 0], [1, 2], [-1, -2]),
    ([3], [0], [-1], [-1]),
    ([0, 1, 0], [2, 4, 5], [0, 1, 2], [2, 2, 3]),
    ([2], [2], [0], None),
])
def test_slice_runtime(tmp_path, params):
    starts, ends, axes, steps = params
    x = rand(3, 4, 5)
    inits = {"starts": np.asarray(starts, np.int64), "ends": np.asarray(ends, np.int64)}
    inputs = ["x", "starts", "ends"]
    if axes is not None:
        inits["axes"] = np.asarray(axes, np.int64)
    inputs.append("axes" if axes is not None else "")
    if steps is not None:
        inits["steps"] = np.asarray(steps, np.int64)
        inputs.append("steps")
    check(tmp_path, [helper.make_node("Slice", inputs, ["y"])], {"x": x}, ["y"], inits, opset=13)


def test_slice_opset1(tmp_path):
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[1000, -1], axes=[0, 2])
    check(tmp_path, [node], {"x": rand(3, 4, 5, dtype=np.int32)}, ["y"], opset=9)


@pytest.mark.parametrize("dtype", ALL_TYPES)
def test_split_types(tmp_path, dtype):
    node = helper.make_node("Split", ["x", "split"], ["a", "b", "c"], axis=1)
    check(tmp_path, [node], {"x": rand(2, 6, 3, dtype=dtype)}, ["a", "b", "c"],
          {"split": np.asarray([1, 3, 2], np.int64)}, opset=13)


@pytest.mark.parametrize("opset,attrs,inputs,outputs,shape", [
    (11, {"axis": -1, "split": [2, 2]}, ["x"], 2, (3, 4)),
    (11, {}, ["x"], 3, (6, 2)),
    (18, {"num_outputs": 3, "axis": 1}, ["x"], 3, (2, 7)),
    (18, {"num_outputs": 2}, ["x"], 2, (4, 3)),
    (13, {"axis": 0}, ["x", "split"], 3, (5, 2)),
])
def test_split(tmp_path, opset, attrs, inputs, outputs, shape):
    names = [f"y{k}" for k in range(outputs)]
    inits = {"split": np.asarray([2, 0, 3], np.int64)} if "split" in inputs else {}
    check(tmp_path, [helper.make_node("Split", inputs, names, **attrs)], {"x": rand(*shape)}, names, inits,
          opset=opset)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[1, 2, 0, 2, 1, 3], [0, 0, 1, 0, 0, 2], [1, 0, 2, 0, 2, 1], [0, 4, 0, 0, 5, 0]])
def test_pad(tmp_path, mode, pads):
    x = rand(2, 3, 4)
    inits = {"pads": np.asarray(pads, np.int64), "value": np.asarray(1.5, np.float32)}
    check(tmp_path, [helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode=mode)], {"x": x}, ["y"], inits,
          opset=19)


def test_pad_axes_and_runtime_value(tmp_path):
    x = rand(2, 3, 4, dtype=np.int32)
    feeds = {"x": x, "value": np.asarray(7, np.int32)}
    inits = {"pads": np.asarray([1, 2, 0, 3], np.int64), "axes": np.asarray([-1, 0], np.int64)}
    check(tmp_path, [helper.make_node("Pad", ["x", "pads", "value", "axes"], ["y"])], feeds, ["y"], inits, opset=18)


def test_pad_attributes(tmp_path):
    node = helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 1, 2], mode="reflect")
    check(tmp_path, [node], {"x": rand(3, 4)}, ["y"], opset=2)
    node = helper.make_node("Pad", ["x"], ["y"], pads=[1, 0, 0, 2], value=-2.0)
    check(tmp_path, [node], {"x": rand(3, 4)}, ["y"], opset=2)


@pytest.mark.parametrize("dtype", [np.float32, bool, np.int64])
@pytest.mark.parametrize("repeats", [[2, 1, 3], [1, 1, 1], [3, 2, 1], [1, 0, 2]])
def test_tile(tmp_path, dtype, repeats):
    check(tmp_path, [helper.make_node("Tile", ["x", "r"], ["y"])], {"x": rand(2, 3, 2, dtype=dtype)}, ["y"],
          {"r": np.asarray(repeats, np.int64)}, opset=13)


@pytest.mark.parametrize("xshape,shape", [((3, 1), (2, 1, 6)), ((1, 4), (3, 4)), ((2, 3), (2, 3)),
                                          ((4, 1, 2), (1, 3, 1)), ((1,), (2, 2))])
def test_expand(tmp_path, xshape, shape):
    check(tmp_path, [helper.make_node("Expand", ["x", "s"], ["y"])], {"x": rand(*xshape, dtype=np.int32)}, ["y"],
          {"s": np.asarray(shape, np.int64)}, opset=13)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(tmp_path, mode):
    check(tmp_path, [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)], {"x": rand(2, 8, 3, 2)},
          ["y"], opset=13)


def test_space_to_depth(tmp_path):
    check(tmp_path, [helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=3)], {"x": rand(1, 2, 6, 3)}, ["y"],
          opset=13)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("index_type", [np.int64, np.int32])
def test_gather_runtime_indices(tmp_path, axis, index_type):
    x = rand(3, 4, 5)
    n = x.shape[axis]
    idx = np.asarray([[0, n - 1, -1], [-n, 1, 2]], index_type)
    check(tmp_path, [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], {"x": x, "i": idx}, ["y"], opset=13)


@pytest.mark.parametrize("axis", [0, 2, -2])
def test_gather_constant_indices(tmp_path, axis):
    x = rand(3, 4, 5, dtype=np.int64)
    check(tmp_path, [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], {"x": x}, ["y"],
          {"i": np.asarray([2, -1, 0, 1], np.int64)}, opset=13)


def _indices(shape, extent, dtype=np.int64):
    return RNG.integers(-extent, extent, shape).astype(dtype)


@pytest.mark.parametrize("axis,ishape", [(0, (2, 4, 5)), (1, (3, 6, 5)), (-1, (3, 4, 5)), (2, (3, 4, 1)), (2, (3, 4, 7))])
@pytest.mark.parametrize("runtime", [True, False])
def test_gather_elements(tmp_path, axis, ishape, runtime):
    x = rand(3, 4, 5)
    idx = _indices(ishape, x.shape[axis], np.int32 if runtime else np.int64)
    feeds, inits = ({"x": x, "i": idx}, {}) if runtime else ({"x": x}, {"i": idx})
    check(tmp_path, [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)], feeds, ["y"], inits, opset=13)


@pytest.mark.parametrize("batch_dims,dshape,ishape", [(0, (3, 4, 5), (2, 2)), (0, (3, 4, 5), (2, 3, 3)),
                                                       (1, (2, 4, 5), (2, 3, 1)), (0, (6,), (4, 1)),
                                                       (2, (2, 3, 4, 5), (2, 3, 2, 2))])
def test_gather_nd(tmp_path, batch_dims, dshape, ishape):
    x = rand(*dshape, dtype=np.int32)
    k = ishape[-1]
    idx = np.stack([_indices(ishape[:-1], dshape[batch_dims + t]) for t in range(k)], axis=-1)
    check(tmp_path, [helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)], {"x": x, "i": idx},
          ["y"], opset=13)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, -1])
def test_scatter_elements(tmp_path, reduction, axis):
    x = rand(3, 4)
    ishape = (2, 4) if axis == 0 else (3, 2)
    if reduction == "none":  # distinct targets: with duplicates the result is unspecified
        idx = np.stack([RNG.permutation(x.shape[axis])[:2] for _ in range(4 if axis == 0 else 3)],
                       axis=1 if axis == 0 else 0).astype(np.int64)
        idx = idx.reshape(ishape) if idx.shape == ishape else idx.T
    else:
        idx = _indices(ishape, x.shape[axis])
    feeds = {"x": x, "i": idx, "u": rand(*ishape)}
    check(tmp_path, [helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=axis, reduction=reduction)],
          feeds, ["y"], opset=18)


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
def test_scatter_nd(tmp_path, reduction):
    x = rand(4, 3, 2)
    idx = np.asarray([[[0, 1]], [[3, -1]], [[2, 0]]], np.int64) if reduction == "none" else \
        np.asarray([[[0, 1]], [[0, 1]], [[2, 0]]], np.int64)
    feeds = {"x": x, "i": idx, "u": rand(3, 1, 2)}
    check(tmp_path, [helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)], feeds, ["y"],
          opset=18)


def test_scatter_nd_rows(tmp_path):
    x = rand(4, 3, dtype=np.int64)
    feeds = {"x": x, "u": rand(2, 3, dtype=np.int64)}
    check(tmp_path, [helper.make_node("ScatterND", ["x", "i", "u"], ["y"])], feeds, ["y"],
          {"i": np.asarray([[3], [1]], np.int64)}, opset=13)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis,dtype", [(0, np.float32), (-1, np.int32), (1, np.int64)])
def test_cumsum(tmp_path, exclusive, reverse, axis, dtype):
    check(tmp_path, [helper.make_node("CumSum", ["x", "a"], ["y"], exclusive=exclusive, reverse=reverse)],
          {"x": rand(3, 4, 2, dtype=dtype)}, ["y"], {"a": np.asarray(axis, np.int64)}, opset=14)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 2, -1, -5, 7])
def test_trilu(tmp_path, upper, k):
    inits, inputs = ({"k": np.asarray(k, np.int64)}, ["x", "k"]) if k is not None else ({}, ["x"])
    check(tmp_path, [helper.make_node("Trilu", inputs, ["y"], upper=upper)], {"x": rand(2, 4, 5, dtype=np.int64)},
          ["y"], inits, opset=14)


@pytest.mark.parametrize("batch_axis,time_axis,shape", [(1, 0, (4, 3, 2)), (0, 1, (3, 5)), (0, 1, (2, 4, 3))])
def test_reverse_sequence(tmp_path, batch_axis, time_axis, shape):
    lens = np.asarray([1, shape[time_axis], 2][:shape[batch_axis]], np.int64)
    check(tmp_path, [helper.make_node("ReverseSequence", ["x", "n"], ["y"], batch_axis=batch_axis,
                                      time_axis=time_axis)], {"x": rand(*shape), "n": lens}, ["y"], opset=10)


@pytest.mark.parametrize("axis", [0, 1, -1, -3])
def test_cumsum_runtime_axis(tmp_path, axis):
    feeds = {"x": rand(3, 4, 2), "a": np.asarray(axis, np.int32)}
    check(tmp_path, [helper.make_node("CumSum", ["x", "a"], ["y"], reverse=1)], feeds, ["y"], opset=14)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [0, 3, -2, -9])
def test_trilu_runtime_k(tmp_path, upper, k):
    feeds = {"x": rand(2, 3, 5), "k": np.asarray(k, np.int64)}
    check(tmp_path, [helper.make_node("Trilu", ["x", "k"], ["y"], upper=upper)], feeds, ["y"], opset=14)


@pytest.mark.parametrize("axis,ishape", [(-1, (2, 3)), (0, (4,)), (1, (2, 3)), (-3, (2, 2))])
def test_one_hot(tmp_path, axis, ishape):
    feeds = {"i": RNG.integers(-6, 6, ishape).astype(np.int64), "v": np.asarray([-1.5, 2.5], np.float32)}
    check(tmp_path, [helper.make_node("OneHot", ["i", "d", "v"], ["y"], axis=axis)], feeds, [("y", TensorProto.FLOAT)],
          {"d": np.asarray(5, np.int64)}, opset=11)


def test_range_folds(tmp_path):
    nodes = [helper.make_node("Range", ["s", "l", "d"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    inits = {"s": np.asarray(1.0, np.float32), "l": np.asarray(-2.0, np.float32), "d": np.asarray(-0.5, np.float32)}
    files = check(tmp_path, nodes, {"x": rand(6)}, ["y"], inits, opset=11)
    assert "Range" not in files["source"]


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_compress(tmp_path, axis):
    x = rand(3, 4, dtype=np.int32)
    size = x.size if axis is None else x.shape[axis]
    condition = np.asarray([True, False, True, True, False] * 3, bool)[:size - 1]  # shorter: the rest is dropped
    attrs = {} if axis is None else {"axis": axis}
    check(tmp_path, [helper.make_node("Compress", ["x", "c"], ["y"], **attrs)], {"x": x}, ["y"], {"c": condition},
          opset=11)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_negative_crops(tmp_path, mode):
    # The reference evaluator rejects negative pads (np.pad does); the spec: they remove elements.
    x = rand(3, 4, 5)
    pads = [1, -1, 2, -2, 2, -1]

    def reference(feeds):
        cropped = feeds["x"][:-2, 1:, :-1]  # begins (1, -1, 2), ends (-2, 2, -1)
        kwargs = {"constant_values": 0} if mode == "constant" else {}
        return [np.pad(cropped, [(1, 0), (0, 2), (2, 0)], mode=mode, **kwargs)]

    check(tmp_path, [helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)], {"x": x}, ["y"],
          {"pads": np.asarray(pads, np.int64)}, opset=19, reference=reference)
