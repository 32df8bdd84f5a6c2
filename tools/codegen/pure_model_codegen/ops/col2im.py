"""Col2Im (opset 18): adds the columns of sliding blocks back into an image, any number of
spatial axes, float32. image_shape and block_shape must be known at generation time; the
output offset each (tap, block) entry adds into is a table computed then."""

import math

import numpy as np

from pure_model_codegen.errors import CodegenError
from pure_model_codegen.ops import attr_ints, input_count, register, require_dtype
from pure_model_codegen.ops.shape_ops import constant_input

# Table entry of a column entry that falls into the padding: it adds nowhere.
_NOWHERE = -1


def _geometry(node, graph):
    input_count(node, 3)
    x = require_dtype(node, graph, node.inputs[0], (1,))
    image = [int(v) for v in np.asarray(constant_input(node, graph, 1, "image_shape", integer=True,
                                                       required=True)).reshape(-1)]
    block = [int(v) for v in np.asarray(constant_input(node, graph, 2, "block_shape", integer=True,
                                                       required=True)).reshape(-1)]
    rank = len(image)
    if rank < 1 or len(block) != rank:
        raise CodegenError(f"image_shape {image} and block_shape {block} must have the same positive length",
                           node=node)
    if any(v < 1 for v in image + block):
        raise CodegenError(f"image_shape {image} and block_shape {block} must be positive", node=node)
    strides = attr_ints(node, "strides") or [1] * rank
    dilations = attr_ints(node, "dilations") or [1] * rank
    pads = attr_ints(node, "pads") or [0] * (2 * rank)
    if len(strides) != rank or len(dilations) != rank or len(pads) != 2 * rank:
        raise CodegenError(f"strides, dilations and pads must have {rank}, {rank} and {2 * rank} values", node=node)
    if any(v < 1 for v in strides + dilations) or any(p < 0 for p in pads):
        raise CodegenError("strides and dilations must be positive and pads not negative", node=node)
    blocks = [(i + pads[d] + pads[d + rank] - dilations[d] * (block[d] - 1) - 1) // strides[d] + 1
              for d, i in enumerate(image)]
    taps = math.prod(block)
    if len(x.shape) != 3 or x.shape[1] % taps or x.shape[2] != math.prod(blocks) or min(blocks) < 1:
        raise CodegenError(f"input {x.describe()} must be [N, C * {taps}, {math.prod(blocks)}] for image_shape "
                           f"{image} and block_shape {block}", node=node)
    return x, image, block, blocks, strides, dilations, pads[:rank]


def _infer(node, graph):
    x, image, block, *_ = _geometry(node, graph)
    return [(1, (x.shape[0], x.shape[1] // math.prod(block)) + tuple(image))]


def _offsets(image, block, blocks, strides, dilations, begin):
    """Per (tap, block position) in the input's order, the flat offset in the image plane or _NOWHERE."""
    coords = []
    for d in range(len(image)):
        tap = np.arange(block[d])[:, None]
        position = np.arange(blocks[d])[None, :]
        coords.append(tap * dilations[d] + position * strides[d] - begin[d])  # [taps, positions] on axis d
    offsets = np.zeros([*block, *blocks], np.int64)
    inside = np.ones([*block, *blocks], bool)
    rank = len(image)
    for d in range(rank):
        shape = [1] * (2 * rank)
        shape[d], shape[rank + d] = block[d], blocks[d]
        c = coords[d].reshape(shape)
        inside &= (c >= 0) & (c < image[d])
        offsets = offsets + c * math.prod(image[d + 1:])
    return np.where(inside, offsets, _NOWHERE).reshape(-1)


def _emit(node, ctx):
    x, image, block, blocks, strides, dilations, begin = _geometry(node, ctx.graph)
    planes = x.shape[0] * (x.shape[1] // math.prod(block))
    plane, columns = math.prod(image), math.prod(block) * math.prod(blocks)
    offsets = _offsets(image, block, blocks, strides, dilations, begin)
    kept = [j for j, o in enumerate(offsets) if o != _NOWHERE]
    src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
    lines = [f"for (std::size_t i = 0; i < {planes * plane}; ++i) {dst}[i] = 0.0f;"]
    if not kept:
        return lines
    entries = ctx.int_table(node, "entries", kept)  # column entries that land inside the image
    targets = ctx.int_table(node, "targets", [int(offsets[j]) for j in kept])
    # Loop counters i0, i1 and no other locals: names the generator never gives a tensor.
    lines += [f"for (std::size_t i0 = 0; i0 < {planes}; ++i0) {{",
              f"  for (std::size_t i1 = 0; i1 < {len(kept)}; ++i1) {{",
              f"    {dst}[i0 * {plane} + {targets}[i1]] += {src}[i0 * {columns} + {entries}[i1]];",
              "  }",
              "}"]
    return lines


register("Col2Im", infer=_infer, emit=_emit)
