"""Recurrent layers: RNN, GRU and LSTM (float32), every direction, layout and activation.

One step of Run() per node: for each direction, the input projection X * W^T of all time steps
at once, then the loop over time with the recurrence h * R^T and the cell update
(RecurrentLayer in runtime/include/pure_model/recurrent_kernels.h). Constant weights are packed
into the kernel's panels at generation time, and the two biases folded into one; weights that
are model inputs are packed into scratch at run time. sequence_lens is read at run time.
"""

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, input_count, register, require_dtype

_FLOAT = (1,)
_INT32 = (6,)
_INT8 = (3, 2)  # int8, uint8
# kRecurrentPanel in recurrent_kernels.h.
PANEL = 16

_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
_CELL = {"RNN": "kRnn", "GRU": "kGru", "LSTM": "kLstm"}
# Activation -> (default alpha, default beta) for those that take them. The spec's defaults are
# those of the ONNX ops of the same name; Affine and ScaledTanh have no such op (any more), so
# their values must be given.
_ALPHA = {"Affine": None, "LeakyRelu": 0.01, "ThresholdedRelu": 1.0, "ScaledTanh": None, "HardSigmoid": 0.2,
          "Elu": 1.0}
_BETA = {"Affine": None, "ScaledTanh": None, "HardSigmoid": 0.5}
_ACTIVATIONS = ("Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
                "Elu", "Softsign", "Softplus")
# Input slots: X, W, R, B, sequence_lens, initial_h, then LSTM's initial_c and P.
_X, _W, _R, _B, _SEQ, _H0, _C0, _P = range(8)
# DynamicQuantizeLSTM's further inputs: W_scale, W_zero_point, R_scale, R_zero_point.
_QUANT = 8


def _present(node, index):
    return len(node.inputs) > index and bool(node.inputs[index])


def _activations(node, op, directions):
    """[(name, alpha, beta)] per activation, f g h for each direction in turn."""
    per_direction = len(_DEFAULT_ACTIVATIONS[op])
    names = node.attrs.get("activations")
    if names is None:
        names = _DEFAULT_ACTIVATIONS[op] * directions
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise CodegenError("attribute 'activations' must be a list of strings", node=node)
    if len(names) != per_direction * directions:
        raise CodegenError(f"activations lists {len(names)} functions; {op} with {directions} direction(s) needs "
                           f"{per_direction * directions}", node=node)
    alphas = list(_floats(node, "activation_alpha"))
    betas = list(_floats(node, "activation_beta"))
    result = []
    for name in names:
        canonical = {a.lower(): a for a in _ACTIVATIONS}.get(name.lower())
        if canonical is None:
            raise CodegenError(f"activation '{name}' is not one of {', '.join(_ACTIVATIONS)}", node=node)
        # The lists are consumed in the order of the functions, each value by the next function
        # that takes one; a function past the end of a list takes its default.
        alpha = alphas.pop(0) if canonical in _ALPHA and alphas else _ALPHA.get(canonical, 0.0)
        beta = betas.pop(0) if canonical in _BETA and betas else _BETA.get(canonical, 0.0)
        if alpha is None or beta is None:
            raise CodegenError(f"activation {canonical} has no default alpha and beta; give them in "
                               "activation_alpha and activation_beta", node=node)
        result.append((canonical, float(alpha), float(beta)))
    if alphas or betas:
        raise CodegenError(f"activation_alpha/activation_beta hold more values than the activations "
                           f"{list(names)} take", node=node)
    return result


def _floats(node, name):
    value = node.attrs.get(name, [])
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in value):
        raise CodegenError(f"attribute '{name}' must be a list of floats", node=node)
    return value


