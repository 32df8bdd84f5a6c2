"""Bad input fails with one clear line naming the file, the node, the op and the problem."""

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import make_model, save
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

CODEGEN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(path, shapes=None):
    return cli.generate_files(path, shapes or {}, cpu="generic", namespace="t", class_name="M",
                              header_include="m.h", model_label=path)


def run_cli(tmp_path, model_path, *extra):
    return subprocess.run(
        [sys.executable, "-m", "pure_model_codegen", f"--model={model_path}", "--header_include=m.h",
         f"--out_header={tmp_path}/m.h", f"--out_source={tmp_path}/m.cc", *extra],
        cwd=CODEGEN_DIR, capture_output=True, text=True)


def test_unsupported_op_names_node_op_domain_opset(tmp_path):
    model = make_model([helper.make_node("ImageDecoder", ["x"], ["y"], name="the_decoder")], [("x", [1, 4])],
                       [("y", [1, 4])], opset=20)
    path = save(model, tmp_path)
    with pytest.raises(CodegenError) as info:
        generate(path)
    message = str(info.value)
    assert path in message and "the_decoder" in message and "ai.onnx.ImageDecoder" in message and "opset 20" in message


def test_custom_domain_is_rejected(tmp_path):
    node = helper.make_node("FusedThing", ["x"], ["y"], name="custom", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [1])],
                              [helper.make_tensor_value_info("y", 1, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
                              ir_version=9)
    path = save(model, tmp_path)
    with pytest.raises(CodegenError, match=r"custom.*com\.example\.FusedThing.*domain 'com.example'"):
        generate(path)


def test_unbound_dynamic_dimension_names_input_and_dim(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["batch", 3])], [("y", ["batch", 3])])
    path = save(model, tmp_path)
    with pytest.raises(CodegenError, match=r"input 'x' dimension 0 \('batch'\) is dynamic"):
        generate(path)
    generate(path, {"x": (2, 3)})  # bound: fine


def test_minus_one_dimension_is_dynamic(tmp_path):
    # paddle2onnx declares "any batch" as the value -1 (PP-OCR's cls model: x is [-1,3,?,?], its
    # output [-1,2]); input_shapes binds it like a named dimension. Other negative values stay errors.
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [-1, 3])], [("y", [-1, 3])])
    path = save(model, tmp_path)
    with pytest.raises(CodegenError, match=r"input 'x' dimension 0 \('-1'\) is dynamic"):
        generate(path)
    generate(path, {"x": (2, 3)})
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -2
    with pytest.raises(CodegenError, match=r"input 'x' is declared with a negative dimension \[-2, 3\]"):
        generate(save(model, tmp_path, "minus_two.onnx"), {"x": (2, 3)})


def test_bound_shape_must_agree_with_model(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["batch", 3])], [("y", ["batch", 3])])
    path = save(model, tmp_path)
    with pytest.raises(CodegenError, match="dimension 1 = 4 but the model fixes it to 3"):
        generate(path, {"x": (1, 4)})
    with pytest.raises(CodegenError, match="does not have as inputs"):
        generate(path, {"x": (1, 3), "z": (1,)})


def test_truncated_file(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 3])], [("y", [1, 3])],
                       {"unused": np.zeros(1000, np.float32)})
    data = model.SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    result = run_cli(tmp_path, str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr and "not an ONNX model" in result.stderr


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n")
    result = run_cli(tmp_path, str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(path) in result.stderr and "not an ONNX model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_empty_and_missing_file(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "empty" in run_cli(tmp_path, str(empty)).stderr
    result = run_cli(tmp_path, str(tmp_path / "missing.onnx"))
    assert result.returncode == 1 and "cannot read" in result.stderr


def test_dynamic_data_where_a_constant_is_needed(tmp_path):
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="dyn_reshape")],
                       [("x", [2, 3]), ("s", [2])], [("y", [3, 2])])
    path = save(model, tmp_path)
    with pytest.raises(CodegenError, match=r"dyn_reshape.*shape \('s'\) must be known at generation time"):
        generate(path, {"x": (2, 3), "s": (2,)})


def test_bad_attribute_value(tmp_path):
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=2)], [("x", [1, 3, 4, 4])],
                       [("y", None)], {"w": np.zeros((4, 3, 1, 1), np.float32)})
    path = save(model, tmp_path)
    with pytest.raises(CodegenError, match="group 2 does not divide input channels 3"):
        generate(path)


def test_cli_writes_nothing_on_error(tmp_path):
    model = make_model([helper.make_node("ImageDecoder", ["x"], ["y"])], [("x", [1, 4])], [("y", [1, 4])], opset=20)
    result = run_cli(tmp_path, save(model, tmp_path))
    assert result.returncode == 1
    assert not os.path.exists(tmp_path / "m.h") and not os.path.exists(tmp_path / "m.cc")


def test_opset_too_new(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1])], [("y", [1])])
    model.opset_import[0].version = 99
    path = str(tmp_path / "new.onnx")
    onnx.save(model, path)
    result = run_cli(tmp_path, path)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_legacy_broadcast_mismatch_is_refused(tmp_path):
    # Add-6 with broadcast=1 aligns b at `axis` (supported); a b that does not fit there is an error.
    model = make_model([helper.make_node("Add", ["x", "b"], ["y"], name="old_add", broadcast=1, axis=1)],
                       [("x", [2, 3, 4]), ("b", [4])], [("y", [2, 3, 4])], opset=6)
    with pytest.raises(CodegenError, match=r"old_add.*legacy broadcasting: \[4\] does not match \[2, 3, 4\]"):
        generate(save(model, tmp_path), {"x": (2, 3, 4), "b": (4,)})


def test_newest_opset_uses_each_ops_own_version(tmp_path):
    # Relu's newest definition is Relu-14: a model importing the newest opset still uses it.
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 4])], [("y", [1, 4])],
                       opset=onnx.defs.onnx_opset_version())
    generate(save(model, tmp_path))


def test_old_batchnorm_in_training_mode_is_refused(tmp_path):
    inits = {n: np.ones(3, np.float32) for n in ("s", "b", "m", "v")}
    model = make_model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn6")],
                       [("x", [1, 3, 2, 2])], [("y", [1, 3, 2, 2])], inits, opset=6)
    with pytest.raises(CodegenError, match="bn6.*training mode"):
        generate(save(model, tmp_path))
