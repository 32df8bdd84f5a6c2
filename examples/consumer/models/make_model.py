"""Writes models/scorer.onnx, the model this workspace brings: `python3 models/make_model.py`."""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    rng = np.random.default_rng(11)
    w = numpy_helper.from_array(rng.standard_normal((8, 2, 3, 3)).astype(np.float32) * 0.4, "conv.w")
    fc = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32) * 0.5, "fc.w")
    nodes = [
        helper.make_node("Conv", ["signal", "conv.w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["conv"], ["act"], name="tanh"),
        helper.make_node("GlobalMaxPool", ["act"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "fc.w"], ["score"], name="score"),
    ]
    graph = helper.make_graph(
        nodes, "scorer",
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["n", 2, 12, 12])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n", 3])],
        [w, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scorer.onnx"))


if __name__ == "__main__":
    main()
