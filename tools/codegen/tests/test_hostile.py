"""Hostile models: each kind of bad input fails through the CLI with one clear line, exit status 1.

One test per item of the catalogue: not ONNX, truncated, bad opsets and domains, cycles, inputs
that nothing produces, mismatched element types, attributes out of range, initializers whose data
disagrees with their dims, external data outside the model's directory, absurd shapes. Each runs
the real command line and checks that stderr is exactly one line naming the model's label (and the
node where there is one), that it says what is wrong, that there is no traceback and that no
output file was written.
"""

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from absl import flags
from onnx import TensorProto, helper, numpy_helper

from helpers import make_model
from pure_model_codegen import cli

CODEGEN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL_PREFIX = "//hostile:"


def _argv(tmp_path, model_path, label, extra):
    return [f"--model={model_path}", f"--model_label={label}", "--header_include=m.h",
            f"--out_header={tmp_path}/m.h", f"--out_source={tmp_path}/m.cc", *extra]


def run_cli(tmp_path, model_path, label, *extra):
    """The real command line, in a new interpreter."""
    return subprocess.run([sys.executable, "-m", "pure_model_codegen", *_argv(tmp_path, model_path, label, extra)],
                          cwd=CODEGEN_DIR, capture_output=True, text=True)


def run_cli_in_process(tmp_path, model_path, label, *extra):
    """cli.main as `python3 -m pure_model_codegen` runs it (absl's app.run exits with its return
    value), without the half second a new interpreter takes to import onnx."""
    flags.FLAGS.unparse_flags()
    argv = flags.FLAGS(["pure_model_codegen", *_argv(tmp_path, model_path, label, extra)])
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        returncode = cli.main(argv)
    flags.FLAGS.unparse_flags()
    return subprocess.CompletedProcess(argv, returncode, "", stderr.getvalue())


# The catalogue items that also run through a new interpreter, so the real exit status is seen.
REAL_PROCESS = {"notes.onnx", "truncated.onnx", "cycle.onnx", "strides.onnx", "raw_size.onnx",
                "external.onnx", "big_input.onnx"}


def expect_error(tmp_path, model_path, *fragments, extra=(), node=None):
    """Runs the CLI on `model_path` and checks the one-line error; returns the message."""
    label = LABEL_PREFIX + os.path.basename(str(model_path))
    run = run_cli if os.path.basename(str(model_path)) in REAL_PROCESS else run_cli_in_process
    result = run(tmp_path, model_path, label, *extra)
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    prefix = f"pure_model_codegen: error: {label}: "
    assert lines[0].startswith(prefix), lines[0]
    if node is not None:
        assert lines[0].startswith(prefix + f"node '{node}' ("), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert not os.path.exists(tmp_path / "m.h") and not os.path.exists(tmp_path / "m.cc")
    return lines[0]


def save(model, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def graph_model(nodes, inputs, outputs, initializers=(), opsets=(("", 17),)):
    """A model built without make_model's shape inference (which would reject some of these)."""
    graph = helper.make_graph(
        nodes, "hostile",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], ir_version=9)


def relu_model():
    return make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", [1, 4])], [("y", [1, 4])])


def float_init(name, shape):
    return numpy_helper.from_array(np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape), name)


# --- the file itself -------------------------------------------------------------------------------

def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are release notes, not a model\n")
    expect_error(tmp_path, path, "not an ONNX model")


def test_truncated(tmp_path):
    model = make_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [("x", [64])], [("y", [64])],
                       {"w": np.ones(64, np.float32)})
    data = model.SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) * 2 // 3])
    expect_error(tmp_path, path, "not an ONNX model")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    expect_error(tmp_path, path, "the file is empty")


# --- opsets and domains ----------------------------------------------------------------------------

def test_unknown_onnx_opset(tmp_path):
    model = relu_model()
    model.opset_import[0].version = 999
    expect_error(tmp_path, save(model, tmp_path, "opset999.onnx"), "imports ai.onnx opset 999",
                 "this generator supports up to")


def test_invalid_opset_version(tmp_path):
    model = relu_model()
    model.opset_import[0].version = -3
    expect_error(tmp_path, save(model, tmp_path, "opset_negative.onnx"), "ai.onnx opset -3",
                 "not an opset version")


