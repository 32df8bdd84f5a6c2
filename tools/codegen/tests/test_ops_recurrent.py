"""RNN, GRU and LSTM, generated, compiled and run, against the spec's equations.

onnx's reference evaluator ignores sequence_lens, clip, input_forget and the activations
attributes, so the outputs are checked against `reference` below, a direct transcription of the
spec's equations (checked against ONNX Runtime by hand, and against the reference evaluator here
for everything that evaluator implements). Several nodes share one model so that a test compiles
once.
"""

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from helpers import assert_close, run_generated, save
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(11)
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DEFAULTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
ALPHA = {"Affine": None, "LeakyRelu": 0.01, "ThresholdedRelu": 1.0, "ScaledTanh": None, "HardSigmoid": 0.2, "Elu": 1.0}
BETA = {"Affine": None, "ScaledTanh": None, "HardSigmoid": 0.5}


def _function(name, alpha, beta):
    return {
        "Relu": lambda v: np.maximum(v, 0),
        "Tanh": np.tanh,
        "Sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "Affine": lambda v: alpha * v + beta,
        "LeakyRelu": lambda v: np.where(v >= 0, v, alpha * v),
        "ThresholdedRelu": lambda v: np.where(v > alpha, v, 0),
        "ScaledTanh": lambda v: alpha * np.tanh(beta * v),
        "HardSigmoid": lambda v: np.clip(alpha * v + beta, 0, 1),
        "Elu": lambda v: np.where(v >= 0, v, alpha * (np.exp(v) - 1)),
        "Softsign": lambda v: v / (1 + np.abs(v)),
        "Softplus": lambda v: np.log1p(np.exp(v)),
    }[name]


def _functions(names, alphas, betas):
    alphas, betas = list(alphas), list(betas)
    result = []
    for name in names:
        alpha = alphas.pop(0) if name in ALPHA and alphas else ALPHA.get(name)
        beta = betas.pop(0) if name in BETA and betas else BETA.get(name)
        result.append(_function(name, alpha, beta))
    return result


def fake_quantize(x, ranged=None):
    """x rounded through uint8 as DynamicQuantizeLSTM quantizes its products' inputs (float32
    steps), with the range of `ranged` (default: x)."""
    x = np.asarray(x, np.float32)
    ranged = x if ranged is None else np.asarray(ranged, np.float32)
    lo, hi = min(np.float32(0), ranged.min(initial=0)), max(np.float32(0), ranged.max(initial=0))
    scale = np.float32(1) if hi == lo else np.float32(hi - lo) / np.float32(255)
    zero_point = np.round(np.clip(-lo / scale, 0, 255))
    return ((np.clip(np.round(x / scale) + zero_point, 0, 255) - zero_point) * scale).astype(np.float32)


