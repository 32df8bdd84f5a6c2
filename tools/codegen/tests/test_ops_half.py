"""float16 and bfloat16 (and the storage-only float8, float4 and 4-/2-bit integer types): the C++
conversions bit for bit against numpy and ml_dtypes, and graphs on those types generated, compiled
and run against onnx's reference evaluator.

Ops without code of their own for these types run in float32 between Casts (passes/
widen_narrow.py), as numpy computes; the reference evaluator rounds after every numpy operation,
so results may differ from it by an ulp or two of the narrow type.
"""

import os
import shutil
import subprocess

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from helpers import HERE, _kernels_include, run_generated
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(16)
OPSET = 21
NARROW = {"float16": (np.float16, TensorProto.FLOAT16), "bfloat16": (ml_dtypes.bfloat16, TensorProto.BFLOAT16)}

# --- the conversions, bit for bit --------------------------------------------------------------------

_CONVERT_MAIN = r"""
#include <cstdio>
#include <cstdint>
#include "pure_model/narrow_floats.h"
// Rounds each value of type T in `in` to float16 and to bfloat16, written in that order.
template <typename T>
void RoundAll(std::FILE* in, std::FILE* out) {
  T v;
  while (std::fread(&v, sizeof(v), 1, in) == 1) {
    const pure_model::Float16 h = pure_model::RoundToFloat16(v);
    const pure_model::BFloat16 bf = pure_model::RoundToBFloat16(v);
    std::fwrite(&h.bits, 2, 1, out);
    std::fwrite(&bf.bits, 2, 1, out);
  }
}
// argv[1]: all | float | double. Reads the values of argv[2], writes the results to argv[3].
int main(int, char** argv) {
  std::FILE* in = std::fopen(argv[2], "rb");
  std::FILE* out = std::fopen(argv[3], "wb");
  if (argv[1][0] == 'a') {  // every 16-bit pattern, as float16 then as bfloat16, to float
    for (std::uint32_t b = 0; b < 65536; ++b) {
      const float h = pure_model::ToFloat(pure_model::Float16{static_cast<std::uint16_t>(b)});
      const float bf = pure_model::ToFloat(pure_model::BFloat16{static_cast<std::uint16_t>(b)});
      std::fwrite(&h, 4, 1, out);
      std::fwrite(&bf, 4, 1, out);
    }
  } else if (argv[1][0] == 's') {  // the small types: every byte to float, then each float of `in` rounded
    using namespace pure_model;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const auto byte = static_cast<std::uint8_t>(b);
      const auto low4 = static_cast<std::uint8_t>(b & 0xfu);
      const auto low2 = static_cast<std::uint8_t>(b & 0x3u);
      const float wide[] = {ToFloat(Float8E4M3FN{byte}), ToFloat(Float8E4M3FNUZ{byte}), ToFloat(Float8E5M2{byte}),
                            ToFloat(Float8E5M2FNUZ{byte}), ToFloat(Float4E2M1{low4}),
                            static_cast<float>(ToInt(Int4{low4})), static_cast<float>(ToInt(UInt4{low4})),
                            static_cast<float>(ToInt(Int2{low2})), static_cast<float>(ToInt(UInt2{low2}))};
      std::fwrite(wide, sizeof(wide), 1, out);
    }
    float v;
    while (std::fread(&v, sizeof(v), 1, in) == 1) {
      const std::int64_t whole = TruncateToInt64(v);
      const std::uint8_t narrow[] = {
          RoundToFloat8E4M3FN(v).bits, RoundToFloat8E4M3FNUZ(v).bits, RoundToFloat8E5M2(v).bits,
          RoundToFloat8E5M2FNUZ(v).bits, RoundToFloat4E2M1(v).bits, RoundToFloat8E4M3FN(v, false).bits,
          RoundToFloat8E4M3FNUZ(v, false).bits, RoundToFloat8E5M2(v, false).bits, RoundToFloat8E5M2FNUZ(v, false).bits,
          WrapToInt4(whole).bits, WrapToUInt4(whole).bits, WrapToInt2(whole).bits, WrapToUInt2(whole).bits};
      std::fwrite(narrow, sizeof(narrow), 1, out);
    }
  } else if (argv[1][0] == 'f') {
    RoundAll<float>(in, out);
  } else {
    RoundAll<double>(in, out);
  }
  return std::fclose(out) == 0 ? 0 : 1;
}
"""


