"""Runs ops that have no float16/bfloat16 code of their own in float32, between Casts.

numpy (and so onnx's reference evaluator) computes on float16 by widening to float32 and rounding
each result back. An op registered without `narrow_floats=True` gets the same: each float16 or
bfloat16 input is read through a Cast to float32 (one Cast per tensor, shared by every consumer),
the op runs on float32, and each output whose type follows those inputs (the same type variable
in the op's schema) is rounded back through a Cast. Constant inputs fold, so their widened copies
are embedded as float32. Called by the propagate pass node by node, since only propagation knows
the element types.
"""

import onnx

from pure_model_codegen import ir, ops
from pure_model_codegen.errors import CodegenError


def _type_vars(params, count):
    """The type string of each of `count` actual inputs (or outputs) of a schema's formal params."""
    result = []
    for i in range(count):
        if not params:
            result.append(None)
            continue
        param = params[min(i, len(params) - 1)]
        variadic = param.option == onnx.defs.OpSchema.FormalParameterOption.Variadic
        result.append(param.type_str if i < len(params) or variadic else None)
    return result


def _schema(node):
    try:
        return onnx.defs.get_schema(node.op_type, node.opset, node.domain)
    except onnx.defs.SchemaError:
        return None


class Widener:
    """Splits nodes into [Casts to float32, the node on float32, Casts back] as needed."""

    def __init__(self, graph):
        self._graph = graph
        self._widened = {}  # narrow tensor -> the float32 copy of it
        self._names = set(graph.tensors)
        for node in graph.nodes:
            self._names.update(node.inputs)
            self._names.update(node.outputs)
        self._pending = {}  # float32 output -> (narrow dtype, original name), checked after inference

    def _fresh(self, base):
        name, suffix = base, 2
        while name in self._names:
            name, suffix = f"{base}_{suffix}", suffix + 1
        self._names.add(name)
        return name

    def _cast(self, node, source, target, dtype, label):
        return ir.Node(op_type="Cast", name=self._fresh(f"{node.name}/{label}"), inputs=[source], outputs=[target],
                       attrs={"to": dtype}, domain="", opset=self._graph.opsets.get("", node.opset))

    def split(self, node):
        """The nodes to propagate in place of `node` (just [node] when it needs no Casts)."""
        graph = self._graph
        narrow = {i: graph.tensor(name).dtype for i, name in enumerate(node.inputs)
                  if name and ir.is_narrow_float(graph.tensor(name).dtype)}
        if not narrow or ops.lookup(node).narrow_floats:
            return [node]
        before, after = [], []
        inputs = list(node.inputs)
        for i, dtype in narrow.items():
            name = inputs[i]
            if name not in self._widened:
                self._widened[name] = self._fresh(f"{name}_float32")
                before.append(self._cast(node, name, self._widened[name], 1, f"widen_{ir.dtype_name(dtype)}"))
            inputs[i] = self._widened[name]
        schema = _schema(node)
        in_vars = _type_vars(schema.inputs if schema else [], len(node.inputs))
        out_vars = _type_vars(schema.outputs if schema else [], len(node.outputs))
        narrowed_vars = {in_vars[i]: dtype for i, dtype in narrow.items()}
        outputs = list(node.outputs)
        for i, name in enumerate(node.outputs):
            # Without a schema, every float32 output is taken to follow the inputs.
            dtype = narrowed_vars.get(out_vars[i]) if schema else next(iter(narrow.values()))
            if not name or dtype is None:
                continue
            outputs[i] = self._fresh(f"{name}_float32")
            self._pending[outputs[i]] = (dtype, name)
            after.append(self._cast(node, outputs[i], name, dtype, f"round_to_{ir.dtype_name(dtype)}"))
        widened = ir.Node(op_type=node.op_type, name=node.name, inputs=inputs, outputs=outputs, attrs=node.attrs,
                          domain=node.domain, opset=node.opset)
        return before + [widened] + after

    def check(self, node):
        """After inference of a split node: the outputs to be rounded back are float32."""
        for name in node.outputs:
            if name in self._pending:
                tensor = self._graph.tensor(name)
                dtype, original = self._pending.pop(name)
                if tensor.dtype != 1:
                    raise CodegenError(f"computing on {ir.dtype_name(dtype)} in float32, output '{original}' came "
                                       f"out {ir.dtype_name(tensor.dtype)}, not float32", node=node)
