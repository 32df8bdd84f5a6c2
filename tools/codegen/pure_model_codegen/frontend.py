"""ONNX file -> IR: load and validate the model, bind dynamic input dimensions.

Everything about the *file* is checked here (readable, really ONNX, supported domains and opsets,
inputs fully shaped); everything about the *operators* is checked by the op modules.
"""

import os
import re

import numpy as np
import onnx

from pure_model_codegen import ir, tensor_data
from pure_model_codegen.errors import CodegenError

# The newest ai.onnx opset this generator knows: that of the onnx package it is locked to. Each
# op's version within it is checked against what its module implements (passes/check_ops.py).
MAX_ONNX_OPSET = onnx.defs.onnx_opset_version()


def parse_shape_spec(spec, what="input"):
    """Parses "1,3,224,224" into (1, 3, 224, 224)."""
    try:
        dims = tuple(int(d) for d in spec.split(",")) if spec.strip() else ()
    except ValueError:
        raise CodegenError(f"{what} shape '{spec}' is not a comma-separated list of integers") from None
    if any(d < 0 for d in dims):
        raise CodegenError(f"{what} shape '{spec}' has a negative dimension")
    return dims


def _named_specs(specs, flag, form, what="input"):
    """{name: text} of NAME=TEXT flags; a name may hold '=' (the last one separates)."""
    named = {}
    for spec in specs:
        name, sep, text = spec.rpartition("=")
        if not sep or not name:
            raise CodegenError(f"--{flag} '{spec}' must look like {form}")
        if name in named:
            raise CodegenError(f"--{flag} names {what} '{name}' twice")
        named[name] = text
    return named


def parse_input_shapes(specs):
    return {name: parse_shape_spec(dims)
            for name, dims in _named_specs(specs, "input_shape", "NAME=D0,D1,...").items()}


def parse_output_shapes(specs):
    return {name: parse_shape_spec(dims, "output")
            for name, dims in _named_specs(specs, "output_shape", "NAME=D0,D1,...", "output").items()}


def parse_input_values(specs):
    """Parses ["sr=16000", "axes=0,2"] into {"sr": ["16000"], "axes": ["0", "2"]} (texts, read once
    the input's element type is known)."""
    return {name: [v.strip() for v in text.split(",")] if text.strip() else []
            for name, text in _named_specs(specs, "input_value", "NAME=V0,V1,...").items()}


def value_texts(array):
    """The texts of parse_input_values for a numpy array: exact, so that binding an input to an
    array's texts binds it to that array (floats are written as the shortest repr that reads back)."""
    flat = np.asarray(array).reshape(-1)
    if flat.dtype == np.bool_:
        return ["1" if v else "0" for v in flat]
    if np.issubdtype(flat.dtype, np.integer):
        return [str(int(v)) for v in flat]
    return [repr(float(v)) for v in flat]


def _parse_value(text, dtype, name):
    """One element of a bound input, as the input's element type; a CodegenError if it does not fit."""
    np_type = ir.numpy_type(dtype)
    kind = ir.dtype_name(dtype)
    if np_type == np.bool_:
        lowered = text.lower()
        if lowered in ("1", "true"):
            return True
        if lowered in ("0", "false"):
            return False
        raise CodegenError(f"input_values gives bool input '{name}' the value '{text}'; use 0, 1, true or false")
    if np.issubdtype(np_type, np.integer):
        try:
            value = int(text, 0) if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", text) else int(text)
        except ValueError:
            raise CodegenError(f"input_values gives {kind} input '{name}' the value '{text}', which is not an "
                               "integer") from None
        info = np.iinfo(np_type)
        if not info.min <= value <= info.max:
            raise CodegenError(f"input_values gives {kind} input '{name}' the value {value}, outside "
                               f"[{info.min}, {info.max}]")
        return value
    try:
        value = float(text)
    except ValueError:
        raise CodegenError(f"input_values gives {kind} input '{name}' the value '{text}', which is not a "
                           "number") from None
    with np.errstate(over="ignore"):
        # Not np.finfo: it does not know the ml_dtypes types (bfloat16, float8).
        overflows = np.isfinite(value) and not np.isfinite(float(np.asarray(value).astype(np_type)))
    if overflows:
        raise CodegenError(f"input_values gives {kind} input '{name}' the value {text}, beyond the range of {kind}")
    return value


