"""Inputs bound to values at generation time (--input_value): constants of the model, not inputs."""

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import assert_close, compile_and_run, save
from pure_model_codegen import cli, frontend
from pure_model_codegen.errors import CodegenError

CODEGEN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reduce_model(axes_shape=("n",), axes_type=TensorProto.INT64):
    """ReduceSum over the axes given as a graph input (which the generator needs at generation time)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
         helper.make_tensor_value_info("axes", axes_type, list(axes_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)


def generate(path, values, shapes=None):
    return cli.generate_files(path, shapes or {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                              model_label=path, input_values=values)


def test_bound_input_becomes_a_constant_and_leaves_run(tmp_path):
    path = save(_reduce_model(), tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    got, expected, files = compile_and_run(path, {"x": x}, input_values={"axes": np.array([0, 2], np.int64)},
                                           workdir=str(tmp_path))
    assert_close(got, expected)
    assert "void Run(const float* x, float* y);" in files["header"]
    assert "Input 'axes' is bound at generation time (input_values) to int64[2] {0, 2}" in files["header"]
    assert '"axes"' not in files["descriptor"]


def test_unbound_the_same_model_is_dynamic_data(tmp_path):
    path = save(_reduce_model(), tmp_path)
    with pytest.raises(CodegenError, match="depend"):
        generate(path, {}, {"axes": (2,)})


@pytest.mark.parametrize("texts, shape, message", [
    (["0", "x"], None, "value 'x', which is not an integer"),
    (["1.5"], None, "not an integer"),
    (["99999999999999999999"], None, "outside"),
    (["0", "1", "2"], {"axes": (2,)}, "3 values, but its shape [2] holds 2"),
    (["0", "1"], {"axes": (1, 2, 3)}, "input_shapes gives input 'axes' rank 3"),
])
def test_values_must_fit_the_declared_shape_and_type(tmp_path, texts, shape, message):
    path = save(_reduce_model(), tmp_path)
    with pytest.raises(CodegenError) as info:
        generate(path, {"axes": texts}, shape)
    assert message in str(info.value)


def test_fixed_shape_and_other_types_are_checked(tmp_path):
    path = save(_reduce_model(axes_shape=(2,)), tmp_path)
    with pytest.raises(CodegenError, match="1 values, but its shape"):
        generate(path, {"axes": ["0"]})
    flags = frontend.parse_input_values(["b=true,0", "f=nan,1e40"])
    value_info = helper.make_tensor_value_info("b", TensorProto.BOOL, [2])
    assert frontend._bound_value(value_info, TensorProto.BOOL, None, flags["b"]).tolist() == [True, False]
    with pytest.raises(CodegenError, match="0, 1, true or false"):
        frontend._bound_value(value_info, TensorProto.BOOL, None, ["2", "0"])
    with pytest.raises(CodegenError, match="beyond the range of float32"):
        frontend._bound_value(helper.make_tensor_value_info("f", TensorProto.FLOAT, [2]), TensorProto.FLOAT, None,
                              flags["f"])
    # The ml_dtypes types too, which np.finfo does not know.
    half = helper.make_tensor_value_info("h", TensorProto.BFLOAT16, [2])
    assert frontend._bound_value(half, TensorProto.BFLOAT16, None, ["1.5", "-2"]).astype(float).tolist() == [1.5, -2]
    with pytest.raises(CodegenError, match="beyond the range of bfloat16"):
        frontend._bound_value(half, TensorProto.BFLOAT16, None, ["1.5", "1e39"])


def test_unknown_or_twice_named_inputs(tmp_path):
    path = save(_reduce_model(), tmp_path)
    with pytest.raises(CodegenError, match="input_values names nope, which the model does not have"):
        generate(path, {"axes": ["0"], "nope": ["1"]})
    with pytest.raises(CodegenError, match="names input 'a' twice"):
        frontend.parse_input_values(["a=1", "a=2"])
    with pytest.raises(CodegenError, match="must look like NAME=V0,V1"):
        frontend.parse_input_values(["novalue"])


def test_value_texts_read_back_exactly():
    values = np.array([0.1, -3.4028235e38, 1e-45, np.inf], np.float32)
    info = helper.make_tensor_value_info("f", TensorProto.FLOAT, [4])
    back = frontend._bound_value(info, TensorProto.FLOAT, None, frontend.value_texts(values))
    assert back.tobytes() == values.tobytes()


def test_cli_flag(tmp_path):
    path = save(_reduce_model(), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pure_model_codegen", f"--model={path}", "--header_include=m.h",
         f"--out_header={tmp_path}/m.h", f"--out_source={tmp_path}/m.cc", "--input_value=axes=0,2"],
        cwd=CODEGEN_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "m.h") as f:
        assert "int64[2] {0, 2}" in f.read()


def test_make_testdata_feeds_bound_values_and_writes_no_file(tmp_path):
    path = save(_reduce_model(), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pure_model_codegen.make_testdata", f"--model={path}", "--input_value=axes=0,2",
         f"--out_dir={tmp_path}/data"], cwd=CODEGEN_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "data" / "inputs")) == ["x.npy"]
    x = np.load(tmp_path / "data" / "inputs" / "x.npy")
    np.testing.assert_allclose(np.load(tmp_path / "data" / "expected" / "y.npy"), x.sum(axis=(0, 2)), rtol=1e-5)


def test_make_testdata_keeps_scalar_inputs_scalar(tmp_path):
    # A scalar input that is not bound (a run-time If condition, say) is fed as a 0-d array.
    graph = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "t",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pure_model_codegen.make_testdata", f"--model={path}", f"--out_dir={tmp_path}/data"],
        cwd=CODEGEN_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "data" / "inputs" / "s.npy").shape == ()
