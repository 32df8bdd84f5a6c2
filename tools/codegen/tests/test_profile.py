"""--profile_steps: the instrumented variant behind <name>_profile times each step of Run() and
names the steps in the descriptor; without the flag nothing of that is generated."""

import os
import shutil
import subprocess

import numpy as np
from onnx import helper
from onnx.reference import ReferenceEvaluator

from helpers import HERE, _kernels_include, assert_close, make_model, save
from pure_model_codegen import cli, frontend, passes

# The repository root, where tools/harness/model_descriptor.h lives (also under bazel test: the
# runfiles tree has the same layout).
_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

# Runs the model through its descriptor, as the harness mains do: raw float32 inputs and outputs
# in the files named on the command line, then the step count, and each step's name and time.
_MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "tools/harness/model_descriptor.h"
using pure_model_harness::ModelDescriptor;
int main(int argc, char** argv) {
  const ModelDescriptor& m = pure_model_harness::Model();
  if (argc != 1 + m.num_inputs + m.num_outputs) return 2;
  std::vector<std::vector<unsigned char>> in(m.num_inputs), out(m.num_outputs);
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (int i = 0; i < m.num_inputs; ++i) {
    in[i].resize(m.inputs[i].bytes);
    FILE* f = std::fopen(argv[1 + i], "rb");
    if (!f || std::fread(in[i].data(), 1, in[i].size(), f) != in[i].size()) return 3;
    std::fclose(f);
    in_ptrs.push_back(in[i].data());
  }
  for (int i = 0; i < m.num_outputs; ++i) {
    out[i].resize(m.outputs[i].bytes);
    out_ptrs.push_back(out[i].data());
  }
  void* instance = m.create();
  for (int run = 0; run < 3; ++run) m.run(instance, in_ptrs.data(), out_ptrs.data());
  for (int i = 0; i < m.num_outputs; ++i) {
    FILE* f = std::fopen(argv[1 + m.num_inputs + i], "wb");
    if (!f || std::fwrite(out[i].data(), 1, out[i].size(), f) != out[i].size()) return 4;
    std::fclose(f);
  }
  std::printf("%d\n", m.num_steps);
  if (m.step_times != nullptr) {
    std::vector<double> ns(m.num_steps);
    m.step_times(instance, ns.data());
    for (int i = 0; i < m.num_steps; ++i) std::printf("%s\t%.17g\n", m.step_names[i], ns[i]);
  }
  m.destroy(instance);
  return 0;
}
"""


def _model():
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv/1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),  # fuses into the Conv
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Add", ["p", "p"], ["s"], name="twice"),
        helper.make_node("Flatten", ["s"], ["f"], name="flat"),  # a view: no code, still a step
        helper.make_node("MatMul", ["f", "m"], ["y"], name="head \"quoted\""),
    ]
    initializers = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                    "b": rng.standard_normal(4).astype(np.float32),
                    "m": rng.standard_normal((64, 5)).astype(np.float32)}
    return make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 5])], initializers)


def _generate(path, **kwargs):
    return cli.generate_files(path, {}, cpu="generic", namespace="t", class_name="Model",
                              header_include="model.h", model_label="//t:model.onnx", **kwargs)


def _compile_and_run(files, workdir, feeds, num_outputs):
    for name, kind in (("model.h", "header"), ("model.cc", "source"), ("descriptor.cc", "descriptor"),
                       ("model_weights.S", "weights_asm")):
        with open(os.path.join(workdir, name), "w") as f:
            f.write(files[kind])
    # Where the assembler looks, from its working directory: generate_files' default .incbin path.
    with open(os.path.join(workdir, "weights.bin"), "wb") as f:
        f.write(files["weights"])
    with open(os.path.join(workdir, "main.cc"), "w") as f:
        f.write(_MAIN)
    binary = os.path.join(workdir, "model_bin")
    compiler = shutil.which("g++") or "c++"
    result = subprocess.run(
        [compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-I", workdir, "-I", _kernels_include(),
         "-I", _ROOT] + [os.path.join(workdir, n) for n in ("main.cc", "model.cc", "descriptor.cc", "model_weights.S")] +
        ["-o", binary], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, f"generated code does not compile:\n{result.stderr[-4000:]}"
    argv = []
    for i, value in enumerate(feeds):
        path = os.path.join(workdir, f"in{i}.bin")
        value.astype(np.float32).tofile(path)
        argv.append(path)
    outs = [os.path.join(workdir, f"out{i}.bin") for i in range(num_outputs)]
    run = subprocess.run([binary] + argv + outs, capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    steps = [line.split("\t") for line in lines[1:]]
    return int(lines[0]), [name for name, _ in steps], [float(ns) for _, ns in steps], outs


def test_profiled_model_times_and_names_every_step(tmp_path):
    path = save(_model(), tmp_path)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (expected,) = ReferenceEvaluator(path).run(None, {"x": x})
    graph = passes.run_all(frontend.import_model(path, {}))

    files = _generate(path, profile_steps=True)
    num_steps, names, times, outs = _compile_and_run(files, str(tmp_path), [x], 1)

    # One step per node of the planned graph (the Relu fused into the Conv), named
    # "N: node name (Op)" in the order of Run().
    assert num_steps == len(graph.nodes) == 5
    assert names == ["1: conv/1 (Conv)", "2: pool (MaxPool)", "3: twice (Add)", "4: flat (Flatten)",
                     '5: head "quoted" (MatMul)']
    assert all(t >= 0 for t in times) and sum(times) > 0
    got = np.fromfile(outs[0], dtype=np.float32).reshape(expected.shape)
    assert_close({"y": got}, {"y": expected})
    # Each step's comment is still there, and each is followed by its timer.
    assert files["source"].count("// Step ") == 5
    assert files["source"].count("+= ProfileLap(&profile_clock_);") == 5


def test_plain_model_has_no_profiling(tmp_path):
    path = save(_model(), tmp_path)
    plain = _generate(path)
    assert plain == _generate(path, profile_steps=False)
    for kind in ("header", "source", "descriptor"):
        assert "chrono" not in plain[kind] and "StepTimes" not in plain[kind]
    # No node names in the plain descriptor or source beyond the step comments.
    assert "conv/1 (Conv)" not in plain["descriptor"]
    # The plain descriptor leaves the step fields at their defaults, without a warning.
    x = np.zeros((1, 3, 8, 8), dtype=np.float32)
    num_steps, names, _, _ = _compile_and_run(plain, str(tmp_path), [x], 1)
    assert (num_steps, names) == (0, [])


def test_profiling_renames_nothing(tmp_path):
    # A tensor named like the profiling identifiers: the plain names stay, profiling takes others.
    # (Softmax, not an elementwise op, so that the two steps stay apart and the tensor exists.)
    nodes = [helper.make_node("Relu", ["x"], ["profile_clock"], name="a"),
             helper.make_node("Softmax", ["profile_clock"], ["y"], name="b")]
    path = save(make_model(nodes, [("x", [1, 16])], [("y", [1, 16])]), tmp_path)
    plain, profiled = _generate(path), _generate(path, profile_steps=True)
    assert "profile_clock_ = " in plain["source"]
    assert "std::int64_t profile_clock_2 = 0;" in profiled["source"]
    x = np.random.default_rng(2).standard_normal((1, 16)).astype(np.float32)
    num_steps, names, _, outs = _compile_and_run(profiled, str(tmp_path), [x], 1)
    assert (num_steps, names) == (2, ["1: a (Relu)", "2: b (Softmax)"])
    relu = np.maximum(x, 0)
    expected = np.exp(relu - relu.max()) / np.exp(relu - relu.max()).sum()
    np.testing.assert_allclose(np.fromfile(outs[0], dtype=np.float32).reshape(1, 16), expected, rtol=1e-5)
