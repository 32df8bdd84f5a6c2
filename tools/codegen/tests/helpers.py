"""Shared test helpers: build small ONNX models, generate C++, compile and run it, and compare
with onnx's reference evaluator."""

import os
import shutil
import subprocess
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from pure_model_codegen import cli

HERE = os.path.dirname(os.path.abspath(__file__))


def _kernels_include():
    # In a checkout: <repo>/runtime/include. Under bazel test the runfiles tree has the same layout.
    candidate = os.path.normpath(os.path.join(HERE, "..", "..", "..", "runtime", "include"))
    if os.path.exists(os.path.join(candidate, "pure_model", "kernels.h")):
        return candidate
    raise FileNotFoundError("runtime/include/pure_model/kernels.h not found next to the tests")


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    """inputs/outputs: [(name, shape)] of float32 tensors; initializers: {name: array}.

    An output shape of None is filled in by onnx's shape inference (the checker wants one).
    """
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs if s is not None],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    if any(s is None for _, s in outputs):
        inferred = onnx.shape_inference.infer_shapes(model)
        known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        del model.graph.output[:]
        model.graph.output.extend(
            known[n] if s is None else helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs)
    return model


def save(model, directory, name="model.onnx"):
    path = os.path.join(directory, name)
    onnx.save(model, path)
    return path


_MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include "model.h"
// Reads each input's bytes from a file named on the command line; writes each output's bytes.
[[maybe_unused]] static void Load(const char* path, unsigned char* data, std::size_t n) {
  FILE* f = std::fopen(path, "rb");
  if (!f || std::fread(data, 1, n, f) != n) std::abort();
  std::fclose(f);
}
static void Store(const char* path, const unsigned char* data, std::size_t n) {
  FILE* f = std::fopen(path, "wb");
  if (!f || std::fwrite(data, 1, n, f) != n) std::abort();
  std::fclose(f);
}
static t::Model model;
%(buffers)s
int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
%(loads)s
  model.Run(%(args)s);
%(stores)s
  return 0;
}
"""


def write_generated(files, workdir, stem="model"):
    """Writes the generated library's files as the CLI would; returns the two to compile."""
    names = {"header": f"{stem}.h", "source": f"{stem}.cc", "weights": f"{stem}_weights.bin",
             "weights_asm": f"{stem}_weights.S"}
    for kind, name in names.items():
        with open(os.path.join(workdir, name), "wb" if kind == "weights" else "w") as f:
            f.write(files[kind])
    return [os.path.join(workdir, names["source"]), os.path.join(workdir, names["weights_asm"])]