def reference(op, attrs, X, W, R, B=None, seq_lens=None, h0=None, c0=None, P=None, quantize=False):
    """[Y, Y_h(, Y_c)] by the spec's equations, in float64 (quantize: DynamicQuantizeLSTM)."""
    H, directions = R.shape[-1], W.shape[0]
    layout = attrs.get("layout", 0)
    if layout:
        X = X.swapaxes(0, 1)
        h0 = None if h0 is None else h0.swapaxes(0, 1)
        c0 = None if c0 is None else c0.swapaxes(0, 1)
    seq, batch = X.shape[:2]
    g = GATES[op]
    per_direction = len(DEFAULTS[op])
    funcs = _functions(attrs.get("activations", DEFAULTS[op] * directions), attrs.get("activation_alpha", []),
                       attrs.get("activation_beta", []))
    clip = attrs.get("clip")
    cl = (lambda v: np.clip(v, -clip, clip)) if clip is not None else (lambda v: v)
    q = fake_quantize if quantize else (lambda v: v)
    B = np.zeros((directions, 2 * g * H)) if B is None else B.astype(np.float64)
    P = np.zeros((directions, 3 * H)) if P is None else P.astype(np.float64)
    h0 = np.zeros((directions, batch, H)) if h0 is None else h0
    c0 = np.zeros((directions, batch, H)) if c0 is None else c0
    lens = np.full(batch, seq) if seq_lens is None else np.clip(seq_lens, 0, seq)
    Y = np.zeros((seq, directions, batch, H))
    Yh, Yc = np.zeros((directions, batch, H)), np.zeros((directions, batch, H))
    for d in range(directions):
        reverse = attrs.get("direction") == "reverse" or d == 1
        f = funcs[d * per_direction:(d + 1) * per_direction]
        w, r = W[d].astype(np.float64), R[d].astype(np.float64)
        wb, rb = B[d][:g * H], B[d][g * H:]
        # X's range reaches as far as the longest sequence (ONNX Runtime's).
        xs = (fake_quantize(X, X[:lens.max(initial=0)]) if quantize else X).astype(np.float64)
        h, c = h0[d].astype(np.float64), c0[d].astype(np.float64)
        for t in (range(seq - 1, -1, -1) if reverse else range(seq)):
            # DynamicQuantizeLSTM rounds X as a whole, h row by row (as ONNX Runtime does).
            hq = np.stack([q(row) for row in h]).astype(np.float64)
            gx, gh = xs[t] @ w.T + wb, hq @ r.T + rb
            if op == "RNN":
                h_new, c_new = f[0](cl(gx + gh)), c
            elif op == "GRU":
                z = f[0](cl(gx[:, :H] + gh[:, :H]))
                reset = f[0](cl(gx[:, H:2 * H] + gh[:, H:2 * H]))
                if attrs.get("linear_before_reset", 0):
                    candidate = f[1](cl(gx[:, 2 * H:] + reset * gh[:, 2 * H:]))
                else:
                    candidate = f[1](cl(gx[:, 2 * H:] + (reset * h) @ r[2 * H:].T + rb[2 * H:]))
                h_new, c_new = (1 - z) * candidate + z * h, c
            else:
                gates = gx + gh
                i = f[0](cl(gates[:, :H] + P[d][:H] * c))
                if attrs.get("input_forget", 0):
                    forget = 1 - i
                else:
                    forget = f[0](cl(gates[:, 2 * H:3 * H] + P[d][2 * H:] * c))
                c_new = forget * c + i * f[1](cl(gates[:, 3 * H:]))
                h_new = f[0](cl(gates[:, H:2 * H] + P[d][H:2 * H] * c_new)) * f[2](c_new)
            # Rows whose sequence has ended keep their state and give zeros.
            active = (t < lens)[:, None]
            h, c = np.where(active, h_new, h), np.where(active, c_new, c)
            Y[t, d] = np.where(active, h_new, 0)
        Yh[d], Yc[d] = h, c
    if layout:
        Y, Yh, Yc = Y.transpose(2, 0, 1, 3), Yh.swapaxes(0, 1), Yc.swapaxes(0, 1)
    return [a.astype(np.float32) for a in (Y, Yh, Yc)][:3 if op == "LSTM" else 2]


def _layer(tag, op, attrs=None, seq=5, batch=3, inputs=4, hidden=3, optional=(), const=True, outputs=(0, 1, 2),
           computed=True, x_range=2.0):
    """(node, graph inputs {name: array}, initializers {name: array}, expected {output: array}).

    optional: which of B, seq, h0, c0, P to give; const: weights (W, R, B, P) as initializers.
    outputs: indices of the outputs the node names (the others are left out or empty).
    computed=False gives zeros of the outputs' shapes, for nodes the generator must refuse.
    """
    attrs = dict(attrs or {})
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    g = GATES[op]
    state = (batch, directions, hidden) if layout else (directions, batch, hidden)
    values = {
        "X": RNG.uniform(-x_range, x_range, (batch, seq, inputs) if layout else (seq, batch, inputs)),
        "W": RNG.uniform(-1, 1, (directions, g * hidden, inputs)),
        "R": RNG.uniform(-1, 1, (directions, g * hidden, hidden)),
        "B": RNG.uniform(-1, 1, (directions, 2 * g * hidden)),
        "seq": RNG.integers(0, seq + 1, batch).astype(np.int32),
        "h0": RNG.uniform(-1, 1, state),
        "c0": RNG.uniform(-1, 1, state),
        "P": RNG.uniform(-1, 1, (directions, 3 * hidden)),
    }
    values = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in values.items()}
    slots = ["X", "W", "R", "B", "seq", "h0"] + (["c0", "P"] if op == "LSTM" else [])
    names = [f"{tag}_{k}" if k in ("X", "W", "R") or k in optional else "" for k in slots]
    while not names[-1]:
        names.pop()
    feeds, inits = {}, {}
    for slot, name in zip(slots, names):
        if name:
            (inits if const and slot in ("W", "R", "B", "P") else feeds)[name] = values[slot]
    out_names = [f"{tag}_{k}" if i in outputs else "" for i, k in enumerate(["Y", "Yh", "Yc"][:3 if op == "LSTM" else 2])]
    while not out_names[-1]:
        out_names.pop()
    node = helper.make_node(op, names, out_names, name=tag, hidden_size=hidden, **attrs)
    given = {k: values[k] for k in slots if f"{tag}_{k}" in names}
    if not computed:
        y_shape = (batch, seq, directions, hidden) if layout else (seq, directions, batch, hidden)
        shapes = [y_shape, state, state]
        return node, feeds, inits, {name: np.zeros(shape, np.float32) for name, shape in zip(out_names, shapes) if name}
    ref = reference(op, attrs, given["X"], given["W"], given["R"], given.get("B"), given.get("seq"), given.get("h0"),
                    given.get("c0"), given.get("P"))
    expected = {name: value for name, value in zip(out_names, ref) if name}
    return node, feeds, inits, expected


