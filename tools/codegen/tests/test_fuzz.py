"""Fuzzing: mutated models either fail with one clean line or generate code that computes the model.

Hypothesis mutates a few small, valid models (a CNN, a broadcasting arithmetic model, a data
movement model): it flips and truncates bytes of the serialized file, and changes attribute
values, dims, element types, op types, tensor names, node order and opset versions. Each mutant
goes through the generator and must end one of two ways:

  * a CodegenError whose message is one line starting with the model's label, or
  * generated code that, compiled and run, matches onnx's reference evaluator (where that can run
    the mutant and is trusted; compiling costs about half a second, so only the first
    MAX_COMPILES generated mutants are compiled, the rest are checked up to shape agreement).

Anything else (another exception, an output shape that disagrees with the reference, a wrong
number) fails the test. Derandomized, so CI sees the same examples on every run.
"""

import collections
import os
import tempfile

import numpy as np
import onnx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from helpers import compile_and_run, make_model
from pure_model_codegen import cli, frontend, passes
from pure_model_codegen.errors import CodegenError

LABEL = "//fuzz:mutant.onnx"
# PURE_MODEL_FUZZ_EXAMPLES=5000 runs a longer, randomized search (for finding bugs, not for CI).
DEEP = int(os.environ.get("PURE_MODEL_FUZZ_EXAMPLES", "0"))
MAX_EXAMPLES = DEEP or 150
MAX_COMPILES = 40 if not DEEP else DEEP // 5
# Mutants bigger than this are generated but not run (the reference evaluator is slow).
MAX_RUN_ELEMENTS = 1 << 16

STATS = collections.Counter()
RNG = np.random.default_rng(11)


def _rand(*shape):
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def _cnn():
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1, alpha=1.0, beta=1.0),
    ]
    inits = {"w": _rand(3, 2, 3, 3), "b": _rand(3), "fc_w": _rand(4, 27), "fc_b": _rand(4)}
    return make_model(nodes, [("x", [1, 2, 6, 6])], [("y", [1, 4])], inits, opset=17)


def _broadcast():
    nodes = [
        helper.make_node("Add", ["a", "bias"], ["s"], name="add"),
        helper.make_node("Mul", ["s", "c"], ["m"], name="mul"),
        helper.make_node("Sub", ["m", "k"], ["d"], name="sub"),
        helper.make_node("Max", ["d", "a"], ["y"], name="max"),
    ]
    inits = {"bias": _rand(3, 1), "k": _rand(1)}
    return make_model(nodes, [("a", [2, 3, 4]), ("c", [4])], [("y", [2, 3, 4])], inits, opset=14)


def _movement():
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["r"], name="reshape"),
        helper.make_node("Gather", ["r", "idx"], ["g"], name="gather", axis=1),
        helper.make_node("Concat", ["g", "r"], ["cat"], name="concat", axis=1),
        helper.make_node("Unsqueeze", ["cat", "axes"], ["y"], name="unsqueeze"),
    ]
    inits = {"shape": np.array([2, 12], np.int64), "idx": np.array([3, 0, -1], np.int64),
             "axes": np.array([0], np.int64)}
    return make_model(nodes, [("x", [2, 3, 4])], [("y", [1, 2, 15])], inits, opset=13)


BASES = [_cnn(), _broadcast(), _movement()]

OPS = ["Relu", "Sigmoid", "Exp", "Abs", "Neg", "Add", "Mul", "Sub", "Div", "Max", "Sum", "Gemm", "MatMul", "Conv",
       "MaxPool", "AveragePool", "GlobalAveragePool", "Transpose", "Reshape", "Flatten", "Gather", "Concat",
       "Unsqueeze", "Squeeze", "Identity", "Clip", "Cast", "Shape", "Slice", "Hardmax", "NoSuchOp", ""]
ATTRS = ["axis", "strides", "pads", "kernel_shape", "dilations", "group", "perm", "transA", "transB", "alpha",
         "beta", "auto_pad", "ceil_mode", "allowzero", "count_include_pad", "to", "broadcast"]
INTS = [-(1 << 40), -3, -2, -1, 0, 1, 2, 3, 4, 7, 1 << 31, 1 << 62]
DIMS = [0, 1, 2, 3, 4, 5, 27, -1, -7, 1 << 31, 1 << 40]
DTYPES = [1, 2, 3, 6, 7, 9, 10, 11, 0, 99]
OPSETS = [-1, 0, 1, 5, 6, 7, 9, 10, 11, 12, 13, 14, 17, 19, 21, 23, 24, 99]
DOMAINS = ["", "ai.onnx", "ai.onnx.ml", "com.microsoft"]