@pytest.fixture(scope="module")
def converter(tmp_path_factory):
    work = tmp_path_factory.mktemp("convert")
    source, binary = work / "convert.cc", work / "convert"
    source.write_text(_CONVERT_MAIN)
    subprocess.run([shutil.which("g++") or "c++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
                    _kernels_include(), str(source), "-o", str(binary)], check=True)

    def run(mode, values):
        values.tofile(work / "in.bin")
        subprocess.run([str(binary), mode, str(work / "in.bin"), str(work / "out.bin")], check=True)
        return np.fromfile(work / "out.bin", {"all": np.uint32, "small": np.uint8}.get(mode, np.uint16))

    return run


_PATTERNS = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def test_every_narrow_pattern_widens_exactly(converter):
    got = converter("all", np.zeros(0, np.float32)).reshape(-1, 2)
    # NaN payloads included: float16 moves them up unchanged, as numpy does.
    np.testing.assert_array_equal(got[:, 0], _PATTERNS.view(np.float16).astype(np.float32).view(np.uint32))
    np.testing.assert_array_equal(got[:, 1], _PATTERNS.view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32))


def test_rounding_from_float_matches_numpy(converter):
    every_half = _PATTERNS.view(np.float16).astype(np.float32).view(np.uint32)
    every_bfloat = _PATTERNS.astype(np.uint32) << 16
    bits = np.concatenate([
        # Each float16 value, and the floats around each halfway point to its neighbours: ties,
        # one below and one above (ties go to even, carries run into the exponent and to inf).
        every_half, every_half + 0xFFF, every_half + 0x1000, every_half + 0x1001,
        every_bfloat, every_bfloat + 0x7FFF, every_bfloat + 0x8000, every_bfloat + 0x8001,
        RNG.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32),  # NaNs and subnormals too
    ]).astype(np.uint32)
    values = bits.view(np.float32)
    got = converter("float", values).reshape(-1, 2)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got[:, 0], values.astype(np.float16).view(np.uint16))
        np.testing.assert_array_equal(got[:, 1], values.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_rounding_from_double_matches_numpy(converter):
    halves = _PATTERNS.view(np.float16).astype(np.float64)
    halves = halves[np.isfinite(halves)]
    values = np.concatenate([
        # Just past a float16 tie, where going through float would round twice.
        halves * (1 + 2.0 ** -11 + 2.0 ** -40), halves * (1 + 2.0 ** -11), halves * (1 - 2.0 ** -12),
        RNG.standard_normal(100_000) * np.exp2(RNG.integers(-30, 20, 100_000)),
        RNG.integers(0, 1 << 63, 100_000, dtype=np.uint64).view(np.float64),
    ])
    got = converter("double", values).reshape(-1, 2)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got[:, 0], values.astype(np.float16).view(np.uint16))
        np.testing.assert_array_equal(got[:, 1], values.astype(ml_dtypes.bfloat16).view(np.uint16))


_FLOAT8 = [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz]
_SMALL_INTS = [ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2]