def test_unknown_domain(tmp_path):
    node = helper.make_node("FusedGelu", ["x"], ["y"], name="gelu", domain="com.example")
    model = graph_model([node], [("x", 1, [4])], [("y", 1, [4])], opsets=(("", 17), ("com.example", 1)))
    expect_error(tmp_path, save(model, tmp_path, "domain.onnx"), "com.example.FusedGelu",
                 "domain 'com.example' is not supported", node="gelu")


def test_domain_not_imported(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="relu", domain="com.example")
    model = graph_model([node], [("x", 1, [4])], [("y", 1, [4])])
    expect_error(tmp_path, save(model, tmp_path, "unimported.onnx"), "uses domain com.example",
                 "does not import", node="relu")


# --- graph structure -------------------------------------------------------------------------------

def test_cycle(tmp_path):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Relu", ["a"], ["y"], name="out")]
    model = graph_model(nodes, [("x", 1, [4])], [("y", 1, [4])])
    expect_error(tmp_path, save(model, tmp_path, "cycle.onnx"),
                 "the graph has a cycle: 'second' -> 'first' -> 'second'")


def test_not_topologically_sorted(tmp_path):
    nodes = [helper.make_node("Relu", ["a"], ["y"], name="late_reader"),
             helper.make_node("Relu", ["x"], ["a"], name="producer")]
    model = graph_model(nodes, [("x", 1, [4])], [("y", 1, [4])])
    expect_error(tmp_path, save(model, tmp_path, "unsorted.onnx"),
                 "input 'a' is produced by node 'producer', which comes later", "topological order",
                 node="late_reader")


def test_missing_initializer(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "weights"], ["y"], name="conv")]
    model = graph_model(nodes, [("x", 1, [1, 1, 4, 4])], [("y", 1, [1, 1, 4, 4])])
    expect_error(tmp_path, save(model, tmp_path, "no_weights.onnx"),
                 "input 'weights' is not produced by any node, initializer or graph input", node="conv")


def test_graph_output_produced_by_nothing(tmp_path):
    model = graph_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", 1, [4])],
                        [("y", 1, [4]), ("ghost", 1, [4])])
    expect_error(tmp_path, save(model, tmp_path, "ghost_output.onnx"),
                 "graph output 'ghost' is not produced by any node, initializer or graph input")


def test_tensor_defined_twice(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="one"), helper.make_node("Neg", ["x"], ["y"], name="two")]
    model = graph_model(nodes, [("x", 1, [4])], [("y", 1, [4])])
    expect_error(tmp_path, save(model, tmp_path, "ssa.onnx"), "output 'y' is also an output of node 'one'",
                 node="two")


def test_name_with_newline_stays_one_line(tmp_path):
    nodes = [helper.make_node("Add", ["x", "evil\nname"], ["y"], name="add")]
    model = graph_model(nodes, [("x", 1, [4])], [("y", 1, [4])])
    expect_error(tmp_path, save(model, tmp_path, "newline.onnx"), "input 'evil\\nname' is not produced", node="add")


def test_name_not_utf8(tmp_path):
    data = bytearray(relu_model().SerializeToString())
    data[data.index(b"relu")] = 0x80  # the node's name (protobuf then returns bytes, not str)
    path = tmp_path / "not_utf8.onnx"
    path.write_bytes(bytes(data))
    expect_error(tmp_path, path, "the name of node #0 is not valid UTF-8 (b'\\x80elu')")


# --- element types ---------------------------------------------------------------------------------

def test_add_of_float_and_int64(tmp_path):
    model = graph_model([helper.make_node("Add", ["x", "offset"], ["y"], name="add")], [("x", 1, [4])],
                        [("y", 1, [4])], [numpy_helper.from_array(np.arange(4, dtype=np.int64), "offset")])
    message = expect_error(tmp_path, save(model, tmp_path, "add_types.onnx"), "ai.onnx.Add", node="add")
    assert "'offset' int64" in message and "float32" in message


def test_conv_with_int_weights(tmp_path):
    model = graph_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [("x", 1, [1, 1, 4, 4])],
                        [("y", 1, [1, 1, 4, 4])], [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.int64), "w")])
    message = expect_error(tmp_path, save(model, tmp_path, "conv_int.onnx"), "ai.onnx.Conv", "'w'", node="conv")
    assert "int64" in message


def test_declared_output_type_disagrees(tmp_path):
    model = graph_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", 1, [4])],
                        [("y", TensorProto.INT64, [4])])
    expect_error(tmp_path, save(model, tmp_path, "output_type.onnx"),
                 "graph output 'y' is declared int64 but the graph computes float32[4]")


