"""Matrix products: Gemm and (batched, broadcasting) MatMul, float32."""

import math

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_float, attr_int, check_table_size, input_count, register, require_dtype

_FLOAT = (1,)

# kMatMulPanelCols in kernels.h: constant right-hand matrices are packed into panels this wide.
PANEL_COLS = 32
GEMM_ROWS = 8  # kGemmRows: rows of A packed together at run time


def pack_b_panels(b):
    """[K, N] -> [ceil(N / PANEL_COLS)][K][PANEL_COLS], zero columns padding the last panel."""
    k, n = b.shape
    panels = -(-n // PANEL_COLS)
    padded = np.zeros((k, panels * PANEL_COLS), np.float32)
    padded[:, :n] = b
    return padded.reshape(k, panels, PANEL_COLS).transpose(1, 0, 2)


def _packing_pays(k, n):
    """Padding a narrow B to whole panels would waste more weight bytes than it is worth."""
    padded_bytes = -(-n // PANEL_COLS) * PANEL_COLS * k * 4
    return padded_bytes - n * k * 4 <= max(n * k * 4 // 2, 4096)


def _packed_scratch_bytes(m, k):
    return -(-m // GEMM_ROWS) * GEMM_ROWS * k * 4


def _emit_packed(node, ctx, m, k, n, a, b_matrix, bias, activation, comment):
    """The MatMulPackedB kernel: B known at generation time, packed into panels."""
    packed = ctx.derived_constant(node, "packed_b", pack_b_panels(b_matrix), comment=comment)
    params = ctx.param_struct(node, [
        ("kM", m), ("kK", k), ("kN", n),
        ("kActivation", ("pure_model::Activation", "pure_model::Activation::" + activation[0])),
        ("kClipLo", float(activation[1])), ("kClipHi", float(activation[2])),
    ])
    bias_ptr = ctx.derived_constant(node, "bias", bias, comment="beta * C per column") if bias is not None else "nullptr"
    return [f"pure_model::MatMulPackedB<{params}>({a}, {packed}, {bias_ptr}, {ctx.ptr(node.outputs[0])}, "
            f"{ctx.scratch(node)});"]


def _gemm_dims(node, graph):
    input_count(node, 2, 3)
    a = require_dtype(node, graph, node.inputs[0], _FLOAT)
    b = require_dtype(node, graph, node.inputs[1], _FLOAT)
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise CodegenError(f"A and B must be matrices, got shapes {list(a.shape)} and {list(b.shape)}", node=node)
    trans_a, trans_b = attr_int(node, "transA", 0), attr_int(node, "transB", 0)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k2:
        raise CodegenError(f"inner dimensions differ: op(A) is [{m},{k}], op(B) is [{k2},{n}]", node=node)
    c_strides = None
    if len(node.inputs) > 2 and node.inputs[2]:
        c = require_dtype(node, graph, node.inputs[2], _FLOAT)
        if node.opset < 7:
            allowed = [(m, n), (n,), (1,), ()] if node.attrs.get("broadcast", 0) else [(m, n)]
            if tuple(c.shape) not in allowed:
                raise CodegenError(f"C of shape {list(c.shape)} does not fit [{m},{n}] under Gemm's pre-opset-7 "
                                   "broadcasting rule", node=node)
        shape = (1,) * (2 - len(c.shape)) + tuple(c.shape)
        if len(shape) != 2 or shape[0] not in (1, m) or shape[1] not in (1, n):
            raise CodegenError(f"C of shape {list(c.shape)} does not broadcast to [{m},{n}]", node=node)
        c_strides = (shape[1] if shape[0] != 1 else 0, 1 if shape[1] != 1 else 0)
    return m, n, k, trans_a, trans_b, c_strides


def _gemm_infer(node, graph):
    m, n, _, _, _, _ = _gemm_dims(node, graph)
    return [(1, (m, n))]


def _gemm_packed_operands(node, graph):
    """(alpha * op(B) as [K, N], beta * C as [N] or None) when Gemm can use the packed kernel:
    A not transposed, B known at generation time, C absent or known and the same for every row."""
    m, n, k, trans_a, trans_b, c_strides = _gemm_dims(node, graph)
    b = graph.tensor(node.inputs[1])
    if trans_a or not b.is_constant or b.value is None or not _packing_pays(k, n):
        return None
    bias = None
    if c_strides:
        c = graph.tensor(node.inputs[2])
        if not c.is_constant or c.value is None or c_strides[0] != 0:
            return None
        bias = (attr_float(node, "beta", 1.0) * np.broadcast_to(np.asarray(c.value, np.float32).reshape(-1), (n,)))
        bias = np.ascontiguousarray(bias, np.float32)
    matrix = np.asarray(b.value, np.float32)
    matrix = matrix.T if trans_b else matrix
    return (attr_float(node, "alpha", 1.0) * matrix).astype(np.float32), bias


def _gemm_emit(node, ctx):
    m, n, k, trans_a, trans_b, c_strides = _gemm_dims(node, ctx.graph)
    activation = node.attrs.get("_fused_activation", ("kNone", float("-inf"), float("inf")))
    packed = None if ctx.masked else _gemm_packed_operands(node, ctx.graph)  # as in _matmul_emit
    if packed is not None:
        return _emit_packed(node, ctx, m, k, n, ctx.ptr(node.inputs[0]), packed[0], packed[1], activation,
                            "alpha * op(B), packed into column panels at generation time")
    b_weights = ctx.graph.tensor(node.inputs[1])
    if trans_b and b_weights.is_constant:
        # Stored as [K, N] at generation time, so the kernel's inner loop runs over contiguous
        # memory instead of striding across rows of the transposed matrix.
        b = ctx.derived_constant(node, "weights_kn", np.ascontiguousarray(b_weights.value.T),
                                 comment="B transposed to [K, N] at generation time")
        trans_b = 0
    else:
        b = ctx.ptr(node.inputs[1])
    params = ctx.param_struct(node, [
        ("kM", m), ("kN", n), ("kK", k), ("kTransA", bool(trans_a)), ("kTransB", bool(trans_b)),
        ("kAlpha", attr_float(node, "alpha", 1.0)), ("kBeta", attr_float(node, "beta", 1.0)),
        ("kCStrideM", c_strides[0] if c_strides else 0), ("kCStrideN", c_strides[1] if c_strides else 0),
        ("kActivation", ("pure_model::Activation", "pure_model::Activation::" + activation[0])),
        ("kClipLo", float(activation[1])), ("kClipHi", float(activation[2])),
    ])
    c = ctx.ptr(node.inputs[2]) if c_strides else "nullptr"
    return [f"pure_model::Gemm<{params}>({ctx.ptr(node.inputs[0])}, {b}, {c}, {ctx.ptr(node.outputs[0])});"]


def _gemm_flops(node, graph):
    m, n, k, *_ = _gemm_dims(node, graph)
    return 2 * m * n * k


def _gemm_check(node, version):
    # Gemm before version 7 broadcasts C only with broadcast=1, and then by the legacy rule: C's
    # shape is a suffix of [M, N] (or a scalar), which _gemm_dims checks; without it C is [M, N].
    # Version 7 made the broadcast unidirectional, which covers both.
    broadcast = node.attrs.get("broadcast", 0)
    if version < 7 and broadcast not in (0, 1):
        raise CodegenError(f"attribute 'broadcast' must be 0 or 1, got {broadcast}", node=node)


def _gemm_scratch(node, graph):
    if _gemm_packed_operands(node, graph) is None:
        return 0
    m, _, k, *_ = _gemm_dims(node, graph)
    return _packed_scratch_bytes(m, k)


register("Gemm", infer=_gemm_infer, emit=_gemm_emit, flops=_gemm_flops, check=_gemm_check, scratch=_gemm_scratch)


def _matmul_shapes(node, graph):
    input_count(node, 2)
    a = require_dtype(node, graph, node.inputs[0], _FLOAT)
    b = require_dtype(node, graph, node.inputs[1], _FLOAT)
    if not a.shape or not b.shape:
        raise CodegenError("MatMul inputs must have rank >= 1", node=node)
    # numpy.matmul's rules: 1-D operands gain a dimension that the result then drops.
    a_shape = (1,) + tuple(a.shape) if len(a.shape) == 1 else tuple(a.shape)
    b_shape = tuple(b.shape) + (1,) if len(b.shape) == 1 else tuple(b.shape)
    if a_shape[-1] != b_shape[-2]:
        raise CodegenError(f"inner dimensions differ: {list(a.shape)} x {list(b.shape)}", node=node)
    try:
        batch = tuple(int(d) for d in np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    except ValueError:
        raise CodegenError(f"batch dimensions of {list(a.shape)} and {list(b.shape)} do not broadcast", node=node) from None
    out = batch + (a_shape[-2], b_shape[-1])
    if len(a.shape) == 1:
        out = out[:-2] + out[-1:]
    if len(b.shape) == 1:
        out = out[:-1]
    return a_shape, b_shape, batch, out


def _matmul_infer(node, graph):
    return [(1, _matmul_shapes(node, graph)[3])]


def _batch_offsets(shape, batch, matrix_elems):
    """Element offset of each batch matrix of an operand broadcast to `batch`."""
    padded = (1,) * (len(batch) - len(shape)) + tuple(shape)
    strides, stride = [], matrix_elems
    for d in reversed(padded):
        strides.insert(0, stride if d != 1 else 0)
        stride *= d
    return [int(np.dot(idx, strides)) if strides else 0 for idx in np.ndindex(*batch)] if batch else [0]


def _matmul_packed_rows(node, graph):
    """Rows of A (A's leading dimensions merged) when B is a matrix known at generation time:
    then the whole product is one MatMulPackedB. None otherwise."""
    a_shape, b_shape, _, _ = _matmul_shapes(node, graph)
    b = graph.tensor(node.inputs[1])
    if len(b.shape) != 2 or not b.is_constant or b.value is None or not _packing_pays(*b_shape):
        return None
    return math.prod(a_shape[:-1])


def _matmul_emit(node, ctx):
    a_shape, b_shape, batch, _ = _matmul_shapes(node, ctx.graph)
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    # Masked weights (obfuscate) go through MatMul, which unmasks rows of B block by block; the
    # packed kernel reads B as the micro-kernel's plain panel.
    rows = None if ctx.masked else _matmul_packed_rows(node, ctx.graph)
    if rows is not None:
        return _emit_packed(node, ctx, rows, k, n, ctx.ptr(node.inputs[0]),
                            np.asarray(ctx.graph.tensor(node.inputs[1]).value, np.float32), None,
                            ("kNone", float("-inf"), float("inf")), "B packed into column panels at generation time")
    a, b, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0])
    # Checked before the offsets are enumerated, which for a huge batch would take forever.
    check_table_size(node, "a_offsets", math.prod(batch))
    a_off = _batch_offsets(a_shape[:-2], batch, m * k)
    b_off = _batch_offsets(b_shape[:-2], batch, k * n)
    count = len(a_off)
    if count == 1:
        return [f"pure_model::MatMul<{m}, {k}, {n}>({a}, {b}, {y});"]
    a_table = ctx.int_table(node, "a_offsets", a_off)
    b_table = ctx.int_table(node, "b_offsets", b_off)
    return [
        f"for (std::size_t batch = 0; batch < {count}; ++batch) {{",
        f"  pure_model::MatMul<{m}, {k}, {n}>({a} + {a_table}[batch], {b} + {b_table}[batch], "
        f"{y} + batch * {m * n});",
        "}",
    ]


def _matmul_flops(node, graph):
    a_shape, _, _, out = _matmul_shapes(node, graph)
    return 2 * int(np.prod(out)) * a_shape[-1]


def _matmul_scratch(node, graph):
    rows = _matmul_packed_rows(node, graph)
    return 0 if rows is None else _packed_scratch_bytes(rows, _matmul_shapes(node, graph)[0][-1])


register("MatMul", infer=_matmul_infer, emit=_matmul_emit, flops=_matmul_flops, scratch=_matmul_scratch)