def test_small_types_convert_as_ml_dtypes(converter):
    every_half = _PATTERNS.view(np.float16).astype(np.float32)
    values = np.concatenate([every_half, RNG.integers(0, 1 << 32, 100_000, dtype=np.uint64).astype(np.uint32)
                             .view(np.float32), np.array([448, 464, 465, 480, 240, 57344, 61440, 6, 7], np.float32)])
    got = converter("small", values)
    wide = got[:256 * 9 * 4].view(np.float32).reshape(256, 9)
    every_byte = np.arange(256, dtype=np.uint8)
    for i, t in enumerate(_FLOAT8 + [ml_dtypes.float4_e2m1fn] + _SMALL_INTS):
        mask = 0xF if t in (ml_dtypes.float4_e2m1fn, ml_dtypes.int4, ml_dtypes.uint4) else (
            0x3 if t in (ml_dtypes.int2, ml_dtypes.uint2) else 0xFF)
        want = (every_byte & mask).view(t).astype(np.float32)
        np.testing.assert_array_equal(wide[:, i].view(np.uint32), want.view(np.uint32), err_msg=t.__name__)
    rounded = got[256 * 9 * 4:].reshape(-1, 13)
    with np.errstate(all="ignore"):
        # Saturating, as onnx's reference evaluator casts by default; float4 always saturates.
        for i, t in enumerate(_FLOAT8):
            np.testing.assert_array_equal(rounded[:, i], numpy_helper.saturate_cast(values, t).view(np.uint8),
                                          err_msg=t.__name__)
        for i, t in enumerate([ml_dtypes.float4_e2m1fn] + _FLOAT8 + _SMALL_INTS):
            np.testing.assert_array_equal(rounded[:, 4 + i], values.astype(t).view(np.uint8), err_msg=t.__name__)


# --- graphs on the narrow types -----------------------------------------------------------------------


def _model(nodes, inputs, outputs, initializers=(), opset=OPSET):
    """inputs/outputs: [(name, ONNX type, shape)], an output shape None for onnx to infer;
    initializers: TensorProtos."""
    graph = helper.make_graph(nodes, "test", [helper.make_tensor_value_info(*i) for i in inputs], [],
                              list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=11 if opset > 23 else 10)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in inferred.graph.value_info}
    model.graph.output.extend(known[n] if s is None else helper.make_tensor_value_info(n, t, s)
                              for n, t, s in outputs)
    onnx.checker.check_model(model, full_check=True)
    return model


def _in_float32(model, feeds):
    """The reference evaluator's outputs for `model` computed on float32 in place of the narrow
    floats and rounded back: op by op what the generated code does. (Its own Conv and ml_dtypes'
    bfloat16 sums round inside the op, a few ulps away.)"""
    narrow = {TensorProto.FLOAT16: np.float16, TensorProto.BFLOAT16: ml_dtypes.bfloat16}
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    for info in list(twin.graph.input) + list(twin.graph.output) + list(twin.graph.value_info):
        if info.type.tensor_type.elem_type in narrow:
            info.type.tensor_type.elem_type = TensorProto.FLOAT
    for i, init in enumerate(twin.graph.initializer):
        if init.data_type in narrow:
            twin.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    widened = {k: v.astype(np.float32) if v.dtype in (np.float16, ml_dtypes.bfloat16) else v for k, v in feeds.items()}
    results = ReferenceEvaluator(twin).run(None, widened)
    return [r.astype(narrow.get(o.type.tensor_type.elem_type, r.dtype)) for r, o in zip(results, model.graph.output)]


def _run(tmp_path, model, feeds, per_op_float32=False):
    path = str(tmp_path / "model.onnx")
    onnx.save(model, path)
    expected = (_in_float32(model, feeds) if per_op_float32 else ReferenceEvaluator(model).run(None, feeds))
    got, files = run_generated(path, feeds, expected, str(tmp_path))
    return dict(zip([o.name for o in model.graph.output], zip(got, expected))), files


def _assert_close(results, ulps):
    """Each output within `ulps` units in the last place of its type (at the expected value)."""
    for name, (got, want) in results.items():
        assert got.dtype == want.dtype, f"{name}: {got.dtype}, expected {want.dtype}"
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want, err_msg=name)
            continue
        g, w = got.astype(np.float64), want.astype(np.float64)
        eps = float(ml_dtypes.finfo(want.dtype).eps) if want.dtype.kind == "V" else float(np.finfo(want.dtype).eps)
        same = (g == w) | (np.isnan(g) & np.isnan(w))
        close = np.abs(g - w) <= ulps * eps * np.maximum(np.abs(w), 2.0 ** -14)
        bad = ~(same | close)
        assert not bad.any(), f"{name}: {int(bad.sum())} values differ, e.g. got {g[bad][:4]}, expected {w[bad][:4]}"