def test_declared_output_shape_disagrees(tmp_path):
    model = graph_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", 1, [1, 4])],
                        [("y", 1, [1, 5])])
    expect_error(tmp_path, save(model, tmp_path, "output_shape.onnx"),
                 "graph output 'y' is declared with shape [1,5] but the graph computes float32[1,4] (if the "
                 "declaration is wrong, state the computed shape with output_shapes = {\"y\": \"1,4\"})")


def test_output_shapes_states_what_the_graph_computes(tmp_path):
    # ddddocr's model declares its output [1, seqlen] and computes [20, 1, 8210]: with the shape
    # stated, the model builds and the header carries the computed shape.
    model = graph_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", 1, [1, 4])],
                        [("y", 1, [1, 5])])
    path = save(model, tmp_path, "output_shape.onnx")
    result = run_cli_in_process(tmp_path, path, LABEL_PREFIX + "output_shape.onnx", "--output_shape=y=1,4")
    assert result.returncode == 0, result.stderr
    assert "kYShape = {1, 4}" in (tmp_path / "m.h").read_text()


@pytest.mark.parametrize("flag, fragment", [
    ("--output_shape=y=1,5", "output_shapes gives graph output 'y' shape [1,5] but the graph computes float32[1,4]"),
    ("--output_shape=y=4", "output_shapes gives graph output 'y' shape [4] but the graph computes float32[1,4]"),
    ("--output_shape=z=1,4", "output_shapes names 'z', which the model does not have as an output (its outputs: y)"),
    ("--output_shape=y=1,x", "output shape '1,x' is not a comma-separated list of integers"),
])
def test_output_shapes_is_checked(tmp_path, flag, fragment):
    model = graph_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", 1, [1, 4])],
                        [("y", 1, [1, 5])])
    expect_error(tmp_path, save(model, tmp_path, "output_shape.onnx"), fragment, extra=(flag,))


# --- attributes out of range -----------------------------------------------------------------------

def conv_model(**attrs):
    return make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)], [("x", [1, 4, 8, 8])],
                      [("y", [1, 4, 8, 8])], {"w": np.ones((4, 4, 3, 3), np.float32)})


def test_negative_strides(tmp_path):
    expect_error(tmp_path, save(conv_model(strides=[-1, 1]), tmp_path, "strides.onnx"),
                 "strides must be positive, got [-1, 1]", node="conv")


def test_negative_pads(tmp_path):
    expect_error(tmp_path, save(conv_model(pads=[1, -2, 1, 1]), tmp_path, "pads.onnx"), "negative pads",
                 node="conv")


def test_group_zero(tmp_path):
    expect_error(tmp_path, save(conv_model(group=0), tmp_path, "group0.onnx"), "group must be at least 1, got 0",
                 node="conv")


def test_negative_kernel_shape(tmp_path):
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, -2])],
                       [("x", [1, 1, 4, 4])], [("y", [1, 1, 2, 2])])
    expect_error(tmp_path, save(model, tmp_path, "kernel.onnx"), "kernel_shape must hold 2 positive values",
                 node="pool")


def test_pool_pads_not_smaller_than_kernel(tmp_path):
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2],
                                         pads=[2, 0, 0, 0])], [("x", [1, 1, 4, 4])], [("y", [1, 1, 5, 3])])
    expect_error(tmp_path, save(model, tmp_path, "pool_pads.onnx"), "must each be smaller than kernel_shape",
                 node="pool")


def test_axis_out_of_range(tmp_path):
    model = graph_model([helper.make_node("Concat", ["x", "x"], ["y"], name="cat", axis=5)], [("x", 1, [2, 3])],
                        [("y", 1, [4, 3])])
    expect_error(tmp_path, save(model, tmp_path, "axis.onnx"), "axis 5 is out of range for rank 2", node="cat")


def test_gather_index_out_of_range(tmp_path):
    model = graph_model([helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=0)],
                        [("x", 1, [3, 2])], [("y", 1, [2, 2])],
                        [numpy_helper.from_array(np.array([0, 7], np.int64), "idx")])
    expect_error(tmp_path, save(model, tmp_path, "gather.onnx"), "index 7 is out of range for axis 0 of size 3",
                 node="gather")


