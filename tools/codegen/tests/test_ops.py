"""Each supported op, generated, compiled and run, against onnx's reference evaluator."""

import re

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from helpers import assert_close, compile_and_run, make_model, save
from pure_model_codegen import cli

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def run_case(tmp_path, nodes, feeds, outputs, inits=(), opset=17, reference=None):
    """`reference(feeds)` -> {output: array} replaces onnx's reference evaluator where that is wrong."""
    model = make_model(nodes, [(k, list(v.shape)) for k, v in feeds.items()], outputs, inits, opset)
    got, expected, _ = compile_and_run(save(model, tmp_path), feeds, workdir=str(tmp_path))
    assert_close(got, reference(feeds) if reference else expected)


@pytest.mark.parametrize("op,attrs", [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("Exp", {}), ("Neg", {}), ("Abs", {}), ("Floor", {}),
    ("Ceil", {}), ("Erf", {}), ("Sin", {}), ("Cos", {}), ("Softplus", {}), ("LeakyRelu", {"alpha": 0.2}),
    ("Elu", {"alpha": 0.7}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}),
])
def test_unary(tmp_path, op, attrs):
    run_case(tmp_path, [helper.make_node(op, ["x"], ["y"], name="n", **attrs)], {"x": rand(2, 3, 4)}, [("y", None)])


def test_sqrt_log_reciprocal(tmp_path):
    x = (np.abs(rand(3, 5)) + 0.1).astype(np.float32)
    nodes = [helper.make_node("Sqrt", ["x"], ["a"]), helper.make_node("Log", ["a"], ["b"]),
             helper.make_node("Reciprocal", ["x"], ["c"]), helper.make_node("Add", ["b", "c"], ["y"])]
    run_case(tmp_path, nodes, {"x": x}, [("y", None)])


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                    ((1,), (2, 3)), ((2, 3, 1, 5), (1, 3, 4, 1))])
def test_binary_broadcast(tmp_path, op, shapes):
    a, b = rand(*shapes[0]), rand(*shapes[1])
    if op == "Pow":
        a = np.abs(a) + 0.1
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    run_case(tmp_path, [helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}, [("y", None)])


def test_variadic_sum_max(tmp_path):
    feeds = {"a": rand(2, 3), "b": rand(3), "c": rand(2, 1)}
    nodes = [helper.make_node("Sum", ["a", "b", "c"], ["s"]), helper.make_node("Max", ["a", "b", "c"], ["m"])]
    run_case(tmp_path, nodes, feeds, [("s", None), ("m", None)])


@pytest.mark.parametrize("attrs,wshape,xshape", [
    ({}, (4, 3, 3, 3), (1, 3, 8, 8)),
    ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, (4, 3, 3, 3), (2, 3, 9, 7)),
    ({"pads": [0, 1, 2, 0], "dilations": [2, 1]}, (6, 2, 3, 2), (1, 2, 10, 6)),
    ({"group": 4, "pads": [1, 1, 1, 1]}, (4, 1, 3, 3), (1, 4, 6, 6)),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (5, 3, 4, 4), (1, 3, 9, 9)),
    ({"auto_pad": "SAME_LOWER"}, (2, 3, 2, 2), (1, 3, 5, 5)),
    ({"pads": [1, 2], "strides": [2]}, (4, 3, 3), (1, 3, 11)),
])
def test_conv(tmp_path, attrs, wshape, xshape):
    inits = {"w": rand(*wshape), "b": rand(wshape[0])}
    run_case(tmp_path, [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], {"x": rand(*xshape)},
             [("y", None)], inits)


@pytest.mark.parametrize("xshape,wshape", [((1, 16, 8, 8), (20, 16, 1, 1)), ((2, 5, 4, 6), (9, 5, 1, 1))])
def test_pointwise_conv(tmp_path, xshape, wshape):
    inits = {"w": rand(*wshape), "b": rand(wshape[0])}
    run_case(tmp_path, [helper.make_node("Conv", ["x", "w", "b"], ["y"])], {"x": rand(*xshape)}, [("y", None)], inits)


