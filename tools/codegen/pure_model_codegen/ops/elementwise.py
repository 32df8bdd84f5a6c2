"""Elementwise ops: unary activations and math, and binary/variadic ops with broadcasting."""

import numpy as np

from pure_model_codegen import cpp, ir
from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, input_count, register, require_dtype

_FLOAT = (1,)


def _unary_infer(node, graph):
    input_count(node, 1)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    return [(x.dtype, x.shape)]


def _erf(x):
    import math

    return np.vectorize(math.erf, otypes=[x.dtype])(x)


# op -> (C++ expression of the float `v`, numpy function, {attribute: default})
_UNARY = {
    "Relu": ("v > 0.f ? v : 0.f", lambda x, a: np.maximum(x, 0), {}),
    "Sigmoid": ("1.f / (1.f + std::exp(-v))", lambda x, a: 1 / (1 + np.exp(-x)), {}),
    "Tanh": ("std::tanh(v)", lambda x, a: np.tanh(x), {}),
    "Exp": ("std::exp(v)", lambda x, a: np.exp(x), {}),
    "Log": ("std::log(v)", lambda x, a: np.log(x), {}),
    "Sqrt": ("std::sqrt(v)", lambda x, a: np.sqrt(x), {}),
    "Neg": ("-v", lambda x, a: -x, {}),
    "Abs": ("std::fabs(v)", lambda x, a: np.abs(x), {}),
    "Reciprocal": ("1.f / v", lambda x, a: 1 / x, {}),
    "Floor": ("std::floor(v)", lambda x, a: np.floor(x), {}),
    "Ceil": ("std::ceil(v)", lambda x, a: np.ceil(x), {}),
    "Erf": ("std::erf(v)", lambda x, a: _erf(x), {}),
    "Sin": ("std::sin(v)", lambda x, a: np.sin(x), {}),
    "Cos": ("std::cos(v)", lambda x, a: np.cos(x), {}),
    "Softplus": ("std::log(std::exp(v) + 1.f)", lambda x, a: np.log(np.exp(x) + 1), {}),
    "LeakyRelu": ("v >= 0.f ? v : {alpha} * v", lambda x, a: np.where(x >= 0, x, a["alpha"] * x), {"alpha": 0.01}),
    "Elu": (
        "v >= 0.f ? v : {alpha} * (std::exp(v) - 1.f)",
        lambda x, a: np.where(x >= 0, x, a["alpha"] * (np.exp(x) - 1)),
        {"alpha": 1.0},
    ),
    "HardSigmoid": (
        "std::fmax(0.f, std::fmin(1.f, {alpha} * v + {beta}))",
        lambda x, a: np.clip(a["alpha"] * x + a["beta"], 0, 1),
        {"alpha": 0.2, "beta": 0.5},
    ),
    "HardSwish": (
        "v * std::fmax(0.f, std::fmin(1.f, v * (1.f / 6.f) + 0.5f))",
        lambda x, a: x * np.clip(x / 6 + 0.5, 0, 1),
        {},
    ),
}


def _unary_attrs(node, defaults):
    return {name: attr_float(node, name, default) for name, default in defaults.items()}


def _make_unary(op_type, expr, fn, defaults):
    def evaluate(node, values):
        x = values[0]
        return [fn(x, _unary_attrs(node, defaults)).astype(x.dtype)]

    def emit(node, ctx):
        attrs = {k: cpp.float_literal(v) for k, v in _unary_attrs(node, defaults).items()}
        body = expr.format(**attrs)
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        n = ctx.graph.tensor(node.outputs[0]).elements
        return [
            f"for (std::size_t i = 0; i < {n}; ++i) {{",
            f"  const float v = {x}[i];",
            f"  {y}[i] = {body};",
            "}",
        ]

    register(op_type, infer=_unary_infer, evaluate=evaluate, emit=emit)


for _op, (_expr, _fn, _defaults) in _UNARY.items():
    _make_unary(_op, _expr, _fn, _defaults)


# Clip: bounds are attributes before opset 11 and optional constant inputs from 11 on.
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
        bounds.append(float(tensor.value.reshape(())))
    return bounds[0], bounds[1]


def _clip_infer(node, graph):
    input_count(node, 1, 3)
    x = require_dtype(node, graph, node.inputs[0], _FLOAT)
    clip_bounds(node, graph)
    return [(x.dtype, x.shape)]


def _clip_evaluate(node, values):
    if node.opset < 11:
        lo, hi = attr_float(node, "min", -np.inf), attr_float(node, "max", np.inf)
    else:
        lo = values[1] if len(values) > 1 and values[1] is not None else -np.inf
        hi = values[2] if len(values) > 2 and values[2] is not None else np.inf
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise CodegenError("a bound is NaN", node=node)
    return [np.minimum(np.maximum(values[0], lo), hi).astype(values[0].dtype)]