def test_slice_step_zero(tmp_path):
    inits = [numpy_helper.from_array(np.array(v, np.int64), n)
             for n, v in (("starts", [0]), ("ends", [2]), ("axes", [1]), ("steps", [0]))]
    model = graph_model([helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"], name="slice")],
                        [("x", 1, [2, 4])], [("y", 1, [2, 2])], inits)
    expect_error(tmp_path, save(model, tmp_path, "slice_step.onnx"), "step 0 on axis 1", node="slice")


def test_clip_with_nan_bound(tmp_path):
    inits = [numpy_helper.from_array(np.array(np.nan, np.float32), "lo")]
    model = graph_model([helper.make_node("Clip", ["x", "lo"], ["y"], name="clip")], [("x", 1, [4])],
                        [("y", 1, [4])], inits)
    expect_error(tmp_path, save(model, tmp_path, "clip_nan.onnx"), "a bound is NaN", node="clip")


# --- tensors whose data disagrees with their dims --------------------------------------------------

def test_initializer_raw_data_shorter_than_dims(tmp_path):
    weights = numpy_helper.from_array(np.zeros(10, np.float32), "w")
    del weights.dims[:]
    weights.dims.append(1000)
    model = graph_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [("x", 1, [1000])],
                        [("y", 1, [1000])], [weights])
    expect_error(tmp_path, save(model, tmp_path, "raw_size.onnx"),
                 "initializer 'w': its dims [1000] make 1000 float32 elements (4000 bytes), but raw_data holds 40 bytes")


def test_initializer_typed_data_count(tmp_path):
    weights = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], float_data=[1.0, 2.0, 3.0])
    model = graph_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [("x", 1, [4])],
                        [("y", 1, [4])], [weights])
    expect_error(tmp_path, save(model, tmp_path, "typed_size.onnx"),
                 "initializer 'w': its dims [4] make 4 float32 elements (16 bytes), but float_data holds 3 values")


def test_initializer_value_outside_its_type(tmp_path):
    weights = onnx.TensorProto(name="w", data_type=TensorProto.UINT8, dims=[2], int32_data=[7, 300])
    model = graph_model([helper.make_node("Identity", ["w"], ["y"], name="id")], [],
                        [("y", TensorProto.UINT8, [2])], [weights])
    expect_error(tmp_path, save(model, tmp_path, "uint8_range.onnx"),
                 "initializer 'w' is uint8 but holds the value 300, outside 0..255")


# --- external data ---------------------------------------------------------------------------------

def external_model(tmp_path, location, offset=None, length=None, name="external.onnx"):
    weights = float_init("w", [4])
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = weights.external_data.add()
            entry.key, entry.value = key, str(value)
    model = graph_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [("x", 1, [4])],
                        [("y", 1, [4])], [weights])
    return save(model, tmp_path, name)


def test_external_data_with_dotdot(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.ones(4, np.float32).tobytes())
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    path = external_model(model_dir, "../secret.bin")
    expect_error(tmp_path, path, "initializer 'w' has external data at '../secret.bin', which escapes the model's "
                 "directory")


def test_external_data_absolute_path(tmp_path):
    path = external_model(tmp_path, "/etc/passwd", name="external_absolute.onnx")
    expect_error(tmp_path, path, "initializer 'w' has external data at the absolute path '/etc/passwd'")


def test_external_data_missing_file(tmp_path):
    path = external_model(tmp_path, "weights.bin", name="external_missing.onnx")
    expect_error(tmp_path, path, "initializer 'w' has external data in 'weights.bin', which does not exist in the "
                 "model's directory")


def test_external_data_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.bin")  # reading a FIFO would block the build forever
    path = external_model(tmp_path, "pipe.bin", name="external_fifo.onnx")
    expect_error(tmp_path, path, "initializer 'w' has external data in 'pipe.bin', which is not a regular file")


def test_external_data_too_short(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.ones(3, np.float32).tobytes())
    path = external_model(tmp_path, "weights.bin", name="external_short.onnx")
    expect_error(tmp_path, path, "initializer 'w': its dims [4] make 4 float32 elements (16 bytes), but its "
                 "external data in 'weights.bin' is 12 bytes")


def test_external_data_past_end_of_file(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.ones(4, np.float32).tobytes())
    path = external_model(tmp_path, "weights.bin", offset=8, length=16, name="external_past_end.onnx")
    expect_error(tmp_path, path, "reads bytes 8 to 24 of external data file 'weights.bin', which has 16 bytes")


