"""Quantized ops (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, ConvInteger,
MatMulInteger, QLinearConv, QLinearMatMul), generated, compiled and run, against onnx's
reference evaluator: integer outputs must match exactly. Each test puts several variants into one
model, so that one compile covers them; the rejections follow at the end.
"""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import quantized
from test_ops_types import assert_match, compile_and_run, make_model

RNG = np.random.default_rng(5)


def ints(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def scalar(value, dtype):
    return np.array(value, dtype)


def check(tmp_path, nodes, feeds, outputs, initializers=None, opset=21, fold=False, reference_opset=None):
    """Runs the graph and compares every output exactly (floats to 1e-6); with fold, also the
    graph with every input an initializer, which the generator evaluates at generation time.
    reference_opset: the opset at which onnx's reference evaluates the graph, where it lacks the
    older version of an op (DequantizeLinear before 19) whose semantics are the same."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = make_model(nodes, feeds, outputs, initializers, opset)
    reference = None
    if reference_opset:
        reference = ReferenceEvaluator(make_model(nodes, feeds, outputs, initializers, reference_opset)).run(None, feeds)
    got, expected, files = compile_and_run(model, feeds, str(run_dir), reference)
    assert_match(got, expected, rtol=1e-6)
    if fold:
        fold_dir = tmp_path / "fold"
        fold_dir.mkdir()
        folded_model = make_model(nodes, {}, outputs, {**(initializers or {}), **feeds}, opset)
        got, expected, folded = compile_and_run(folded_model, {}, str(fold_dir))
        assert "pure_model::" not in folded["source"], "a constant graph should fold completely"
        assert_match(got, expected)
    return files


def generate(tmp_path, node, feeds, initializers, opset):
    """The generator's result for a one-node model that onnx's shape inference would refuse."""
    graph = helper.make_graph(
        [node], "test",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
         for k, v in feeds.items()],
        [helper.make_tensor_value_info(node.output[0], TensorProto.UINT8, [])],  # checked after the node
        [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    path = str(tmp_path / "model.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=onnx.IR_VERSION),
              path)
    return cli.generate_files(path, {k: v.shape for k, v in feeds.items()}, cpu="generic", namespace="t",
                              class_name="Model", header_include="model.h", model_label="test")


def _ties(shape, scale):
    """Values whose quotient by `scale` falls on halves (rounding to even) and beyond any 16-bit
    range (not beyond int32's, where onnx's reference converts out of range)."""
    x = (RNG.integers(-40, 40, size=shape) * 0.5 * scale).astype(np.float32)
    x.reshape(-1)[:4] = [1e6, -1e6, 0.5 * scale, 2.5 * scale]
    return x


# --- QuantizeLinear / DequantizeLinear ----------------------------------------------------------

def test_quantize_linear_granularities_and_types(tmp_path):
    x = _ties((2, 6, 4), 0.5)
    inits = {
        "s": scalar(0.5, np.float32), "z_u8": scalar(3, np.uint8), "z_i8": scalar(-2, np.int8),
        "s_axis": np.array([0.5, 0.25, 1, 2, 0.5, 4], np.float32), "z_axis": np.arange(-3, 3).astype(np.int8),
        "s_block": RNG.uniform(0.2, 2, (2, 2, 4)).astype(np.float32), "z_block": ints(np.int16, (2, 2, 4)),
        "s_last": np.array([0.5, 1, 2, 0.25], np.float32), "z_last": np.array([0, 1, 60000, 65535], np.uint16),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z_u8"], ["u8"]),
        helper.make_node("QuantizeLinear", ["x", "s", "z_i8"], ["i8"]),
        helper.make_node("QuantizeLinear", ["x", "s"], ["default_u8"]),
        helper.make_node("QuantizeLinear", ["x", "s"], ["declared_i16"], output_dtype=TensorProto.INT16),
        helper.make_node("QuantizeLinear", ["x", "s_axis", "z_axis"], ["axis1"], axis=1),
        helper.make_node("QuantizeLinear", ["x", "s_block", "z_block"], ["blocked"], axis=1, block_size=4),
        helper.make_node("QuantizeLinear", ["x", "s_last", "z_last"], ["axis_last"], axis=-1),
    ]
    outputs = ["u8", "i8", "default_u8", "declared_i16", "axis1", "blocked", "axis_last"]
    check(tmp_path, nodes, {"x": x}, outputs, inits, fold=True)


def test_quantize_linear_int32_input_and_older_versions(tmp_path):
    # Version 10: per tensor only, int32 input allowed (divided in double, as numpy does).
    x = np.array([[7, -7, 5, 1 << 20], [3, -3, 9, -(1 << 20)]], np.int32)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"]),
             helper.make_node("QuantizeLinear", ["f", "s"], ["g"]),
             helper.make_node("DequantizeLinear", ["y", "s", "z"], ["d"]),
             helper.make_node("DequantizeLinear", ["x", "s"], ["d32"])]
    inits = {"s": scalar(2.0, np.float32), "z": scalar(-5, np.int8)}
    check(tmp_path, nodes, {"x": x, "f": _ties((3, 5), 2.0)}, ["y", "g", "d", "d32"], inits, opset=10,
          reference_opset=19)


def test_quantize_linear_version_13_per_axis(tmp_path):
    x = _ties((3, 4), 1.0)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0),
             helper.make_node("DequantizeLinear", ["y", "s", "z"], ["d"], axis=0)]
    inits = {"s": np.array([1, 0.5, 0.25], np.float32), "z": np.array([0, 128, 255], np.uint8)}
    check(tmp_path, nodes, {"x": x}, ["y", "d"], inits, opset=13, reference_opset=19)


def test_dequantize_linear_granularities_and_types(tmp_path):
    feeds = {"a": ints(np.int8, (2, 6, 4)), "b": ints(np.uint16, (2, 6, 4)), "c": ints(np.int32, (5,)),
             "e": ints(np.int16, (3, 2))}
    inits = {
        "s_axis": RNG.uniform(0.01, 2, 6).astype(np.float32), "z_axis": ints(np.int8, (6,)),
        "s_block": RNG.uniform(0.01, 2, (2, 6, 2)).astype(np.float32), "z_block": ints(np.uint16, (2, 6, 2)),
        "s": scalar(0.125, np.float32), "z16": scalar(-300, np.int16),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["a", "s_axis", "z_axis"], ["da"], axis=1),
        helper.make_node("DequantizeLinear", ["b", "s_block", "z_block"], ["db"], axis=-1, block_size=3),
        helper.make_node("DequantizeLinear", ["c", "s"], ["dc"]),
        helper.make_node("DequantizeLinear", ["e", "s", "z16"], ["de"], output_dtype=TensorProto.FLOAT),
    ]
    check(tmp_path, nodes, feeds, ["da", "db", "dc", "de"], inits, opset=23, fold=True)


def test_quantize_linear_scale_and_zero_point_as_inputs(tmp_path):
    # Scales and zero points computed at run time (as DynamicQuantizeLinear's are).
    feeds = {"x": _ties((4, 5), 0.25), "s": np.array([0.25, 0.5, 1, 2, 0.125], np.float32),
             "z": np.array([-128, 0, 5, 127, -1], np.int8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1),
             helper.make_node("DequantizeLinear", ["y", "s", "z"], ["d"], axis=1)]
    check(tmp_path, nodes, feeds, ["y", "d"])


# --- DynamicQuantizeLinear ----------------------------------------------------------------------

def test_dynamic_quantize_linear(tmp_path):
    feeds = {"mixed": RNG.uniform(-3, 5, (4, 7)).astype(np.float32),
             "positive": RNG.uniform(1, 2, (9,)).astype(np.float32),
             "negative": RNG.uniform(-6, -1, (2, 3)).astype(np.float32),
             "zeros": np.zeros((3,), np.float32),
             # Range [-100, 155]: scale 1 and zero point 100, every other value half way between
             # two steps (rounded to even), 257 values (the kernel's vectors and a tail).
             "ties": np.concatenate([[-100, 155], np.arange(-100, 155) + 0.5]).astype(np.float32),
             "wide": np.concatenate([RNG.uniform(-2, 2, 61), [3e38, -1e-30]]).astype(np.float32)}
    nodes, outputs = [], []
    for name in feeds:
        names = [f"{name}_y", f"{name}_scale", f"{name}_zero"]
        nodes.append(helper.make_node("DynamicQuantizeLinear", [name], names))
        outputs += names
    check(tmp_path, nodes, feeds, outputs, fold=True)


# --- ConvInteger / QLinearConv ------------------------------------------------------------------

def _conv_case(index, dtype_x, dtype_w, x_shape, w_shape, zeros, constant, attrs):
    """One ConvInteger node; returns (node, feeds, initializers)."""
    x, w = f"x{index}", f"w{index}"
    feeds, inits = {x: ints(dtype_x, x_shape)}, {}
    (feeds if not constant else inits)[w] = ints(dtype_w, w_shape)
    inputs = [x, w]
    if zeros:
        inputs += [f"xz{index}", f"wz{index}"]
        feeds[f"xz{index}"] = ints(dtype_x, ())
        wz = ints(dtype_w, (w_shape[0],) if zeros == "per_channel" else ())
        (feeds if not constant else inits)[f"wz{index}"] = wz
    return helper.make_node("ConvInteger", inputs, [f"y{index}"], **attrs), feeds, inits


_CONV_CASES = [
    (np.uint8, np.uint8, (1, 3, 7, 9), (4, 3, 3, 3), "scalar", True, {"pads": [1, 1, 1, 1]}),
    (np.uint8, np.int8, (2, 4, 8, 6), (6, 2, 3, 2), "per_channel", True,
     {"group": 2, "strides": [2, 1], "pads": [0, 1, 2, 0], "dilations": [2, 1]}),
    (np.int8, np.int8, (1, 5, 6, 6), (3, 5, 1, 1), None, True, {}),
    (np.int8, np.uint8, (1, 2, 5, 5), (2, 2, 2, 2), "per_channel", False, {"auto_pad": "SAME_UPPER"}),
    (np.uint8, np.uint8, (1, 3, 11), (5, 3, 3), "scalar", False, {"pads": [2, 1], "strides": [2]}),
    (np.int8, np.int8, (1, 4, 6, 6), (4, 1, 3, 3), "scalar", True, {"group": 4, "pads": [1, 1, 1, 1]}),
    # Rows of 37 outputs: whole panels of 16 within a row (gathered straight into pairs), then one
    # across rows; odd K.
    (np.uint8, np.int8, (1, 5, 4, 37), (6, 5, 3, 3), "per_channel", True, {"pads": [1, 2, 1, 2], "dilations": [1, 2]}),
]


def test_conv_integer(tmp_path):
    nodes, feeds, inits = [], {}, {}
    for index, case in enumerate(_CONV_CASES):
        node, f, i = _conv_case(index, *case)
        nodes.append(node)
        feeds.update(f)
        inits.update(i)
    files = check(tmp_path, nodes, feeds, [n.output[0] for n in nodes], inits)
    assert "QPackBlocks<pure_model::kQGroupRows" in files["source"] and "packed_weights" in files["source"]


def test_conv_integer_in_chunks(tmp_path, monkeypatch):
    # With a budget this small for the gathered panels, the kernel gathers 96 positions at a
    # time: a chunk, then a partial last one.
    monkeypatch.setattr(quantized, "_PANEL_BUDGET_BYTES", 40000)
    node, feeds, inits = _conv_case(0, np.uint8, np.uint8, (1, 16, 13, 11), (72, 16, 3, 3), "per_channel", True,
                                    {"pads": [1, 1, 1, 1]})
    files = check(tmp_path, [node], feeds, ["y0"], inits)
    assert "kChunkCols = 96;" in files["source"]


def test_qlinear_conv(tmp_path):
    feeds = {"x": ints(np.uint8, (1, 4, 7, 7)), "xi": ints(np.int8, (2, 3, 5, 5))}
    inits = {
        "xs": scalar(0.02, np.float32), "xz": scalar(128, np.uint8), "xzi": scalar(-3, np.int8),
        "w": ints(np.int8, (6, 4, 3, 3)), "ws": RNG.uniform(0.001, 0.02, 6).astype(np.float32),
        "wz": np.zeros(6, np.int8), "ys": scalar(0.1, np.float32), "yz": scalar(100, np.uint8),
        "yzi": scalar(5, np.int8), "b": RNG.integers(-2000, 2000, 6).astype(np.int32),
        "wi": ints(np.uint8, (4, 3, 2, 2)), "wsi": scalar(0.003, np.float32), "wzi": scalar(7, np.uint8),
    }
    nodes = [
        helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                         pads=[1, 1, 1, 1]),
        helper.make_node("QLinearConv", ["xi", "xs", "xzi", "wi", "wsi", "wzi", "ys", "yzi"], ["yi"], strides=[2, 2]),
    ]
    check(tmp_path, nodes, feeds, ["y", "yi"], inits)


# --- MatMulInteger / QLinearMatMul --------------------------------------------------------------

def test_matmul_integer(tmp_path):
    feeds = {"a": ints(np.uint8, (2, 3, 40)), "a2": ints(np.int8, (5, 7)), "bb": ints(np.int8, (2, 7, 9)),
             "v": ints(np.uint8, (40,)), "bz": ints(np.int8, (9,)), "a3": ints(np.uint8, (3, 40))}
    inits = {"b": ints(np.uint8, (40, 37)), "az": scalar(128, np.uint8), "b_zero": ints(np.uint8, (37,)),
             "az2": np.array([-4], np.int8), "bz_scalar": scalar(9, np.uint8)}
    nodes = [
        helper.make_node("MatMulInteger", ["a", "b", "az", "b_zero"], ["batched_a"]),
        helper.make_node("MatMulInteger", ["a2", "bb", "az2", "bz"], ["batched_b"]),
        helper.make_node("MatMulInteger", ["v", "b"], ["vector"]),
        helper.make_node("MatMulInteger", ["a3", "v", "az", "bz_scalar"], ["matrix_vector"]),
    ]
    files = check(tmp_path, nodes, feeds, ["batched_a", "batched_b", "vector", "matrix_vector"], inits)
    assert "packed_b" in files["source"] and "QPackBlocks<pure_model::kQLanes" in files["source"]
    assert "kWeightB[" not in files["source"], "a B packed at generation time is not embedded as well"


def test_matmul_integer_extremes(tmp_path):
    # Products of +-255 summed far past 2^24 (the kernels sum slices of K in float, exactly) and,
    # over 40000 terms, past 2^31, where int32 wraps as in onnx's reference.
    feeds = {"a": np.full((2, 600), 255, np.uint8), "b": np.full((600, 3), 255, np.uint8),
             "long_a": np.full((1, 40000), 255, np.uint8), "long_b": np.zeros((40000, 2), np.uint8)}
    inits = {"zero": scalar(0, np.uint8), "high": scalar(255, np.uint8)}
    nodes = [
        helper.make_node("MatMulInteger", ["a", "b"], ["positive"]),
        helper.make_node("MatMulInteger", ["a", "b", "zero", "high"], ["negative"]),
        helper.make_node("MatMulInteger", ["long_a", "long_b", "zero", "high"], ["wrapped"]),
    ]
    check(tmp_path, nodes, feeds, ["positive", "negative", "wrapped"], inits)


def _extremes(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.choice(np.array([info.min, info.max], dtype), size=shape)


def test_integer_products_extremes(tmp_path):
    # Operands and zero points at the ends of their ranges: every value minus its zero point is
    # +-255 or 0, where byte instructions that saturate pair sums (u8 x s8 into int16) would be
    # wrong. Odd K, rows not a multiple of 4 and columns not of 16 exercise the kernels' padding;
    # the 24 rows run through several tiles, constant and input weights through both packings.
    feeds = {"x": _extremes(np.uint8, (1, 7, 5, 6)), "xi": _extremes(np.int8, (1, 3, 4, 5)),
             "a": _extremes(np.int8, (6, 45)), "a_u": _extremes(np.uint8, (24, 33)),
             "b_in": _extremes(np.int8, (33, 19)), "bz_in": _extremes(np.int8, (19,))}
    inits = {"w": _extremes(np.int8, (9, 7, 3, 3)), "wz": _extremes(np.int8, (9,)), "xz": scalar(0, np.uint8),
             "wi": _extremes(np.uint8, (5, 3, 2, 3)), "wzi": scalar(255, np.uint8), "xzi": scalar(127, np.int8),
             "b": _extremes(np.uint8, (45, 35)), "bz": _extremes(np.uint8, (35,)), "az": scalar(-128, np.int8),
             "azu": scalar(255, np.uint8)}
    nodes = [
        helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("ConvInteger", ["xi", "wi", "xzi", "wzi"], ["conv_i"], pads=[0, 1, 0, 1], strides=[1, 2]),
        helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["matmul"]),
        helper.make_node("MatMulInteger", ["a_u", "b_in", "azu", "bz_in"], ["matmul_input_b"]),
    ]
    check(tmp_path, nodes, feeds, ["conv", "conv_i", "matmul", "matmul_input_b"], inits)


def test_integer_products_portable_kernels(tmp_path, monkeypatch):
    # The generic-vector tile (aarch64's, and any target without SSE2), here on x86 too.
    flags = os.environ.get("PURE_MODEL_TEST_CXXFLAGS", "")
    monkeypatch.setenv("PURE_MODEL_TEST_CXXFLAGS", flags + " -DPURE_MODEL_PORTABLE_KERNELS")
    test_integer_products_extremes(tmp_path)


def test_integer_products_of_empty_tensors(tmp_path):
    # No rows, no columns, or nothing to sum over (K = 0: all zeros).
    feeds = {"a0": np.zeros((0, 5), np.uint8), "ak": np.ones((3, 0), np.uint8), "x0": np.ones((1, 0, 4, 4), np.uint8),
             "x": np.ones((1, 2, 4, 4), np.uint8)}
    inits = {"b0": np.ones((5, 4), np.uint8), "bk": np.ones((0, 4), np.uint8), "w0": np.ones((2, 0, 3, 3), np.uint8),
             "wm": np.ones((0, 2, 3, 3), np.uint8)}
    nodes = [helper.make_node("MatMulInteger", ["a0", "b0"], ["no_rows"]),
             helper.make_node("MatMulInteger", ["ak", "bk"], ["no_k"]),
             helper.make_node("ConvInteger", ["x0", "w0"], ["no_channels"]),
             helper.make_node("ConvInteger", ["x", "wm"], ["no_outputs"])]
    check(tmp_path, nodes, feeds, ["no_rows", "no_k", "no_channels", "no_outputs"], inits)


def test_qlinear_matmul(tmp_path):
    feeds = {"a": ints(np.uint8, (2, 3, 8)), "b": ints(np.uint8, (2, 8, 5)), "ai": ints(np.int8, (4, 6))}
    inits = {
        "as": scalar(0.05, np.float32), "az": scalar(120, np.uint8), "bs": scalar(0.02, np.float32),
        "bz": scalar(130, np.uint8), "ys": scalar(0.3, np.float32), "yz": scalar(128, np.uint8),
        "azi": scalar(1, np.int8), "bi": ints(np.int8, (6, 3)), "bsi": np.array([0.01, 0.02, 0.03], np.float32),
        "bzi": np.array([0, -1, 2], np.int8), "yzi": scalar(-7, np.int8),
    }
    nodes = [
        helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"]),
        helper.make_node("QLinearMatMul", ["ai", "as", "azi", "bi", "bsi", "bzi", "ys", "yzi"], ["yi"]),
    ]
    check(tmp_path, nodes, feeds, ["y", "yi"], inits)


# --- Rejections --------------------------------------------------------------------------------

def _rejects(tmp_path, node, feeds, inits, pattern, opset=21):
    with pytest.raises(CodegenError, match=pattern):
        generate(tmp_path, node, feeds, inits, opset)


def test_rejects_unsupported_quantized_types(tmp_path):
    x = {"x": np.ones((2, 3), np.float32)}
    s = {"s": scalar(1.0, np.float32)}
    _rejects(tmp_path, helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q", output_dtype=TensorProto.INT4),
             x, s, r"node 'q'.*quantizes to unsupported element type TensorProto.INT4")
    # int16 outputs come with version 21.
    _rejects(tmp_path, helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q"), x,
             {**s, "z": scalar(0, np.int16)}, r"unsupported element type TensorProto.INT16", opset=19)


def test_rejects_bad_scales_and_zero_points(tmp_path):
    x = {"x": np.ones((2, 4), np.float32)}
    cases = [
        (helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q"), {"s": np.ones(4, np.float32)}, 10,
         r"before version 13 it must be a scalar"),
        (helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q", axis=1, block_size=3),
         {"s": np.ones((2, 1), np.float32)}, 21, r"blocks of 3 along axis 1 .* need \[2, 2\]"),
        (helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q", axis=1),
         {"s": np.ones(4, np.float32), "z": np.zeros(3, np.uint8)}, 21, r"zero point's shape \[3\] differs"),
        (helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q", precision=TensorProto.FLOAT16),
         {"s": scalar(1.0, np.float32)}, 23, r"precision TensorProto.FLOAT16 is not supported"),
    ]
    for node, inits, opset, pattern in cases:
        _rejects(tmp_path, node, x, inits, pattern, opset)


def test_rejects_versions_not_implemented(tmp_path, monkeypatch):
    # A newer onnx could revise the ops: a version past the one implemented fails, naming it.
    from pure_model_codegen.passes import check_ops
    monkeypatch.setattr(check_ops, "op_version", lambda node: 11 if node.op_type == "ConvInteger" else 1)
    _rejects(tmp_path, helper.make_node("ConvInteger", ["x", "w"], ["y"], name="c"),
             {"x": np.ones((1, 1, 3, 3), np.uint8)}, {"w": np.ones((1, 1, 1, 1), np.uint8)},
             r"node 'c'.*ConvInteger-11 \(this generator implements ConvInteger up to version 10\)")


def test_rejects_unsupported_integer_products(tmp_path):
    a = {"a": np.ones((3, 4), np.uint8)}
    _rejects(tmp_path, helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"], name="m"), a,
             {"b": np.ones((4, 2), np.uint8), "az": np.zeros(3, np.uint8)}, r"node 'm'.*per row of A is not supported")
    _rejects(tmp_path, helper.make_node("ConvInteger", ["x", "w"], ["y"], name="c"),
             {"x": np.ones((1, 1, 3, 3, 3), np.uint8)}, {"w": np.ones((1, 1, 1, 1, 1), np.uint8)},
             r"node 'c'.*only 1-D and 2-D convolution")
    _rejects(tmp_path, helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], name="c"),
             {"x": np.ones((1, 1, 3, 3), np.uint8)},
             {"w": np.ones((2, 1, 1, 1), np.uint8), "xz": scalar(0, np.uint8), "wz": np.zeros(3, np.uint8)},
             r"w_zero_point 'wz' has shape \[3\]; expected a scalar or a 1-D tensor of 2")
