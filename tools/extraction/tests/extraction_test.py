"""The attacker's searches find what is there, in any layout, and nothing that is not."""

import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import extraction  # noqa: E402

RNG = np.random.default_rng(7)


def _model(tmp_path):
    weight = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
    dense = RNG.standard_normal((6, 10)).astype(np.float32)
    bias = np.zeros(8, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "stem_weight", "stem_bias"], ["stem_features"], name="stem_convolution")],
        "secret_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("stem_features", TensorProto.FLOAT, [1, 8, 6, 6])],
        [numpy_helper.from_array(weight, "stem_weight"), numpy_helper.from_array(bias, "stem_bias"),
         numpy_helper.from_array(dense, "dense_weight")])
    model = helper.make_model(graph, producer_name="acme-exporter")
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return str(path), weight, dense


def _noise(n):
    return RNG.integers(0, 256, n, dtype=np.uint8).tobytes()


def test_model_file_gives_everything_away(tmp_path):
    path, _, _ = _model(tmp_path)
    report = extraction.attack(path, "model file", [_noise(999), open(path, "rb").read()])
    assert report.tensors_recovered == report.weight_tensors == 2  # the all-zero bias is too uninformative
    assert report.weight_share == 1.0
    assert report.names_found["node"] == ["stem_convolution"]
    assert "stem_weight" in report.names_found["tensor"]
    assert report.names_found["graph"] == ["secret_detector"]
    assert report.structure_chunks_found == report.structure_chunks_total > 0
    assert "'acme-exporter'" in report.signatures_found
    assert not report.clean()


def test_weights_found_in_another_dimension_order_at_odd_offsets(tmp_path):
    path, weight, dense = _model(tmp_path)
    # A packed layout: channels last, and the dense weight transposed, each at an unaligned offset.
    blob = _noise(13) + weight.transpose(1, 2, 3, 0).tobytes() + _noise(7) + dense.T.tobytes() + _noise(5)
    report = extraction.attack(path, "binary", [blob])
    by_name = {t.name: t for t in report.tensors}
    assert by_name["stem_weight"].recovered and by_name["stem_weight"].best_order == (1, 2, 3, 0)
    assert by_name["dense_weight"].share == 1.0 and by_name["dense_weight"].best_order == (1, 0)
    assert report.names_recovered == 0 and report.structure_chunks_found == 0 and not report.signatures_found


def test_part_of_a_tensor_counts_as_part(tmp_path):
    path, weight, _ = _model(tmp_path)
    half = weight.reshape(-1)[: weight.size // 2]
    report = extraction.attack(path, "binary", [_noise(100) + half.tobytes() + _noise(100)])
    finding = {t.name: t for t in report.tensors}["stem_weight"]
    assert 0.45 <= finding.share <= 0.55


def test_masked_weights_and_no_names_are_clean(tmp_path):
    path, weight, dense = _model(tmp_path)
    key = np.frombuffer(_noise(weight.nbytes), np.uint32)
    masked = (weight.reshape(-1).view(np.uint32) ^ key).tobytes()
    report = extraction.attack(path, "binary", [_noise(50) + masked + _noise(50)])
    assert report.clean(), report.summary()


def test_windows_do_not_straddle_files(tmp_path):
    path, _, dense = _model(tmp_path)
    raw = dense.reshape(-1).tobytes()
    report = extraction.attack(path, "binary", [raw[:10], raw[10:20]])
    assert {t.name: t for t in report.tensors}["dense_weight"].recovered_elements == 0


def test_markdown_table_has_one_row_per_report(tmp_path):
    path, _, _ = _model(tmp_path)
    report = extraction.attack(path, "x", [_noise(64)])
    table = extraction.markdown_table([("m", "ours", report), ("m", "ORT", report)])
    assert table.count("\n| m |") == 2


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
