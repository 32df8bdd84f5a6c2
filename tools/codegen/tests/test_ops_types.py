"""Elementwise ops, comparisons, logic and Cast on every element type the IR has, generated,
compiled and run, against onnx's reference evaluator; and the same graphs folded at generation
time (every input an initializer), which must agree too.

PURE_MODEL_TEST_CXXFLAGS adds compiler flags, e.g. '-fsanitize=address,undefined
-fno-sanitize-recover=all' to check that the integer edge cases (wrap-around, INT_MIN / -1,
shifts) have no undefined behaviour.
"""

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from helpers import run_generated
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(11)
OPSET = onnx.defs.onnx_opset_version()

FLOATS = [np.float32, np.float64]
SIGNED = [np.int8, np.int16, np.int32, np.int64]
UNSIGNED = [np.uint8, np.uint16, np.uint32, np.uint64]
INTS = SIGNED + UNSIGNED
NUMERIC = FLOATS + INTS


def _tensor_type(dtype):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def make_model(nodes, feeds, outputs, initializers=None, opset=OPSET):
    """A model whose graph inputs are `feeds` (name -> array, any dtype); output types are inferred."""
    initializers = initializers or {}
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, _tensor_type(v.dtype), list(v.shape)) for n, v in feeds.items()],
        [], [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=onnx.IR_VERSION)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    model.graph.output.extend(known[n] for n in outputs)
    onnx.checker.check_model(model)
    return model


def compile_and_run(model, feeds, workdir, expected=None):
    """Generated code's outputs and the reference evaluator's (or `expected`'s), for inputs of any element type."""
    path = os.path.join(workdir, "model.onnx")
    onnx.save(model, path)
    expected = ReferenceEvaluator(model).run(None, feeds) if expected is None else expected
    got, files = run_generated(path, feeds, expected, workdir)
    names = [o.name for o in model.graph.output]
    return dict(zip(names, got)), dict(zip(names, expected)), files


def assert_match(got, expected, rtol=1e-5):
    for name, ref in expected.items():
        assert got[name].dtype == ref.dtype, f"{name}: dtype {got[name].dtype}, expected {ref.dtype}"
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(got[name], ref, rtol=rtol, atol=1e-6, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], ref, err_msg=name)


def check(tmp_path, nodes, feeds, outputs, fold=True, rtol=1e-5):
    """Runs the graph on `feeds`; with fold, also with every input an initializer (all folded).

PURE_MODEL_TEST_CXXFLAGS adds compiler flags, e.g. '-fsanitize=address,undefined -fno-sanitize-recover=all'
to check that the integer edge cases (wrap-around, INT_MIN / -1, shifts) have no undefined behaviour.
"""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    got, expected, files = compile_and_run(make_model(nodes, feeds, outputs), feeds, str(run_dir))
    assert_match(got, expected, rtol)
    if fold:
        fold_dir = tmp_path / "fold"
        fold_dir.mkdir()
        got, expected, folded = compile_and_run(make_model(nodes, {}, outputs, initializers=feeds), {}, str(fold_dir))
        assert "for (" not in folded["source"], "a constant graph should fold completely"
        assert_match(got, expected, rtol)
    return files


def values(dtype, shape, low=None, high=None):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.uniform(-3 if low is None else low, 3 if high is None else high, shape).astype(dtype)
    if dtype.kind == "b":
        return RNG.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    low = info.min if low is None else low
    high = info.max if high is None else high
    flat = RNG.integers(low, high, size=shape, endpoint=True, dtype=dtype).reshape(-1)
    # The edges of the range, -1, 0 and 1 exercise wrap-around and the special cases.
    special = [v for v in (info.min, info.max, -1, 0, 1) if low <= v <= high]
    flat[:len(special)] = special[:flat.size]
    return flat.reshape(shape)


def _id(dtype):
    return np.dtype(dtype).name


# --- unary ----------------------------------------------------------------------------------------

_FLOAT_WIDE = ["Relu", "Neg", "Abs", "Sign", "Floor", "Ceil", "Round", "Sigmoid", "Tanh", "Exp", "Erf", "Sin", "Cos",
               "Tan", "Atan", "Sinh", "Cosh", "Asinh", "Softplus", "Softsign", "Mish", "Elu", "Selu", "Celu",
               "HardSigmoid", "HardSwish", "Reciprocal", "Swish"]