@pytest.mark.parametrize("name", sorted(NARROW))
def test_cast_between_narrow_and_every_type(tmp_path, name):
    np_type, code = NARROW[name]
    x = np.array([0.0, -0.0, 1.5, -2.75, 1e-3, 7e-6, 3.0e4, 1e5, -1e5, np.inf, -np.inf, np.nan], np.float32)
    small = np.array([0.0, 1.0, 2.5, 3.75, 100.5, 127.0, -0.5, -3.25], np.float32)
    targets = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BOOL, TensorProto.INT8, TensorProto.INT32,
               TensorProto.INT64, TensorProto.UINT8, TensorProto.UINT16, TensorProto.FLOAT16, TensorProto.BFLOAT16]
    nodes = [helper.make_node("Cast", ["x"], ["narrow"], to=code),
             helper.make_node("Cast", ["x64"], ["narrow_from_double"], to=code),
             helper.make_node("Cast", ["i"], ["narrow_from_int"], to=code),
             helper.make_node("Cast", ["flag"], ["narrow_from_bool"], to=code),
             helper.make_node("Cast", ["small"], ["small_narrow"], to=code),
             helper.make_node("CastLike", ["x", "narrow"], ["like"]),
             helper.make_node("Slice", ["small_narrow", "start", "end"], ["small_positive"])]
    outputs = [("narrow", code, [12]), ("narrow_from_double", code, [12]), ("narrow_from_int", code, [5]),
               ("narrow_from_bool", code, [2]), ("like", code, [12])]
    for to in targets:
        # Integers only from values they hold (a float outside their range is undefined in C++).
        source = "narrow" if to in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BOOL, TensorProto.FLOAT16,
                                    TensorProto.BFLOAT16) else "small_narrow"
        if to in (TensorProto.UINT8, TensorProto.UINT16):
            source = "small_positive"
        out = f"to_{TensorProto.DataType.Name(to).lower()}"
        nodes.append(helper.make_node("Cast", [source], [out], to=to))
        outputs.append((out, to, [12] if source == "narrow" else [8 if source == "small_narrow" else 6]))
    inits = [numpy_helper.from_array(np.array([0], np.int64), "start"),
             numpy_helper.from_array(np.array([6], np.int64), "end")]
    model = _model(nodes, [("x", TensorProto.FLOAT, [12]), ("x64", TensorProto.DOUBLE, [12]),
                           ("i", TensorProto.INT64, [5]), ("flag", TensorProto.BOOL, [2]),
                           ("small", TensorProto.FLOAT, [8])], outputs, inits)
    feeds = {"x": x, "x64": x.astype(np.float64) * (1 + 2.0 ** -12),
             "i": np.array([0, 1, -7, 65519, 1 << 40], np.int64), "flag": np.array([True, False]), "small": small}
    results, files = _run(tmp_path, model, feeds)
    _assert_close(results, 0)
    assert f"pure_model::RoundTo{'Float16' if name == 'float16' else 'BFloat16'}(" in files["source"]


