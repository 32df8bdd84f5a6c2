"""obfuscate=True: the blob holds no weight as it is, every kernel that reads weights unmasks them,
and the compiled library carries no names from the model."""

import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import _kernels_include, assert_close, compile_and_run, save, write_generated
from pure_model_codegen import cli, cpp, obfuscate
from pure_model_codegen.errors import CodegenError


def _model():
    """One model whose steps read weights in every way the kernels and emitters do."""
    rng = np.random.default_rng(7)

    def weights(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    inits = {
        "conv_w": weights(12, 4, 3, 3), "conv_b": weights(12),  # packed GEMM panels (12 -> 16 rows)
        "wide_w": weights(8, 4, 7, 7),  # K = 196: two blocks of K, the second one not at a panel's start
        "chan_w": weights(32, 4, 5, 5),  # 64 positions, 32 channels: panels of 32, vectors across channels
        "dw_w": weights(4, 1, 3, 3), "dw_b": weights(4),  # depthwise
        "grp_w": weights(6, 2, 3, 3),  # grouped: the direct kernel, no bias
        "bn_s": weights(4), "bn_b": weights(4), "bn_m": weights(4), "bn_v": np.abs(weights(4)) + 0.5,
        "fc_w": weights(5, 256), "fc_b": weights(5),  # Gemm, B transposed
        "mm_w": weights(256, 150),  # MatMul: rows at every alignment to the 8-float blocks
        "add_c": weights(1, 4, 8, 8),  # elementwise, broadcast from a constant
        "cat_c": weights(1, 2, 8, 8),  # Concat with a constant: byte copies
        "table": weights(10, 6),  # Gather rows of a constant at run-time indices
        "const_out": np.arange(7, dtype=np.int64),  # a constant graph output: a copy at the end
        "flat": np.array([1, 256], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["y_conv"], name="relu"),
        helper.make_node("Conv", ["x", "wide_w"], ["y_wide"], pads=[3, 3, 3, 3], name="many_taps"),
        helper.make_node("Conv", ["x", "chan_w"], ["y_chan"], pads=[2, 2, 2, 2], name="few_positions"),
        helper.make_node("Conv", ["x", "dw_w", "dw_b"], ["y_dw"], pads=[1, 1, 1, 1], group=4, name="dw"),
        helper.make_node("Conv", ["x", "grp_w"], ["y_grp"], group=2, name="grouped"),
        helper.make_node("BatchNormalization", ["x", "bn_s", "bn_b", "bn_m", "bn_v"], ["y_bn"], name="bn"),
        helper.make_node("Reshape", ["x", "flat"], ["xf"], name="flatten"),
        helper.make_node("Gemm", ["xf", "fc_w", "fc_b"], ["y_fc"], transB=1, name="fc"),
        helper.make_node("MatMul", ["xf", "mm_w"], ["y_mm"], name="mm"),
        helper.make_node("Add", ["x", "add_c"], ["y_add"], name="add"),
        helper.make_node("Concat", ["x", "cat_c"], ["y_cat"], axis=1, name="cat"),
        helper.make_node("Gather", ["table", "idx"], ["y_gather"], axis=0, name="gather"),
        helper.make_node("Identity", ["const_out"], ["y_const"], name="copy_const"),
    ]
    float_outputs = ["y_conv", "y_wide", "y_chan", "y_dw", "y_grp", "y_bn", "y_fc", "y_mm", "y_add", "y_cat", "y_gather"]
    graph = helper.make_graph(
        nodes, "obfuscated",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in float_outputs]
        + [helper.make_tensor_value_info("y_const", TensorProto.INT64, [7])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return onnx.shape_inference.infer_shapes(model), inits


def _feeds():
    return {"x": np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32),
            "idx": np.array([9, 0, 4], np.int64)}


def test_masked_weights_give_the_reference_results(tmp_path):
    model, inits = _model()
    got, expected, files = compile_and_run(save(model, tmp_path), _feeds(), workdir=str(tmp_path), obfuscate=True)
    assert_close({k: v for k, v in got.items() if k != "y_const"},
                 {k: v for k, v in expected.items() if k != "y_const"})
    np.testing.assert_array_equal(got["y_const"], expected["y_const"])
    # Every weight-reading kernel got the masked views.
    for kernel in ("Conv2DGemm<", "Conv2DGemmChannels<", "DepthwiseConv2D", "Conv2D<", "Gemm<", "MatMul<", "CopyBytes"):
        assert kernel in files["source"]
    assert "pure_model::Masked<float>" in files["source"]


def test_masked_spatial_kernels(tmp_path):
    # ConvTranspose reads packed weights through the GEMM micro-kernel; Resize reads its
    # interpolation weights, which the generator computed, from the blob too.
    rng = np.random.default_rng(3)
    inits = {"ct_w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "ct_b": rng.standard_normal(3).astype(np.float32),
             "scales": np.array([1, 1, 2, 1.5], np.float32), "axes": np.array([2], np.int64)}
    inits["c3_w"] = rng.standard_normal((2, 4, 1, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "ct_w", "ct_b"], ["y_ct"], strides=[2, 2], name="up"),
             helper.make_node("Unsqueeze", ["x", "axes"], ["x5"], name="to_3d"),
             helper.make_node("Conv", ["x5", "c3_w"], ["y_c3"], pads=[0, 1, 1, 0, 1, 1], name="conv3d"),
             helper.make_node("Resize", ["x", "", "scales"], ["y_rs"], mode="linear", name="resize")]
    graph = helper.make_graph(
        nodes, "spatial", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y_ct", "y_rs", "y_c3")],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9))
    got, expected, files = compile_and_run(save(model, tmp_path), {"x": _feeds()["x"]}, workdir=str(tmp_path),
                                           obfuscate=True)
    assert_close(got, expected)
    for kernel in ("ConvTranspose<", "ResampleAxis<", "Conv3D<"):
        assert kernel in files["source"]


def test_ops_not_yet_masked_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    inits = {"w": rng.standard_normal((1, 8, 2)).astype(np.float32), "r": rng.standard_normal((1, 8, 2)).astype(np.float32)}
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=2, name="lstm")], "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 2])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), tmp_path)
    cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h", model_label="m")
    with pytest.raises(CodegenError, match="obfuscate does not cover this op's constant inputs yet"):
        cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                           model_label="m", obfuscate=True)