def _geometry(node, graph, op, quantized=False):
    """Shapes and attributes of a recurrent node, checked. quantized: DynamicQuantizeLSTM."""
    input_count(node, *((12, 12) if quantized else (3, 8 if op == "LSTM" else 6)))
    x = require_dtype(node, graph, node.inputs[_X], _FLOAT)
    w = require_dtype(node, graph, node.inputs[_W], _INT8 if quantized else _FLOAT)
    r = require_dtype(node, graph, node.inputs[_R], _INT8 if quantized else _FLOAT)
    if len(x.shape) != 3:
        raise CodegenError(f"X must have rank 3, got shape {list(x.shape)}", node=node)
    if quantized and "layout" in node.attrs:
        raise CodegenError("DynamicQuantizeLSTM has no attribute 'layout'", node=node)
    layout = attr_int(node, "layout", 0)
    if layout not in (0, 1):
        raise CodegenError(f"layout must be 0 or 1, got {layout}", node=node)
    seq, batch, input_size = (x.shape[1], x.shape[0], x.shape[2]) if layout else x.shape
    direction = node.attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise CodegenError(f"direction '{direction}' is not one of forward, reverse, bidirectional", node=node)
    directions = 2 if direction == "bidirectional" else 1
    gates = _GATES[op]
    # DynamicQuantizeLSTM stores W and R transposed: [directions, input or hidden, 4 * hidden].
    hidden_dim = (1 if quantized else 2) if len(r.shape) == 3 else None
    hidden = attr_int(node, "hidden_size", None if hidden_dim is None else r.shape[hidden_dim])
    if hidden < 1:
        raise CodegenError(f"hidden_size must be positive, got {hidden}", node=node)
    gh = gates * hidden
    expected = {
        _W: ("W", (directions, input_size, gh) if quantized else (directions, gh, input_size)),
        _R: ("R", (directions, hidden, gh) if quantized else (directions, gh, hidden)),
        _B: ("B", (directions, 2 * gates * hidden)),
        _SEQ: ("sequence_lens", (batch,)),
        _H0: ("initial_h", (batch, directions, hidden) if layout else (directions, batch, hidden)),
        _C0: ("initial_c", (batch, directions, hidden) if layout else (directions, batch, hidden)),
        _P: ("P", (directions, 3 * hidden)),
    }
    for index, (label, shape) in expected.items():
        if not _present(node, index):
            continue
        allowed = _INT32 if index == _SEQ else (_INT8 if quantized and index in (_W, _R) else _FLOAT)
        tensor = require_dtype(node, graph, node.inputs[index], allowed)
        if tuple(tensor.shape) != shape:
            raise CodegenError(f"{label} ('{tensor.name}') has shape {list(tensor.shape)}, expected {list(shape)} "
                               f"(direction {direction}, layout {layout}, hidden_size {hidden})", node=node)
    clip = node.attrs.get("clip")
    if clip is not None:
        clip = attr_float(node, "clip", 0.0)
        if not clip > 0:
            raise CodegenError(f"clip must be positive, got {clip}", node=node)
    linear_before_reset = attr_int(node, "linear_before_reset", 0) if op == "GRU" else 0
    input_forget = attr_int(node, "input_forget", 0) if op == "LSTM" else 0
    max_outputs = 3 if op == "LSTM" else 2
    if len(node.outputs) > max_outputs:
        raise CodegenError(f"{op} has at most {max_outputs} outputs, got {len(node.outputs)}", node=node)
    if quantized:
        for index, label in ((_W, "W"), (_R, "R")):
            for offset, part in ((1, "zero_point"), (0, "scale")):
                name = node.inputs[_QUANT + 2 * (index == _R) + offset]
                tensor = require_dtype(node, graph, name, (graph.tensor(node.inputs[index]).dtype,) if offset else _FLOAT)
                if tuple(tensor.shape) not in ((directions,), (directions, gh)):
                    raise CodegenError(f"{label}_{part} ('{name}') has shape {list(tensor.shape)}, expected "
                                       f"[{directions}] or [{directions}, {gh}]", node=node)
                if not tensor.is_constant:
                    raise CodegenError(f"{label}_{part} ('{name}') must be a constant", node=node)
            if not graph.tensor(node.inputs[index]).is_constant:
                raise CodegenError(f"{label} ('{node.inputs[index]}') must be a constant", node=node)
        if _present(node, _B) and not graph.tensor(node.inputs[_B]).is_constant:
            raise CodegenError(f"B ('{node.inputs[_B]}') must be a constant", node=node)
    return dict(op=op, quantized=quantized, seq=seq, batch=batch, input=input_size, hidden=hidden, gates=gates, layout=layout,
                directions=directions, reverse=direction == "reverse", clip=clip,
                linear_before_reset=bool(linear_before_reset), input_forget=bool(input_forget),
                activations=_activations(node, op, directions))


