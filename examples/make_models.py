"""Writes the example models, reproducibly: `python3 examples/make_models.py`.

Built with onnx.helper and a seeded numpy generator so the files are identical on every run and
machine (no exporter version in the loop). Opset 17: onnx's reference evaluator implements
BatchNormalization 9-13 with training-time running statistics, which would make it a wrong
reference for inference.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # ONNX Runtime 1.23 reads IR versions up to 10


def _weights(rng, name, shape, scale):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def make_mlp():
    """A 3-layer perceptron over 64 features: Gemm/Relu, MatMul+Add/Sigmoid, Gemm, Softmax."""
    rng = np.random.default_rng(1)
    inits = [
        _weights(rng, "fc1.weight", (32, 64), 0.2), _weights(rng, "fc1.bias", (32,), 0.1),
        _weights(rng, "fc2.weight", (32, 16), 0.2), _weights(rng, "fc2.bias", (16,), 0.1),
        _weights(rng, "fc3.weight", (10, 16), 0.3), _weights(rng, "fc3.bias", (10,), 0.1),
    ]
    nodes = [
        helper.make_node("Gemm", ["features", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["act1"], name="relu1"),
        helper.make_node("MatMul", ["act1", "fc2.weight"], ["fc2.mm"], name="fc2"),
        helper.make_node("Add", ["fc2.mm", "fc2.bias"], ["fc2.out"], name="fc2_bias"),
        helper.make_node("Sigmoid", ["fc2.out"], ["act2"], name="sigmoid2"),
        helper.make_node("Gemm", ["act2", "fc3.weight", "fc3.bias"], ["logits"], name="fc3", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="rules_pure_model examples")


def make_cnn():
    """A small image classifier: conv/BN/relu blocks, a depthwise conv, pooling, a residual add,
    a shape computation that folds away, and a classifier head."""
    rng = np.random.default_rng(2)
    inits = [
        _weights(rng, "stem.weight", (16, 3, 3, 3), 0.3), _weights(rng, "stem.bias", (16,), 0.1),
        _weights(rng, "bn.scale", (16,), 0.2), _weights(rng, "bn.bias", (16,), 0.1),
        _weights(rng, "bn.mean", (16,), 0.1),
        numpy_helper.from_array((np.abs(rng.standard_normal(16)) + 0.5).astype(np.float32), "bn.var"),
        _weights(rng, "dw.weight", (16, 1, 3, 3), 0.3),
        _weights(rng, "pw.weight", (32, 16, 1, 1), 0.3), _weights(rng, "pw.bias", (32,), 0.1),
        _weights(rng, "head.weight", (32, 10), 0.3), _weights(rng, "head.bias", (10,), 0.1),
        numpy_helper.from_array(np.array(0.0, np.float32), "clip.min"),
        numpy_helper.from_array(np.array(6.0, np.float32), "clip.max"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "stem.weight", "stem.bias"], ["stem"], name="stem_conv",
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["stem", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["stem_bn"],
                         name="stem_bn"),
        helper.make_node("Relu", ["stem_bn"], ["stem_act"], name="stem_relu"),
        helper.make_node("Conv", ["stem_act", "dw.weight"], ["dw"], name="depthwise_conv", group=16,
                         pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["dw", "clip.min", "clip.max"], ["dw_act"], name="relu6"),
        helper.make_node("Add", ["dw_act", "stem_act"], ["residual"], name="residual_add"),
        helper.make_node("MaxPool", ["residual"], ["pooled"], name="max_pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pooled", "pw.weight", "pw.bias"], ["pw"], name="pointwise_conv"),
        helper.make_node("Relu", ["pw"], ["pw_act"], name="pointwise_relu"),
        helper.make_node("AveragePool", ["pw_act"], ["avg"], name="avg_pool", kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("GlobalAveragePool", ["avg"], ["gap"], name="global_pool"),
        # Exporters write the flatten as Shape -> Gather -> Concat -> Reshape; it must fold away.
        helper.make_node("Shape", ["gap"], ["gap_shape"], name="shape"),
        helper.make_node("Gather", ["gap_shape", "zero"], ["batch"], name="gather_batch", axis=0),
        helper.make_node("Concat", ["batch", "minus_one"], ["flat_shape"], name="concat_shape", axis=0),
        helper.make_node("Reshape", ["gap", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "head.weight"], ["head"], name="head_matmul"),
        helper.make_node("Add", ["head", "head.bias"], ["logits"], name="head_bias"),
        helper.make_node("Transpose", ["stem_act"], ["stem_nhwc"], name="stem_to_nhwc", perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]),
         helper.make_tensor_value_info("stem_nhwc", TensorProto.FLOAT, ["batch", 16, 16, 16])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="rules_pure_model examples")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, make in (("mlp", make_mlp), ("cnn", make_cnn)):
        model = make()
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(here, name, name + ".onnx")
        onnx.save(model, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