def test_conv_batchnorm_relu_folded(tmp_path):
    inits = {"w": rand(12, 3, 3, 3), "b": rand(12), "s": rand(12), "bb": rand(12), "m": rand(12),
             "v": np.abs(rand(12)) + 0.5}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    model = make_model(nodes, [("x", [1, 3, 7, 7])], [("y", None)], inits)
    feeds = {"x": rand(1, 3, 7, 7)}
    got, expected, files = compile_and_run(save(model, tmp_path), feeds, workdir=str(tmp_path))
    assert_close(got, expected)
    assert "includes node 'bn' (BatchNormalization)" in files["source"]
    assert "ChannelAffine" not in files["source"]


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid", "Clip"])
def test_conv_fused_activation(tmp_path, activation):
    inits = {"w": rand(4, 3, 3, 3), "lo": np.array(-0.2, np.float32), "hi": np.array(0.3, np.float32)}
    act_inputs = ["c", "lo", "hi"] if activation == "Clip" else ["c"]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node(activation, act_inputs, ["y"])]
    run_case(tmp_path, nodes, {"x": rand(1, 3, 6, 6)}, [("y", None)], inits)


# Conv2DGemm's blocking: K in several blocks (results add up in the output, the residual and the
# activation come with the last), several chunks of positions, a partial last tile, batches; and
# Conv2DGemmChannels for few positions, which sums the blocks in scratch.
@pytest.mark.parametrize("xshape,wshape,attrs,kernel", [
    ((2, 40, 13, 11), (20, 40, 3, 3), {"pads": [1, 1, 1, 1]}, "Conv2DGemm<"),  # K = 360: 3 blocks
    ((1, 16, 100, 20), (8, 16, 3, 3), {"pads": [1, 1, 1, 1]}, "Conv2DGemm<"),  # 2000 positions: 2 chunks
    ((1, 30, 17, 15), (12, 30, 3, 3), {"pads": [2, 1, 0, 2], "dilations": [2, 1]}, "Conv2DGemm<"),
    ((1, 24, 15, 16), (9, 24, 1, 1), {"strides": [2, 2]}, "Conv2DGemm<"),  # no padded copy
    ((1, 130, 9, 7), (10, 130, 1, 1), {}, "Conv2DGemm<"),  # pointwise, K = 130: 2 blocks
    ((1, 64, 1, 40), (16, 64, 1, 5), {"pads": [0, 2, 0, 2]}, "Conv2DGemm<"),  # one row
    ((1, 8, 20, 40), (200, 8, 3, 3), {"pads": [1, 1, 1, 1]}, "Conv2DGemmDirect<"),  # 2 chunks of the grid
    ((1, 6, 12, 100), (8, 6, 3, 3), {"pads": [2, 0, 1, 2], "dilations": [2, 2]}, "Conv2DGemmDirect<"),
    ((2, 32, 1, 100), (16, 32, 1, 5), {}, "Conv2DGemmDirect<"),  # one row, K = 160: 2 blocks
    ((1, 200, 32, 40), (16, 200, 1, 1), {}, "Conv2DGemmDirect<"),  # pointwise: the input is X; last tile gathered
    ((1, 3, 30, 31), (10, 3, 7, 7), {"pads": [3, 3, 3, 3], "strides": [2, 2]}, "Conv2DGemm<"),  # 2 phases
    ((1, 4, 20, 23), (10, 4, 3, 3), {"pads": [0, 1, 1, 0], "strides": [1, 3]}, "Conv2DGemm<"),  # 3 phases
    ((1, 48, 7, 7), (64, 48, 3, 3), {"pads": [1, 1, 1, 1]}, "Conv2DGemmChannels<"),  # tiles of 7, 4 blocks
    ((1, 20, 9, 9), (96, 20, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "Conv2DGemmChannels<"),
    ((2, 16, 1, 17), (40, 16, 1, 3), {"pads": [0, 1, 0, 1]}, "Conv2DGemmChannels<"),  # a partial panel
])
def test_conv_gemm_blocked_with_residual(tmp_path, xshape, wshape, attrs, kernel):
    inits = {"w": rand(*wshape), "b": rand(wshape[0])}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", **attrs),
             helper.make_node("Add", ["c", "r"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    feeds = {"x": rand(*xshape)}
    out_shape = list(ReferenceEvaluator(make_model([nodes[0]], [("x", list(xshape))], [("c", None)], inits))
                     .run(None, feeds)[0].shape)
    feeds["r"] = rand(*out_shape)
    model = make_model(nodes, [("x", list(xshape)), ("r", out_shape)], [("y", None)], inits)
    got, expected, files = compile_and_run(save(model, tmp_path), feeds, workdir=str(tmp_path))
    assert_close(got, expected)
    assert "adds its last input as node 'residual' (Add)" in files["source"]
    assert kernel in files["source"]


# Gemm-6: C broadcasts only with broadcast=1, and only as a suffix of [M, N].
def test_gemm_opset6_legacy_broadcast(tmp_path):
    inits = {"b": rand(4, 5), "c": rand(5)}
    run_case(tmp_path, [helper.make_node("Gemm", ["a", "b", "c"], ["y"], broadcast=1)], {"a": rand(3, 4)},
             [("y", [3, 5])], inits, opset=6)
    inits["c"] = rand(3, 1)
    model = make_model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], broadcast=1, name="g")], [("a", [3, 4])],
                       [("y", [3, 5])], inits, opset=6)
    with pytest.raises(Exception, match="pre-opset-7 broadcasting rule"):
        cli.generate_files(save(model, tmp_path), {}, cpu="generic", namespace="t", class_name="M",
                           header_include="m.h", model_label="m")


