"""passes/fuse_elementwise.py and the FusedElementwise step it makes: same results, fewer steps."""

import re

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import check_model, make_model, save
from pure_model_codegen import cli, frontend, passes
from pure_model_codegen.errors import CodegenError


def _steps(source):
    return re.findall(r"// Step \d+: (.*)", source)


def test_hardswish_chain_with_broadcasts_and_a_shared_intermediate(tmp_path):
    # PP-OCR's hardswish around a scalar affine, a per-channel Add, a NaN through Clip and Max,
    # and 'b' read both inside the group and by a graph output.
    nodes = [helper.make_node("Mul", ["x", "w0"], ["a"], name="scale"),
             helper.make_node("Add", ["a", "w1"], ["b"], name="shift"),
             helper.make_node("Add", ["b", "three"], ["c"], name="plus3"),
             helper.make_node("Clip", ["c", "lo", "hi"], ["d"], name="relu6"),
             helper.make_node("Mul", ["b", "d"], ["e"], name="gate"),
             helper.make_node("Div", ["e", "six"], ["f"], name="div6"),
             helper.make_node("Tanh", ["f"], ["g"], name="tanh"),
             helper.make_node("Add", ["g", "per_channel"], ["h"], name="bias"),
             helper.make_node("Max", ["h", "row"], ["y"], name="max"),
             helper.make_node("Neg", ["b"], ["z"], name="side")]
    inits = {"w0": np.float32(1.5), "w1": np.float32(0.25), "three": np.float32(3), "lo": np.float32(0),
             "hi": np.float32(6), "six": np.float32(6), "per_channel": np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1),
             "row": np.linspace(-1, 1, 5).astype(np.float32)}
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5)).astype(np.float32) * 4
    x[0, 0, 0, :2] = np.nan
    files = check_model(tmp_path, nodes, {"x": x}, ["y", "z", "b"], inits)
    steps = _steps(files["source"])
    assert len(steps) == 1
    for name in ("scale", "shift", "plus3", "relu6", "gate", "div6", "tanh", "bias", "max", "side"):
        assert f"'{name}'" in steps[0]


def test_a_tensor_read_in_between_keeps_the_groups_apart(tmp_path):
    # 'a' is read by a Softmax that runs before 'c': moving 'a' to where 'c' runs would be too late.
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Softmax", ["a"], ["s"], name="softmax"),
             helper.make_node("Mul", ["a", "s"], ["c"], name="mul"),
             helper.make_node("Neg", ["c"], ["y"], name="neg")]
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    files = check_model(tmp_path, nodes, {"x": x}, ["y"])
    steps = _steps(files["source"])
    assert len(steps) == 3 and "'mul' (Mul), 'neg' (Neg) in one loop" in steps[2]


def test_groups_keep_to_one_shape_and_to_float32(tmp_path):
    # The Add broadcasts up to a larger shape: it starts a group of its own. The int32 ops stay.
    nodes = [helper.make_node("Sigmoid", ["x"], ["a"], name="sigmoid"),
             helper.make_node("Abs", ["a"], ["b"], name="abs"),
             helper.make_node("Add", ["b", "wide"], ["c"], name="widen"),
             helper.make_node("Sqrt", ["c"], ["y"], name="sqrt"),
             helper.make_node("Neg", ["k"], ["m"], name="ineg"),
             helper.make_node("Abs", ["m"], ["n"], name="iabs")]
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 6)).astype(np.float32),
             "k": np.array([[-3, 4, -5]], np.int32)}
    files = check_model(tmp_path, nodes, feeds, ["y", "n"], {"wide": np.ones((4, 1), np.float32)})
    steps = _steps(files["source"])
    assert len(steps) == 4
    assert "'sigmoid' (Sigmoid), 'abs' (Abs) in one loop" in steps[0]
    assert "'widen' (Add), 'sqrt' (Sqrt) in one loop" in steps[1]