_FLOAT_UNIT = ["Log", "Sqrt", "Asin", "Acos", "Atanh"]


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_float_unary(tmp_path, dtype):
    z = values(dtype, (3, 8))
    z[0, :4] = [0.5, -0.5, 1.5, -2.5]  # Round halves to even
    p = values(dtype, (2, 5), 0.05, 0.95)
    w = np.array([0.0, -1.5, np.inf, -np.inf, np.nan, 2.0], dtype)
    nodes = [helper.make_node(op, ["z"], [op]) for op in _FLOAT_WIDE]
    nodes += [helper.make_node(op, ["p"], [op]) for op in _FLOAT_UNIT]
    nodes += [
        helper.make_node("Reciprocal", ["p"], ["inv_p"]), helper.make_node("Acosh", ["inv_p"], ["Acosh"]),
        helper.make_node("LeakyRelu", ["z"], ["LeakyRelu"], alpha=0.3),
        helper.make_node("ThresholdedRelu", ["z"], ["ThresholdedRelu"], alpha=0.7),
        helper.make_node("Shrink", ["z"], ["Shrink"], lambd=0.8, bias=-0.25),
        helper.make_node("Gelu", ["z"], ["Gelu"]),
        helper.make_node("Gelu", ["z"], ["GeluTanh"], approximate="tanh"),
        helper.make_node("IsNaN", ["w"], ["IsNaN"]),
        helper.make_node("IsInf", ["w"], ["IsInf"]),
        helper.make_node("IsInf", ["w"], ["IsNegInf"], detect_positive=0),
        helper.make_node("IsInf", ["w"], ["IsPosInf"], detect_negative=0),
    ]
    outputs = [n.output[0] for n in nodes if n.output[0] != "inv_p"]
    check(tmp_path, nodes, {"z": z, "p": p, "w": w}, outputs, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", INTS, ids=_id)
def test_integer_unary(tmp_path, dtype):
    ops = ["Abs", "Sign", "BitwiseNot"] + (["Neg", "Relu"] if dtype in SIGNED else [])
    nodes = [helper.make_node(op, ["x"], [op]) for op in ops]
    check(tmp_path, nodes, {"x": values(dtype, (4, 6))}, ops)


def test_bool_unary_and_logic(tmp_path):
    a, b = values(np.bool_, (2, 3, 4)), values(np.bool_, (3, 1))
    nodes = [helper.make_node("Not", ["a"], ["Not"])] + [
        helper.make_node(op, ["a", "b"], [op]) for op in ("And", "Or", "Xor", "Equal")]
    nodes.append(helper.make_node("Where", ["b", "a", "Not"], ["Where"]))
    check(tmp_path, nodes, {"a": a, "b": b}, ["Not", "And", "Or", "Xor", "Equal", "Where"])


# --- binary and variadic --------------------------------------------------------------------------

_ARITH = ["Add", "Sub", "Mul", "Div", "Max", "Min"]
_COMPARE = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]


@pytest.mark.parametrize("dtype", NUMERIC, ids=_id)
def test_binary(tmp_path, dtype):
    a, b, c = values(dtype, (2, 3, 4)), values(dtype, (3, 1)), values(dtype, (4,))
    if np.dtype(dtype).kind == "f":
        a[0, 0, :2] = [np.nan, 1.0]
        b[1, 0] = 0.0  # x / 0 is +-inf, 0 / 0 is NaN
    nodes = [helper.make_node(op, ["a", "b"], [op]) for op in _ARITH + _COMPARE]
    nodes += [helper.make_node("Mod", ["a", "b"], ["Mod"]), helper.make_node("Mod", ["a", "b"], ["Fmod"], fmod=1),
              helper.make_node("Max", ["a", "b", "c"], ["Max3"]), helper.make_node("Min", ["c", "a", "b"], ["Min3"])]
    if np.dtype(dtype).kind == "f":
        nodes += [helper.make_node("Sum", ["a", "b", "c"], ["Sum3"]),
                  helper.make_node("Mean", ["a", "b", "c"], ["Mean3"]),
                  helper.make_node("PRelu", ["a", "c"], ["PRelu"])]
    else:
        nodes += [helper.make_node(op, ["a", "b"], [op]) for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor")]
    check(tmp_path, nodes, {"a": a, "b": b, "c": c}, [n.output[0] for n in nodes],
          rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", INTS, ids=_id)
def test_integer_division_edges(tmp_path, dtype):
    info = np.iinfo(dtype)
    pairs = [(7, 2), (7, 0), (0, 0), (info.max, 1), (info.min, 1), (info.max, 3)]
    if info.min < 0:
        pairs += [(-7, 2), (7, -2), (-7, -2), (info.min, -1), (-1, 0), (info.min, 7)]
    a = np.array([p[0] for p in pairs], dtype)
    b = np.array([p[1] for p in pairs], dtype)
    nodes = [helper.make_node("Div", ["a", "b"], ["Div"]), helper.make_node("Mod", ["a", "b"], ["Mod"]),
             helper.make_node("Mod", ["a", "b"], ["Fmod"], fmod=1)]
    check(tmp_path, nodes, {"a": a, "b": b}, ["Div", "Mod", "Fmod"])


def test_float_mod_edges(tmp_path):
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.0, -0.0, np.inf, 3.0, 3.0, -3.0, np.nan, 2.0], np.float64)
    b = np.array([2.0, 2.0, -2.0, -2.0, 3.0, -3.0, 2.0, 0.0, np.inf, np.inf, 1.0, np.nan], np.float64)
    nodes = [helper.make_node("Mod", ["a", "b"], ["Mod"]), helper.make_node("Mod", ["a", "b"], ["Fmod"], fmod=1)]
    check(tmp_path, nodes, {"a": a, "b": b}, ["Mod", "Fmod"])