def _graph_ops(code):
    """Nodes exercising each op family on a narrow-float input x [1, 4, 6, 6] (and w, b)."""
    return [
        helper.make_node("Relu", ["x"], ["relu"]),
        helper.make_node("Sigmoid", ["x"], ["sigmoid"]),
        helper.make_node("Add", ["x", "b4"], ["add"]),
        helper.make_node("Mul", ["x", "x"], ["mul"]),
        helper.make_node("Conv", ["x", "w", "cb"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["x", "m"], ["matmul"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["reduce_sum"], keepdims=0),
        helper.make_node("ReduceMax", ["x", "axes"], ["reduce_max"]),
        helper.make_node("MaxPool", ["x"], ["maxpool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["x"], ["avgpool"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["x"], ["gap"]),
        helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["bn"]),
        helper.make_node("ArgMax", ["x"], ["argmax"], axis=1),
        helper.make_node("Transpose", ["x"], ["transpose"], perm=[0, 2, 3, 1]),
        helper.make_node("Concat", ["x", "x"], ["concat"], axis=1),
        helper.make_node("Reshape", ["x", "shape"], ["reshape"]),
        helper.make_node("Slice", ["x", "starts", "ends"], ["slice"]),
        helper.make_node("Gather", ["x", "indices"], ["gather"], axis=1),
        helper.make_node("Pad", ["x", "pads", "pad_value"], ["pad"]),
        helper.make_node("Greater", ["x", "b4"], ["greater"]),
        helper.make_node("Where", ["greater", "x", "b4"], ["where"]),
        helper.make_node("Cast", ["x"], ["as_float"], to=TensorProto.FLOAT),
    ]


def _allows(node, code):
    """Whether the op takes element type `code` as its first input (bfloat16: not Conv, pooling, ...)."""
    schema = onnx.defs.get_schema(node.op_type, OPSET)
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    wanted = f"tensor({onnx.helper.tensor_dtype_to_np_dtype(code).name})"
    return wanted in allowed.get(schema.inputs[0].type_str, [wanted])


@pytest.mark.parametrize("name", sorted(NARROW))
def test_op_families_on_narrow_floats(tmp_path, name):
    np_type, code = NARROW[name]
    f = TensorProto.FLOAT
    x = RNG.uniform(-2, 2, (1, 4, 6, 6)).astype(np_type)
    weights = {
        "w": RNG.uniform(-0.5, 0.5, (3, 4, 3, 3)).astype(np_type), "b": RNG.uniform(-1, 1, (4,)).astype(np_type),
        "m": RNG.uniform(-1, 1, (6, 5)).astype(np_type), "b4": RNG.uniform(-1, 1, (4, 1, 1)).astype(np_type),
        "s": RNG.uniform(0.5, 1.5, (4,)).astype(np_type), "mean": RNG.uniform(-1, 1, (4,)).astype(np_type),
        "var": RNG.uniform(0.5, 2, (4,)).astype(np_type), "pad_value": np.array(1.5, np_type),
        "axes": np.array([2, 3], np.int64), "shape": np.array([4, 36], np.int64),
        "starts": np.array([1, 2], np.int64), "ends": np.array([3, 5], np.int64),
        "indices": np.array([3, 0, 3], np.int64), "pads": np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64),
    }
    weights["cb"] = weights["b"][:3]
    nodes = [n for n in _graph_ops(code) if _allows(n, code)]
    outputs = [(n.output[0], code, None) for n in nodes]
    types = {"greater": TensorProto.BOOL, "argmax": TensorProto.INT64, "as_float": f}
    outputs = [(n, types.get(n, t), s) for n, t, s in outputs]
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    model = _model(nodes, [("x", code, [1, 4, 6, 6])], outputs, inits)
    results, files = _run(tmp_path, model, {"x": x}, per_op_float32=True)
    _assert_close(results, 1)
    assert "pure_model::ToFloat(" in files["source"]


_UNARY = ["Relu", "Neg", "Abs", "Sign", "Floor", "Ceil", "Round", "Sigmoid", "Tanh", "Exp", "Erf", "Sin", "Cos",
          "Atan", "Softplus", "Softsign", "Elu", "Selu", "HardSigmoid", "HardSwish", "Reciprocal", "IsNaN", "IsInf"]
_BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Less", "GreaterOrEqual", "PRelu"]


@pytest.mark.parametrize("name", sorted(NARROW))
def test_elementwise_computes_in_float_without_casts(tmp_path, name):
    np_type, code = NARROW[name]
    x = RNG.uniform(-3, 3, (2, 3, 4)).astype(np_type)
    x.reshape(-1)[:6] = [0.5, -2.5, np.inf, -np.inf, -0.0, 0.0]
    b = RNG.uniform(-3, 3, (3, 1)).astype(np_type)
    w = np.array([np.nan, np.inf, -np.inf, 1.0], np_type)
    nodes = [helper.make_node(op, ["w" if op.startswith("Is") else "x"], [op]) for op in _UNARY]
    nodes += [helper.make_node(op, ["x", "b"], [op]) for op in _BINARY]
    nodes += [helper.make_node("Sum", ["x", "b", "x"], ["Sum"]), helper.make_node("Mean", ["x", "b", "b"], ["Mean"]),
              helper.make_node("Mod", ["x", "b"], ["Mod"], fmod=1), helper.make_node("Gelu", ["x"], ["Gelu"])]
    nodes = [n for n in nodes if _allows(n, code)]
    model = _model(nodes, [("x", code, list(x.shape)), ("b", code, list(b.shape)), ("w", code, [4])],
                   [(n.output[0], None, None) for n in nodes])
    results, files = _run(tmp_path, model, {"x": x, "b": b, "w": w}, per_op_float32=True)
    # Sum and Mean round each partial sum into the element type, as numpy does for float16.
    variadic = {"Sum", "Mean"}
    _assert_close({k: v for k, v in results.items() if k not in variadic}, 1)
    _assert_close({k: v for k, v in results.items() if k in variadic}, 4)
    # Each op reads and rounds the narrow values itself: no float32 copies between steps.
    assert "(Cast)" not in files["source"]


def test_cast_through_small_types(tmp_path):
    f, h = TensorProto.FLOAT, TensorProto.FLOAT16
    x = np.array([0.0, -0.0, 0.3, -1.7, 2.5, 7.9, -9.2, 300.0, 500.0, 6e4, 1e5, np.inf, -np.inf, np.nan], np.float32)
    nodes, outputs = [], []
    for to in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ,
               TensorProto.FLOAT4E2M1, TensorProto.INT4, TensorProto.UINT4, TensorProto.INT2, TensorProto.UINT2):
        label = TensorProto.DataType.Name(to).lower()
        nodes += [helper.make_node("Cast", ["x"], [label], to=to),
                  helper.make_node("Cast", [label], [f"{label}_back"], to=f),
                  helper.make_node("Cast", ["x16"], [f"{label}_from_half"], to=to),
                  helper.make_node("Reshape", [label, "shape"], [f"{label}_moved"])]
        outputs += [(label, to, [14]), (f"{label}_back", f, [14]), (f"{label}_from_half", to, [14]),
                    (f"{label}_moved", to, [2, 7])]
        if to in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2):
            nodes.append(helper.make_node("Cast", ["x"], [f"{label}_unsaturated"], to=to, saturate=0))
            outputs.append((f"{label}_unsaturated", to, [14]))
    nodes.append(helper.make_node("Cast", ["int4"], ["int4_to_int8"], to=TensorProto.INT8))
    outputs.append(("int4_to_int8", TensorProto.INT8, [14]))
    model = _model(nodes, [("x", f, [14]), ("x16", h, [14])], outputs,
                   [numpy_helper.from_array(np.array([2, 7], np.int64), "shape")], opset=25)
    results, _ = _run(tmp_path, model, {"x": x, "x16": x.astype(np.float16)})
    for name, (got, want) in results.items():
        np.testing.assert_array_equal(got.view(np.uint8) if got.dtype.itemsize == 1 else got,
                                      want.view(np.uint8) if want.dtype.itemsize == 1 else want, err_msg=name)


