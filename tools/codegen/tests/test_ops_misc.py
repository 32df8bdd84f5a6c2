"""Hardmax, TopK, EyeLike, CumProd, RotaryEmbedding, SwiGLU, Det, Einsum, BitCast, LinearAttention,
CausalConvWithState, LpPool and the pools of window_pool.py against onnx's reference evaluator (or
numpy where that departs from the spec); and their refusals."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import check_model, run_generated, save
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(29)


def rand(*shape, dtype=np.float32):
    return RNG.uniform(-2, 2, shape).astype(dtype)


def generate(tmp_path, node, inputs, opset):
    graph = helper.make_graph([node], "test", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1]) for o in node.output])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10), tmp_path)
    return cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                              model_label="m")


def test_hardmax_and_topk(tmp_path):
    x = rand(3, 4, 5)
    x[0, 1, :] = 1.0  # ties: the first index wins
    x[1, :, 2] = np.nan
    xi = RNG.integers(-5, 5, (4, 6)).astype(np.int32)
    feeds = {"x": x, "xi": xi}
    inits = {"k2": np.array([2], np.int64), "k3": np.array([3], np.int64)}
    nodes = [helper.make_node("Hardmax", ["x"], ["h1"]),
             helper.make_node("Hardmax", ["x"], ["h2"], axis=1),
             helper.make_node("TopK", ["x", "k3"], ["v1", "i1"]),
             helper.make_node("TopK", ["x", "k2"], ["v2", "i2"], axis=1, largest=0),
             helper.make_node("TopK", ["xi", "k3"], ["v3", "i3"], axis=0)]
    check_model(tmp_path / "13", nodes, feeds, ["h1", "h2", "v1", "i1", "v2", "i2", "v3", "i3"], inits, opset=13)
    # Before opset 10 TopK's k is an attribute.
    check_model(tmp_path / "9", [helper.make_node("TopK", ["x"], ["v", "i"], k=2)], {"x": rand(2, 3, 4)}, ["v", "i"],
                opset=9)


def test_hardmax_before_opset13_flattens(tmp_path):
    # The reference evaluator applies opset 13's per-axis semantics at every opset.
    x = rand(2, 3, 4)
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], axis=1)], "test",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=9), tmp_path)
    rows = x.reshape(2, 12)
    expected = np.zeros_like(rows)
    expected[np.arange(2), rows.argmax(axis=1)] = 1
    got, _ = run_generated(path, {"x": x}, [expected.reshape(x.shape)], str(tmp_path))
    np.testing.assert_array_equal(got[0], expected.reshape(x.shape))


def test_eyelike_cumprod_swiglu_det(tmp_path):
    feeds = {"x": rand(3, 4), "xi": RNG.integers(-3, 4, (2, 5)).astype(np.int32), "a": rand(2, 6), "b": rand(2, 6),
             "m": rand(2, 3, 3), "m1": rand(4, 4)}
    inits = {"axis1": np.array(1, np.int64), "axis0": np.array(0, np.int32)}
    nodes = [helper.make_node("EyeLike", ["x"], ["e1"], k=1),
             helper.make_node("EyeLike", ["x"], ["e2"], dtype=TensorProto.INT32, k=-2),
             helper.make_node("Mul", ["x", "e1"], ["e3"]),  # EyeLike folds; use it at run time too
             helper.make_node("CumProd", ["x", "axis1"], ["c1"]),
             helper.make_node("CumProd", ["xi", "axis0"], ["c2"], exclusive=1, reverse=1),
             helper.make_node("SwiGLU", ["a", "b"], ["s1"], alpha=1.5),
             helper.make_node("Det", ["m"], ["d1"]),
             helper.make_node("Det", ["m1"], ["d2"])]
    check_model(tmp_path, nodes, feeds, ["e1", "e2", "e3", "c1", "c2", "s1", "d1", "d2"], inits, opset=28)


def test_rotary_embedding(tmp_path):
    x4, x3 = rand(2, 3, 4, 8), rand(2, 4, 3 * 8)
    positions = np.array([[0, 3, 1, 5], [2, 2, 4, 0]], np.int64)
    feeds = {"x4": x4, "x3": x3, "cos": rand(6, 4), "sin": rand(6, 4), "pos": positions,
             "cos2": rand(6, 2), "sin2": rand(6, 2), "cosb": rand(2, 4, 4), "sinb": rand(2, 4, 4)}
    nodes = [helper.make_node("RotaryEmbedding", ["x4", "cos", "sin", "pos"], ["r1"]),
             helper.make_node("RotaryEmbedding", ["x3", "cos", "sin", "pos"], ["r2"], num_heads=3, interleaved=1),
             helper.make_node("RotaryEmbedding", ["x4", "cos2", "sin2", "pos"], ["r3"], rotary_embedding_dim=4),
             helper.make_node("RotaryEmbedding", ["x4", "cosb", "sinb"], ["r4"], interleaved=1)]
    check_model(tmp_path, nodes, feeds, ["r1", "r2", "r3", "r4"], opset=23)


def test_einsum(tmp_path):
    feeds = {"a": rand(2, 3, 4), "b": rand(2, 4, 5), "v": rand(4), "w": rand(4), "sq": rand(2, 3, 3),
             "d": rand(3, 4, dtype=np.float64)}
    nodes = [helper.make_node("Einsum", ["a", "b"], ["y1"], equation="bij,bjk->bik"),
             helper.make_node("Einsum", ["v", "w"], ["y2"], equation="i,i"),
             helper.make_node("Einsum", ["sq"], ["y3"], equation="...ii->...i"),
             helper.make_node("Einsum", ["a"], ["y4"], equation="ijk->kj"),
             helper.make_node("Einsum", ["a"], ["y5"], equation="ijk"),
             helper.make_node("Einsum", ["d"], ["y6"], equation="ij->i"),
             helper.make_node("Einsum", ["a", "v"], ["y7"], equation="...j,j->..."),
             helper.make_node("Einsum", ["v"], ["y8"], equation="i->")]
    check_model(tmp_path, nodes, feeds, [f"y{i}" for i in range(1, 9)], opset=12)


def test_lppool(tmp_path):
    x = rand(1, 2, 7, 6)
    feeds = {"x": x, "x1": rand(2, 3, 9), "x3": rand(1, 2, 4, 4, 4)}
    nodes = [helper.make_node("LpPool", ["x"], ["y1"], kernel_shape=[3, 2]),
             helper.make_node("LpPool", ["x"], ["y2"], kernel_shape=[2, 2], strides=[2, 1], p=3, dilations=[2, 2]),
             helper.make_node("LpPool", ["x1"], ["y3"], kernel_shape=[3], p=1),
             helper.make_node("LpPool", ["x3"], ["y4"], kernel_shape=[2, 2, 2], strides=[2, 2, 2])]
    check_model(tmp_path / "a", nodes, feeds, ["y1", "y2", "y3", "y4"], opset=18)
    # With padding the reference evaluator scales each window by kernel size / valid positions;
    # the spec's p-norm counts the padding as zeros.
    node = helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 0, 1, 2], p=2)
    graph = helper.make_graph([node], "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 7, 6])])
    (tmp_path / "b").mkdir()
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), tmp_path / "b")
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (0, 2)])
    expected = np.zeros((1, 2, 7, 6), np.float32)
    for r in range(7):
        for c in range(6):
            expected[..., r, c] = np.sqrt((padded[..., r:r + 3, c:c + 3] ** 2).sum(axis=(-2, -1)))
    got, _ = run_generated(path, {"x": x}, [expected], str(tmp_path / "b"))
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)


def test_pool_3d_and_indices(tmp_path):
    # What pool.py hands to window_pool.py: 3-D MaxPool and AveragePool, and MaxPool's Indices.
    x3 = rand(1, 2, 5, 4, 6)
    x2 = rand(2, 2, 5, 5)
    feeds = {"x3": x3, "x2": x2}
    nodes = [helper.make_node("MaxPool", ["x3"], ["m1"], kernel_shape=[2, 2, 3], strides=[2, 1, 2], dilations=[1, 2, 1]),
             helper.make_node("AveragePool", ["x3"], ["a1"], kernel_shape=[3, 2, 2], pads=[1, 0, 1, 1, 1, 0],
                              strides=[2, 2, 2], count_include_pad=1, ceil_mode=1),
             helper.make_node("AveragePool", ["x3"], ["a2"], kernel_shape=[3, 3, 3], pads=[1, 1, 1, 1, 1, 1]),
             helper.make_node("MaxPool", ["x2"], ["m2", "i2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("MaxPool", ["x2"], ["m3", "i3"], kernel_shape=[2, 2], strides=[2, 2], storage_order=1)]
    check_model(tmp_path, nodes, feeds, ["m1", "a1", "a2", "m2", "i2", "m3", "i3"], opset=19)
    # Other element types take the same loops.
    feeds = {"u": RNG.integers(0, 255, (1, 2, 5, 5)).astype(np.uint8),
             "s": RNG.integers(-128, 127, (1, 1, 6)).astype(np.int8), "d": rand(1, 2, 4, 4, dtype=np.float64)}
    nodes = [helper.make_node("MaxPool", ["u"], ["m1"], kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["s"], ["m2"], kernel_shape=[3], strides=[2]),
             helper.make_node("AveragePool", ["d"], ["a1"], kernel_shape=[2, 2])]
    check_model(tmp_path / "types", nodes, feeds, ["m1", "m2", "a1"], opset=19)


def test_linear_attention_and_causal_conv(tmp_path):
    b, t, hq, hkv, dk, dv = 2, 3, 4, 2, 3, 2
    feeds = {"q": rand(b, t, hq * dk), "k": rand(b, t, hkv * dk), "v": rand(b, t, hkv * dv),
             "past": rand(b, hkv, dk, dv), "g1": rand(b, t, hkv) * 0.3, "gk": rand(b, t, hkv * dk) * 0.3,
             "beta": np.abs(rand(b, t, hkv)), "beta1": np.abs(rand(b, t, 1)),
             "x": rand(2, 3, 5), "w": rand(3, 1, 3), "bias": rand(3), "xpast": rand(2, 3, 2), "w1": rand(3, 1, 1)}
    heads = dict(q_num_heads=hq, kv_num_heads=hkv)
    nodes = [helper.make_node("LinearAttention", ["q", "k", "v"], ["o1", "s1"], update_rule="linear", **heads),
             helper.make_node("LinearAttention", ["q", "k", "v", "past", "g1"], ["o2", "s2"], update_rule="gated",
                              scale=0.5, **heads),
             helper.make_node("LinearAttention", ["q", "k", "v", "past", "", "beta1"], ["o3", "s3"],
                              update_rule="delta", **heads),
             helper.make_node("LinearAttention", ["q", "k", "v", "past", "gk", "beta"], ["o4", "s4"], **heads),
             helper.make_node("CausalConvWithState", ["x", "w"], ["c1", "p1"]),
             helper.make_node("CausalConvWithState", ["x", "w", "bias", "xpast"], ["c2", "p2"], activation="silu"),
             helper.make_node("CausalConvWithState", ["x", "w1", "bias"], ["c3", "p3"])]
    check_model(tmp_path, nodes, feeds, ["o1", "s1", "o2", "s2", "o3", "s3", "o4", "s4", "c1", "p1", "c2", "p2", "c3", "p3"],
                opset=27)


def test_bitcast(tmp_path):
    feeds = {"f": rand(2, 3), "i8": RNG.integers(-128, 127, (5,)).astype(np.int8),
             "b": np.array([True, False, True]), "d": rand(4, dtype=np.float64)}
    nodes = [helper.make_node("BitCast", ["f"], ["y1"], to=TensorProto.INT32),
             helper.make_node("BitCast", ["i8"], ["y2"], to=TensorProto.UINT8),
             helper.make_node("BitCast", ["b"], ["y3"], to=TensorProto.UINT8),
             helper.make_node("BitCast", ["d"], ["y4"], to=TensorProto.INT64)]
    check_model(tmp_path, nodes, feeds, ["y1", "y2", "y3", "y4"], opset=26)


@pytest.mark.parametrize("node,inputs,opset,message", [
    (helper.make_node("TopK", ["x", "k"], ["v", "i"]),
     [("x", TensorProto.FLOAT, [2, 3]), ("k", TensorProto.INT64, [1])], 11, "K .* must be known at generation time"),
    (helper.make_node("Einsum", ["x"], ["y"], equation="ij->ik"), [("x", TensorProto.FLOAT, [2, 3])], 12,
     "output letter 'k'"),
    (helper.make_node("SwiGLU", ["x", "z"], ["y"]), [("x", TensorProto.FLOAT, [2, 3]), ("z", TensorProto.FLOAT, [3])],
     28, "must have the same shape"),
    (helper.make_node("RotaryEmbedding", ["x", "c", "s"], ["y"]),
     [("x", TensorProto.FLOAT, [1, 2, 6]), ("c", TensorProto.FLOAT, [1, 2, 3]), ("s", TensorProto.FLOAT, [1, 2, 3])],
     23, "required attribute 'num_heads'"),
    (helper.make_node("BitCast", ["x"], ["y"], to=TensorProto.INT16), [("x", TensorProto.INT32, [2])], 26,
     "int32 \\(32 bits\\) and int16 \\(16 bits\\) differ in width"),
])
def test_refusals(tmp_path, node, inputs, opset, message):
    with pytest.raises(CodegenError, match=message):
        generate(tmp_path, node, inputs, opset)
