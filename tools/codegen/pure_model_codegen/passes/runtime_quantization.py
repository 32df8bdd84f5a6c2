"""Computes Sigmoid as ONNX Runtime does in models that quantize activations at run time.

DynamicQuantizeLinear (and com.microsoft's DynamicQuantizeLSTM) round activations to 8 bits with
a scale taken from the data, so a value within one ulp of a rounding boundary lands on either
step depending on the last bit of what produced it, and the difference then travels through
every later layer: two correct implementations of such a model differ by ~1e-2 of the output's
scale (ONNX Runtime differs that much from onnx's reference evaluator on ddddocr's model). The
other float operations such models use (Mul, Add, Div, Floor, Cast) are exactly rounded
everywhere; the transcendental one, Sigmoid, is not. So in these models every float32 Sigmoid
uses LogisticRational (kernels.h), ONNX Runtime's own approximation, and the generated code
gives ONNX Runtime's results bit for bit instead of approximately.
"""

from pure_model_codegen import ir
from pure_model_codegen.ops.elementwise import KERNEL_ATTR

_RUNTIME_QUANTIZERS = {("", "DynamicQuantizeLinear"), ("com.microsoft", "DynamicQuantizeLSTM")}


def quantizes_at_run_time(graph):
    return any((node.domain, node.op_type) in _RUNTIME_QUANTIZERS for node in graph.nodes)


def run(graph):
    if not quantizes_at_run_time(graph):
        return graph
    for node in graph.nodes:
        if (node.op_type == "Sigmoid" and not node.domain
                and graph.tensor(node.inputs[0]).dtype == ir.DTYPE_BY_NAME["float32"]):
            node.attrs[KERNEL_ATTR] = "LogisticRational"
    return graph
