"""Attention, generated, compiled and run, against onnx's reference evaluator; and its refusals."""

import numpy as np
import pytest
from onnx import helper

from helpers import check_model, make_model, save
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(23)


def rand(*shape, dtype=np.float32):
    return RNG.uniform(-1, 1, shape).astype(dtype)


def attention(inputs, outputs, **attrs):
    return helper.make_node("Attention", inputs, outputs, name=outputs[0] + "_node", **attrs)


def test_attention_opset23(tmp_path):
    # Several configurations side by side, one compile: 4-D and 3-D, multi-head, grouped-query and
    # different value head sizes, masks of each kind and rank, past/present, every qk output mode.
    feeds = {
        "q1": rand(2, 3, 4, 8), "k1": rand(2, 3, 6, 8), "v1": rand(2, 3, 6, 8),
        "q2": rand(2, 4, 24), "k2": rand(2, 4, 8), "v2": rand(2, 4, 12),
        "pk2": rand(2, 2, 3, 4), "pv2": rand(2, 2, 3, 6),
        "q3": rand(1, 2, 3, 4), "k3": rand(1, 2, 5, 4), "v3": rand(1, 2, 5, 6), "m3": rand(3, 4),
        "q4": rand(2, 4, 3, 4), "k4": rand(2, 1, 5, 4), "v4": rand(2, 1, 5, 4),
        "m4": RNG.integers(0, 2, (2, 1, 3, 5)).astype(bool),
        "q5": rand(1, 1, 2, 4), "k5": rand(1, 1, 3, 4), "v5": rand(1, 1, 3, 4),
        "m5": np.array([[True, False, True], [False, False, False]]),
        "q6": rand(1, 2, 3, 4, dtype=np.float64), "k6": rand(1, 2, 3, 4, dtype=np.float64),
        "v6": rand(1, 2, 3, 4, dtype=np.float64),
    }
    # First the node that omits an input: the reference evaluator files omitted outputs under the
    # name "" too, where a later omitted input would find them.
    nodes = [
        attention(["q2", "k2", "v2", "", "pk2", "pv2"], ["y2", "pk2_out", "pv2_out", "qk2"], q_num_heads=6,
                  kv_num_heads=2, is_causal=1, qk_matmul_output_mode=3),
        attention(["q1", "k1", "v1"], ["y1", "", "", "qk1"]),
        # A float mask shorter than the keys: the missing columns are -inf.
        attention(["q3", "k3", "v3", "m3"], ["y3", "", "", "qk3"], softcap=0.7, qk_matmul_output_mode=1),
        attention(["q4", "k4", "v4", "m4"], ["y4", "", "", "qk4"], scale=0.3, qk_matmul_output_mode=2),
        # The second query row sees no key: zeros, not NaN.
        attention(["q5", "k5", "v5", "m5"], ["y5"], is_causal=1),
        attention(["q6", "k6", "v6"], ["y6"], softmax_precision=11, is_causal=1),
    ]
    outputs = ["y2", "pk2_out", "pv2_out", "qk2", "y1", "qk1", "y3", "qk3", "y4", "qk4", "y5", "y6"]
    files = check_model(tmp_path, nodes, feeds, outputs, opset=23)
    assert "Query head i1 reads key/value head i1 / 4." in files["source"]


def test_attention_external_cache_and_windows(tmp_path):
    # nonpad_kv_seqlen (opset 24 on): padding and the bottom-right causal frontier, whose offset
    # is negative for the second batch (more queries than valid keys: leading rows see nothing).
    feeds = {"q": rand(2, 2, 3, 4), "k": rand(2, 2, 5, 4), "v": rand(2, 2, 5, 4),
             "lengths": np.array([5, 2], np.int64)}
    for name in ("24", "25"):
        (tmp_path / name).mkdir()
    nodes = [attention(["q", "k", "v", "", "", "", "lengths"], ["y1"], is_causal=1),
             attention(["q", "k", "v", "", "", "", "lengths"], ["y2"])]
    check_model(tmp_path / "24", nodes, feeds, ["y1", "y2"], opset=24)
    nodes = [attention(["q", "k", "v"], ["y1"], left_window_size=1, right_window_size=2),
             attention(["q", "k", "v"], ["y2"], is_causal=1, left_window_size=2),
             attention(["q", "k", "v", "", "", "", "lengths"], ["y3"], is_causal=1, left_window_size=1)]
    check_model(tmp_path / "25", nodes, {k: feeds[k] for k in ("q", "k", "v", "lengths")}, ["y1", "y2", "y3"],
                opset=25)


@pytest.mark.parametrize("inputs,shapes,attrs,message", [
    (["q", "k", "v"], [(1, 2, 8), (1, 2, 8), (1, 2, 8)], {}, "required attribute 'q_num_heads'"),
    (["q", "k", "v"], [(1, 3, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4)], {}, "not a multiple of kv_num_heads"),
    (["q", "k", "v"], [(1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4)], {"softmax_precision": 10},
     "softmax_precision float16 is not supported"),
    (["q", "k", "v", "", "pk"], [(1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 1, 4)], {},
     "past_key and past_value must be given together"),
    (["q", "k", "v"], [(1, 2, 2, 4), (1, 2, 2, 3), (1, 2, 2, 4)], {}, "K's head size 3 differs from Q's 4"),
])
def test_attention_refusals(tmp_path, inputs, shapes, attrs, message):
    named = [n for n in inputs if n]
    model = make_model([attention(inputs, ["y"], **attrs)], list(zip(named, shapes)), [("y", [1])], opset=23)
    with pytest.raises(CodegenError, match=message):
        cli.generate_files(save(model, tmp_path), {}, cpu="generic", namespace="t", class_name="M",
                           header_include="m.h", model_label="m")
