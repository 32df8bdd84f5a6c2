"""Writes control_flow.onnx, reproducibly: `python3 tests/control_flow/make_model.py`.

A model with a configuration input (`mode`, bound with input_values in BUILD.bazel) that selects
a branch of an If, and a Scan over the rows of the result: the generated `<name>_test` checks
both against onnx's reference evaluator, with `mode` fed to the reference and absent from Run().
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model():
    f = TensorProto.FLOAT
    then_branch = helper.make_graph([helper.make_node("Relu", ["x"], ["rectified"], name="relu")], "then", [],
                                    [helper.make_tensor_value_info("rectified", f, [4, 8])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["x"], ["negated"], name="neg")], "else", [],
                                    [helper.make_tensor_value_info("negated", f, [4, 8])])
    body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"], name="accumulate"),
         helper.make_node("Identity", ["sum_out"], ["partial"], name="emit")],
        "running_sum",
        [helper.make_tensor_value_info("sum_in", f, [8]), helper.make_tensor_value_info("row", f, [8])],
        [helper.make_tensor_value_info("sum_out", f, [8]), helper.make_tensor_value_info("partial", f, [8])])
    nodes = [
        helper.make_node("Equal", ["mode", "one"], ["rectify"], name="is_mode_one"),
        helper.make_node("If", ["rectify"], ["chosen"], name="choose", then_branch=then_branch,
                         else_branch=else_branch),
        helper.make_node("Scan", ["zeros", "chosen"], ["total", "partials"], name="cumulate", body=body,
                         num_scan_inputs=1),
    ]
    graph = helper.make_graph(
        nodes, "control_flow",
        [helper.make_tensor_value_info("x", f, [4, 8]), helper.make_tensor_value_info("mode", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("total", f, [8]), helper.make_tensor_value_info("partials", f, [4, 8])],
        [numpy_helper.from_array(np.array(1, np.int64), "one"),
         numpy_helper.from_array(np.zeros(8, np.float32), "zeros")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9,
                             producer_name="rules_pure_model tests")


if __name__ == "__main__":
    model = make_model()
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(os.path.dirname(os.path.abspath(__file__)), "control_flow.onnx"))
