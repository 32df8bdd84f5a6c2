"""Layer, RMS, Group, Instance and Lp normalization and LRN against onnx's reference evaluator."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import check_model, run_generated, save
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(17)


def rand(*shape, dtype=np.float32):
    return RNG.uniform(-2, 2, shape).astype(dtype)


def test_layer_and_rms_normalization(tmp_path):
    feeds = {"x": rand(2, 3, 4), "s4": rand(4), "b4": rand(4), "s34": rand(3, 4), "b34": rand(3, 4),
             "xd": rand(3, 5, dtype=np.float64), "sd": rand(5, dtype=np.float64)}
    nodes = [
        helper.make_node("LayerNormalization", ["x", "s4", "b4"], ["l1", "mean1", "inv1"]),
        helper.make_node("LayerNormalization", ["x", "s34"], ["l2"], axis=1, epsilon=0.1),
        helper.make_node("LayerNormalization", ["xd", "sd"], ["l3"]),
        helper.make_node("RMSNormalization", ["x", "s4"], ["r1"]),
        helper.make_node("RMSNormalization", ["x", "s34"], ["r2"], axis=-2, epsilon=0.01),
        helper.make_node("RMSNormalization", ["xd", "sd"], ["r3"]),
    ]
    check_model(tmp_path, nodes, feeds, ["l1", "mean1", "inv1", "l2", "l3", "r1", "r2", "r3"], opset=23)


def test_group_and_instance_normalization(tmp_path):
    feeds = {"x": rand(2, 6, 3, 2), "s6": rand(6), "b6": rand(6), "x3": rand(2, 3, 5)}
    nodes = [
        helper.make_node("GroupNormalization", ["x", "s6", "b6"], ["g1"], num_groups=3),
        helper.make_node("GroupNormalization", ["x", "s6", "b6"], ["g2"], num_groups=6, epsilon=0.5),
        helper.make_node("InstanceNormalization", ["x", "s6", "b6"], ["i1"]),
        helper.make_node("InstanceNormalization", ["x3", "s3", "b3"], ["i2"], epsilon=0.2),
    ]
    feeds.update(s3=rand(3), b3=rand(3))
    check_model(tmp_path, nodes, feeds, ["g1", "g2", "i1", "i2"], opset=21)


def test_lp_normalization_and_lrn(tmp_path):
    x = rand(2, 5, 3, 2)
    x[0, :, 0, 0] = 0  # a zero vector stays zero
    # The reference evaluator's LRN windows channel c only for c < batch size: so no more channels.
    feeds = {"x": x, "xl": rand(5, 5, 2, 3)}
    nodes = [helper.make_node("LpNormalization", ["x"], ["p2"]),
             helper.make_node("LpNormalization", ["x"], ["p1"], axis=1, p=2),
             helper.make_node("LRN", ["xl"], ["n1"], size=3),
             helper.make_node("LRN", ["xl"], ["n2"], size=4, alpha=0.01, beta=0.5, bias=2.0)]
    check_model(tmp_path, nodes, feeds, ["p2", "p1", "n1", "n2"], opset=13)


def test_mean_variance_normalization(tmp_path):
    feeds = {"x": rand(2, 3, 4, 2), "y": rand(3, 5)}
    nodes = [helper.make_node("MeanVarianceNormalization", ["x"], ["m1"]),
             helper.make_node("MeanVarianceNormalization", ["x"], ["m2"], axes=[1, -1]),
             helper.make_node("MeanVarianceNormalization", ["y"], ["m3"], axes=[0, 1])]
    check_model(tmp_path, nodes, feeds, ["m1", "m2", "m3"], opset=13)


def test_lp_normalization_l1(tmp_path):
    # The reference evaluator sums x rather than |x| for p=1; the spec's L1 norm is the sum of |x|.
    x = rand(3, 4)
    graph = helper.make_graph([helper.make_node("LpNormalization", ["x"], ["y"], p=1)], "test",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9), tmp_path)
    expected = x / np.abs(x).sum(axis=-1, keepdims=True)
    got, _ = run_generated(path, {"x": x}, [expected], str(tmp_path))
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)


@pytest.mark.parametrize("node,shapes,message", [
    (helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=4), [(1, 6, 2), (6,), (6,)],
     "num_groups 4 must be positive and divide the 6 channels"),
    (helper.make_node("LayerNormalization", ["x", "s"], ["y"]), [(2, 3), (1,)],
     r"scale has shape \[1\]; this generator supports \[3\] here"),
    (helper.make_node("LayerNormalization", ["x", "s"], ["y"], stash_type=10), [(2, 3), (3,)],
     "stash_type float16 is not supported"),
    (helper.make_node("LpNormalization", ["x"], ["y"], p=3), [(2, 3)], "p must be 1 or 2"),
])
def test_normalization_refusals(tmp_path, node, shapes, message):
    names = [n for n in node.input if n]
    graph = helper.make_graph([node], "test",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(names, shapes)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shapes[0])])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10), tmp_path)
    with pytest.raises(CodegenError, match=message):
        cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                           model_label="m")