@pytest.mark.parametrize("dtype", INTS, ids=_id)
def test_bitshift(tmp_path, dtype):
    bits = np.dtype(dtype).itemsize * 8
    x = values(dtype, (2, 8))
    low = -3 if np.dtype(dtype).kind == "i" else 0
    s = np.array([0, 1, bits - 1, bits, bits + 5, low, 3, 2], dtype)
    nodes = [helper.make_node("BitShift", ["x", "s"], ["Left"], direction="LEFT"),
             helper.make_node("BitShift", ["x", "s"], ["Right"], direction="RIGHT")]
    check(tmp_path, nodes, {"x": x, "s": s}, ["Left", "Right"])


@pytest.mark.parametrize("base,exponent", [
    (np.float32, np.float32), (np.float64, np.float64), (np.float32, np.int32), (np.float32, np.int64),
    (np.float32, np.uint8), (np.float64, np.float32), (np.int32, np.int32), (np.int64, np.int64),
    (np.int32, np.float32), (np.int64, np.uint32), (np.int32, np.int8)], ids=lambda d: np.dtype(d).name)
def test_pow_types(tmp_path, base, exponent):
    if np.dtype(base).kind == "f":
        a = values(base, (2, 3), 0.1, 3)
    elif np.dtype(exponent).kind == "f":
        a = values(base, (2, 3), 0, 9)  # a negative base to a fractional power is NaN: no integer value
    else:
        a = values(base, (2, 3), -9, 9)
    b = values(exponent, (3,), 0, 5) if np.dtype(exponent).kind != "f" else values(exponent, (3,), -2 if np.dtype(base).kind == "f" else 0, 3)
    if np.dtype(base).kind == "i" and np.dtype(exponent).kind == "i":
        a[0, 0], b[0] = 3, 40  # wraps around
    check(tmp_path, [helper.make_node("Pow", ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"])


@pytest.mark.parametrize("dtype", NUMERIC + [np.bool_], ids=_id)
def test_where(tmp_path, dtype):
    cond = values(np.bool_, (3, 1))
    x, y = values(dtype, (2, 3, 4)), values(dtype, (4,))
    check(tmp_path, [helper.make_node("Where", ["c", "x", "y"], ["z"])], {"c": cond, "x": x, "y": y}, ["z"])


# --- Clip -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int64, np.float64], ids=_id)
def test_clip_constant_bounds(tmp_path, dtype):
    x = values(dtype, (3, 5))
    inits = {"lo": np.array(-5 if np.dtype(dtype).kind != "u" else 5, dtype), "hi": np.array(100, dtype)}
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["both"]), helper.make_node("Clip", ["x", "", "hi"], ["max"]),
             helper.make_node("Clip", ["x", "lo"], ["min"]), helper.make_node("Clip", ["x"], ["none"])]
    model = make_model(nodes, {"x": x}, ["both", "max", "min", "none"], initializers=inits)
    got, expected, _ = compile_and_run(model, {"x": x}, str(tmp_path))
    assert_match(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.int32], ids=_id)
def test_clip_runtime_bounds(tmp_path, dtype):
    x = values(dtype, (4, 5), -50, 50)
    for lo, hi in ((-10, 20), (15, -3)):  # min > max: everything becomes max
        feeds = {"x": x, "lo": np.array(lo, dtype), "hi": np.array(hi, dtype)}
        nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["y"]), helper.make_node("Clip", ["x", "", "hi"], ["z"])]
        work = tmp_path / f"b{lo}"
        work.mkdir()
        got, expected, _ = compile_and_run(make_model(nodes, feeds, ["y", "z"]), feeds, str(work))
        assert_match(got, expected)


# --- Cast -------------------------------------------------------------------------------------------

_TARGETS = NUMERIC + [np.bool_]