def test_external_data_inside_the_model_directory_works(tmp_path):
    # The control: legitimate external data loads from the model's directory, whatever the
    # working directory (onnx's checker alone would look in the working directory).
    model_dir = tmp_path / "models" / "sub"
    model_dir.mkdir(parents=True)
    (model_dir / "data").mkdir()
    (model_dir / "data" / "weights.bin").write_bytes(b"\0" * 8 + np.arange(4, dtype=np.float32).tobytes())
    path = external_model(model_dir, "data/weights.bin", offset=8, length=16)
    result = run_cli(tmp_path, path, "//hostile:external_ok.onnx")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m_weights.bin").read_bytes()[:16] == np.arange(4, dtype=np.float32).tobytes()


# --- absurd shapes ---------------------------------------------------------------------------------

def test_absurd_input_shape(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", ["n", "m"])],
                       [("y", ["n", "m"])])
    expect_error(tmp_path, save(model, tmp_path, "big_input.onnx"),
                 "input 'x' of shape [65536, 65536] has 4294967296 elements, more than the 2147483647",
                 extra=["--input_shape=x=65536,65536"])


def test_absurd_dimension(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", ["n", 0])], [("y", ["n", 0])])
    expect_error(tmp_path, save(model, tmp_path, "big_dim.onnx"), "input 'x' has dimension 0 = 9223372036854775807",
                 "more than the 2147483647 (2^31 - 1) the generated code can index",
                 extra=["--input_shape=x=9223372036854775807,0"])


def test_absurd_initializer_dims(tmp_path):
    weights = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20])
    model = graph_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [("x", 1, [1])],
                        [("y", 1, [1 << 20, 1 << 20])], [weights])
    expect_error(tmp_path, save(model, tmp_path, "big_init.onnx"),
                 "initializer 'w' of shape [1048576, 1048576] has 1099511627776 elements")


def test_absurd_computed_shape(tmp_path):
    shape = numpy_helper.from_array(np.array([1 << 16, 1 << 16, 1 << 16], np.int64), "shape")
    model = graph_model([helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
                         helper.make_node("Add", ["x", "big"], ["y"], name="add")],
                        [("x", 1, [1])], [("y", 1, [1 << 16] * 3)], [shape])
    expect_error(tmp_path, save(model, tmp_path, "big_computed.onnx"),
                 "output 'big' of shape [65536, 65536, 65536] has 281474976710656 elements", node="fill")


def test_absurd_batch_of_matrices(tmp_path):
    # Within the per-tensor limits, but the batch offsets would fill hundreds of megabytes of source.
    model = graph_model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                        [("a", 1, [1 << 23, 1, 1]), ("b", 1, [1, 1])], [("y", 1, [1 << 23, 1, 1])])
    expect_error(tmp_path, save(model, tmp_path, "big_batch.onnx"),
                 "needs a table of 8388608 a_offsets, more than the 4194304 the generator writes into source",
                 node="mm")


# --- the safety net --------------------------------------------------------------------------------

_CRASHING_MAIN = """
import dataclasses
import sys
from pure_model_codegen import cli, ops

def boom(node, graph):
    raise KeyError("synthetic failure")

ops._REGISTRY["Relu"] = dataclasses.replace(ops._REGISTRY["Relu"], infer=boom)
sys.argv[0] = "pure_model_codegen"
cli.run()
"""


def test_unexpected_exception_is_one_line_internal_error(tmp_path):
    path = save(relu_model(), tmp_path, "crash.onnx")
    args = [sys.executable, "-c", _CRASHING_MAIN, f"--model={path}", "--model_label=//hostile:crash.onnx",
            "--header_include=m.h", f"--out_header={tmp_path}/m.h", f"--out_source={tmp_path}/m.cc"]
    env = {k: v for k, v in os.environ.items() if k != "PURE_MODEL_CODEGEN_DEBUG"}
    result = subprocess.run(args, cwd=CODEGEN_DIR, capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "pure_model_codegen: error: internal error while generating //hostile:crash.onnx: KeyError: "
        "'synthetic failure' (a bug in the generator: please report it with the model; "
        "PURE_MODEL_CODEGEN_DEBUG=1 shows the traceback)"]
    debug = subprocess.run(args, cwd=CODEGEN_DIR, capture_output=True, text=True,
                           env=dict(env, PURE_MODEL_CODEGEN_DEBUG="1"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "synthetic failure" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("pure_model_codegen: error: internal error while generating")