def _clip_emit(node, ctx):
    lo, hi = clip_bounds(node, ctx.graph)
    x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    n = ctx.graph.tensor(node.outputs[0]).elements
    return [
        f"for (std::size_t i = 0; i < {n}; ++i) {{",
        f"  const float v = {x}[i];",
        f"  {y}[i] = v < {cpp.float_literal(lo)} ? {cpp.float_literal(lo)} : "
        f"(v > {cpp.float_literal(hi)} ? {cpp.float_literal(hi)} : v);",
        "}",
    ]


register("Clip", infer=_clip_infer, evaluate=_clip_evaluate, emit=_clip_emit)


# Binary and variadic ops with numpy-style (multidirectional) broadcasting.
_BINARY = {
    # op -> (C++ expression of {0} and {1}, numpy function)
    "Add": ("{0} + {1}", np.add),
    "Sub": ("{0} - {1}", np.subtract),
    "Mul": ("{0} * {1}", np.multiply),
    "Div": ("{0} / {1}", None),
    "Pow": ("std::pow({0}, {1})", np.power),
    "Max": ("std::fmax({0}, {1})", np.maximum),
    "Min": ("std::fmin({0}, {1})", np.minimum),
    "Sum": ("{0} + {1}", np.add),
}
_VARIADIC = {"Max", "Min", "Sum"}
# Ops whose folding is meaningful for integer tensors too (shape arithmetic).
_ANY_DTYPE_FOLD = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"}


def _broadcast_shape(node, shapes):
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise CodegenError(
            f"input shapes {' and '.join(str(list(s)) for s in shapes)} do not broadcast", node=node
        ) from None


def _make_binary(op_type, expr, fn):
    variadic = op_type in _VARIADIC

    def infer(node, graph):
        if variadic:
            input_count(node, 1, 1 << 20)
        else:
            input_count(node, 2)
        tensors = [graph.tensor(name) for name in node.inputs]
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) != 1:
            raise CodegenError(
                "inputs have different element types: "
                + ", ".join(f"'{t.name}' {ir.dtype_name(t.dtype)}" for t in tensors),
                node=node,
            )
        return [(tensors[0].dtype, _broadcast_shape(node, [t.shape for t in tensors]))]

    def evaluate(node, values):
        dtype = values[0].dtype
        if op_type == "Div":
            if np.issubdtype(dtype, np.integer):
                if (np.asarray(values[1]) == 0).any():
                    raise CodegenError("integer division by zero while folding at generation time", node=node)
                # Truncates toward zero, as C++ does, in integer arithmetic (no float rounding).
                a, b = np.asarray(values[0]), np.asarray(values[1])
                quotient, remainder = np.floor_divide(a, b), np.remainder(a, b)
                result = quotient + ((remainder != 0) & ((a < 0) ^ (b < 0))).astype(quotient.dtype)
            else:
                result = values[0] / values[1]
        else:
            result = values[0]
            for v in values[1:]:
                result = fn(result, v)
        return [np.asarray(result).astype(dtype)]

    def emit(node, ctx):
        for name in node.inputs:
            require_dtype(node, ctx.graph, name, _FLOAT)
        out = ctx.graph.tensor(node.outputs[0])
        names = list(node.inputs)
        if len(names) == 1:
            return [f"std::memcpy({ctx.ptr(node.outputs[0])}, {ctx.ptr(names[0])}, {out.nbytes});"]
        # Variadic ops fold left: ((a op b) op c) ..., written into the output as they go.
        lines = cpp.broadcast_loop(
            out.shape,
            [ctx.graph.tensor(names[0]).shape, ctx.graph.tensor(names[1]).shape],
            [ctx.ptr(names[0]), ctx.ptr(names[1])],
            ctx.ptr(node.outputs[0]),
            expr,
        )
        for name in names[2:]:
            lines += cpp.broadcast_loop(
                out.shape,
                [out.shape, ctx.graph.tensor(name).shape],
                [ctx.ptr(node.outputs[0]), ctx.ptr(name)],
                ctx.ptr(node.outputs[0]),
                expr,
            )
        return lines

    register(op_type, infer=infer, evaluate=evaluate, emit=emit, check=_reject_legacy_broadcast)


def _reject_legacy_broadcast(node, version):
    # Before version 7, Add/Sub/Mul/Div/Pow broadcast only with broadcast=1, aligning the second
    # input at `axis`: not numpy's rule. Refuse rather than compute the wrong alignment.
    if version < 7 and node.attrs.get("broadcast", 0):
        raise CodegenError(f"legacy broadcasting (broadcast=1, {node.op_type}-{version}) is not supported; "
                           "convert the model to opset 7 or later", node=node)


for _op, (_expr, _fn) in _BINARY.items():
    _make_binary(_op, _expr, _fn)