@pytest.mark.parametrize("source", _TARGETS, ids=_id)
def test_cast_matrix(tmp_path, source):
    kind = np.dtype(source).kind
    if kind == "f":
        # In range of every target: fractions truncate toward zero; negatives only to signed types.
        feeds = {"s": values(source, (3, 4), -120, 120), "u": values(source, (3, 4), 0, 250)}
        feeds["s"][0, :3] = [0.0, -0.0, 0.75]
    elif kind == "b":
        feeds = {"s": values(source, (3, 4)), "u": values(source, (3, 4))}
    else:
        feeds = {"s": values(source, (3, 4)), "u": values(source, (3, 4))}  # wraps into narrower types
    nodes = []
    for target in _TARGETS:
        tkind = np.dtype(target).kind
        src = "u" if (kind == "f" and (tkind == "u" or np.dtype(target).itemsize == 1 and tkind == "i")) else "s"
        if kind == "f" and tkind == "i" and np.dtype(target).itemsize == 1:
            src = "s_small"
        nodes.append(helper.make_node("Cast", [src], [f"to_{_id(target)}"], to=int(_tensor_type(target))))
    if kind == "f":
        feeds["s_small"] = values(source, (3, 4), -120, 120)
    check(tmp_path, nodes, feeds, [n.output[0] for n in nodes])


def test_castlike_and_cast_in_a_graph(tmp_path):
    x = values(np.float32, (2, 6), -40, 40)
    like = np.zeros((1,), np.int16)
    nodes = [helper.make_node("CastLike", ["x", "like"], ["i16"]),
             helper.make_node("Cast", ["i16"], ["f64"], to=onnx.TensorProto.DOUBLE),
             helper.make_node("Mul", ["f64", "f64"], ["sq"]),
             helper.make_node("Cast", ["sq"], ["back"], to=onnx.TensorProto.FLOAT)]
    check(tmp_path, nodes, {"x": x, "like": like}, ["i16", "back"])


@pytest.mark.parametrize("to", [onnx.TensorProto.STRING, onnx.TensorProto.FLOAT8E8M0])
def test_cast_to_unsupported_type_is_refused(tmp_path, to):
    model = make_model([helper.make_node("Cast", ["x"], ["y"], name="c", to=to)], {"x": values(np.float32, (2,))},
                       ["y"])
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    name = onnx.TensorProto.DataType.Name(to).lower()
    with pytest.raises(CodegenError, match=rf"node 'c'.*cast to element type {name} is not supported"):
        cli.generate_files(path, {"x": (2,)}, cpu="generic", namespace="t", class_name="Model",
                           header_include="model.h", model_label="test")


def test_integer_add_wraps_without_undefined_behaviour(tmp_path):
    a = np.array([np.iinfo(np.int32).max, np.iinfo(np.int32).min, 5], np.int32)
    b = np.array([1, -1, 7], np.int32)
    files = check(tmp_path, [helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Mul", ["a", "b"], ["m"])],
                  {"a": a, "b": b}, ["y", "m"])
    assert "static_cast<std::uint32_t>" in files["source"]


def test_legacy_broadcast(tmp_path):
    # Add-6 with broadcast=1 aligns the second input at `axis`, not at the end as numpy would.
    x, b = values(np.float32, (2, 3, 4)), values(np.float32, (3,))
    model = make_model([helper.make_node("Add", ["x", "b"], ["y"], broadcast=1, axis=1)], {"x": x, "b": b}, ["y"],
                       opset=6)
    # onnx's reference evaluator does not implement it: numpy with b reshaped is the reference.
    got, _, _ = compile_and_run(model, {"x": x, "b": b}, str(tmp_path), expected=[x + b.reshape(3, 1)])
    np.testing.assert_allclose(got["y"], x + b.reshape(3, 1), rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_dropout_at_inference(tmp_path, dtype):
    x, ratio = values(dtype, (3, 4)), np.array(0.3, dtype)
    nodes = [helper.make_node("Dropout", ["x", "ratio"], ["y", "mask"]),  # the ratio is ignored at inference
             helper.make_node("Dropout", ["x", "zero", "train"], ["t"])]  # training with ratio 0: the identity
    model = make_model(nodes, {"x": x, "ratio": ratio}, ["y", "mask", "t"],
                       initializers={"zero": np.array(0, dtype), "train": np.array(True)})
    got, expected, _ = compile_and_run(model, {"x": x, "ratio": ratio}, str(tmp_path))
    assert_match(got, expected)


def test_training_dropout_is_refused(tmp_path):
    model = make_model([helper.make_node("Dropout", ["x", "ratio", "train"], ["y"], name="d")],
                       {"x": values(np.float32, (2,))}, ["y"],
                       initializers={"ratio": np.array(0.5, np.float32), "train": np.array(True)})
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    with pytest.raises(CodegenError, match=r"node 'd'.*training-mode Dropout with a nonzero ratio is random"):
        cli.generate_files(path, {"x": (2,)}, cpu="generic", namespace="t", class_name="Model",
                           header_include="model.h", model_label="test")
