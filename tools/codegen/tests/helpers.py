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
// Reads each input as raw float32 from argv files, writes each output raw to argv files.
static void Load(const char* path, float* data, std::size_t n) {
  FILE* f = std::fopen(path, "rb");
  if (!f || std::fread(data, sizeof(float), n, f) != n) std::abort();
  std::fclose(f);
}
static void Store(const char* path, const float* data, std::size_t n) {
  FILE* f = std::fopen(path, "wb");
  if (!f || std::fwrite(data, sizeof(float), n, f) != n) std::abort();
  std::fclose(f);
}
static t::Model model;
%(buffers)s
int main(int argc, char** argv) {
  (void)argc;
%(loads)s
  model.Run(%(args)s);
%(stores)s
  return 0;
}
"""


def compile_and_run(model_path, feeds, input_shapes=None, workdir=None):
    """Generates C++ for the model, compiles it with g++ and runs it on `feeds` (float32 only)."""
    workdir = workdir or tempfile.mkdtemp(prefix="pure_model_test_")
    files = cli.generate_files(model_path, input_shapes or {k: v.shape for k, v in feeds.items()}, cpu="generic",
                               namespace="t", class_name="Model", header_include="model.h", model_label="test")
    with open(os.path.join(workdir, "model.h"), "w") as f:
        f.write(files["header"])
    with open(os.path.join(workdir, "model.cc"), "w") as f:
        f.write(files["source"])
    model = onnx.load(model_path)
    outputs = [o.name for o in model.graph.output]
    evaluator_outputs = ReferenceEvaluator(model).run(None, feeds)
    buffers, loads, stores, args = [], [], [], []
    argv = []
    for i, (name, value) in enumerate(feeds.items()):
        buffers.append(f"static float in{i}[{max(value.size, 1)}];")
        loads.append(f"  Load(argv[{len(argv) + 1}], in{i}, {value.size});")
        path = os.path.join(workdir, f"in{i}.bin")
        value.astype(np.float32).tofile(path)
        argv.append(path)
        args.append(f"in{i}")
    for i, ref in enumerate(evaluator_outputs):
        buffers.append(f"static float out{i}[{max(ref.size, 1)}];")
        stores.append(f"  Store(argv[{len(argv) + 1}], out{i}, {ref.size});")
        argv.append(os.path.join(workdir, f"out{i}.bin"))
        args.append(f"out{i}")
    with open(os.path.join(workdir, "main.cc"), "w") as f:
        f.write(_MAIN % dict(buffers="\n".join(buffers), loads="\n".join(loads), stores="\n".join(stores),
                             args=", ".join(args)))
    binary = os.path.join(workdir, "model_bin")
    compiler = shutil.which("g++") or "c++"
    result = subprocess.run(
        [compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-I", workdir, "-I", _kernels_include(),
         os.path.join(workdir, "main.cc"), os.path.join(workdir, "model.cc"), "-o", binary],
        capture_output=True, text=True)
    assert result.returncode == 0, f"generated code does not compile:\n{result.stderr[-4000:]}"
    subprocess.run([binary] + argv, check=True)
    got = [np.fromfile(argv[len(feeds) + i], dtype=np.float32).reshape(ref.shape)
           for i, ref in enumerate(evaluator_outputs)]
    return dict(zip(outputs, got)), dict(zip(outputs, evaluator_outputs)), files


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
