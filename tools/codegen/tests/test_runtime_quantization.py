"""Models that quantize activations at run time compute Sigmoid as ONNX Runtime does
(passes/runtime_quantization.py, LogisticRational in kernels.h); others keep the accurate one."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import make_model, run_generated, save
from pure_model_codegen import frontend, passes
from pure_model_codegen.ops.elementwise import KERNEL_ATTR

# A dense sweep of the function's whole domain, the clamp points and past them, NaN aside.
_SWEEP = np.concatenate([np.linspace(-25, 25, 200_001), np.linspace(-1e-3, 1e-3, 2_001),
                         [0.0, -0.0, -18.0, 18.0, np.inf, -np.inf]]).astype(np.float32)


def _sigmoid_model(quantize):
    """x -> Sigmoid -> y, and (quantize) DynamicQuantizeLinear of y beside it."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid")]
    outputs = [("y", [_SWEEP.size])]
    model = make_model(nodes, [("x", [_SWEEP.size])], outputs)
    if quantize:
        model.graph.node.append(helper.make_node("DynamicQuantizeLinear", ["y"], ["q", "q_scale", "q_zero_point"],
                                                 name="quantize"))
        model.graph.output.extend([helper.make_tensor_value_info("q", TensorProto.UINT8, [_SWEEP.size]),
                                   helper.make_tensor_value_info("q_scale", TensorProto.FLOAT, []),
                                   helper.make_tensor_value_info("q_zero_point", TensorProto.UINT8, [])])
    return model


@pytest.mark.parametrize("quantize", [False, True])
def test_the_pass_chooses_by_whether_the_model_quantizes_at_run_time(tmp_path, quantize):
    path = save(_sigmoid_model(quantize), tmp_path)
    graph = passes.run_all(frontend.import_model(path, {"x": (_SWEEP.size,)}))
    sigmoid = next(n for n in graph.nodes if n.op_type == "Sigmoid")
    assert sigmoid.attrs.get(KERNEL_ATTR) == ("LogisticRational" if quantize else None)


def _run(tmp_path, quantize):
    path = save(_sigmoid_model(quantize), str(tmp_path))
    expected = [np.zeros(_SWEEP.size, np.float32)]
    if quantize:
        expected += [np.zeros(_SWEEP.size, np.uint8), np.zeros((), np.float32), np.zeros((), np.uint8)]
    got, files = run_generated(path, {"x": _SWEEP}, expected, str(tmp_path))
    return path, got, files["source"]


def test_logistic_rational_is_onnxruntime_sigmoid_bit_for_bit(tmp_path):
    path, got, source = _run(tmp_path, quantize=True)
    assert "pure_model::LogisticRational(v)" in source
    # Its accuracy, whatever the reference: 1.7e-7 absolute at worst, and within [0, 1 + 1 ulp]
    # (ONNX Runtime's goes one ulp over 1 near x = 17.8).
    exact = 1 / (1 + np.exp(-_SWEEP.astype(np.float64)))
    assert np.abs(got[0] - exact).max() < 2e-7
    assert got[0].min() >= 0 and got[0].max() <= np.nextafter(np.float32(1), np.float32(2))
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    for name, mine, theirs in zip(["y", "q", "q_scale", "q_zero_point"], got, session.run(None, {"x": _SWEEP})):
        np.testing.assert_array_equal(mine, theirs, err_msg=name)


def test_other_models_keep_the_accurate_sigmoid(tmp_path):
    _, got, source = _run(tmp_path, quantize=False)
    assert "pure_model::Sigmoid(v)" in source and "LogisticRational" not in source
    exact = 1 / (1 + np.exp(-_SWEEP.astype(np.float64)))
    relative = np.abs(got[0] - exact) / np.maximum(exact, np.finfo(np.float32).tiny)
    assert relative.max() < 1e-6