def test_pow_joins_a_group(tmp_path):
    # A constant exponent of 2 squares (LayerNorm's variance); any other exponent calls std::pow.
    nodes = [helper.make_node("Sub", ["x", "mean"], ["d"], name="centre"),
             helper.make_node("Pow", ["d", "two"], ["sq"], name="square"),
             helper.make_node("Pow", ["sq", "e"], ["y"], name="power")]
    x = np.random.default_rng(3).standard_normal((2, 40)).astype(np.float32)
    files = check_model(tmp_path, nodes, {"x": x, "e": np.full((2, 40), 0.75, np.float32)}, ["y", "d"],
                        {"mean": np.float32(0.1), "two": np.float32(2)})
    steps = _steps(files["source"])
    assert len(steps) == 1 and "'square' (Pow), 'power' (Pow) in one loop" in steps[0]
    assert "v3 * v3" in files["source"]


def test_batchnorm_joins_a_group(tmp_path):
    # PP-OCR's head after its ConvTranspose: a per-channel bias Add, BatchNormalization, Relu.
    rng = np.random.default_rng(4)
    c = 3
    inits = {"bias": rng.standard_normal((1, c, 1, 1)).astype(np.float32), "s": rng.standard_normal(c).astype(np.float32),
             "b": rng.standard_normal(c).astype(np.float32), "m": rng.standard_normal(c).astype(np.float32),
             "v": (rng.random(c) + 0.5).astype(np.float32)}
    nodes = [helper.make_node("Add", ["x", "bias"], ["a"], name="bias"),
             helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["n"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    x = rng.standard_normal((2, c, 4, 5)).astype(np.float32)
    files = check_model(tmp_path, nodes, {"x": x}, ["y"], inits)
    steps = _steps(files["source"])
    assert len(steps) == 1 and "'bias' (Add), 'bn' (BatchNormalization), 'relu' (Relu) in one loop" in steps[0]


def test_an_enlarging_nearest_resize_is_read_through_a_view(tmp_path):
    # PP-OCR's FPN: Add(Resize(coarse, x2), fine); here with a per-channel Mul, a row-broadcast
    # operand, x2 x4 factors, and the enlarged tensor also read outside (so it is stored).
    rng = np.random.default_rng(6)
    feeds = {"coarse": rng.standard_normal((1, 3, 4, 5)).astype(np.float32),
             "fine": rng.standard_normal((1, 3, 8, 20)).astype(np.float32)}
    inits = {"scales": np.asarray([1, 1, 2, 4], np.float32), "gain": rng.standard_normal((3, 1, 1)).astype(np.float32),
             "rows": rng.standard_normal((8, 1)).astype(np.float32)}
    nodes = [helper.make_node("Resize", ["coarse", "", "scales"], ["up"], name="up", mode="nearest"),
             helper.make_node("Add", ["up", "fine"], ["sum"], name="add"),
             helper.make_node("Mul", ["sum", "gain"], ["scaled"], name="gain"),
             helper.make_node("Add", ["scaled", "rows"], ["y"], name="rows"),
             helper.make_node("Softmax", ["up"], ["side"], name="side")]
    files = check_model(tmp_path, nodes, feeds, ["y", "side"], inits)
    steps = _steps(files["source"])
    assert "'up' (Resize), 'add' (Add), 'gain' (Mul), 'rows' (Add) in one loop" in steps[0]
    assert "pure_model::Softmax" in files["source"]


def test_the_pass_leaves_no_tensor_behind(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Exp", ["a"], ["y"])]
    model = make_model(nodes, [("x", [2, 3])], [("y", [2, 3])])
    graph = passes.run_all(frontend.import_model(save(model, tmp_path)))
    assert [n.op_type for n in graph.nodes] == ["FusedElementwise"]
    assert "a" not in graph.tensors and graph.nodes[0].outputs == ["y"]


def test_a_model_cannot_name_the_fused_op(tmp_path):
    node = helper.make_node("FusedElementwise", ["x"], ["y"], domain="pure_model")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("pure_model", 1)],
                              ir_version=9)
    with pytest.raises(CodegenError, match="fused step"):
        cli.generate_files(save(model, tmp_path), {}, cpu="generic", namespace="t", class_name="M",
                           header_include="m.h", model_label="m")