def test_blob_holds_no_weight_as_it_is(tmp_path):
    model, inits = _model()
    path = save(model, tmp_path)
    plain = cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                               model_label="m")["weights"]
    masked = cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                                model_label="m", obfuscate=True)["weights"]
    found = 0
    for name, value in inits.items():
        raw = value.tobytes()
        for start in range(0, len(raw) - 7, 8):  # every 8-byte window of every tensor
            window = raw[start:start + 8]
            found += window in plain
            assert window not in masked, f"bytes {start}.. of '{name}' appear in the masked blob"
    assert found > 0  # the control: the plain blob does hold them
    # No run of zeros either (padding, the zero rows of packed panels).
    assert bytes(8) not in masked


def test_key_is_deterministic_and_follows_model_and_user_key(tmp_path):
    model, _ = _model()
    path = save(model, tmp_path)

    def blob(**options):
        return cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                                  model_label="m", obfuscate=True, **options)["weights"]

    assert blob() == blob()
    assert blob(obfuscation_key="a") == blob(obfuscation_key="a") != blob(obfuscation_key="b")
    assert obfuscate.model_key(path) != obfuscate.model_key(path, "b")


def test_mask_unmasks_itself():
    data = bytes(range(37))
    assert obfuscate.mask(obfuscate.mask(data, 1234), 1234) == data
    assert obfuscate.mask(data, 1234) != obfuscate.mask(data, 1235)


def _rodata(obj, tmp_path):
    out = tmp_path / "rodata.bin"
    subprocess.run([shutil.which("objcopy") or "objcopy", "-O", "binary", "--only-section=.rodata*", str(obj),
                    str(out)], check=True)
    return out.read_bytes()


def test_library_rodata_names_nothing_of_the_model(tmp_path):
    model, inits = _model()
    model.producer_name = "secret_producer"
    path = save(model, tmp_path)
    # Shorter names turn up in any few kilobytes of weights by chance (the extraction suite skips
    # them too).
    names = [n for n in [n.name for n in model.graph.node] + list(inits) + ["secret_producer", "obfuscated"]
             if len(n) >= 4]
    for obfuscated in (False, True):
        workdir = tmp_path / ("masked" if obfuscated else "plain")
        workdir.mkdir()
        files = cli.generate_files(path, {"x": (1, 4, 8, 8), "idx": (3,)}, cpu="generic", namespace="t",
                                   class_name="M", header_include="model.h", model_label="//secret:model.onnx",
                                   weights_path=str(workdir / "model_weights.bin"), obfuscate=obfuscated)
        objects = []
        for source in write_generated(files, str(workdir)):
            objects.append(source + ".o")
            subprocess.run(["g++", "-std=c++17", "-O2", "-I", str(workdir), "-I", _kernels_include(), "-c", source,
                            "-o", objects[-1]], check=True)
        rodata = b"".join(_rodata(o, tmp_path) for o in objects)
        for name in names + ["secret"]:
            assert name.encode() not in rodata, f"'{name}' in .rodata ({'obfuscated' if obfuscated else 'plain'})"
        if not obfuscated:
            assert inits["conv_b"].tobytes() in rodata  # the control: the weights are there
        assert os.path.getsize(objects[1]) > 0
        if obfuscated:
            # Nor does the symbol table of the unstripped objects (template instances over the
            # steps' parameter structs, local data): obfuscated, helpers have neutral names.
            symbols = subprocess.run(["nm", "-C", *objects], capture_output=True, text=True, check=True).stdout
            for name in names:
                assert cpp.camel_case(name) not in symbols and name not in symbols, f"'{name}' in the symbol table"
