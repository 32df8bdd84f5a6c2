"""Small helpers for writing C++ source text: literals, identifiers, loops."""

import math
import re

import numpy as np

from pure_model_codegen import ir
from pure_model_codegen.errors import one_line


def float_literal(value):
    """A float32 C++ literal that reads back to exactly the same value."""
    value = float(np.float32(value))
    if math.isnan(value):
        return "std::numeric_limits<float>::quiet_NaN()"
    if math.isinf(value):
        return ("-" if value < 0 else "") + "std::numeric_limits<float>::infinity()"
    text = f"{value:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def storage_bits(value, dtype):
    """`value` in a storage-struct element type (ONNX `dtype`, see ir.STORAGE) as a braced
    initializer of its bits, e.g. {0x3C00}."""
    stored = np.asarray(value).astype(ir.numpy_type(dtype)).reshape(1)
    width = stored.dtype.itemsize
    bits = int(stored.view(np.uint16 if width == 2 else np.uint8)[0])
    return f"{{0x{bits:0{2 * width}X}}}"


def storage_literal(value, dtype):
    """A C++ value of a storage-struct element type: `value` rounded, as its bits."""
    return ir.cpp_type(dtype) + storage_bits(value, dtype)


def identifier(name, prefix=""):
    """A C++ identifier derived from an ONNX name (which may hold any characters)."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not text or text[0].isdigit():
        text = "_" + text
    text = prefix + text
    # Names with a double underscore or an underscore + capital are reserved in C++.
    text = re.sub(r"__+", "_", text)
    if text.startswith("_"):
        text = "v" + text
    return text


def comment_text(text):
    """`text` (a name from the model, say) made safe inside a // comment: one line, printable."""
    return one_line(text)


def string_literal(text):
    """A C++ string literal spelling `text` exactly, whatever characters it holds."""
    out = []
    for byte in str(text).encode("utf-8", errors="surrogatepass"):
        ch = chr(byte)
        if 0x20 <= byte < 0x7F and ch not in "\\\"?":
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