_ELEMENT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32,
                  np.dtype(np.int8): TensorProto.INT8}


def _save_model(tmp_path, layers, opsets=(("", 22),)):
    """The layers' nodes in one model: (path, feeds, expected outputs)."""
    feeds = {k: v for layer in layers for k, v in layer[1].items()}
    inits = {k: v for layer in layers for k, v in layer[2].items()}
    expected = {k: v for layer in layers for k, v in layer[3].items()}
    graph = helper.make_graph(
        [layer[0] for layer in layers], "test",
        [helper.make_tensor_value_info(k, _ELEMENT_TYPES[v.dtype], v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in expected.items()],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], ir_version=9)
    return save(model, tmp_path), feeds, expected


def _run(tmp_path, layers, opsets=(("", 22),)):
    path, feeds, expected = _save_model(tmp_path, layers, opsets)
    got, files = run_generated(path, feeds, list(expected.values()), str(tmp_path))
    got = dict(zip(expected, got))
    assert_close(got, expected)
    return path, feeds, got


ALL = ("B", "seq", "h0", "c0", "P")


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_directions_layouts_and_optional_inputs(tmp_path, op):
    layers = []
    for direction in ("forward", "reverse", "bidirectional"):
        for layout in (0, 1):
            tag = f"{direction[0]}{layout}"
            layers.append(_layer(tag, op, {"direction": direction, "layout": layout}, optional=ALL,
                                 const=layout == 0))
    # No optional inputs at all; only Y_h; only Y (and for LSTM only Y_c) as outputs.
    layers.append(_layer("bare", op, {}, optional=(), outputs=(1,)))
    layers.append(_layer("y_only", op, {"direction": "bidirectional"}, optional=("B",), outputs=(0,)))
    if op == "LSTM":
        layers.append(_layer("yc_only", op, {}, optional=("h0", "c0"), outputs=(2,)))
    # Inputs far out, where sigmoid and tanh saturate (and e^v leaves float's range), and near 0.
    layers.append(_layer("far", op, {"direction": "bidirectional"}, optional=ALL, x_range=300.0))
    layers.append(_layer("near", op, {}, optional=(), x_range=1e-4))
    # A batch of one over a longer sequence, the shape of streaming models, wider than a panel.
    layers.append(_layer("wide", op, {}, seq=7, batch=1, inputs=20, hidden=21, optional=("B", "h0")))
    _run(tmp_path, layers)


def test_outputs_nothing_reads_are_skipped(tmp_path):
    # Y and Y_c are named but neither read nor graph outputs: the node still runs for Y_h.
    node, feeds, inits, expected = _layer("n", "LSTM", {"direction": "bidirectional"}, optional=("B", "h0"))
    negated = (helper.make_node("Neg", ["n_Yh"], ["out"]), {}, {}, {"out": -expected["n_Yh"]})
    path, feeds, expected = _save_model(tmp_path, [(node, feeds, inits, {}), negated], (("", 14),))
    got, files = run_generated(path, feeds, list(expected.values()), str(tmp_path))
    assert_close({"out": got[0]}, expected)
    calls = [line for line in files["source"].splitlines() if "RecurrentLayer<" in line]
    # ... y, y_h, y_c, scratch: only y_h is written.
    assert len(calls) == 2 and all(re.search(r"nullptr, n_yh_( \+ \d+)?, nullptr, reinterpret_cast", c) for c in calls)