def _attribute_value(data):
    kind = data.draw(st.sampled_from(["int", "ints", "float", "string", "floats"]), label="attr kind")
    if kind == "int":
        return data.draw(st.sampled_from(INTS))
    if kind == "ints":
        return data.draw(st.lists(st.sampled_from(INTS), max_size=5))
    if kind == "float":
        return data.draw(st.sampled_from([0.0, -1.0, 0.5, 2.0, float("inf"), float("nan")]))
    if kind == "floats":
        return data.draw(st.lists(st.sampled_from([0.0, 1.5]), min_size=1, max_size=3))
    return data.draw(st.sampled_from(["SAME_UPPER", "VALID", "NOTSET", "garbage", ""]))


def _tensor_names(graph):
    names = [v.name for v in graph.input] + [t.name for t in graph.initializer]
    return names + [o for n in graph.node for o in n.output]


def _mutate_model(data, model):
    """One structural mutation of `model`, in place."""
    graph = model.graph
    kind = data.draw(st.sampled_from([
        "attr", "del_attr", "init_dims", "init_reshape", "init_dtype", "init_raw", "input_dim", "input_dtype",
        "op_type", "input_name", "output_name", "opset", "domain", "swap", "drop_node", "output_dim",
    ]), label="mutation")
    if kind in ("attr", "del_attr", "op_type", "input_name", "output_name", "domain") and not graph.node:
        return
    node = graph.node[data.draw(st.integers(0, max(len(graph.node) - 1, 0)), label="node")] if graph.node else None
    if kind == "attr":
        name = data.draw(st.sampled_from(sorted({a.name for a in node.attribute} | set(ATTRS))), label="attr")
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        value = _attribute_value(data)
        attr = helper.make_attribute(name, value, attr_type=onnx.AttributeProto.INTS if value == [] else None)
        node.attribute.extend(kept + [attr])
    elif kind == "del_attr" and node.attribute:
        del node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
    elif kind in ("init_dims", "init_reshape", "init_dtype", "init_raw") and graph.initializer:
        init = graph.initializer[data.draw(st.integers(0, len(graph.initializer) - 1), label="initializer")]
        try:
            value = numpy_helper.to_array(init)
        except Exception:  # noqa: BLE001  already broken by an earlier mutation
            value = np.zeros(0, np.float32)
        if kind == "init_dims":  # the dims change, the data does not
            dims = list(init.dims) or [1]
            dims[data.draw(st.integers(0, len(dims) - 1))] = data.draw(st.sampled_from(DIMS))
            del init.dims[:]
            init.dims.extend(dims)
        elif kind == "init_reshape":  # consistent new data of another shape
            shape = data.draw(st.lists(st.integers(0, 5), max_size=4), label="shape")
            rng = np.random.default_rng(data.draw(st.integers(0, 1 << 16), label="seed"))
            new = rng.uniform(-3, 3, shape).astype(value.dtype)
            init.CopyFrom(numpy_helper.from_array(new, init.name))
        elif kind == "init_dtype":
            np_type = data.draw(st.sampled_from([np.float64, np.int64, np.int32, np.uint8, np.bool_, np.float16]))
            init.CopyFrom(numpy_helper.from_array(value.astype(np_type), init.name))
        else:
            init.raw_data = init.raw_data[: data.draw(st.integers(0, max(len(init.raw_data), 1)))]
    elif kind in ("input_dim", "input_dtype", "output_dim"):
        infos = graph.input if kind != "output_dim" else graph.output
        info = infos[data.draw(st.integers(0, len(infos) - 1))]
        tensor_type = info.type.tensor_type
        if kind == "input_dtype":
            tensor_type.elem_type = data.draw(st.sampled_from(DTYPES))
        elif tensor_type.shape.dim:
            dim = tensor_type.shape.dim[data.draw(st.integers(0, len(tensor_type.shape.dim) - 1))]
            if data.draw(st.booleans(), label="symbolic"):
                dim.dim_param = "n"
            else:
                dim.dim_value = data.draw(st.sampled_from(DIMS))
    elif kind == "op_type":
        node.op_type = data.draw(st.sampled_from(OPS))
    elif kind in ("input_name", "output_name"):
        ports = node.input if kind == "input_name" else node.output
        if ports:
            index = data.draw(st.integers(0, len(ports) - 1))
            ports[index] = data.draw(st.sampled_from(_tensor_names(graph) + ["", "ghost"]))
    elif kind == "opset":
        model.opset_import[0].version = data.draw(st.sampled_from(OPSETS))
    elif kind == "domain":
        node.domain = data.draw(st.sampled_from(DOMAINS))
    elif kind == "swap" and len(graph.node) > 1:
        i, j = data.draw(st.integers(0, len(graph.node) - 1)), data.draw(st.integers(0, len(graph.node) - 1))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(graph.node[i])
        b.CopyFrom(graph.node[j])
        graph.node[i].CopyFrom(b)
        graph.node[j].CopyFrom(a)
    elif kind == "drop_node" and graph.node:
        del graph.node[data.draw(st.integers(0, len(graph.node) - 1))]