def test_packed_initializers_are_refused(tmp_path):
    packed = helper.make_tensor("w", TensorProto.INT4, [3], [1, -2, 3])
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Cast", ["w"], ["y"], to=TensorProto.FLOAT)], "t", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [packed]),
        opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    with pytest.raises(CodegenError, match=r"initializer 'w' is int4, packed several to a byte"):
        _generate(tmp_path, model)


def test_softmax_rounds_each_step_as_numpy(tmp_path):
    x = RNG.uniform(-4, 4, (3, 5, 7)).astype(np.float16)
    nodes = [helper.make_node("Softmax", ["x"], ["last"]), helper.make_node("Softmax", ["x"], ["middle"], axis=1),
             helper.make_node("LogSoftmax", ["x"], ["log"], axis=0)]
    h = TensorProto.FLOAT16
    model = _model(nodes, [("x", h, [3, 5, 7])], [(n.output[0], h, [3, 5, 7]) for n in nodes])
    results, files = _run(tmp_path, model, {"x": x})
    _assert_close(results, 1)  # numpy sums pairwise, the generated code in order
    assert "pure_model::NarrowSoftmax<" in files["source"]
    # bfloat16 the same way; ml_dtypes rounds every partial sum, so within two ulps as onnx's own
    # backend test runner compares bfloat16.
    b = TensorProto.BFLOAT16
    model = _model(nodes[:2], [("x", b, [3, 5, 7])], [(n.output[0], b, [3, 5, 7]) for n in nodes[:2]])
    (tmp_path / "bf16").mkdir()
    results, _ = _run(tmp_path / "bf16", model, {"x": x.astype(ml_dtypes.bfloat16)})
    _assert_close(results, 2)