def test_opset_7_versions(tmp_path):
    # RNN-7, GRU-7 and LSTM-7: the same equations, without the layout attribute.
    layers = [_layer(op, op, {"direction": "bidirectional"}, optional=ALL) for op in ("RNN", "GRU", "LSTM")]
    _run(tmp_path, layers, (("", 7),))


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_clip_activations_and_flags(tmp_path, op):
    acts = {
        "RNN": [["Relu", "LeakyRelu"], ["ThresholdedRelu", "ScaledTanh"], ["Softsign", "Softplus"],
                ["HardSigmoid", "Affine"], ["Elu", "Sigmoid"], ["Tanh", "Tanh"]],
        "GRU": [["HardSigmoid", "Softsign", "Sigmoid", "Elu"], ["Sigmoid", "Affine", "Sigmoid", "ScaledTanh"]],
        "LSTM": [["HardSigmoid", "LeakyRelu", "Softsign", "Sigmoid", "Elu", "Softplus"],
                 ["Sigmoid", "Affine", "ThresholdedRelu", "Sigmoid", "Relu", "ScaledTanh"]],
    }[op]
    layers = []
    for k, names in enumerate(acts):
        attrs = {"direction": "bidirectional", "activations": names, "layout": k % 2}
        # Fewer values than the functions that take one: the rest take their defaults. Affine and
        # ScaledTanh (which have none) come after all the others that take alpha and beta.
        needs_alpha = [n for n in names if n in ALPHA]
        needs_beta = [n for n in names if n in BETA]
        defaulted = 0 if any(ALPHA[n] is None for n in needs_alpha) else 1
        for key, needs, base in (("activation_alpha", needs_alpha, 0.3), ("activation_beta", needs_beta, 0.4)):
            if len(needs) > defaulted:
                attrs[key] = [base + 0.1 * i for i in range(len(needs) - defaulted)]
        layers.append(_layer(f"act{k}", op, attrs, optional=ALL))
    layers.append(_layer("clip", op, {"clip": 0.6, "direction": "reverse"}, optional=ALL))
    if op == "GRU":
        layers.append(_layer("lbr", op, {"linear_before_reset": 1, "direction": "bidirectional"}, optional=ALL))
        layers.append(_layer("lbr_rt", op, {"linear_before_reset": 1}, optional=ALL, const=False))
    if op == "LSTM":
        layers.append(_layer("coupled", op, {"input_forget": 1, "clip": 1.5}, optional=ALL))
    _run(tmp_path, layers)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_reference_agrees_with_onnx_reference_evaluator(tmp_path, op, direction, layout):
    # What the evaluator implements (no sequence_lens, activations or clip) must agree with the
    # transcription the generated code is tested against.
    node, feeds, inits, expected = _layer("n", op, {"direction": direction, "layout": layout},
                                          optional=("B", "h0", "c0", "P"))
    path, feeds, expected = _save_model(tmp_path, [(node, feeds, inits, expected)])
    got = ReferenceEvaluator(onnx.load(path)).run(None, feeds)
    assert_close(dict(zip(expected, got)), expected, rtol=1e-5)


def _generate(tmp_path, layers, opsets=(("", 22),)):
    path, _, _ = _save_model(tmp_path, [layers], opsets)
    return cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                              model_label="test")