# Mutations that often leave a valid model: they reach code generation and the compiled code.
UNARY = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Floor", "Ceil", "Sin", "Cos", "Erf", "Softplus",
         "LeakyRelu", "Elu", "HardSigmoid", "HardSwish", "Identity"]
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum"]
PLAUSIBLE_ATTRS = {
    "Conv": {"strides": lambda d: d.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)),
             "dilations": lambda d: d.draw(st.lists(st.integers(1, 2), min_size=2, max_size=2)),
             "pads": lambda d: d.draw(st.lists(st.integers(0, 2), min_size=4, max_size=4)),
             "auto_pad": lambda d: d.draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]))},
    "MaxPool": {"kernel_shape": lambda d: d.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)),
                "strides": lambda d: d.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)),
                "pads": lambda d: d.draw(st.lists(st.integers(0, 1), min_size=4, max_size=4)),
                "ceil_mode": lambda d: d.draw(st.integers(0, 1))},
    "Gemm": {"alpha": lambda d: d.draw(st.sampled_from([0.5, -1.0, 2.0])),
             "beta": lambda d: d.draw(st.sampled_from([0.0, 0.5, -2.0])),
             "transA": lambda d: d.draw(st.integers(0, 1)), "transB": lambda d: d.draw(st.integers(0, 1))},
    "Flatten": {"axis": lambda d: d.draw(st.integers(-4, 4))},
    "Concat": {"axis": lambda d: d.draw(st.integers(-2, 2))},
    "Gather": {"axis": lambda d: d.draw(st.integers(-2, 2))},
    "Transpose": {"perm": lambda d: d.draw(st.permutations([0, 1, 2]))},
}


def _mutate_benign(data, model):
    """One mutation of `model` that has a fair chance of leaving it valid, in place."""
    graph = model.graph
    kind = data.draw(st.sampled_from(["weights", "attr", "op_type", "opset", "input_dim"]), label="benign")
    if kind == "weights":
        floats = [t for t in graph.initializer if t.data_type == TensorProto.FLOAT]
        if floats:
            init = floats[data.draw(st.integers(0, len(floats) - 1), label="initializer")]
            value = numpy_helper.to_array(init).copy().reshape(-1)
            if value.size:
                index = data.draw(st.integers(0, value.size - 1))
                # Finite only: ONNX leaves max(0, NaN) open, and the generated Relu gives 0 (IEEE maxNum)
                # where the reference evaluator's numpy gives NaN.
                value[index] = data.draw(st.sampled_from([0.0, -0.0, 1e30, -1e-30, 3.5, -7.25]))
                init.CopyFrom(numpy_helper.from_array(value.reshape(tuple(init.dims)), init.name))
    elif kind == "attr":
        node = graph.node[data.draw(st.integers(0, len(graph.node) - 1), label="node")]
        choices = PLAUSIBLE_ATTRS.get(node.op_type, {})
        if choices:
            name = data.draw(st.sampled_from(sorted(choices)), label="attr")
            kept = [a for a in node.attribute if a.name != name and not (name == "auto_pad" and a.name == "pads")]
            del node.attribute[:]
            node.attribute.extend(kept + [helper.make_attribute(name, choices[name](data))])
    elif kind == "op_type":
        node = graph.node[data.draw(st.integers(0, len(graph.node) - 1), label="node")]
        if node.op_type in UNARY:
            node.op_type = data.draw(st.sampled_from(UNARY), label="op")
        elif node.op_type in BINARY:
            node.op_type = data.draw(st.sampled_from(BINARY), label="op")
    elif kind == "opset":
        model.opset_import[0].version = data.draw(st.sampled_from([13, 14, 17, 18, 19, 21]), label="opset")
    else:
        info = graph.input[data.draw(st.integers(0, len(graph.input) - 1))]
        dims = info.type.tensor_type.shape.dim
        if dims:
            dims[data.draw(st.integers(0, len(dims) - 1))].dim_value = data.draw(st.integers(1, 5))


