"""Elementwise ops: unary activations and math, and binary/variadic ops with broadcasting.

Every op here runs on the element types ONNX allows for it among those the IR has (float32,
float64, the 8- to 64-bit integers and bool; float16 and bfloat16 are read as float, computed
on in float and rounded back on store, as numpy does, except Pow and Clip, which
passes/widen_narrow.py runs in float32). Integer arithmetic wraps around in two's complement
as numpy does (computed in the unsigned type where C++ would call signed overflow undefined);
integer division and modulo by zero give 0, as numpy and onnx's reference evaluator do, instead
of trapping.
"""

import math

import numpy as np

from pure_model_codegen import cpp, ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, input_count, register, require_dtype

# Element type groups (ONNX TensorProto codes).
FLOATS = (1, 11)
SIGNED = (3, 5, 6, 7)
UNSIGNED = (2, 4, 12, 13)
INTS = SIGNED + UNSIGNED
NUMERIC = FLOATS + INTS
BOOL = (9,)
NARROW_FLOATS = tuple(ir.NARROW_FLOATS)  # float16, bfloat16: stored narrow, computed in float
ALL = NUMERIC + BOOL


def _with_narrow(dtypes):
    """`dtypes`, plus the narrow floats where float32 is among them: those compute in float."""
    return dtypes + NARROW_FLOATS if 1 in dtypes else dtypes


def _computed(value):
    """A folded value as the generated code computes on it: the narrow floats widened to float32."""
    value = np.asarray(value)
    return value.astype(np.float32) if ir.is_narrow_float(ir.dtype_of_numpy(value.dtype)) else value


def literal(value, dtype):
    """A C++ literal of `value` in element type `dtype`."""
    if ir.is_storage(dtype):
        return cpp.storage_literal(value, dtype)
    if dtype == 1:
        return cpp.float_literal(value)
    if dtype == 11:
        value = float(value)
        if math.isnan(value):
            return "std::numeric_limits<double>::quiet_NaN()"
        if math.isinf(value):
            return ("-" if value < 0 else "") + "std::numeric_limits<double>::infinity()"
        text = repr(value)
        return text if ("e" in text or "." in text) else text + ".0"
    if dtype == 9:
        return "true" if value else "false"
    value = int(value)
    info = np.iinfo(ir.numpy_type(dtype))
    if not info.min <= value <= info.max:
        raise CodegenError(f"{value} does not fit {ir.dtype_name(dtype)}")
    if dtype == 7:
        return f"{value}LL" if value != info.min else "(-9223372036854775807LL - 1)"
    if dtype == 6 and value == info.min:
        return "(-2147483647 - 1)"
    if dtype == 13:
        return f"{value}ULL"
    if dtype == 12:
        return f"{value}U"
    return str(value)


def _wide_unsigned(dtype):
    """The unsigned type integer arithmetic on `dtype` wraps in (never promoted to int)."""
    return "std::uint64_t" if np.dtype(ir.numpy_type(dtype)).itemsize == 8 else "std::uint32_t"


def _bits(dtype):
    return np.dtype(ir.numpy_type(dtype)).itemsize * 8


def wrapping(dtype, a, op, b):
    """C++ for `a op b` (+, - or *) in element type `dtype`, wrapping around like numpy on overflow."""
    if dtype in FLOATS:
        return f"{a} {op} {b}"
    t = ir.cpp_type(dtype)
    # int8, int16 and uint8 promote to int, where +, - and * cannot overflow; uint16 * uint16 can.
    if dtype in (6, 7) or (dtype == 4 and op == "*"):
        u = _wide_unsigned(dtype)
        return f"static_cast<{t}>(static_cast<{u}>({a}) {op} static_cast<{u}>({b}))"
    return f"static_cast<{t}>({a} {op} {b})"


def _negate(dtype, v):
    if dtype in (6, 7):
        return wrapping(dtype, "0", "-", v)
    return f"-{v}" if dtype in FLOATS else f"static_cast<{ir.cpp_type(dtype)}>(-{v})"


# --- unary ops ---------------------------------------------------------------------------------

def _erf(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _round_half_even(x):
    return np.round(x)


def _gelu(x, a):
    if a["approximate"] == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2).astype(x.dtype)))


# A pass may choose another float32 kernel function for a unary op (see passes/runtime_quantization.py).
KERNEL_ATTR = "_float32_kernel"


def _float32_kernel(dtype, function, library_expr):
    """float32 elements use the kernels' vectorisable version of `function`; float64 the library's."""
    return f"pure_model::{function}(v)" if dtype == ir.DTYPE_BY_NAME["float32"] else library_expr


def _sign_expr(dtype, L, a):
    if dtype in FLOATS:
        return f"v > {L(0)} ? {L(1)} : (v < {L(0)} ? {L(-1)} : v)"
    return "(v > 0) - (v < 0)" if dtype in SIGNED else "v > 0"


def _abs_expr(dtype, L, a):
    if dtype in FLOATS:
        return "std::fabs(v)"
    return f"v < 0 ? {_negate(dtype, 'v')} : v" if dtype in SIGNED else "v"