def _bound_value(value_info, dtype, shape_spec, texts):
    """The constant that a bound input becomes: its values in the shape the model declares (or
    `shape_spec` binds); one unknown dimension is taken from the number of values."""
    name = value_info.name
    dims, _ = _static_dims(value_info)
    if shape_spec is not None:
        dims = list(shape_spec)
    elif dims is None:
        dims = [None] if len(texts) != 1 else []
    unknown = [i for i, d in enumerate(dims) if d is None]
    count = len(texts)
    if len(unknown) > 1:
        raise CodegenError(f"input_values binds input '{name}', which has {len(unknown)} dynamic dimensions; bind "
                           f"its shape too with input_shapes")
    if unknown:
        known = int(np.prod([d for d in dims if d is not None], dtype=np.int64))
        if known == 0 or count % known:
            raise CodegenError(f"input_values gives input '{name}' {count} values, which do not fill its shape "
                               f"[{','.join('?' if d is None else str(d) for d in dims)}]")
        dims[unknown[0]] = count // known
    shape = ir.check_shape(dims, f"input '{name}'")
    if int(np.prod(shape, dtype=np.int64)) != count:
        raise CodegenError(f"input_values gives input '{name}' {count} values, but its shape "
                           f"[{','.join(map(str, shape))}] holds {int(np.prod(shape, dtype=np.int64))}")
    values = [_parse_value(t, dtype, name) for t in texts]
    return np.asarray(np.array(values, dtype=ir.numpy_type(dtype)).reshape(shape), order="C")


def load_model(path):
    """Reads and checks an ONNX file, turning every kind of bad file into a CodegenError.

    Returns (model, opsets, initializer values). The generator's own checks come first, because
    they name the node or tensor at fault; onnx's checker then catches what they do not cover.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CodegenError(f"cannot read the model file: {e.strerror or e}", model_path=path) from None
    if not data:
        raise CodegenError("the file is empty, not an ONNX model", model_path=path)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf raises its own DecodeError type
        raise CodegenError(
            f"not an ONNX model (the file does not parse as an ONNX protobuf: {e})", model_path=path
        ) from None
    if not model.HasField("graph") or not model.opset_import:
        raise CodegenError(
            "not an ONNX model (no graph or no opset_import; the file may be truncated or of another format)",
            model_path=path,
        )
    try:
        _check_utf8(model)
        opsets = _opsets(model)
        _check_structure(model.graph, opsets)
        values = _read_initializers(model.graph, os.path.dirname(os.path.abspath(path)))
    except CodegenError as e:
        e.model_path = path
        raise
    _run_checker(model, path)
    return model, opsets, values


def _check_utf8(model):
    """Every name the generator reads is text. (Protobuf hands back bytes, not str, for a string
    field that is not valid UTF-8, and such a name would be compared, hashed and printed wrongly.)"""

    def check(value, what):
        if isinstance(value, bytes):
            raise CodegenError(f"{what} is not valid UTF-8 ({value[:40]!r})")

    for imp in model.opset_import:
        check(imp.domain, "an opset_import domain")
    graph = model.graph
    for kind, infos in (("graph input", graph.input), ("graph output", graph.output),
                        ("value_info", graph.value_info)):
        for info in infos:
            check(info.name, f"the name of a {kind}")
            for dim in info.type.tensor_type.shape.dim:
                check(dim.dim_param, f"a dimension name of {kind} '{info.name}'")
    for init in graph.initializer:
        check(init.name, "the name of an initializer")
        for entry in init.external_data:
            check(entry.key, f"an external data key of initializer '{init.name}'")
            check(entry.value, f"an external data value of initializer '{init.name}'")
    for index, node in enumerate(graph.node):
        for field in ("name", "op_type", "domain"):
            check(getattr(node, field), f"the {field} of node #{index}")
        label = f"node #{index} ('{node.name}')"
        for port, names in (("input", node.input), ("output", node.output)):
            for i, name in enumerate(names):
                check(name, f"{port} {i} of {label}")
        for attr in node.attribute:
            check(attr.name, f"an attribute name of {label}")
            check(attr.ref_attr_name, f"the ref_attr_name of attribute '{attr.name}' of {label}")
            if attr.HasField("t"):
                for entry in attr.t.external_data:
                    check(entry.key, f"an external data key of attribute '{attr.name}' of {label}")
                    check(entry.value, f"an external data value of attribute '{attr.name}' of {label}")


def _opsets(model):
    opsets = {}
    for imp in model.opset_import:
        domain = "" if imp.domain in ("", "ai.onnx") else imp.domain
        label = domain or "ai.onnx"
        if domain in opsets:
            raise CodegenError(f"the model imports domain {label} twice (opset_import)")
        if imp.version < 1:
            raise CodegenError(f"the model imports {label} opset {imp.version}, which is not an opset version")
        opsets[domain] = imp.version
    onnx_opset = opsets.get("", 0)
    if onnx_opset > MAX_ONNX_OPSET:
        raise CodegenError(
            f"the model imports ai.onnx opset {onnx_opset}; this generator supports up to {MAX_ONNX_OPSET}"
        )
    return opsets


def _shell(node, index, opsets):
    """An attribute-less ir.Node for `node`, to name it in errors."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    return ir.Node(op_type=node.op_type, name=node.name or f"{node.op_type}_{index}", inputs=list(node.input),
                   outputs=list(node.output), attrs={}, domain=domain, opset=opsets.get(domain, 0))