def test_narrow_initializers_from_raw_and_typed_data(tmp_path):
    values = np.array([1.0, -2.5, 65504.0, 6e-8, np.inf, np.nan], np.float16)
    raw = numpy_helper.from_array(values, "raw")
    typed = helper.make_tensor("typed", TensorProto.FLOAT16, [6], values.view(np.uint16).astype(np.int32).tolist())
    typed.ClearField("raw_data")
    bf = np.array([1.0, -3.0, 0.1, 1e30], ml_dtypes.bfloat16)
    bf_typed = helper.make_tensor("bf_typed", TensorProto.BFLOAT16, [4], bf.view(np.uint16).astype(np.int32).tolist())
    bf_raw = onnx.TensorProto(name="bf_raw", data_type=TensorProto.BFLOAT16, dims=[4], raw_data=bf.tobytes())
    nodes = [helper.make_node("Add", ["x", "raw"], ["a"]), helper.make_node("Add", ["x", "typed"], ["b"]),
             helper.make_node("Mul", ["y", "bf_typed"], ["c"]), helper.make_node("Mul", ["y", "bf_raw"], ["d"])]
    h, b = TensorProto.FLOAT16, TensorProto.BFLOAT16
    model = _model(nodes, [("x", h, [6]), ("y", b, [4])], [("a", h, [6]), ("b", h, [6]), ("c", b, [4]),
                                                           ("d", b, [4])], [raw, typed, bf_typed, bf_raw])
    feeds = {"x": np.array([0.5, 1, 2, 0, -1, 3], np.float16), "y": np.array([2, 0.5, -1, 4], ml_dtypes.bfloat16)}
    results, _ = _run(tmp_path, model, feeds)
    _assert_close(results, 0)


def test_narrow_constants_fold(tmp_path):
    h = TensorProto.FLOAT16
    inits = [numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float16), "c"),
             numpy_helper.from_array(np.array([3], np.int64), "n")]
    nodes = [helper.make_node("Mul", ["c", "c"], ["sq"]), helper.make_node("Sqrt", ["sq"], ["root"]),
             helper.make_node("ConstantOfShape", ["n"], ["ones"],
                              value=numpy_helper.from_array(np.array([1.0], np.float16))),
             helper.make_node("Add", ["root", "ones"], ["folded"]), helper.make_node("Add", ["x", "folded"], ["y"])]
    model = _model(nodes, [("x", h, [3])], [("y", h, [3])], inits)
    results, files = _run(tmp_path, model, {"x": np.array([1, 2, 3], np.float16)})
    _assert_close(results, 0)
    assert "Sqrt" not in files["source"].split("void Model::Run")[1]