@pytest.mark.parametrize("group,attrs", [(1, {"pads": [1, 0, 1, 1, 1, 0], "strides": [2, 1, 2]}),
                                         (2, {"dilations": [2, 1, 1], "pads": [0, 1, 0, 0, 1, 0]})])
def test_conv3d_with_relu(tmp_path, group, attrs):
    inits = {"w": rand(4, 4 // group, 2, 3, 2), "b": rand(4)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=group, **attrs), helper.make_node("Relu", ["c"], ["y"])]
    run_case(tmp_path, nodes, {"x": rand(1, 4, 5, 6, 5)}, [("y", None)], inits)


# One column wide: the kernels run it as a 1-D convolution along the rows.
@pytest.mark.parametrize("group", [1, 4])
def test_conv_one_column_wide(tmp_path, group):
    inits = {"w": rand(4, 4 // group, 3, 1), "b": rand(4)}
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, pads=[1, 0, 2, 0], strides=[2, 1])
    run_case(tmp_path, [node], {"x": rand(1, 4, 11, 1)}, [("y", None)], inits)


@pytest.mark.parametrize("ta,tb,cshape", [(0, 0, (5,)), (1, 0, (3, 5)), (0, 1, (3, 1)), (1, 1, ()), (0, 0, None)])
def test_gemm(tmp_path, ta, tb, cshape):
    a = rand(4, 3) if ta else rand(3, 4)
    inits = {"b": rand(5, 4) if tb else rand(4, 5)}
    inputs = ["a", "b"]
    if cshape is not None:
        inits["c"] = rand(*cshape) if cshape else np.array(0.5, np.float32)
        inputs.append("c")
    run_case(tmp_path, [helper.make_node("Gemm", inputs, ["y"], transA=ta, transB=tb, alpha=0.7, beta=1.3)],
             {"a": a}, [("y", None)], inits)


@pytest.mark.parametrize("ashape,bshape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                                           ((4,), (4, 3)), ((2, 3, 4), (4,))])
def test_matmul(tmp_path, ashape, bshape):
    run_case(tmp_path, [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": rand(*ashape), "b": rand(*bshape)},
             [("y", None)])


# B known at generation time: the packed kernel (MatMulPackedB), with rows of A not a multiple of
# the micro-kernel's 8 and columns spanning several 32-wide panels with a partial last one.
@pytest.mark.parametrize("ashape,n", [((3, 20), 5), ((2, 9, 20), 70), ((17, 33), 40), ((7,), 33)])
def test_matmul_constant_b_is_packed(tmp_path, ashape, n):
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", list(ashape))], [("y", None)],
                       {"b": rand(ashape[-1], n)})
    got, expected, files = compile_and_run(save(model, tmp_path), {"a": rand(*ashape)}, workdir=str(tmp_path))
    assert "MatMulPackedB" in files["source"]
    assert_close(got, expected)


@pytest.mark.parametrize("tb,cshape", [(1, (37,)), (0, (1, 37)), (0, None), (1, ())])
def test_gemm_constant_b_is_packed_with_bias_and_relu(tmp_path, tb, cshape):
    inits = {"b": rand(37, 12) if tb else rand(12, 37)}
    inputs = ["a", "b"]
    if cshape is not None:
        inits["c"] = rand(*cshape) if cshape else np.array(0.25, np.float32)
        inputs.append("c")
    nodes = [helper.make_node("Gemm", inputs, ["g"], transB=tb, alpha=0.6, beta=1.7), helper.make_node("Relu", ["g"], ["y"])]
    model = make_model(nodes, [("a", [10, 12])], [("y", None)], inits)
    got, expected, files = compile_and_run(save(model, tmp_path), {"a": rand(10, 12)}, workdir=str(tmp_path))
    assert "MatMulPackedB" in files["source"] and "Activation::kRelu" in files["source"]
    assert_close(got, expected)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    # Stride 1 on short rows pools a zero-bordered copy of the plane: uneven pads.
    ("AveragePool", {"kernel_shape": [3, 2], "pads": [2, 0, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 2], "pads": [2, 0, 1, 1], "count_include_pad": 1}),
    ("MaxPool", {"kernel_shape": [3], "strides": [2]}),
])
def test_pool(tmp_path, op, attrs):
    x = rand(1, 3, 7, 7) if len(attrs["kernel_shape"]) == 2 else rand(2, 3, 9)
    run_case(tmp_path, [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, [("y", None)])


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(tmp_path, op):
    # 99 positions: whole chunks of the kernels' lanes and a remainder; a NaN wins the max.
    large = rand(1, 2, 9, 11)
    large[0, 1, 4, 7] = np.nan
    nodes = [helper.make_node(op, ["x"], ["y"]), helper.make_node(op, ["big"], ["z"])]
    run_case(tmp_path, nodes, {"x": rand(2, 3, 5, 4), "big": large}, [("y", None), ("z", None)])


def test_batchnorm(tmp_path):
    inits = {"s": rand(3), "b": rand(3), "m": rand(3), "v": np.abs(rand(3)) + 0.5}
    run_case(tmp_path, [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
             {"x": rand(2, 3, 4, 5)}, [("y", None)], inits)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis,opset", [(-1, 17), (1, 17), (0, 17), (1, 11), (2, 11)])
def test_softmax(tmp_path, op, axis, opset):
    reference = None
    if opset < 13:
        # onnx's reference evaluator applies the opset-13 per-axis rule to every opset; before 13
        # the spec (and ONNX Runtime) flatten to 2-D at `axis` and normalise each row.
        def reference(feeds):
            x = feeds["x"].astype(np.float64)
            rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
            e = np.exp(rows - rows.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
            return {"y": (np.log(y) if op == "LogSoftmax" else y).reshape(x.shape)}
    run_case(tmp_path, [helper.make_node(op, ["x"], ["y"], axis=axis)], {"x": rand(2, 3, 4)}, [("y", None)],
             opset=opset, reference=reference)


def test_transpose_in_tiles(tmp_path):
    # Last two axes swapped, large enough for tiles: 16 x 16 (magika's), 8 x 8 with a partial
    # last tile along one axis, batched; and a permutation that stays a plain walk.
    nodes = [helper.make_node("Transpose", ["a"], ["ya"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["b"], ["yb"], perm=[0, 2, 1]),
             helper.make_node("Transpose", ["c"], ["yc"], perm=[0, 2, 3, 1])]
    feeds = {"a": rand(1, 64, 96, 1), "b": rand(2, 100, 44), "c": rand(2, 24, 40, 3)}
    model = make_model(nodes, [(k, list(v.shape)) for k, v in feeds.items()], [("ya", None), ("yb", None),
                                                                                ("yc", None)])
    got, expected, files = compile_and_run(save(model, tmp_path), feeds, workdir=str(tmp_path))
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert "+= 16)" in files["source"] and "+= 8)" in files["source"]


def test_transpose_concat_views(tmp_path):
    inits = {"shape": np.array([0, -1], np.int64), "axes": np.array([0], np.int64)}
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Concat", ["t", "t"], ["c"], axis=2),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),
        helper.make_node("Flatten", ["x"], ["f"], axis=2),
        helper.make_node("Unsqueeze", ["r", "axes"], ["u"]),
        helper.make_node("Squeeze", ["u", "axes"], ["s"]),
        helper.make_node("Identity", ["s"], ["y"]),
        helper.make_node("Relu", ["f"], ["z"]),
    ]
    run_case(tmp_path, nodes, {"x": rand(2, 3, 4, 5)}, [("y", None), ("z", None)], inits)


def test_folded_shape_chain_and_gather(tmp_path):
    inits = {"zero": np.array([0], np.int64), "minus_one": np.array([-1], np.int64),
             "idx": np.array([2, 0], np.int64)}
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Gather", ["flat", "idx"], ["picked"], axis=1),
        helper.make_node("Sigmoid", ["picked"], ["y"]),
    ]
    run_case(tmp_path, nodes, {"x": rand(2, 3, 2)}, [("y", None)], inits)


def test_scalar_constant_and_initializer_keep_rank_0(tmp_path):
    # A 0-d Constant (as exporters write for `x + 1`) folds to a 0-d value, and a 0-d initializer
    # stays 0-d: both once came out as shape [1], which failed folding or changed output ranks.
    from pure_model_codegen import frontend, passes

    one = helper.make_tensor("one", 1, [], [1.0])
    nodes = [helper.make_node("Constant", [], ["c"], value=one), helper.make_node("Add", ["x", "c"], ["a"]),
             helper.make_node("Mul", ["a", "s"], ["y"])]
    feeds = {"x": rand(2, 3)}
    run_case(tmp_path, nodes, feeds, [("y", None)], inits={"s": np.float32(3.0)})
    graph = passes.run_all(frontend.import_model(save(make_model(
        [helper.make_node("Add", ["x", "s"], ["y"])], [("x", [])], [("y", [])], {"s": np.float32(2.0)}),
        tmp_path, "scalar.onnx"), {}))
    assert graph.tensor("s").shape == () and graph.tensor("y").shape == ()


def test_constant_graph_outputs_are_copied_from_their_data(tmp_path):
    # 'shape' folds to a constant that is also a graph output; 'twice' lists one tensor twice.
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Identity", ["r"], ["twice"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("twice", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("twice", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)], ir_version=11)
    source = cli.generate_files(save(model, tmp_path), {}, cpu="generic", namespace="t", class_name="M",
                                header_include="m.h", model_label="m")["source"]
    assert re.search(r"std::memcpy\(shape, kWeightShape, 16\);", source)
    assert re.search(r"std::memcpy\(twice_2, twice, 24\);", source)


@pytest.mark.parametrize("group,swap", [(1, False), (1, True), (4, False)])
def test_residual_add_fused_into_conv(tmp_path, group, swap):
    inits = {"w1": rand(4, 4, 3, 3), "b1": rand(4), "w2": rand(4, 4 // group, 3, 3)}
    add_inputs = ["x", "c2"] if swap else ["c2", "x"]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=group, name="conv2"),
             helper.make_node("Add", add_inputs, ["sum"], name="residual"),
             helper.make_node("Relu", ["sum"], ["y"], name="relu2")]
    model = make_model(nodes, [("x", [1, 4, 6, 6])], [("y", None)], inits)
    got, expected, files = compile_and_run(save(model, tmp_path), {"x": rand(1, 4, 6, 6)}, workdir=str(tmp_path))
    assert_close(got, expected)
    source = files["source"]
    assert "adds its last input as node 'residual' (Add)" in source
    assert "applies the activation of node 'relu2'" in source
    assert "// Step 3" not in source  # two convolutions, nothing else


@pytest.mark.parametrize("attrs,kernel,xshape", [
    ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, (3, 3), (1, 6, 9, 8)),
    ({"pads": [2, 0, 1, 3], "dilations": [2, 2]}, (3, 3), (2, 3, 7, 9)),
    ({"pads": [2, 2, 2, 2]}, (5, 5), (1, 4, 5, 3)),  # no column is clear of the padding
    ({"auto_pad": "SAME_UPPER", "strides": [2, 1]}, (3, 2), (1, 5, 6, 17)),
])
@pytest.mark.parametrize("activation", [None, "Clip"])
def test_depthwise_conv(tmp_path, attrs, kernel, xshape, activation):
    channels = xshape[1]
    inits = {"w": rand(channels, 1, *kernel), "b": rand(channels), "lo": np.array(-0.1, np.float32),
             "hi": np.array(0.2, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if activation else "y"], group=channels, **attrs)]
    if activation:
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
    model = make_model(nodes, [("x", list(xshape))], [("y", None)], inits)
    got, expected, files = compile_and_run(save(model, tmp_path), {"x": rand(*xshape)}, workdir=str(tmp_path))
    assert_close(got, expected)
    assert "DepthwiseConv2D" in files["source"]


def test_size_folds_to_the_element_count(tmp_path):
    nodes = [helper.make_node("Size", ["x"], ["n"]), helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "nf"], ["y"])]
    run_case(tmp_path, nodes, {"x": rand(2, 3, 5)}, [("y", None)])


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 3], "strides": [1, 2], "dilations": [2, 1], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 2, 1, 2], "count_include_pad": 1, "strides": [1, 2]}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
])
def test_pool_wide_rows(tmp_path, op, attrs):
    # Output rows of 16 or more columns take the row-wise kernels (kPoolRowMin in kernels.h).
    x = rand(1, 2, 9, 41)
    run_case(tmp_path, [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, [("y", None)])