def _check_structure(graph, opsets):
    """Every name defined once, every input defined, nodes in topological order, no cycles."""
    defined = {}  # tensor name -> what defines it, for graph inputs and initializers
    for value_info in graph.input:
        if value_info.name in defined:
            raise CodegenError(f"graph input '{value_info.name}' is listed twice")
        defined[value_info.name] = "a graph input"
    seen_initializers = set()
    for init in graph.initializer:
        if init.name in seen_initializers:
            raise CodegenError(f"initializer '{init.name}' is defined twice")
        seen_initializers.add(init.name)
        defined.setdefault(init.name, "an initializer")
    if graph.sparse_initializer:
        raise CodegenError(f"sparse initializer '{graph.sparse_initializer[0].values.name}' is not supported")

    producer = {}  # tensor name -> index of the node that outputs it
    for index, node in enumerate(graph.node):
        shell = _shell(node, index, opsets)
        if shell.domain not in opsets:
            raise CodegenError(f"uses domain {shell.domain or 'ai.onnx'}, which the model does not import "
                               "(opset_import)", node=shell)
        for name in node.output:
            if not name:
                continue
            if name in producer:
                other = _shell(graph.node[producer[name]], producer[name], opsets)
                raise CodegenError(f"output '{name}' is also an output of node '{other.name}'", node=shell)
            if name in defined:
                raise CodegenError(f"output '{name}' is also {defined[name]}", node=shell)
            producer[name] = index
    late = None
    for index, node in enumerate(graph.node):
        for name in node.input:
            if not name or name in defined:
                continue
            if name not in producer:
                raise CodegenError(f"input '{name}' is not produced by any node, initializer or graph input",
                                   node=_shell(node, index, opsets))
            if producer[name] >= index and late is None:
                late = (index, name)
    if late is not None:
        cycle = _find_cycle(graph, producer, defined)
        if cycle:
            names = [_shell(graph.node[i], i, opsets).name for i in cycle]
            raise CodegenError("the graph has a cycle: " + " -> ".join(f"'{n}'" for n in names + names[:1]),
                               node=_shell(graph.node[cycle[0]], cycle[0], opsets))
        index, name = late
        other = _shell(graph.node[producer[name]], producer[name], opsets)
        raise CodegenError(f"input '{name}' is produced by node '{other.name}', which comes later; ONNX requires "
                           "the nodes in topological order", node=_shell(graph.node[index], index, opsets))
    for output in graph.output:
        if output.name not in defined and output.name not in producer:
            raise CodegenError(f"graph output '{output.name}' is not produced by any node, initializer or graph input")


def _find_cycle(graph, producer, defined):
    """Node indices along one cycle of the graph, or None if it has none (iterative: graphs can be deep)."""
    preds = [sorted({producer[n] for n in node.input if n and n not in defined and n in producer})
             for node in graph.node]
    state = [0] * len(graph.node)  # 0 unvisited, 1 on the current path, 2 done
    for start in range(len(graph.node)):
        if state[start]:
            continue
        path, iters = [start], [iter(preds[start])]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state[nxt] == 1:
                cycle = path[path.index(nxt):]
                return list(reversed(cycle))  # in data-flow order: each node feeds the next
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(preds[nxt]))
    return None


def _read_initializers(graph, model_dir):
    values = {}
    for init in graph.initializer:
        values[init.name] = tensor_data.read(init, what=f"initializer '{init.name}'", model_dir=model_dir)
    return values


def _run_checker(model, path):
    """onnx's checker, with external data (already read and checked) left out: the checker would
    look for it relative to the working directory, not the model's."""
    checked = model
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        checked = onnx.ModelProto()
        checked.CopyFrom(model)
        for t in checked.graph.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                t.data_location = onnx.TensorProto.DEFAULT
                del t.external_data[:]
                del t.dims[:]
                t.dims.append(0)
                t.raw_data = b""
    try:
        onnx.checker.check_model(checked)
    except Exception as e:  # ValidationError, and whatever else the checker trips over
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = " ".join(lines) if lines else type(e).__name__
        raise CodegenError(f"invalid ONNX model: {detail}", model_path=path) from None


