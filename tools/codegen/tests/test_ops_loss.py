"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnx's reference evaluator."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import check_model, save
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(12)


def rand(*shape, dtype=np.float32):
    return RNG.uniform(-2, 2, shape).astype(dtype)


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
def test_losses(tmp_path, op):
    # (Not ignore_index=-1 with mean and no weights: the reference evaluator's NLL then counts the
    # ignored positions in the mean's divisor, against the spec.) Every reduction, with and without weights and ignore_index, 2-D to 4-D, int32 and int64
    # targets, float32 and float64: one model, one compile.
    feeds = {"x2": rand(5, 4), "t2": RNG.integers(0, 4, (5,)).astype(np.int64),
             "x3": rand(3, 5, 2), "t3": RNG.integers(0, 5, (3, 2)).astype(np.int32),
             "x4": rand(2, 3, 2, 3), "t4": RNG.integers(0, 3, (2, 2, 3)).astype(np.int64),
             "w5": np.abs(rand(5)) + 0.1, "w3": np.abs(rand(3)) + 0.1,
             "xd": rand(2, 3, 4, dtype=np.float64), "td": RNG.integers(0, 3, (2, 4)).astype(np.int64),
             "wd": np.abs(rand(3, dtype=np.float64)) + 0.1}
    feeds["t4"][0, 0, 0] = -1  # the ignored class
    nodes, outputs = [], []
    cases = [("x2", "t2", None, "mean", None), ("x3", "t3", None, "sum", None), ("x3", "t3", "w5", "none", None),
             ("x3", "t3", "w5", "mean", 2), ("x4", "t4", "w3", "mean", -1), ("x4", "t4", None, "none", -1),
             ("x3", "t3", None, "mean", 1), ("xd", "td", "wd", "sum", 1)]
    for number, (x, t, w, reduction, ignore) in enumerate(cases):
        attrs = {"reduction": reduction}
        if ignore is not None:
            attrs["ignore_index"] = ignore
        outs = [f"loss{number}"]
        if op == "SoftmaxCrossEntropyLoss" and number % 2:
            outs.append(f"log_prob{number}")
        nodes.append(helper.make_node(op, [x, t] + ([w] if w else []), outs, name=f"n{number}", **attrs))
        outputs += outs
    check_model(tmp_path, nodes, feeds, outputs, opset=13, rtol=1e-5)


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
def test_loss_everything_ignored_is_nan(tmp_path, op):
    feeds = {"x": rand(2, 3), "t": np.array([1, 1], np.int64)}
    nodes = [helper.make_node(op, ["x", "t"], ["y"], ignore_index=1)]
    check_model(tmp_path, nodes, feeds, ["y"], opset=13)


@pytest.mark.parametrize("attrs,tshape,message", [
    ({"reduction": "average"}, (2,), "reduction must be 'none', 'sum' or 'mean'"),
    ({}, (2, 1), r"target has shape \[2, 1\], expected \[2\]"),
])
def test_loss_refusals(tmp_path, attrs, tshape, message):
    graph = helper.make_graph(
        [helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], **attrs)], "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("t", TensorProto.INT64, list(tshape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9), tmp_path)
    with pytest.raises(CodegenError, match=message):
        cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                           model_label="m")