# Identifiers the generated code declares itself (loop counters, locals), C++ keywords, and
# lowercase macros the standard headers may define: a tensor must never be given one of these.
_KEYWORDS = set("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
    compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype
    default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
    int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
    reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template
    this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t
    while xor xor_eq errno assert stdin stdout stderr linux unix i386 main std pure_model
    i j o v row batch base
    acc best at shift
    key_rows value_rows probs key_head value_head query_row qk_row out_row value_row valid_keys dot score key_bias
    attended behind ahead prob
    loss_sum weight_sum row_max exp_sum log_norm label loss_value class_weight
    mean variance centred inv_std in_block out_block norm first last kept slot position known angle_row in_head
    out_head cosine sine x1 x2 lu det pivot swapped diagonal factor taps at0 at1 at2 line top top_index
    update state token key_row gate rate recalled in_row history
""".split())
_RESERVED_PATTERN = re.compile(r"^(i\d+|v\d+|_.*|.*__.*)$")


def is_reserved(name):
    return name in _KEYWORDS or bool(_RESERVED_PATTERN.match(name))


def camel_case(name):
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    return "M" + text if text[0].isdigit() else text


def indent(lines, levels=1):
    pad = "  " * levels
    return [pad + line if line else line for line in lines]


def collapse_broadcast(out_shape, in_shapes):
    """Loop dims and per-input element strides for a broadcast over `out_shape`.

    Adjacent output dims merge while every input treats them alike (both present or both
    broadcast), so a same-shape op becomes one flat loop and a per-channel op two or three.
    Returns (dims, strides) with strides[i][d] the step of input i along loop dim d (0 = broadcast).
    """
    rank = len(out_shape)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in in_shapes]
    dims, flags = [], []
    for d in range(rank):
        if out_shape[d] == 1:
            continue
        present = tuple(p[d] != 1 for p in padded)
        if dims and flags[-1] == present:
            dims[-1] *= out_shape[d]
        else:
            dims.append(out_shape[d])
            flags.append(present)
    strides = []
    for i in range(len(in_shapes)):
        stride, col = 1, [0] * len(dims)
        for d in reversed(range(len(dims))):
            if flags[d][i]:
                col[d] = stride
                stride *= dims[d]
        strides.append(col)
    return dims, strides


def broadcast_loop(out_shape, in_shapes, in_ptrs, out_ptr, expr):
    """C++ lines computing out[...] = expr(a0, a1, ...) with numpy broadcasting.

    `expr` is a format string using {0}, {1}, ... for the input element values.
    """
    dims, strides = collapse_broadcast(out_shape, in_shapes)
    if not dims:  # every dimension is 1: a single element
        values = [f"{p}[0]" for p in in_ptrs]
        return [f"{out_ptr}[0] = {expr.format(*values)};"]
    lines, depth = [], len(dims)
    # Output index is the running flat index; each input keeps its own running offset.
    for d in range(depth):
        var = f"i{d}"
        lines.append("  " * d + f"for (std::size_t {var} = 0; {var} < {dims[d]}; ++{var}) {{")
    out_index = " + ".join(
        f"i{d}" + (f" * {int(np.prod(dims[d + 1:]))}" if d + 1 < depth else "") for d in range(depth)
    )
    values = []
    for i, ptr in enumerate(in_ptrs):
        terms = [f"i{d}" + (f" * {strides[i][d]}" if strides[i][d] != 1 else "")
                 for d in range(depth) if strides[i][d]]
        values.append(f"{ptr}[{' + '.join(terms) if terms else '0'}]")
    lines.append("  " * depth + f"{out_ptr}[{out_index}] = {expr.format(*values)};")
    for d in reversed(range(depth)):
        lines.append("  " * d + "}")
    return lines


def gather_copy(dims, src, dst, table, fill=None):
    """C++ lines copying `src` into `dst` (dense, row-major) where each output coordinate along a
    dimension picks a source coordinate: Slice, Pad, Tile, Expand, Split, DepthToSpace, ...

    `dims`: one (coords, stride) per output dimension, outermost first: `coords` (ints, one per
    output position) are the source coordinates along that dimension, `stride` is the source's
    element stride for one step of coordinate. With `fill` (a C++ expression), a coordinate that
    is None (or negative) stands for the fill value (constant padding). `table(label, values)`
    embeds an index table and returns its name; used when the coordinates are not affine.
    """
    offset, loops = 0, []  # loops: [extent, src stride or None, table name or None, fill check]
    for d, (coords, stride) in enumerate(dims):
        coords = [None if c is None or c < 0 else int(c) for c in coords]
        if not coords:
            return ["// The output is empty: nothing to copy."]
        if all(c is None for c in coords):
            return [f"for (std::size_t i = 0; i < {_product_of(dims)}; ++i) {dst}[i] = {fill};"]
        if len(coords) == 1:
            offset += coords[0] * stride
            continue
        step = coords[1] - coords[0] if None not in coords[:2] else None
        if None not in coords and all(c == coords[0] + k * step for k, c in enumerate(coords)):
            offset += coords[0] * stride
            loops.append([len(coords), step * stride, None, False])
        else:
            bound = max(c for c in coords if c is not None) + 1
            values = [bound if c is None else c for c in coords]
            loops.append([len(coords), stride, table(f"dim{d}", values), None in coords and bound])
    merged = []
    for loop in loops:  # adjacent affine loops that walk the source contiguously become one
        if merged and merged[-1][2] is None and loop[2] is None and merged[-1][1] == loop[0] * loop[1]:
            merged[-1] = [merged[-1][0] * loop[0], loop[1], None, False]
        else:
            merged.append(loop)
    if not merged:
        return [f"{dst}[0] = {src}[{offset}];"]
    names = [f"i{k}" for k in range(len(merged))]
    terms = [str(offset)] if offset else []
    checks = []
    for name, (extent, stride, tab, bound) in zip(names, merged):
        coord = f"{tab}[{name}]" if tab else name
        if stride:  # a negative stride (Slice with a negative step) is written as a subtraction
            terms.append(("- " if stride < 0 else "") + (coord if abs(stride) == 1 else f"{coord} * {abs(stride)}"))
        if bound:
            checks.append(f"{tab}[{name}] != {bound}")
    out_terms = []
    for k, name in enumerate(names):
        inner = math.prod(m[0] for m in merged[k + 1:])
        out_terms.append(name if inner == 1 else f"{name} * {inner}")
    value = f"{src}[{' + '.join(terms).replace('+ - ', '- ') or '0'}]"
    if checks:
        value = f"{' && '.join(checks)} ? {value} : {fill}"
    lines = []
    for depth, (name, (extent, *_)) in enumerate(zip(names, merged)):
        lines.append("  " * depth + f"for (std::size_t {name} = 0; {name} < {extent}; ++{name}) {{")
    lines.append("  " * len(merged) + f"{dst}[{' + '.join(out_terms)}] = {value};")
    for depth in reversed(range(len(merged))):
        lines.append("  " * depth + "}")
    return lines


def _product_of(dims):
    return math.prod(len(coords) for coords, _ in dims)