@pytest.mark.parametrize("op,attrs,message", [
    ("RNN", {"activations": ["Swish"]}, "activation 'Swish' is not one of"),
    ("RNN", {"activations": ["Affine"]}, "Affine has no default alpha and beta"),
    ("RNN", {"activations": ["Tanh", "Tanh"]}, "activations lists 2 functions; RNN with 1 direction(s) needs 1"),
    ("RNN", {"activations": ["LeakyRelu"], "activation_alpha": [0.1, 0.2]}, "hold more values"),
    ("GRU", {"direction": "sideways"}, "direction 'sideways' is not one of"),
    ("LSTM", {"layout": 2}, "layout must be 0 or 1"),
    ("LSTM", {"clip": -1.0}, "clip must be positive"),
])
def test_rejections(tmp_path, op, attrs, message):
    with pytest.raises(CodegenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _generate(tmp_path, _layer("bad", op, attrs, computed=False))


def test_rejects_mismatched_hidden_size_and_old_versions(tmp_path):
    node, feeds, inits, expected = _layer("n", "GRU", optional=("B",))
    node.attribute[0].i = 5  # hidden_size disagrees with R
    with pytest.raises(CodegenError, match=r"W \('n_W'\) has shape \[1, 9, 4\], expected \[1, 15, 4\]"):
        _generate(tmp_path, (node, feeds, inits, expected))
    with pytest.raises(CodegenError, match="LSTM-1 is not supported; convert the model to opset 7"):
        _generate(tmp_path, _layer("n", "LSTM"), opsets=(("", 6),))


def _quantized_lstm(tag, direction, per_channel, signed, optional, seq=6, batch=2, inputs=5, hidden=4,
                    fixed_zero_point=None, steps=127):
    """A com.microsoft DynamicQuantizeLSTM node with its inputs, and the reference outputs."""
    node, feeds, inits, _ = _layer(tag, "LSTM", {"direction": direction}, seq=seq, batch=batch, inputs=inputs,
                                   hidden=hidden, optional=optional)
    directions, gh = 2 if direction == "bidirectional" else 1, 4 * hidden
    quantized = {}
    for label in ("W", "R"):
        weights = inits.pop(f"{tag}_{label}").transpose(0, 2, 1)  # [directions, K, 4H], as the op stores it
        if per_channel:
            lo, hi = np.minimum(weights.min(axis=1), 0), np.maximum(weights.max(axis=1), 0)  # [directions, 4H]
        else:
            lo, hi = np.minimum(weights.min(axis=(1, 2)), 0), np.maximum(weights.max(axis=(1, 2)), 0)
        # One zero point for all columns (by default 0, or 128 for uint8, symmetric): ONNX Runtime
        # accepts no other.
        scale = (np.maximum(hi, -lo) / steps).astype(np.float32)
        if fixed_zero_point is None:
            fixed_zero_point = 0 if signed else 128
        zero_point = np.zeros_like(scale) + fixed_zero_point
        shaped = (lambda a: a[:, None, :]) if per_channel else (lambda a: a[:, None, None])
        dtype = np.int8 if signed else np.uint8
        q = np.clip(np.round(weights / shaped(scale)) + shaped(zero_point), np.iinfo(dtype).min, np.iinfo(dtype).max)
        quantized[label] = ((q - shaped(zero_point)) * shaped(scale)).astype(np.float32).transpose(0, 2, 1)
        inits[f"{tag}_{label}q"] = q.astype(dtype)
        inits[f"{tag}_{label}_scale"] = scale
        inits[f"{tag}_{label}_zp"] = zero_point.astype(dtype)
        assert scale.shape == ((directions, gh) if per_channel else (directions,))
    names = list(node.input) + [""] * (8 - len(node.input))
    names[1], names[2] = f"{tag}_Wq", f"{tag}_Rq"
    names += [f"{tag}_W_scale", f"{tag}_W_zp", f"{tag}_R_scale", f"{tag}_R_zp"]
    quant_node = helper.make_node("DynamicQuantizeLSTM", names, list(node.output), name=tag, domain="com.microsoft",
                                  hidden_size=hidden, direction=direction)
    values = {**feeds, **inits}
    given = [values.get(f"{tag}_{k}") for k in ("X", "W", "R", "B", "seq", "h0", "c0", "P")]
    given[1], given[2] = quantized["W"], quantized["R"]
    expected = dict(zip(node.output, reference("LSTM", {"direction": direction}, *given, quantize=True)))
    return quant_node, feeds, inits, expected


_WITH_MICROSOFT = (("", 17), ("com.microsoft", 1))


def test_dynamic_quantize_lstm(tmp_path):
    layers = [_quantized_lstm("a", "bidirectional", per_channel=False, signed=True, optional=("B", "h0", "c0")),
              _quantized_lstm("b", "forward", per_channel=True, signed=False, optional=("B", "seq", "P")),
              _quantized_lstm("c", "reverse", per_channel=True, signed=True, optional=(), batch=1, hidden=20),
              # uint8 weights with a zero point other than 128.
              _quantized_lstm("d", "forward", per_channel=False, signed=False, optional=("B",), fixed_zero_point=3,
                              steps=255)]
    path, feeds, got = _run(tmp_path, layers, _WITH_MICROSOFT)
    try:
        import onnxruntime
    except ImportError:
        return
    # ONNX Runtime itself, where it is installed: the op is its own, and the kernel does its
    # arithmetic, so the results are equal bit for bit (any difference could round an element
    # of h to the neighbouring 8-bit step and grow from there).
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    for name, value in zip(got, session.run(list(got), feeds)):
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_other_com_microsoft_ops_stay_unsupported(tmp_path):
    node = helper.make_node("FusedGemm", ["x", "x"], ["y"], name="fused", domain="com.microsoft")
    layer = (node, {"x": np.zeros((2, 2), np.float32)}, {}, {"y": np.zeros((2, 2), np.float32)})
    with pytest.raises(CodegenError, match=r"node 'fused' \(com\.microsoft\.FusedGemm, opset 1\): unsupported operator$"):
        _generate(tmp_path, layer, _WITH_MICROSOFT)


def test_dynamic_quantize_lstm_needs_constant_weights(tmp_path):
    node, feeds, inits, expected = _quantized_lstm("q", "forward", per_channel=False, signed=True, optional=())
    feeds["q_Wq"] = inits.pop("q_Wq")
    with pytest.raises(CodegenError, match=r"W \('q_Wq'\) must be a constant"):
        _generate(tmp_path, (node, feeds, inits, expected), _WITH_MICROSOFT)
