"""passes/identity_views.py: Slice and Expand that keep every element become views."""

import numpy as np
from onnx import helper

from helpers import check_model


def test_full_slices_and_same_shape_expands_cost_nothing(tmp_path):
    x = np.random.default_rng(5).standard_normal((1, 6, 5, 1)).astype(np.float32)
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["full"], name="full_slice"),
             helper.make_node("Relu", ["full"], ["y"]),
             helper.make_node("Expand", ["x", "ones"], ["same"], name="same_expand"),
             helper.make_node("Neg", ["same"], ["z"]),
             # Not the identity: one row fewer, and the same extent reversed.
             helper.make_node("Slice", ["x", "starts", "short", "axes"], ["part"], name="part_slice"),
             helper.make_node("Slice", ["x", "last", "before", "axes", "back"], ["reversed"], name="reverse")]
    inits = {"starts": np.array([0, 0], np.int64), "ends": np.array([100, 5], np.int64),
             "short": np.array([5, 5], np.int64), "axes": np.array([1, 2], np.int64), "ones": np.array([1, 1, 1], np.int64),
             "last": np.array([-1, -1], np.int64), "before": np.array([-100, -100], np.int64),
             "back": np.array([-1, -1], np.int64)}
    files = check_model(tmp_path, nodes, {"x": x}, ["y", "z", "part", "reversed"], inits)
    source = files["source"]
    for name, op in (("full_slice", "Slice"), ("same_expand", "Expand")):
        assert f"node '{name}' ({op} keeping every element: a view)" in source
    assert "A view of 'x': no code." in source
    assert "node 'part_slice' (Slice):" in source and "node 'reverse' (Slice):" in source