# op -> (element types, C++ expression of the element `v` given (dtype, literal function, attribute
# literals), numpy function of (x, attributes), {attribute: default}, output dtype or None for the input's).
# Float expressions are written once for float32 and float64: L(x) is a literal of the element type.
_UNARY = {
    "Relu": (FLOATS + SIGNED, lambda t, L, a: f"v > {L(0)} ? v : {L(0)}", lambda x, a: np.maximum(x, 0), {}),
    "Sigmoid": (FLOATS, lambda t, L, a: _float32_kernel(t, a.get(KERNEL_ATTR, "Sigmoid"),
                                                        f"{L(1)} / ({L(1)} + std::exp(-v))"),
                lambda x, a: 1 / (1 + np.exp(-x)), {}),
    "Tanh": (FLOATS, lambda t, L, a: _float32_kernel(t, "Tanh", "std::tanh(v)"), lambda x, a: np.tanh(x), {}),
    "Exp": (FLOATS, lambda t, L, a: _float32_kernel(t, "Exp", "std::exp(v)"), lambda x, a: np.exp(x), {}),
    "Log": (FLOATS, lambda t, L, a: "std::log(v)", lambda x, a: np.log(x), {}),
    "Sqrt": (FLOATS, lambda t, L, a: "std::sqrt(v)", lambda x, a: np.sqrt(x), {}),
    "Neg": (FLOATS + SIGNED, lambda t, L, a: _negate(t, "v"), lambda x, a: -x, {}),
    "Abs": (NUMERIC, _abs_expr, lambda x, a: np.abs(x), {}),
    "Sign": (NUMERIC, _sign_expr, lambda x, a: np.sign(x), {}),
    "Reciprocal": (FLOATS, lambda t, L, a: f"{L(1)} / v", lambda x, a: 1 / x, {}),
    "Floor": (FLOATS, lambda t, L, a: "std::floor(v)", lambda x, a: np.floor(x), {}),
    "Ceil": (FLOATS, lambda t, L, a: "std::ceil(v)", lambda x, a: np.ceil(x), {}),
    # Halves to even, as numpy.round; nearbyint does so in the default rounding mode.
    "Round": (FLOATS, lambda t, L, a: "std::nearbyint(v)", lambda x, a: _round_half_even(x), {}),
    "Erf": (FLOATS, lambda t, L, a: "std::erf(v)", lambda x, a: _erf(x), {}),
    "Sin": (FLOATS, lambda t, L, a: "std::sin(v)", lambda x, a: np.sin(x), {}),
    "Cos": (FLOATS, lambda t, L, a: "std::cos(v)", lambda x, a: np.cos(x), {}),
    "Tan": (FLOATS, lambda t, L, a: "std::tan(v)", lambda x, a: np.tan(x), {}),
    "Asin": (FLOATS, lambda t, L, a: "std::asin(v)", lambda x, a: np.arcsin(x), {}),
    "Acos": (FLOATS, lambda t, L, a: "std::acos(v)", lambda x, a: np.arccos(x), {}),
    "Atan": (FLOATS, lambda t, L, a: "std::atan(v)", lambda x, a: np.arctan(x), {}),
    "Sinh": (FLOATS, lambda t, L, a: "std::sinh(v)", lambda x, a: np.sinh(x), {}),
    "Cosh": (FLOATS, lambda t, L, a: "std::cosh(v)", lambda x, a: np.cosh(x), {}),
    "Asinh": (FLOATS, lambda t, L, a: "std::asinh(v)", lambda x, a: np.arcsinh(x), {}),
    "Acosh": (FLOATS, lambda t, L, a: "std::acosh(v)", lambda x, a: np.arccosh(x), {}),
    "Atanh": (FLOATS, lambda t, L, a: "std::atanh(v)", lambda x, a: np.arctanh(x), {}),
    "Softplus": (FLOATS, lambda t, L, a: f"std::log(std::exp(v) + {L(1)})", lambda x, a: np.log(np.exp(x) + 1), {}),
    "Softsign": (FLOATS, lambda t, L, a: f"v / ({L(1)} + std::fabs(v))", lambda x, a: x / (1 + np.abs(x)), {}),
    "Mish": (FLOATS, lambda t, L, a: f"v * std::tanh(std::log1p(std::exp(v)))",
             lambda x, a: x * np.tanh(np.log1p(np.exp(x))), {}),
    "LeakyRelu": (FLOATS, lambda t, L, a: f"v >= {L(0)} ? v : {a['alpha']} * v",
                  lambda x, a: np.where(x >= 0, x, a["alpha"] * x), {"alpha": 0.01}),
    "ThresholdedRelu": (FLOATS, lambda t, L, a: f"v > {a['alpha']} ? v : {L(0)}",
                        lambda x, a: np.where(x > a["alpha"], x, 0), {"alpha": 1.0}),
    "Elu": (
        FLOATS,
        lambda t, L, a: f"v >= {L(0)} ? v : {a['alpha']} * (std::exp(v) - {L(1)})",
        lambda x, a: np.where(x >= 0, x, a["alpha"] * (np.exp(x) - 1)),
        {"alpha": 1.0},
    ),
    "Selu": (
        FLOATS,
        lambda t, L, a: f"v > {L(0)} ? {a['gamma']} * v : {a['gamma']} * ({a['alpha']} * std::exp(v) - {a['alpha']})",
        lambda x, a: np.where(x > 0, x, np.exp(x) * a["alpha"] - a["alpha"]) * a["gamma"],
        {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
    ),
    "Celu": (
        FLOATS,
        lambda t, L, a: (f"std::fmax({L(0)}, v) + std::fmin({L(0)}, {a['alpha']} * "
                         f"(std::exp(v / {a['alpha']}) - {L(1)}))"),
        lambda x, a: np.maximum(0, x) + np.minimum(0, a["alpha"] * (np.exp(x / a["alpha"]) - 1)),
        {"alpha": 1.0},
    ),
    "HardSigmoid": (
        FLOATS,
        lambda t, L, a: f"std::fmax({L(0)}, std::fmin({L(1)}, {a['alpha']} * v + {a['beta']}))",
        lambda x, a: np.clip(a["alpha"] * x + a["beta"], 0, 1),
        {"alpha": 0.2, "beta": 0.5},
    ),
    "HardSwish": (
        FLOATS,
        lambda t, L, a: f"v * std::fmax({L(0)}, std::fmin({L(1)}, v * {L(1 / 6)} + {L(0.5)}))",
        lambda x, a: x * np.clip(x / 6 + 0.5, 0, 1),
        {},
    ),
    "Shrink": (
        FLOATS,
        lambda t, L, a: (f"v < -({a['lambd']}) ? v + {a['bias']} : (v > {a['lambd']} ? v - {a['bias']} : {L(0)})"),
        lambda x, a: np.where(x < -a["lambd"], x + a["bias"], np.where(x > a["lambd"], x - a["bias"], 0)),
        {"bias": 0.0, "lambd": 0.5},
    ),
    "Swish": (FLOATS, lambda t, L, a: f"v / ({L(1)} + std::exp(-({a['alpha']} * v)))",
              lambda x, a: x / (1 + np.exp(-a["alpha"] * x)), {"alpha": 1.0}),
    "Gelu": (
        FLOATS,
        lambda t, L, a: (
            f"{L(0.5)} * v * ({L(1)} + std::tanh({L(math.sqrt(2 / math.pi))} * (v + {L(0.044715)} * v * v * v)))"
            if a["approximate"] == "tanh" else f"{L(0.5)} * v * ({L(1)} + std::erf(v * {L(1 / math.sqrt(2))}))"),
        _gelu,
        {"approximate": "none"},
    ),
    "Not": (BOOL, lambda t, L, a: "!v", lambda x, a: np.logical_not(x), {}),
    "BitwiseNot": (INTS, lambda t, L, a: "~v", lambda x, a: np.invert(x), {}),
    "IsNaN": (FLOATS, lambda t, L, a: "std::isnan(v)", lambda x, a: np.isnan(x), {}, 9),
    "IsInf": (
        FLOATS,
        lambda t, L, a: {(1, 1): "std::isinf(v)", (1, 0): f"std::isinf(v) && v < {L(0)}",
                         (0, 1): f"std::isinf(v) && v > {L(0)}", (0, 0): "false"}[
                             (a["detect_negative"], a["detect_positive"])],
        lambda x, a: np.isinf(x) & (((x < 0) & bool(a["detect_negative"])) | ((x > 0) & bool(a["detect_positive"]))),
        {"detect_negative": 1, "detect_positive": 1},
        9,
    ),
}


def _unary_attrs(node, defaults):
    attrs = {}
    for name, default in defaults.items():
        if isinstance(default, str):
            value = node.attrs.get(name, default)
            if isinstance(value, bytes):
                value = value.decode()
            if value not in ("none", "tanh"):
                raise CodegenError(f"attribute '{name}' = {value!r} is not supported (none or tanh)", node=node)
            attrs[name] = value
        elif isinstance(default, int):
            attrs[name] = attr_int(node, name, default)
        else:
            attrs[name] = attr_float(node, name, default)
    return attrs


def _expression_attrs(node, defaults, lit):
    """The attributes a unary op's C++ expression sees: numbers as literals of the computed type
    (`lit`), and the float32 kernel a pass may have chosen (KERNEL_ATTR)."""
    attrs = {k: (v if isinstance(v, (str, int)) else lit(v)) for k, v in _unary_attrs(node, defaults).items()}
    if KERNEL_ATTR in node.attrs:
        attrs[KERNEL_ATTR] = node.attrs[KERNEL_ATTR]
    return attrs


def _make_unary(op_type, dtypes, expr, fn, defaults, out_dtype=None):
    def infer(node, graph):
        input_count(node, 1)
        x = require_dtype(node, graph, node.inputs[0], _with_narrow(dtypes))
        return [(out_dtype or x.dtype, x.shape)]

    def evaluate(node, values):
        x = values[0]
        return [np.asarray(fn(_computed(x), _unary_attrs(node, defaults))).astype(
            ir.numpy_type(out_dtype) if out_dtype else x.dtype)]

    def emit(node, ctx):
        dtype = ctx.graph.tensor(node.inputs[0]).dtype
        computed = ir.compute_type(dtype)

        def lit(value):
            return literal(value, computed)

        attrs = _expression_attrs(node, defaults, lit)
        body = expr(computed, lit, attrs)
        if dtype in INTS and not out_dtype:
            body = f"static_cast<{ir.cpp_type(dtype)}>({body})"
        if not out_dtype:
            body = ir.narrow(dtype, body)
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        n = ctx.graph.tensor(node.outputs[0]).elements
        return [
            f"for (std::size_t i = 0; i < {n}; ++i) {{",
            f"  const {ir.cpp_type(computed)} v = {ir.widen(dtype, f'{x}[i]')};",
            f"  {y}[i] = {body};",
            "}",
        ]

    register(op_type, infer=infer, evaluate=evaluate, emit=emit, narrow_floats=True)


for _op, _spec in _UNARY.items():
    _make_unary(_op, *_spec)


# --- Clip: bounds are attributes before opset 11 and optional inputs from 11 on --------------------

def clip_bounds_known(node, graph):
    """True when the bounds are known at generation time (so clip_bounds can give them)."""
    if node.opset < 11:
        return True
    return all(not name or graph.tensor(name).is_constant for name in node.inputs[1:3])


def clip_bounds(node, graph):
    """(lo, hi) with lo <= hi: ONNX clips to max everywhere when min > max, which lo = hi does too."""
    lo, hi = _clip_bounds(node, graph)
    if np.isnan(lo) or np.isnan(hi):
        raise CodegenError(f"a bound is NaN (min {lo}, max {hi})", node=node)
    return min(lo, hi), hi


def _clip_bounds(node, graph):
    if node.opset < 11:
        return attr_float(node, "min", -np.inf), attr_float(node, "max", np.inf)
    bounds = []
    for index, default in ((1, -np.inf), (2, np.inf)):
        name = node.inputs[index] if len(node.inputs) > index else ""
        if not name:
            bounds.append(default)
            continue
        tensor = graph.tensor(name)
        if not tensor.is_constant:
            raise CodegenError(f"bound input '{name}' must be a constant (an initializer or foldable)", node=node)
        if tensor.elements != 1:
            raise CodegenError(f"bound input '{name}' must be a scalar, got shape {list(tensor.shape)}", node=node)
        bounds.append(tensor.value.reshape(()).item())
    return bounds[0], bounds[1]


def _clip_infer(node, graph):
    input_count(node, 1, 3)
    x = require_dtype(node, graph, node.inputs[0], NUMERIC if node.opset >= 11 else FLOATS)
    for name in node.inputs[1:]:
        if name:
            bound = graph.tensor(name)
            if bound.dtype != x.dtype:
                raise CodegenError(f"inputs have different element types: '{x.name}' {ir.dtype_name(x.dtype)}, "
                                   f"'{name}' {ir.dtype_name(bound.dtype)}", node=node)
            if bound.elements != 1:
                raise CodegenError(f"bound input '{name}' must be a scalar, got shape {list(bound.shape)}", node=node)
    if clip_bounds_known(node, graph):
        clip_bounds(node, graph)
    return [(x.dtype, x.shape)]


def _clip_evaluate(node, values):
    if node.opset < 11:
        lo, hi = attr_float(node, "min", -np.inf), attr_float(node, "max", np.inf)
    else:
        lo = values[1] if len(values) > 1 and values[1] is not None else None
        hi = values[2] if len(values) > 2 and values[2] is not None else None
    x = values[0]
    if any(b is not None and np.isnan(b).any() for b in (lo, hi)):
        raise CodegenError("a bound is NaN", node=node)
    result = x if lo is None else np.maximum(x, lo)
    result = result if hi is None else np.minimum(result, hi)
    return [np.asarray(result).astype(x.dtype)]


def _clip_emit(node, ctx):
    dtype = ctx.graph.tensor(node.inputs[0]).dtype
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    n = ctx.graph.tensor(node.outputs[0]).elements
    if clip_bounds_known(node, ctx.graph):
        lo, hi = clip_bounds(node, ctx.graph)
        # A bound outside the element type's range (an infinite default, say) clips nothing.
        info = np.iinfo(ir.numpy_type(dtype)) if dtype in INTS else None
        lo = None if lo == -np.inf or (info and lo <= info.min) else (min(int(lo), info.max) if info else lo)
        hi = None if hi == np.inf or (info and hi >= info.max) else (max(int(hi), info.min) if info else hi)
        lo, hi = (None if b is None else literal(b, dtype) for b in (lo, hi))
        if lo and hi:
            body = f"v < {lo} ? {lo} : (v > {hi} ? {hi} : v)"
        else:
            body = f"v < {lo} ? {lo} : v" if lo else (f"v > {hi} ? {hi} : v" if hi else "v")
        return [
            f"for (std::size_t i = 0; i < {n}; ++i) {{",
            f"  const {ir.cpp_type(dtype)} v = {x}[i];",
            f"  {y}[i] = {body};",
            "}",
        ]
    # Bounds read at run time: max(x, min) then min(.., max), as numpy.clip (max wins when min > max).
    t = ir.cpp_type(dtype)
    bounds = [ctx.ptr(node.inputs[i]) + "[0]" if len(node.inputs) > i and node.inputs[i] else None for i in (1, 2)]
    lines = [f"for (std::size_t i = 0; i < {n}; ++i) {{", f"  {t} v = {x}[i];"]
    if bounds[0]:
        lines.append(f"  v = v < {bounds[0]} ? {bounds[0]} : v;")
    if bounds[1]:
        lines.append(f"  v = v > {bounds[1]} ? {bounds[1]} : v;")
    return lines + [f"  {y}[i] = v;", "}"]


register("Clip", infer=_clip_infer, evaluate=_clip_evaluate, emit=_clip_emit)


# --- binary and variadic ops with numpy-style (multidirectional) broadcasting -------------------

def _int_pow(a, b):
    """Integer power as the generated code computes it: wrapping, and 0 for |base| > 1 and b < 0."""
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    result = np.ones(a.shape, np.uint64)
    factor = a.astype(np.int64).astype(np.uint64)
    e = np.where(b < 0, 0, b).astype(np.uint64)
    while (e > 0).any():
        odd = (e & np.uint64(1)) == 1
        result = np.where(odd, result * factor, result)
        factor = factor * factor
        e = e >> np.uint64(1)
    result = result.astype(np.int64) if a.dtype.kind == "i" else result
    if a.dtype.kind == "i":
        negative = b < 0
        result = np.where(negative & (a == 1), 1, result)
        result = np.where(negative & (a == -1), np.where(b % 2 == 0, 1, -1), result)
        result = np.where(negative & (np.abs(a.astype(np.int64)) > 1), 0, result)
        result = np.where(negative & (a == 0), 0, result)
    return result.astype(a.dtype)


def _pow_evaluate(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return _int_pow(a, b)
    return np.power(a.astype(np.float64), b.astype(np.float64)) if a.dtype != b.dtype else np.power(a, b)


def _trunc_div(a, b):
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    if a.dtype.kind not in "iu":
        return a / b
    safe = np.where(b == 0, 1, b)
    quotient, remainder = np.floor_divide(a, safe), np.remainder(a, safe)
    if a.dtype.kind == "i":
        quotient = quotient + ((remainder != 0) & ((a < 0) ^ (safe < 0))).astype(quotient.dtype)
    return np.where(b == 0, 0, quotient).astype(a.dtype)


def _mod(a, b, fmod):
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    if a.dtype.kind in "iu":
        safe = np.where(b == 0, 1, b)
        result = np.fmod(a, safe) if fmod else np.mod(a, safe)
        return np.where(b == 0, 0, result).astype(a.dtype)
    return np.fmod(a, b) if fmod else np.mod(a, b)


def _bitshift(a, b, left):
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    bits = a.dtype.itemsize * 8
    valid = (b >= 0) & (b < bits)
    amount = np.where(valid, b, 0).astype(np.uint64)
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    if left:
        shifted = (a.view(unsigned).astype(np.uint64) << amount).astype(unsigned).view(a.dtype)
        return np.where(valid, shifted, 0).astype(a.dtype)
    shifted = np.right_shift(a, amount.astype(a.dtype))
    fill = np.where(a < 0, -1, 0) if a.dtype.kind == "i" else 0
    return np.where(valid, shifted, fill).astype(a.dtype)


def _max_expr(t, greater):
    if t in FLOATS:  # NaN wins, as numpy.maximum/minimum
        return f"std::isnan({{0}}) || {{0}} {'>' if greater else '<'} {{1}} ? {{0}} : {{1}}"
    return f"{{0}} {'>' if greater else '<'} {{1}} ? {{0}} : {{1}}"


def _div_code(t, node):
    if t in FLOATS:
        return [], "{0} / {1}"
    ct = ir.cpp_type(t)
    lines = ["// Integer division truncates toward zero; division by zero gives 0.",
             f"const auto Quotient = []({ct} a, {ct} b) -> {ct} {{",
             "  if (b == 0) return 0;"]
    if t in (6, 7):  # INT_MIN / -1 overflows: negate in the unsigned type instead
        lines.append(f"  if (b == -1) return {wrapping(t, '0', '-', 'a')};")
    return lines + [f"  return static_cast<{ct}>(a / b);", "};"], "Quotient({0}, {1})"


def _mod_code(t, node):
    fmod = attr_int(node, "fmod", 0)
    if fmod not in (0, 1):
        raise CodegenError(f"attribute 'fmod' must be 0 or 1, got {fmod}", node=node)
    ct = ir.cpp_type(t)
    if t in FLOATS:
        if fmod:
            return [], "std::fmod({0}, {1})"
        return ([f"// The remainder takes the divisor's sign (a - floor(a / b) * b), as numpy.mod.",
                 f"const auto Modulo = []({ct} a, {ct} b) -> {ct} {{",
                 f"  {ct} r = std::fmod(a, b);",
                 f"  if (r != 0) return (r < 0) != (b < 0) ? r + b : r;",
                 f"  return std::copysign({literal(0, t)}, b);",
                 "};"], "Modulo({0}, {1})")
    lines = ["// " + ("The remainder takes the dividend's sign (C's %)" if fmod else
                      "The remainder takes the divisor's sign (Python's %)") + "; a zero divisor gives 0.",
             f"const auto Modulo = []({ct} a, {ct} b) -> {ct} {{"]
    if t in SIGNED:
        lines.append("  if (b == 0 || b == -1) return 0;")  # INT_MIN % -1 traps; the remainder is 0 anyway
        lines.append(f"  const {ct} r = static_cast<{ct}>(a % b);")
        lines.append("  return r;" if fmod else f"  return r != 0 && (r < 0) != (b < 0) ? static_cast<{ct}>(r + b) : r;")
    else:
        lines.append(f"  return b == 0 ? {ct}{{0}} : static_cast<{ct}>(a % b);")
    return lines + ["};"], "Modulo({0}, {1})"


def _shift_code(t, node):
    direction = node.attrs.get("direction")
    if isinstance(direction, bytes):
        direction = direction.decode()
    if direction not in ("LEFT", "RIGHT"):
        raise CodegenError(f"attribute 'direction' must be LEFT or RIGHT, got {direction!r}", node=node)
    ct, bits = ir.cpp_type(t), _bits(t)
    in_range = f"b >= 0 && b < {bits}" if t in SIGNED else f"b < {bits}"
    if direction == "LEFT":
        u = _wide_unsigned(t)
        shifted = f"static_cast<{ct}>(static_cast<{u}>(a) << b)"
        fill = "0"
        comment = f"// Bits shifted past the top are lost; a shift outside [0, {bits}) gives 0."
    else:
        shifted = f"static_cast<{ct}>(a >> b)"
        fill = "(a < 0 ? -1 : 0)" if t in SIGNED else "0"
        comment = (f"// Arithmetic shift; a shift outside [0, {bits}) gives the sign fill." if t in SIGNED else
                   f"// A shift of {bits} or more gives 0.")
    return ([comment, f"const auto Shift = []({ct} a, {ct} b) -> {ct} {{",
             f"  return {in_range} ? {shifted} : static_cast<{ct}>({fill});", "};"], "Shift({0}, {1})")


def _pow_code(node, graph):
    base, exponent = (graph.tensor(n).dtype for n in node.inputs)
    cb, ce = ir.cpp_type(base), ir.cpp_type(exponent)
    if base in FLOATS and base == exponent:
        return [], "std::pow({0}, {1})"
    if base in FLOATS or exponent in FLOATS:
        return [], f"static_cast<{cb}>(std::pow(static_cast<double>({{0}}), static_cast<double>({{1}})))"
    lines = ["// Integer power by squaring, wrapping like numpy; a negative exponent truncates 1 / a^-b.",
             f"const auto Power = []({cb} a, {ce} b) -> {cb} {{"]
    if exponent in SIGNED:
        lines.append(f"  if (b < 0) return static_cast<{cb}>(a == 1 ? 1 : (a == -1 ? (b % 2 == 0 ? 1 : -1) : 0));"
                     if base in SIGNED else f"  if (b < 0) return static_cast<{cb}>(a == 1 ? 1 : 0);")
    lines += ["  std::uint64_t result = 1;",
              "  std::uint64_t factor = static_cast<std::uint64_t>(a);",
              f"  for ({ce} e = b; e > 0; e = static_cast<{ce}>(e / 2)) {{",
              "    if (e % 2 != 0) result *= factor;",
              "    factor *= factor;",
              "  }",
              f"  return static_cast<{cb}>(result);",
              "};"]
    return lines, "Power({0}, {1})"


_CMP = {"Equal": "==", "Less": "<", "Greater": ">", "LessOrEqual": "<=", "GreaterOrEqual": ">="}

# op -> (element types, code(dtype, node) -> (lines before the loop, C++ expression of {0} and {1}),
#        numpy function of (a, b, node), output dtype or None)
_BINARY = {
    "Add": (NUMERIC, lambda t, n: ([], wrapping(t, "{0}", "+", "{1}")), lambda a, b, n: np.add(a, b), None),
    "Sub": (NUMERIC, lambda t, n: ([], wrapping(t, "{0}", "-", "{1}")), lambda a, b, n: np.subtract(a, b), None),
    "Mul": (NUMERIC, lambda t, n: ([], wrapping(t, "{0}", "*", "{1}")), lambda a, b, n: np.multiply(a, b), None),
    "Div": (NUMERIC, _div_code, lambda a, b, n: _trunc_div(a, b), None),
    "Pow": ((1, 11, 6, 7), None, lambda a, b, n: _pow_evaluate(a, b), None),
    "Max": (NUMERIC, lambda t, n: ([], _max_expr(t, True)), lambda a, b, n: np.maximum(a, b), None),
    "Min": (NUMERIC, lambda t, n: ([], _max_expr(t, False)), lambda a, b, n: np.minimum(a, b), None),
    "Sum": (NUMERIC, lambda t, n: ([], wrapping(t, "{0}", "+", "{1}")), lambda a, b, n: np.add(a, b), None),
    "Mean": (FLOATS, lambda t, n: ([], "{0} + {1}"), lambda a, b, n: np.add(a, b), None),
    "Mod": (NUMERIC, _mod_code, lambda a, b, n: _mod(a, b, attr_int(n, "fmod", 0)), None),
    "BitShift": (INTS, _shift_code,
                 lambda a, b, n: _bitshift(a, b, n.attrs.get("direction") in ("LEFT", b"LEFT")), None),
    "BitwiseAnd": (INTS, lambda t, n: ([], f"static_cast<{ir.cpp_type(t)}>({{0}} & {{1}})"),
                   lambda a, b, n: np.bitwise_and(a, b), None),
    "BitwiseOr": (INTS, lambda t, n: ([], f"static_cast<{ir.cpp_type(t)}>({{0}} | {{1}})"),
                  lambda a, b, n: np.bitwise_or(a, b), None),
    "BitwiseXor": (INTS, lambda t, n: ([], f"static_cast<{ir.cpp_type(t)}>({{0}} ^ {{1}})"),
                   lambda a, b, n: np.bitwise_xor(a, b), None),
    "And": (BOOL, lambda t, n: ([], "{0} && {1}"), lambda a, b, n: np.logical_and(a, b), None),
    "Or": (BOOL, lambda t, n: ([], "{0} || {1}"), lambda a, b, n: np.logical_or(a, b), None),
    "Xor": (BOOL, lambda t, n: ([], "{0} != {1}"), lambda a, b, n: np.logical_xor(a, b), None),
    "PRelu": (FLOATS + (6, 7), lambda t, n: ([], f"{{0}} < {literal(0, t)} ? {wrapping(t, '{1}', '*', '{0}')} : {{0}}"),
              lambda a, b, n: np.where(a < 0, a * b, a), None),
}
_CMP_NUMPY = {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
              "GreaterOrEqual": np.greater_equal}
for _name, _symbol in _CMP.items():
    _BINARY[_name] = (ALL if _name == "Equal" else NUMERIC, lambda t, n, s=_symbol: ([], f"{{0}} {s} {{1}}"),
                      lambda a, b, n, f=_CMP_NUMPY[_name]: f(a, b), 9)
_VARIADIC = {"Max", "Min", "Sum", "Mean"}
# Before version 7 these broadcast only with broadcast=1, aligning the second input at `axis`.
_LEGACY_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Less", "Greater"}


def _broadcast_shape(node, shapes):
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise CodegenError(
            f"input shapes {' and '.join(str(list(s)) for s in shapes)} do not broadcast", node=node
        ) from None


def _legacy(node):
    return node.op_type in _LEGACY_BROADCAST and node.opset < 7 and node.attrs.get("broadcast", 0)


def _operand_shapes(node, shapes):
    """The input shapes as numpy broadcasting should see them (legacy broadcast=1 aligns B at `axis`)."""
    shapes = [tuple(s) for s in shapes]
    if node.op_type == "PRelu" and node.opset < 7:
        # PRelu-1/6: a 1-D slope of C values is per channel (axis 1), whatever numpy would align.
        x, slope = shapes
        if len(slope) == 1 and len(x) >= 2 and slope[0] == x[1]:
            return [x, slope + (1,) * (len(x) - 2)]
        return shapes
    if not _legacy(node):
        return shapes
    a, b = shapes
    axis = node.attrs.get("axis", len(a) - len(b))
    if not isinstance(axis, int):
        raise CodegenError("attribute 'axis' must be an int", node=node)
    axis = axis + len(a) if axis < 0 else axis
    if not 0 <= axis <= len(a) - len(b):
        raise CodegenError(f"legacy broadcasting of {list(b)} onto {list(a)} at axis {axis} is out of range",
                           node=node)
    aligned = b + (1,) * (len(a) - axis - len(b))
    if any(db not in (1, da) for da, db in zip(a[len(a) - len(aligned):], aligned)):
        raise CodegenError(f"legacy broadcasting: {list(b)} does not match {list(a)} at axis {axis}", node=node)
    return [a, aligned]


def _make_binary(op_type, dtypes, code, fn, out_dtype):
    variadic = op_type in _VARIADIC

    def infer(node, graph):
        if variadic:
            input_count(node, 1, 1 << 20)
        else:
            input_count(node, 2)
        if op_type == "Pow":  # the exponent may have any numeric type
            tensors = [require_dtype(node, graph, node.inputs[0], dtypes),
                       require_dtype(node, graph, node.inputs[1], NUMERIC)]
        else:
            tensors = [require_dtype(node, graph, name, _with_narrow(dtypes)) for name in node.inputs]
        if op_type != "Pow" and len({t.dtype for t in tensors}) != 1:
            raise CodegenError(
                "inputs have different element types: "
                + ", ".join(f"'{t.name}' {ir.dtype_name(t.dtype)}" for t in tensors),
                node=node,
            )
        shape = _broadcast_shape(node, _operand_shapes(node, [t.shape for t in tensors]))
        if op_type == "PRelu" and shape != tuple(tensors[0].shape):
            raise CodegenError(f"slope shape {list(tensors[1].shape)} does not broadcast to the input's "
                               f"{list(tensors[0].shape)}", node=node)
        return [(out_dtype or tensors[0].dtype, shape)]

    def evaluate(node, values):
        dtype = values[0].dtype
        values = [_computed(v) for v in values]
        values = [v.reshape(s) for v, s in zip(values, _operand_shapes(node, [v.shape for v in values]))]
        result = values[0]
        for v in values[1:]:
            result = fn(result, v, node)
            if out_dtype is None:  # each partial result rounds into the element type, as the code stores it
                result = _computed(np.asarray(result).astype(dtype))
        if op_type == "Mean":
            result = result / len(values)
        return [np.asarray(result).astype(ir.numpy_type(out_dtype) if out_dtype else dtype)]

    def emit(node, ctx):
        graph = ctx.graph
        out = graph.tensor(node.outputs[0])
        dtype = graph.tensor(node.inputs[0]).dtype
        names = list(node.inputs)
        y = ctx.ptr(node.outputs[0])
        if len(names) == 1:
            return [ctx.copy(y, ctx.ptr(names[0]), out.nbytes)]
        prelude, expr = _pow_code(node, graph) if op_type == "Pow" else code(ir.compute_type(dtype), node)
        if ir.is_narrow_float(dtype):
            expr = expr.format(*(ir.widen(dtype, f"{{{i}}}") for i in range(2)))
            expr = expr if out_dtype else ir.narrow(dtype, expr)
        shapes = _operand_shapes(node, [graph.tensor(n).shape for n in names])
        # Variadic ops fold left: ((a op b) op c) ..., written into the output as they go.
        lines = cpp.broadcast_loop(out.shape, shapes[:2], [ctx.ptr(names[0]), ctx.ptr(names[1])], y, expr)
        for name, shape in zip(names[2:], shapes[2:]):
            lines += cpp.broadcast_loop(out.shape, [out.shape, shape], [y, ctx.ptr(name)], y, expr)
        if op_type == "Mean":
            quotient = f"{ir.widen(dtype, f'{y}[i]')} / {literal(len(names), ir.compute_type(dtype))}"
            lines += [f"for (std::size_t i = 0; i < {out.elements}; ++i) {y}[i] = {ir.narrow(dtype, quotient)};"]
        if prelude:  # helpers local to this step
            lines = ["{"] + cpp.indent(prelude + lines) + ["}"]
        return lines

    register(op_type, infer=infer, evaluate=evaluate, emit=emit, narrow_floats=op_type != "Pow")


for _op, _spec in _BINARY.items():
    _make_binary(_op, *_spec)


# --- Where: a three-way select with broadcasting -----------------------------------------------

def _where_infer(node, graph):
    input_count(node, 3)
    cond = require_dtype(node, graph, node.inputs[0], BOOL)
    x, y = (graph.tensor(n) for n in node.inputs[1:])
    if x.dtype != y.dtype:
        raise CodegenError(f"inputs have different element types: '{x.name}' {ir.dtype_name(x.dtype)}, "
                           f"'{y.name}' {ir.dtype_name(y.dtype)}", node=node)
    return [(x.dtype, _broadcast_shape(node, [cond.shape, x.shape, y.shape]))]


def _where_emit(node, ctx):
    out = ctx.graph.tensor(node.outputs[0])
    return cpp.broadcast_loop(out.shape, [ctx.graph.tensor(n).shape for n in node.inputs],
                              [ctx.ptr(n) for n in node.inputs], ctx.ptr(node.outputs[0]), "{0} ? {1} : {2}")


register("Where", infer=_where_infer, evaluate=lambda node, values: [np.where(*values)], emit=_where_emit,
         narrow_floats=True)


# --- Dropout: the identity at inference (its mask all true) -------------------------------------

def _dropout_mode(node, graph_or_values):
    """Raises unless this Dropout is the identity: inference mode, or a ratio of 0."""
    if node.opset < 7:
        if not attr_int(node, "is_test", 0):
            raise CodegenError("training-mode Dropout (is_test=0) is random: not supported", node=node)
        return
    if node.opset < 12:
        return
    inputs = list(node.inputs) + ["", ""]

    def known(index, label):
        value = graph_or_values(index, inputs[index])
        if value is None:
            raise CodegenError(f"input '{label}' ('{inputs[index]}') must be known at generation time, but it "
                               "depends on the model's inputs", node=node)
        return np.asarray(value).reshape(-1)

    # Without training_mode (or with it false) the ratio does not matter.
    if inputs[2] and known(2, "training_mode").any():
        ratio = float(known(1, "ratio")[0]) if inputs[1] else 0.5
        if ratio != 0:
            raise CodegenError("training-mode Dropout with a nonzero ratio is random: not supported", node=node)


def _dropout_mask_dtype(node, x):
    return 9 if node.opset >= 10 else x.dtype


def _dropout_infer(node, graph):
    input_count(node, 1, 3)
    x = require_dtype(node, graph, node.inputs[0], FLOATS + NARROW_FLOATS)

    def constant(index, name):
        tensor = graph.tensor(name)
        return tensor.value if tensor.is_constant else None

    _dropout_mode(node, constant)
    return [(x.dtype, x.shape), (_dropout_mask_dtype(node, x), x.shape)][:max(len(node.outputs), 1)]


def _dropout_evaluate(node, values):
    x = np.asarray(values[0])
    mask_type = np.bool_ if node.opset >= 10 else x.dtype
    return [x.copy(), np.ones(x.shape, mask_type)][:max(len(node.outputs), 1)]


def _dropout_emit(node, ctx):
    x = ctx.graph.tensor(node.inputs[0])
    lines = [ctx.copy(ctx.ptr(node.outputs[0]), ctx.ptr(node.inputs[0]), x.nbytes)]
    if len(node.outputs) > 1 and node.outputs[1]:
        mask = ctx.graph.tensor(node.outputs[1])
        lines.append(f"for (std::size_t i = 0; i < {mask.elements}; ++i) {ctx.ptr(node.outputs[1])}[i] = "
                     f"{literal(1, mask.dtype)};  // nothing is dropped at inference")
    return lines


register("Dropout", infer=_dropout_infer, evaluate=_dropout_evaluate, emit=_dropout_emit, narrow_floats=True)


# --- one element of a fused loop (passes/fuse_elementwise.py, ops/fused_elementwise.py) ----------

_FUSIBLE_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")


def fused_step(node, graph):
    """How a float32 elementwise node computes one element inside a fused loop, or None if it cannot.

    Returns (operands, code): the input tensors it reads, and code(values, result) -> C++ lines
    that define the float `result` from the operands' element values (C++ names, in order),
    computed exactly as the node's own step computes them.
    """
    if node.domain or not node.outputs or not node.outputs[0] or any(o for o in node.outputs[1:]):
        return None
    if node.op_type in ("Resize", "Upsample"):
        if not fused_enlargement(node, graph):
            return None
        # Its input is read through a view that repeats elements (see fused_enlargement).
        return [node.inputs[0]], lambda values, r: [f"const float {r} = {values[0]};"]
    named = [n for n in node.inputs if n]
    if any(graph.tensor(n).dtype != 1 for n in named + node.outputs[:1]):
        return None
    lit = lambda value: literal(value, 1)  # noqa: E731
    if node.op_type in _UNARY:
        dtypes, expr, _, defaults, *out_dtype = _UNARY[node.op_type]
        if 1 not in dtypes or (out_dtype and out_dtype[0]) or len(node.inputs) != 1:
            return None
        attrs = _expression_attrs(node, defaults, lit)
        body = expr(1, lit, attrs)
        return [node.inputs[0]], lambda values, r: [f"float {r};", f"{{ const float v = {values[0]}; {r} = {body}; }}"]
    if node.op_type in _FUSIBLE_BINARY:
        if len(node.inputs) != 2 or _legacy(node):
            return None
        _, expr = _BINARY[node.op_type][1](1, node)
        return list(node.inputs), lambda values, r: [f"const float {r} = {expr.format(*values)};"]
    if node.op_type == "BatchNormalization":
        return _fused_batchnorm(node, graph)

    if node.op_type == "Pow" and len(node.inputs) == 2 and not _legacy(node):
        exponent = graph.tensor(node.inputs[1])
        if exponent.is_constant and exponent.elements == 1 and float(exponent.value.reshape(-1)[0]) == 2.0:
            # A square, as LayerNorm's variance takes it: one exactly rounded product.
            return [node.inputs[0]], lambda values, r: [f"const float {r} = {values[0]} * {values[0]};"]
        return list(node.inputs), lambda values, r: [f"const float {r} = std::pow({values[0]}, {values[1]});"]
    if node.op_type == "Clip" and clip_bounds_known(node, graph):
        lo, hi = clip_bounds(node, graph)
        steps = []
        if lo != -np.inf:
            steps.append(lambda x, r: f"{x} < {lit(lo)} ? {lit(lo)} : {x}")
        if hi != np.inf:
            steps.append(lambda x, r: f"{x} > {lit(hi)} ? {lit(hi)} : {x}")

        def code(values, r):
            # One select per bound, as the Clip step has them: NaN passes through.
            lines, current = [f"float {r} = {values[0]};"], r
            for step in steps:
                lines.append(f"{r} = {step(current, r)};")
            return lines
        return [node.inputs[0]], code
    return None


def _fused_batchnorm(node, graph):
    """BatchNormalization as the per-channel scale and shift it folds to, read from two constants
    the graph gains (named after the node) in the channel-broadcasting shape [C, 1, ...]."""
    from pure_model_codegen.ops.normalization import batchnorm_scale_shift

    try:
        scale, shift = batchnorm_scale_shift(node, graph)
    except CodegenError:
        return None
    shape = (graph.tensor(node.inputs[0]).shape[1],) + (1,) * (len(graph.tensor(node.inputs[0]).shape) - 2)
    names = []
    for label, value in (("scale", scale), ("shift", shift)):
        name = f"{node.name}@{label}"
        existing = graph.tensors.get(name)
        if existing is None:
            graph.tensors[name] = ir.Tensor(name, 1, shape, value.reshape(shape))
        elif not existing.is_constant or existing.shape != shape or not np.array_equal(existing.value.reshape(-1), value):
            return None  # the model has a tensor of that name
        names.append(name)
    return [node.inputs[0]] + names, lambda values, r: [f"const float {r} = {values[0]} * {values[1]} + {values[2]};"]


def fused_enlargement(node, graph):
    """(fh, fw) for a nearest Resize that only repeats the elements of the last two axes of its
    float32 input fh and fw times: in a fused loop over the output seen as [..., H, fh, W, fw], its
    input is the operand [..., H, 1, W, 1], broadcast like any other, so the enlarged tensor is
    never stored. None for any other node."""
    if node.op_type not in ("Resize", "Upsample") or graph.tensor(node.inputs[0]).dtype != 1:
        return None
    from pure_model_codegen.ops.resize import nearest_enlargement

    return nearest_enlargement(node, graph)