def _generate(tmp_path, model):
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    return cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="Model", header_include="model.h",
                              model_label="test")


def test_float16_bits_out_of_range_are_refused(tmp_path):
    bad = helper.make_tensor("w", TensorProto.FLOAT16, [2], [0, 0])
    bad.ClearField("raw_data")
    del bad.int32_data[:]
    bad.int32_data.extend([0x3C00, 70000])
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2])], [bad]),
        opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    with pytest.raises(CodegenError, match=r"initializer 'w' is float16 but holds the value 70000"):
        _generate(tmp_path, model)


def test_header_includes_the_storage_types_only_for_narrow_io(tmp_path):
    h = TensorProto.FLOAT16
    files = _generate(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], [("x", h, [2])], [("y", h, [2])]))
    assert '#include "pure_model/narrow_floats.h"' in files["header"]
    assert "const pure_model::Float16* x" in files["header"]
    f = TensorProto.FLOAT
    plain = _generate(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], [("x", f, [2])], [("y", f, [2])]))
    assert "narrow_floats" not in plain["header"]


def test_harness_runs_models_on_storage_types(tmp_path):
    """The run tool (tools/harness) reads and writes these types as numpy saves ml_dtypes arrays:
    opaque bytes ('<V2', '<V1') that stand for whichever type the model has of that size."""
    b, e4, i4, f = TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN, TensorProto.INT4, TensorProto.FLOAT
    nodes = [helper.make_node("Relu", ["x"], ["relu"]), helper.make_node("Cast", ["q"], ["q_wide"], to=f),
             helper.make_node("Identity", ["q"], ["q_same"]), helper.make_node("Cast", ["i"], ["i_wide"], to=f),
             helper.make_node("Cast", ["q_wide"], ["i_out"], to=i4)]
    model = _model(nodes, [("x", b, [2, 3]), ("q", e4, [4]), ("i", i4, [3])],
                   [("relu", b, [2, 3]), ("q_wide", f, [4]), ("q_same", e4, [4]), ("i_wide", f, [3]),
                    ("i_out", i4, [4])], opset=25)
    feeds = {"x": np.array([[1.5, -2, 0.25], [-0.5, 3, 7]], ml_dtypes.bfloat16),
             "q": np.array([0.5, -1.75, 448, 3], ml_dtypes.float8_e4m3fn), "i": np.array([-8, 7, -1], ml_dtypes.int4)}
    files = _generate(tmp_path, model)
    for name, kind in (("model.h", "header"), ("model.cc", "source"), ("descriptor.cc", "descriptor")):
        (tmp_path / name).write_text(files[kind])
    root = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
    harness = [os.path.join(root, "tools", "harness", n) for n in ("run_main.cc", "harness_util.cc", "npy.cc")]
    binary = str(tmp_path / "run")
    subprocess.run([shutil.which("g++") or "c++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-I",
                    str(tmp_path), "-I", _kernels_include(), "-I", root, *harness, str(tmp_path / "model.cc"),
                    str(tmp_path / "descriptor.cc"), "-o", binary], check=True)
    args = []
    for name, value in feeds.items():
        np.save(tmp_path / f"{name}.npy", value)
        args.append(f"--input={name}={tmp_path / f'{name}.npy'}")
    (tmp_path / "out").mkdir()
    subprocess.run([binary, *args, f"--output_dir={tmp_path / 'out'}"], check=True)
    expected = ReferenceEvaluator(model).run(None, feeds)
    for output, want in zip(model.graph.output, expected):
        got = np.load(tmp_path / "out" / f"{output.name}.npy")
        np.testing.assert_array_equal(got.view(want.dtype) if got.dtype.kind == "V" else got, want,
                                      err_msg=output.name)