def _mutant(data):
    """Serialized bytes of a mutated base model."""
    model = onnx.ModelProto()
    model.CopyFrom(BASES[data.draw(st.integers(0, len(BASES) - 1), label="base")])
    mode = data.draw(st.sampled_from(["benign", "benign", "hostile", "hostile", "bytes"]), label="mode")
    if mode == "benign":
        for _ in range(data.draw(st.integers(1, 2), label="mutations")):
            _mutate_benign(data, model)
    elif mode == "hostile":
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            _mutate_model(data, model)
    blob = bytearray(model.SerializeToString())
    if mode == "bytes":
        if data.draw(st.booleans(), label="truncate"):
            blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
        else:
            for _ in range(data.draw(st.integers(1, 4))):
                pos = data.draw(st.integers(0, len(blob) - 1))
                blob[pos] ^= data.draw(st.integers(1, 255))
    return bytes(blob)


def _reference_is_trusted(model):
    """onnx's reference evaluator is wrong for Softmax before opset 13 and BatchNormalization 9-13."""
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    ops = {n.op_type for n in model.graph.node}
    return not ({"Softmax", "LogSoftmax"} & ops and opset < 13) and not ("BatchNormalization" in ops and opset < 14)


def _check_generated(path, workdir):
    graph = passes.run_all(frontend.import_model(path))
    tensors = [graph.tensor(n) for n in graph.inputs + graph.outputs]
    if any(t.dtype != 1 for t in tensors) or any(t.elements > MAX_RUN_ELEMENTS for t in graph.tensors.values()):
        STATS["generated, not run (non-float or large)"] += 1
        return
    model = onnx.load(path)
    if not _reference_is_trusted(model):
        STATS["generated, reference not trusted"] += 1
        return
    rng = np.random.default_rng(0)
    feeds = {name: rng.uniform(-2, 2, graph.tensor(name).shape).astype(np.float32) for name in graph.inputs}
    try:
        with np.errstate(all="ignore"):
            expected = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # noqa: BLE001  the reference cannot run this mutant: nothing to compare with
        STATS["generated, reference failed"] += 1
        return
    for name, ref in zip(graph.outputs, expected):
        # A shape that disagrees with the reference would be wrong code, compiled or not.
        assert tuple(np.asarray(ref).shape) == graph.tensor(name).shape, (
            f"output '{name}': generated shape {graph.tensor(name).shape}, reference {np.asarray(ref).shape}")
    if STATS["compiled and matched"] >= MAX_COMPILES:
        STATS["generated, shapes match (compile budget spent)"] += 1
        return
    got, expected, _ = compile_and_run(path, feeds, workdir=workdir)
    for name, ref in expected.items():
        ref = np.asarray(ref, dtype=np.float32)
        finite = np.abs(ref[np.isfinite(ref)])
        scale = max(float(finite.max()) if finite.size else 0.0, 1.0)
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4 * scale, equal_nan=True,
                                   err_msg=f"output '{name}' of a generated mutant")
    STATS["compiled and matched"] += 1


@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not DEEP, database=None, print_blob=False,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
@given(st.data())
def _fuzz_one(data):
    blob = _mutant(data)
    with tempfile.TemporaryDirectory(prefix="pure_model_fuzz_") as workdir:
        path = os.path.join(workdir, "mutant.onnx")
        with open(path, "wb") as f:
            f.write(blob)
        try:
            cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="Model", header_include="model.h",
                               model_label=LABEL)
        except CodegenError as e:
            message = str(e)
            assert "\n" not in message and message.startswith(LABEL + ": "), message
            STATS["clean error"] += 1
            if os.environ.get("PURE_MODEL_FUZZ_LOG"):
                with open(os.environ["PURE_MODEL_FUZZ_LOG"], "a", encoding="utf-8") as log:
                    log.write(message + "\n")
            return
        _check_generated(path, workdir)


def test_fuzz_mutated_models():
    STATS.clear()
    _fuzz_one()
    print("fuzz:", dict(sorted(STATS.items())))
    # Guard against a fuzzer that quietly stopped exercising one side.
    assert STATS["clean error"] >= MAX_EXAMPLES // 4, STATS
    assert STATS["compiled and matched"] >= 10, STATS
