"""ONNX file -> IR: load and validate the model, bind dynamic input dimensions.

Everything about the *file* is checked here (readable, really ONNX, supported domains and opsets,
inputs fully shaped); everything about the *operators* is checked by the op modules.
"""

import os

import numpy as np
import onnx
from onnx import numpy_helper

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError

# The newest ai.onnx opset this generator knows: newer models may use semantics it has never seen.
MAX_ONNX_OPSET = 23


def parse_shape_spec(spec):
    """Parses "1,3,224,224" into (1, 3, 224, 224)."""
    try:
        dims = tuple(int(d) for d in spec.split(",")) if spec.strip() else ()
    except ValueError:
        raise CodegenError(f"input shape '{spec}' is not a comma-separated list of integers") from None
    if any(d < 0 for d in dims):
        raise CodegenError(f"input shape '{spec}' has a negative dimension")
    return dims


def parse_input_shapes(specs):
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        if not sep or not name:
            raise CodegenError(f"--input_shape '{spec}' must look like NAME=D0,D1,...")
        if name in shapes:
            raise CodegenError(f"--input_shape names input '{name}' twice")
        shapes[name] = parse_shape_spec(dims)
    return shapes


def load_model(path):
    """Reads and checks an ONNX file, turning every kind of bad file into a CodegenError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CodegenError(f"cannot read the model file: {e.strerror}", model_path=path) from None
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
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else "validation failed"
        raise CodegenError(f"invalid ONNX model: {first_line}", model_path=path) from None
    return model


def _static_dims(value_info):
    """(dims, names) of a graph input: an int for each known dimension, else None and its name."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None, None
    dims, names = [], []
    for d in tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
            names.append(None)
        else:
            dims.append(None)
            names.append(d.dim_param or "?")
    return dims, names


def _bind_input(path, value_info, bound):
    name = value_info.name
    dims, names = _static_dims(value_info)
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


def _attribute_value(attr):
    value = onnx.helper.get_attribute_value(attr)
    if attr.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


def import_model(path, input_shapes=None):
    """Loads the ONNX file at `path` and returns an ir.Graph with every input dimension bound."""
    input_shapes = dict(input_shapes or {})
    model = load_model(path)
    graph = model.graph
    opsets = {(imp.domain or ""): imp.version for imp in model.opset_import}
    if opsets.get("ai.onnx"):
        opsets[""] = opsets.pop("ai.onnx")
    onnx_opset = opsets.get("", 0)
    if onnx_opset > MAX_ONNX_OPSET:
        raise CodegenError(
            f"the model imports ai.onnx opset {onnx_opset}; this generator supports up to {MAX_ONNX_OPSET}",
            model_path=path,
        )

    tensors = {}
    for init in graph.initializer:
        try:
            value = numpy_helper.to_array(init, base_dir=os.path.dirname(os.path.abspath(path)))
        except Exception as e:
            raise CodegenError(f"initializer '{init.name}' cannot be read: {e}", model_path=path) from None
        if init.data_type not in ir.DTYPES:
            raise CodegenError(
                f"initializer '{init.name}' has unsupported element type {onnx.helper.tensor_dtype_to_string(init.data_type)}",
                model_path=path,
            )
        value = np.ascontiguousarray(value.astype(ir.numpy_type(init.data_type), copy=False))
        tensors[init.name] = ir.Tensor(init.name, init.data_type, tuple(value.shape), value)

    inputs = []
    for value_info in graph.input:
        if value_info.name in tensors:  # IR < 4 models list initializers among the inputs
            continue
        elem_type = value_info.type.tensor_type.elem_type
        if not value_info.type.HasField("tensor_type"):
            raise CodegenError(f"input '{value_info.name}' is not a tensor", model_path=path)
        if elem_type not in ir.DTYPES:
            raise CodegenError(
                f"input '{value_info.name}' has unsupported element type "
                f"{onnx.helper.tensor_dtype_to_string(elem_type)}",
                model_path=path,
            )
        shape = _bind_input(path, value_info, input_shapes.pop(value_info.name, None))
        tensors[value_info.name] = ir.Tensor(value_info.name, elem_type, shape)
        inputs.append(value_info.name)
    if input_shapes:
        raise CodegenError(
            f"input_shapes names {', '.join(sorted(input_shapes))}, which the model does not have as inputs "
            f"(its inputs: {', '.join(inputs) or 'none'})",
            model_path=path,
        )

    nodes = []
    for index, node in enumerate(graph.node):
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        nodes.append(
            ir.Node(
                op_type=node.op_type,
                name=node.name or f"{node.op_type}_{index}",
                inputs=list(node.input),
                outputs=list(node.output),
                attrs={a.name: _attribute_value(a) for a in node.attribute},
                domain=domain,
                opset=opsets.get(domain, 0),
            )
        )
    outputs = [o.name for o in graph.output]
    if not outputs:
        raise CodegenError("the graph has no outputs", model_path=path)
    return ir.Graph(
        model_path=path, inputs=inputs, outputs=outputs, nodes=nodes, tensors=tensors, opsets=opsets
    )