def _output_shapes(g):
    s, n, d, h = g["seq"], g["batch"], g["directions"], g["hidden"]
    y = (n, s, d, h) if g["layout"] else (s, d, n, h)
    state = (n, d, h) if g["layout"] else (d, n, h)
    return [y, state, state]


def _make_infer(op, quantized=False):
    def infer(node, graph):
        g = _geometry(node, graph, op, quantized)
        return [(1, shape) for shape, _ in zip(_output_shapes(g), node.outputs)]

    return infer


def _weights_parts(g):
    """Row ranges of one direction's R that the kernel multiplies separately: GRU's h rows apart."""
    h = g["hidden"]
    if g["op"] == "GRU":
        return [(0, 2 * h), (2 * h, 3 * h)]
    return [(0, g["gates"] * h)]


def pack(matrix):
    """[M, K] -> [ceil(M / 16)][K][16], zero rows padding the last panel: PackRecurrentWeights."""
    m, k = matrix.shape
    panels = -(-m // PANEL)
    padded = np.zeros((panels * PANEL, k), np.float32)
    padded[:m] = matrix
    return np.ascontiguousarray(padded.reshape(panels, PANEL, k).transpose(0, 2, 1))


def _packed_floats(rows, k):
    return -(-rows // PANEL) * PANEL * k


def _quantized_weights(node, graph, g, index):
    """DynamicQuantizeLSTM's W or R ([directions, K, 4H], 8-bit) minus its zero point, transposed
    as QuantizedLstmLayer reads it ([directions, 4H, K]), as int8 when the values fit (zero points
    0) and int16 otherwise; and its scale per direction and column [directions, 4H]."""
    value = graph.tensor(node.inputs[index]).value.astype(np.int32)
    directions, _, gh = value.shape
    scale = graph.tensor(node.inputs[_QUANT + 2 * (index == _R)]).value.astype(np.float32)
    zero_point = graph.tensor(node.inputs[_QUANT + 2 * (index == _R) + 1]).value.astype(np.int32)
    zero_point = zero_point[:, None, :] if zero_point.ndim == 2 else zero_point[:, None, None]
    centred = value - zero_point
    fits = centred.min() >= -128 and centred.max() <= 127
    dtype = ir.DTYPE_BY_NAME["int8" if fits else "int16"]
    scales = np.broadcast_to(scale if scale.ndim == 2 else scale[:, None], (directions, gh))
    return (np.ascontiguousarray(centred.transpose(0, 2, 1)).astype(ir.numpy_type(dtype)), dtype,
            np.ascontiguousarray(scales))


def _runtime_layout(node, graph, g):
    """Scratch floats for what must be prepared at run time, per direction: packed W, R parts and
    the folded bias, for those that are not constants."""
    h, gh = g["hidden"], g["gates"] * g["hidden"]
    w_const = graph.tensor(node.inputs[_W]).is_constant
    r_const = graph.tensor(node.inputs[_R]).is_constant
    b_const = not _present(node, _B) or graph.tensor(node.inputs[_B]).is_constant
    sizes = {}
    if not w_const:
        sizes["w"] = _packed_floats(gh, g["input"])
    if not r_const:
        for index, (lo, hi) in enumerate(_weights_parts(g)):
            sizes[f"r{index}"] = _packed_floats(hi - lo, h)
    if not b_const:
        sizes["bias_x"] = gh
        sizes["bias_rh"] = h
    return sizes


def _kernel_floats(g):
    s, n, h, gh = g["seq"], g["batch"], g["hidden"], g["gates"] * g["hidden"]
    if g["quantized"]:  # QuantizedLstmScratchFloats
        return s * n * gh + gh + 2 * n * h + 2 * gh + (s * n * g["input"] + 1) // 2 + (h + 1) // 2
    return s * n * gh + n * (gh + 4 * h)  # RecurrentScratchFloats


def _make_scratch(op, quantized=False):
    def scratch(node, graph):
        g = _geometry(node, graph, op, quantized)
        return 4 * (_kernel_floats(g) + sum(_runtime_layout(node, graph, g).values()))

    return scratch


def _fold_bias(g, b):
    """One direction's B [2 * G * H] -> (bias added to the projection, GRU's separate Rb of h)."""
    h, gh = g["hidden"], g["gates"] * g["hidden"]
    if g["quantized"]:
        # ONNX Runtime adds the two in float32, and the sum's rounding reaches the 8-bit h.
        return b[:gh].astype(np.float32) + b[gh:].astype(np.float32), None
    wb, rb = b[:gh].astype(np.float64), b[gh:].astype(np.float64)
    if g["linear_before_reset"]:
        # r multiplies (h * Rh^T + Rbh): that bias stays inside the product.
        folded = wb.copy()
        folded[:2 * h] += rb[:2 * h]
        return folded.astype(np.float32), rb[2 * h:].astype(np.float32)
    return (wb + rb).astype(np.float32), None


def _offset(pointer, elements):
    return f"{pointer} + {elements}" if elements else pointer


def _make_emit(op, quantized=False):
    def emit(node, ctx):
        graph = ctx.graph
        g = _geometry(node, graph, op, quantized)
        s, n, d, h, gh = g["seq"], g["batch"], g["directions"], g["hidden"], g["gates"] * g["hidden"]
        w, r = graph.tensor(node.inputs[_W]), graph.tensor(node.inputs[_R])
        # Constant weights are packed at generation time; None: packed at run time.
        w_value, r_value = w.value, r.value
        weight_set = _quantized_weight_set(node, graph, g) if quantized else None
        b = graph.tensor(node.inputs[_B]) if _present(node, _B) else None
        runtime = _runtime_layout(node, graph, g)
        scratch = ctx.scratch(node)
        offset = _kernel_floats(g)
        runtime_ptr = {}
        for key, size in runtime.items():
            runtime_ptr[key] = f"({scratch} + {offset})"
            offset += size
        # An output nothing reads (Y, when only the final state is used) is not written at all.
        read = set(graph.outputs) | set(graph.consumers())
        outputs = [node.outputs[i] if i < len(node.outputs) and node.outputs[i] in read else None for i in range(3)]
        lines = []
        if g["layout"]:
            row_t, row_n, y_t, y_n, y_dir, state_n, state_dir = 1, s, d * h, s * d * h, h, d * h, h
        else:
            row_t, row_n, y_t, y_n, y_dir, state_n, state_dir = n, 1, d * n * h, h, n * h, h, n * h
        for direction in range(d):
            reverse = g["reverse"] or direction == 1
            label = "" if d == 1 else ("_forward" if direction == 0 else "_reverse")
            acts = g["activations"][direction * len(_DEFAULT_ACTIVATIONS[op]):]
            fields = [("kCell", ("pure_model::RecurrentCell", "pure_model::RecurrentCell::" + _CELL[op])),
                      ("kSeq", s), ("kBatch", n), ("kInput", g["input"]), ("kHidden", h), ("kGates", g["gates"]),
                      ("kReverse", reverse), ("kRowStrideT", row_t), ("kRowStrideN", row_n),
                      ("kYStrideT", y_t), ("kYStrideN", y_n), ("kStateStrideN", state_n),
                      ("kClip", float(g["clip"] or 0.0)), ("kLinearBeforeReset", g["linear_before_reset"]),
                      ("kInputForget", g["input_forget"])]
            for letter, (name, alpha, beta) in zip("FGH", acts[:3] + [("Tanh", 0.0, 0.0)] * 3):
                fields += [(f"k{letter}", ("pure_model::RnnActivation", f"pure_model::RnnActivation::k{name}")),
                           (f"k{letter}Alpha", alpha), (f"k{letter}Beta", beta)]
            params = ctx.param_struct(node, fields)
            if quantized:
                lines.append(_quantized_call(node, ctx, g, direction, label, params, outputs, y_dir, state_dir,
                                             scratch, weight_set))
                continue
            # Weights: packed at generation time, or into scratch now.
            if w_value is not None:
                w_ptr = ctx.derived_constant(node, f"w_packed{label}", pack(w_value[direction]),
                                             comment="W packed in panels of 16 rows at generation time")
            else:
                w_ptr = runtime_ptr["w"]
                lines.append(f"pure_model::PackRecurrentWeights<{gh}, {g['input']}>("
                             f"{_offset(ctx.ptr(w.name), direction * gh * g['input'])}, {w_ptr});")
            r_ptrs = []
            for index, (lo, hi) in enumerate(_weights_parts(g)):
                if r_value is not None:
                    r_ptrs.append(ctx.derived_constant(
                        node, f"r_packed{label}" + ("_h" if index else ""), pack(r_value[direction][lo:hi]),
                        comment="R packed in panels of 16 rows at generation time"))
                else:
                    r_ptrs.append(runtime_ptr[f"r{index}"])
                    lines.append(f"pure_model::PackRecurrentWeights<{hi - lo}, {h}>("
                                 f"{_offset(ctx.ptr(r.name), (direction * gh + lo) * h)}, {r_ptrs[-1]});")
            bias_x, bias_rh = "nullptr", "nullptr"
            if b is not None and b.is_constant:
                # Both biases of a gate add to its projection, except GRU's Rb of h with
                # linear_before_reset, which r multiplies with the recurrent product.
                folded, rh = _fold_bias(g, b.value[direction])
                bias_x = ctx.derived_constant(node, f"bias{label}", folded, comment="Wb + Rb folded")
                if rh is not None:
                    bias_rh = ctx.derived_constant(node, f"bias_rh{label}", rh, comment="Rb of the h gate")
            elif b is not None:
                bias_x, bias_rh = runtime_ptr["bias_x"], runtime_ptr["bias_rh"]
                lines.append(f"pure_model::FoldRecurrentBias<{gh}, {h}, {str(g['linear_before_reset']).lower()}>("
                             f"{_offset(ctx.ptr(b.name), direction * 2 * gh)}, {bias_x}, {bias_rh});")
            lines.append(
                f"pure_model::RecurrentLayer<{params}>({ctx.ptr(node.inputs[_X])}, {w_ptr}, {r_ptrs[0]}, "
                f"{r_ptrs[1] if len(r_ptrs) > 1 else 'nullptr'}, {bias_x}, {bias_rh}, "
                f"{_state_arguments(node, ctx, g, direction, outputs, y_dir, state_dir, scratch)});")
        return lines

    return emit


def _quantized_weight_set(node, graph, g):
    """{"w": ..., "r": ...} of _quantized_weights for all directions, and the one element type both
    are stored as (the kernel's TW): int16 if either needs it."""
    weights = {letter: _quantized_weights(node, graph, g, index) for index, letter in ((_W, "w"), (_R, "r"))}
    int16 = ir.DTYPE_BY_NAME["int16"]
    dtype = int16 if any(d == int16 for _, d, _ in weights.values()) else ir.DTYPE_BY_NAME["int8"]
    return weights, dtype


def _quantized_call(node, ctx, g, direction, label, params, outputs, y_dir, state_dir, scratch, weight_set):
    """The QuantizedLstmLayer call of one direction of a DynamicQuantizeLSTM (constant W, R, scales
    and zero points, checked by _geometry); weight_set from _quantized_weight_set."""
    graph = ctx.graph
    h = g["hidden"]
    names = {}
    weights, dtype = weight_set
    for letter, (centred, _, scales) in weights.items():
        names[letter] = ctx.derived_constant(node, f"{letter}_centred{label}", centred[direction], dtype=dtype,
                                             comment=f"{letter.upper()} minus its zero point, one row per output")
        names[letter + "_scale"] = ctx.derived_constant(node, f"{letter}_scale{label}", scales[direction],
                                                        comment="the scale of each column")
    names["w_type"] = ir.cpp_type(dtype)
    if _present(node, _B):
        bias = graph.tensor(node.inputs[_B])
        folded = _fold_bias(g, bias.value[direction])[0]
    else:
        folded = np.zeros(g["gates"] * h, np.float32)
    bias_ptr = ctx.derived_constant(node, f"bias{label}", folded, comment="Wb + Rb folded")
    return (f"pure_model::QuantizedLstmLayer<{params}, {names['w_type']}>({ctx.ptr(node.inputs[_X])}, {names['w']}, "
            f"{names['w_scale']}, {names['r']}, {names['r_scale']}, {bias_ptr}, "
            f"{_state_arguments(node, ctx, g, direction, outputs, y_dir, state_dir, scratch)});")


def _state_arguments(node, ctx, g, direction, outputs, y_dir, state_dir, scratch):
    """The arguments both layer kernels end with, for one direction: seq_lens, h0, c0, peepholes
    (nullptr where absent; c0 and P only for LSTM), Y, Y_h, Y_c (nullptr where not read), scratch."""
    def optional(index, offset_elements):
        return _offset(ctx.ptr(node.inputs[index]), offset_elements) if _present(node, index) else "nullptr"

    def output(index, offset_elements):
        return _offset(ctx.ptr(outputs[index]), offset_elements) if outputs[index] else "nullptr"

    seq_lens = ctx.ptr(node.inputs[_SEQ]) if _present(node, _SEQ) else "nullptr"
    lstm = g["op"] == "LSTM"
    c0 = optional(_C0, direction * state_dir) if lstm else "nullptr"
    peepholes = optional(_P, direction * 3 * g["hidden"]) if lstm else "nullptr"
    return (f"{seq_lens}, {optional(_H0, direction * state_dir)}, {c0}, {peepholes}, {output(0, direction * y_dir)}, "
            f"{output(1, direction * state_dir)}, {output(2, direction * state_dir)}, {scratch}")


def _make_flops(op, quantized=False):
    def flops(node, graph):
        g = _geometry(node, graph, op, quantized)
        gh = g["gates"] * g["hidden"]
        return 2 * g["directions"] * g["seq"] * g["batch"] * gh * (g["input"] + g["hidden"])

    return flops


def _check(node, version):
    # Version 1 had output_sequence (Y only on request) and GRU-1/3 other defaults; models of
    # those opsets are rare: refuse rather than guess.
    if version < 7:
        raise CodegenError(f"{node.op_type}-{version} is not supported; convert the model to opset 7 or later",
                           node=node)


for _op in ("RNN", "GRU", "LSTM"):
    register(_op, infer=_make_infer(_op), emit=_make_emit(_op), flops=_make_flops(_op), scratch=_make_scratch(_op),
             check=_check)


# ONNX Runtime's contrib op: LSTM with 8-bit W and R (transposed, with scales and zero points per
# direction or per column) whose products quantize X and h to 8 bits on the fly. The weights stay
# 8-bit (minus their zero points) and QuantizedLstmLayer computes what ONNX Runtime computes, bit
# for bit (see recurrent_kernels.h for why nothing less agrees with it).
register("DynamicQuantizeLSTM", domain="com.microsoft", infer=_make_infer("LSTM", True),
         emit=_make_emit("LSTM", True), flops=_make_flops("LSTM", True), scratch=_make_scratch("LSTM", True),
         max_version=1)