def run_generated(model_path, feeds, expected, workdir, input_shapes=None, input_values=None, **codegen_options):
    """Generates C++ for the model, compiles it with g++ and runs it on `feeds` (any element type).

    `expected` (one array per graph output) gives each output's dtype and shape; `input_values`
    ({name: array}) binds those inputs at generation time (they are not in `feeds`). Returns the
    outputs as arrays and the generated files. PURE_MODEL_TEST_CXXFLAGS adds compiler flags
    (e.g. sanitizers). `codegen_options` go to cli.generate_files (e.g. obfuscate=True).
    """
    from pure_model_codegen import frontend, ir

    # PURE_MODEL_TEST_OBFUSCATE=1 runs every generated-code test with masked weights.
    if os.environ.get("PURE_MODEL_TEST_OBFUSCATE", "") not in ("", "0"):
        codegen_options.setdefault("obfuscate", True)

    files = cli.generate_files(model_path, input_shapes or {k: v.shape for k, v in feeds.items()}, cpu="generic",
                               namespace="t", class_name="Model", header_include="model.h", model_label="test",
                               input_values={k: frontend.value_texts(v) for k, v in (input_values or {}).items()},
                               weights_path=os.path.join(workdir, "model_weights.bin"), **codegen_options)
    sources = write_generated(files, workdir)
    buffers, loads, stores, args, argv = [], [], [], [], []
    for i, value in enumerate(feeds.values()):
        value = np.ascontiguousarray(value)
        buffers.append(f"alignas(64) static unsigned char in{i}[{max(value.nbytes, 1)}];")
        loads.append(f"  Load(argv[{len(argv) + 1}], in{i}, {value.nbytes});")
        argv.append(os.path.join(workdir, f"in{i}.bin"))
        value.tofile(argv[-1])
        args.append(f"reinterpret_cast<const {ir.cpp_type(ir.dtype_of_numpy(value.dtype))}*>(in{i})")
    for i, ref in enumerate(expected):
        ref = np.asarray(ref)
        buffers.append(f"alignas(64) static unsigned char out{i}[{max(ref.nbytes, 1)}];")
        stores.append(f"  Store(argv[{len(argv) + 1}], out{i}, {ref.nbytes});")
        argv.append(os.path.join(workdir, f"out{i}.bin"))
        args.append(f"reinterpret_cast<{ir.cpp_type(ir.dtype_of_numpy(ref.dtype))}*>(out{i})")
    with open(os.path.join(workdir, "main.cc"), "w") as f:
        f.write(_MAIN % dict(buffers="\n".join(buffers), loads="\n".join(loads), stores="\n".join(stores),
                             args=", ".join(args)))
    binary = os.path.join(workdir, "model_bin")
    result = subprocess.run(
        [shutil.which("g++") or "c++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-I", workdir,
         "-I", _kernels_include(), os.path.join(workdir, "main.cc"), *sources, "-o", binary]
        + os.environ.get("PURE_MODEL_TEST_CXXFLAGS", "").split(),
        capture_output=True, text=True)
    assert result.returncode == 0, f"generated code does not compile:\n{result.stderr[-4000:]}"
    subprocess.run([binary] + argv, check=True)
    got = [np.fromfile(argv[len(feeds) + i], dtype=np.asarray(ref).dtype).reshape(np.asarray(ref).shape)
           for i, ref in enumerate(expected)]
    return got, files


def compile_and_run(model_path, feeds, input_shapes=None, workdir=None, input_values=None, **codegen_options):
    """(generated outputs, reference evaluator's outputs, generated files), by output name.

    `input_values` ({name: array}) are bound at generation time; the reference evaluator gets them
    as inputs."""
    workdir = workdir or tempfile.mkdtemp(prefix="pure_model_test_")
    model = onnx.load(model_path)
    outputs = [o.name for o in model.graph.output]
    expected = ReferenceEvaluator(model).run(None, {**feeds, **(input_values or {})})
    got, files = run_generated(model_path, feeds, expected, workdir, input_shapes, input_values,
                               **codegen_options)
    return dict(zip(outputs, got)), dict(zip(outputs, expected)), files


def assert_close(got, expected, rtol=1e-4):
    """Within rtol of each output's largest finite magnitude; NaNs where, and only where, expected."""
    for name in expected:
        ref = expected[name].astype(np.float32)
        out = got[name]
        nan_ref, nan_out = np.isnan(ref), np.isnan(out)
        assert np.array_equal(nan_ref, nan_out), f"output {name}: NaN at different positions"
        finite = ~nan_ref
        scale = max(float(np.abs(ref[finite]).max()) if finite.any() else 0.0, 1e-6)
        err = float(np.abs(out[finite] - ref[finite]).max()) if finite.any() else 0.0
        assert err <= rtol * scale, f"output {name}: max abs error {err} > {rtol} * {scale}"


def check_model(tmp_path, nodes, feeds, outputs, inits=(), opset=18, rtol=1e-4, atol=1e-6):
    """Runs `nodes` (any element types) generated and in onnx's reference evaluator; asserts they agree.

    feeds: {name: array} graph inputs; outputs: output names (their types and shapes come from the
    reference evaluator). Several independent nodes in one model cost one compile.
    """
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in feeds.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    expected = [np.asarray(r) for r in ReferenceEvaluator(model).run(None, feeds)]
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(r.dtype), r.shape)
                              for n, r in zip(outputs, expected))
    os.makedirs(tmp_path, exist_ok=True)
    path = save(model, str(tmp_path))
    got, files = run_generated(path, feeds, expected, str(tmp_path))
    for name, out, ref in zip(outputs, got, expected):
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(out, ref, err_msg=name)
    return files