# Exporters such as paddle2onnx write "any size" as the value -1 instead of a dim_param; it means
# the same as an unnamed symbolic dimension, which input_shapes binds.
_ANY_SIZE = -1


def _known_dim(d):
    """A dimension's value, or None when it is symbolic, unset or -1."""
    if d.HasField("dim_value") and d.dim_value != _ANY_SIZE:
        return d.dim_value
    return None


def _static_dims(value_info):
    """(dims, names) of a graph input: an int for each known dimension, else None and its name."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None, None
    dims, names = [], []
    for d in tensor_type.shape.dim:
        dim = _known_dim(d)
        dims.append(dim)
        if dim is not None:
            names.append(None)
        elif d.HasField("dim_value"):
            names.append(str(_ANY_SIZE))
        else:
            names.append(d.dim_param or "?")
    return dims, names


def _bind_input(path, value_info, bound):
    name = value_info.name
    dims, names = _static_dims(value_info)
    if dims is not None and any(d is not None and d < 0 for d in dims):
        raise CodegenError(f"input '{name}' is declared with a negative dimension {dims}", model_path=path)
    if bound is not None:
        if dims is not None and len(dims) != len(bound):
            raise CodegenError(
                f"input_shapes gives input '{name}' rank {len(bound)} ({','.join(map(str, bound))}) "
                f"but the model declares rank {len(dims)}",
                model_path=path,
            )
        for i, (declared, given) in enumerate(zip(dims or [], bound)):
            if declared is not None and declared != given:
                raise CodegenError(
                    f"input_shapes gives input '{name}' dimension {i} = {given} but the model fixes it to {declared}",
                    model_path=path,
                )
        return tuple(bound)
    if dims is None:
        raise CodegenError(
            f"input '{name}' has no declared shape; bind it with input_shapes = {{\"{name}\": \"d0,d1,...\"}}",
            model_path=path,
        )
    for i, d in enumerate(dims):
        if d is None:
            raise CodegenError(
                f"input '{name}' dimension {i} ('{names[i]}') is dynamic; bind it with "
                f"input_shapes = {{\"{name}\": \"{','.join(str(x) if x is not None else 'N' for x in dims)}\"}}",
                model_path=path,
            )
    return tuple(dims)


def _attribute_value(attr, model_dir, opsets=None):
    if attr.type == onnx.AttributeProto.GRAPH:
        return _import_subgraph(attr.g, model_dir, opsets or {})
    if attr.type == onnx.AttributeProto.GRAPHS:
        raise CodegenError(f"attribute '{attr.name}' is a list of graphs, which is not supported")
    if attr.type == onnx.AttributeProto.TENSOR:
        return tensor_data.read(attr.t, what=f"attribute '{attr.name}'", model_dir=model_dir)
    if attr.type in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS):
        raise CodegenError(f"attribute '{attr.name}' is a sparse tensor, which is not supported")
    try:
        value = onnx.helper.get_attribute_value(attr)
    except Exception as e:  # an attribute without a valid type
        raise CodegenError(f"attribute '{attr.name}' cannot be read ({e})") from None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


def _import_nodes(graph, model_dir, opsets):
    nodes = []
    for index, proto in enumerate(graph.node):
        node = _shell(proto, index, opsets)
        for attr in proto.attribute:
            try:
                node.attrs[attr.name] = _attribute_value(attr, model_dir, opsets)
            except CodegenError as e:
                e.node = e.node or node
                raise
        nodes.append(node)
    return nodes


def _import_subgraph(graph, model_dir, opsets):
    """A control-flow body: its nodes, formal inputs, outputs and initializers (ir.Subgraph)."""
    constants = {}
    for init in graph.initializer:
        value = np.asarray(tensor_data.read(init, what=f"initializer '{init.name}' of subgraph '{graph.name}'",
                                            model_dir=model_dir), order="C")
        constants[init.name] = ir.Tensor(init.name, init.data_type, tuple(value.shape), value)
    if graph.sparse_initializer:
        raise CodegenError(f"subgraph '{graph.name}' has a sparse initializer, which is not supported")
    for info in list(graph.input) + list(graph.output):
        if info.type.HasField("sequence_type") or info.type.HasField("optional_type") or info.type.HasField(
                "map_type"):
            raise CodegenError(f"subgraph '{graph.name}' input or output '{info.name}' is not a tensor")
    return ir.Subgraph(name=graph.name, inputs=[i.name for i in graph.input if i.name not in constants],
                       outputs=[o.name for o in graph.output], nodes=_import_nodes(graph, model_dir, opsets),
                       constants=constants)


def _declared_output(value_info):
    """(dtype or None, dims with None for unknown, or None when no shape) of a graph output."""
    tensor_type = value_info.type.tensor_type
    dtype = tensor_type.elem_type or None
    if not tensor_type.HasField("shape"):
        return dtype, None
    return dtype, [_known_dim(d) for d in tensor_type.shape.dim]


def import_model(path, input_shapes=None, input_values=None, output_shapes=None):
    """Loads the ONNX file at `path` and returns an ir.Graph with every input dimension bound.

    `input_values` ({name: [value texts]}, see parse_input_values) turns inputs into constants:
    configuration the model takes as an input (a sample rate, the axes of a reduction) becomes
    known at generation time, and the input leaves Run()'s parameters. `output_shapes` ({name:
    dims}) replaces what the model declares for those outputs: the way to build a model whose
    declaration its own graph contradicts, by stating the shape the graph computes (checked).
    """
    input_shapes = dict(input_shapes or {})
    input_values = dict(input_values or {})
    model, opsets, values = load_model(path)
    graph = model.graph
    model_dir = os.path.dirname(os.path.abspath(path))

    tensors = {}
    for init in graph.initializer:
        # np.asarray, not np.ascontiguousarray: that one turns a scalar (0-d) into shape [1].
        value = np.asarray(values[init.name], order="C")
        tensors[init.name] = ir.Tensor(init.name, init.data_type, tuple(value.shape), value)

    inputs, bound_inputs = [], {}
    for value_info in graph.input:
        if value_info.name in tensors:  # IR < 4 models list initializers among the inputs
            continue
        if not value_info.type.HasField("tensor_type"):
            raise CodegenError(f"input '{value_info.name}' is not a tensor", model_path=path)
        elem_type = value_info.type.tensor_type.elem_type
        if elem_type not in ir.DTYPES:
            raise CodegenError(
                f"input '{value_info.name}' has unsupported element type "
                f"{tensor_data.type_name(elem_type)}",
                model_path=path,
            )
        if value_info.name in input_values:
            try:
                shape_spec = input_shapes.pop(value_info.name, None)
                if shape_spec is not None:
                    _bind_input(path, value_info, shape_spec)
                value = _bound_value(value_info, elem_type, shape_spec, input_values.pop(value_info.name))
                if value_info.type.tensor_type.HasField("shape"):
                    _bind_input(path, value_info, value.shape)
            except CodegenError as e:
                e.model_path = path
                raise
            tensors[value_info.name] = ir.Tensor(value_info.name, elem_type, tuple(value.shape), value)
            bound_inputs[value_info.name] = tensors[value_info.name]
            continue
        shape = _bind_input(path, value_info, input_shapes.pop(value_info.name, None))
        try:
            shape = ir.check_shape(shape, f"input '{value_info.name}'")
        except CodegenError as e:
            e.model_path = path
            raise
        tensors[value_info.name] = ir.Tensor(value_info.name, elem_type, shape)
        inputs.append(value_info.name)
    if input_values:
        raise CodegenError(
            f"input_values names {', '.join(sorted(input_values))}, which the model does not have as inputs "
            f"(its inputs: {', '.join(inputs + list(bound_inputs)) or 'none'})",
            model_path=path,
        )
    if input_shapes:
        raise CodegenError(
            f"input_shapes names {', '.join(sorted(input_shapes))}, which the model does not have as inputs "
            f"(its inputs: {', '.join(inputs) or 'none'})",
            model_path=path,
        )

    try:
        nodes = _import_nodes(graph, model_dir, opsets)
    except CodegenError as e:
        e.model_path = path
        raise
    outputs = [o.name for o in graph.output]
    if not outputs:
        raise CodegenError("the graph has no outputs", model_path=path)
    declared_outputs = {o.name: _declared_output(o) for o in graph.output}
    for name, dims in (output_shapes or {}).items():
        if name not in declared_outputs:
            raise CodegenError(f"output_shapes names '{name}', which the model does not have as an output "
                               f"(its outputs: {', '.join(outputs)})", model_path=path)
        declared_outputs[name] = (declared_outputs[name][0], list(dims))
    return ir.Graph(
        model_path=path, inputs=inputs, outputs=outputs, nodes=nodes, tensors=tensors, opsets=opsets,
        declared_outputs=declared_outputs, stated_outputs=frozenset(output_shapes or ()), bound_inputs=bound_inputs,
    )
