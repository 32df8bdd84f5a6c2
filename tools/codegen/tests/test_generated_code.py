"""Properties of the generated code itself: determinism, comments, memory plan."""

import json
import re

import numpy as np
from onnx import helper

from helpers import make_model, save
from pure_model_codegen import cli, frontend, memory, passes


def _chain_model(ops=("Relu", "Sigmoid", "Tanh", "Abs")):
    names = ["x", "a", "b", "c", "y"]
    nodes = [helper.make_node(op, [names[i]], [names[i + 1]], name=name)
             for i, (op, name) in enumerate(zip(ops, ("first", "second", "third", "fourth")))]
    return make_model(nodes, [("x", [1, 256])], [("y", [1, 256])])


# Steps that are not elementwise, so that each stays a step of its own with its output in the arena.
_UNFUSED_CHAIN = ("Softmax", "LogSoftmax", "Softmax", "LogSoftmax")


def _generate(path):
    return cli.generate_files(path, {}, cpu="x86_64", namespace="a::b", class_name="Chain",
                              header_include="chain.h", model_label="//a/b:chain.onnx")


def test_byte_identical_for_same_input(tmp_path):
    path = save(_chain_model(), tmp_path)
    first, second = _generate(path), _generate(path)
    assert first == second
    for text in first.values():
        if isinstance(text, str):
            assert str(tmp_path) not in text  # no absolute paths leak into the sources


def test_every_node_has_a_commented_step(tmp_path):
    source = _generate(save(_chain_model(_UNFUSED_CHAIN), tmp_path))["source"]
    for name in ("first", "second", "third", "fourth"):
        assert re.search(rf"// Step \d+: node '{name}'", source)


def test_a_fused_step_names_every_node_it_covers(tmp_path):
    source = _generate(save(_chain_model(), tmp_path))["source"]
    assert re.search(r"// Step 1: nodes 'first' \(Relu\), 'second' \(Sigmoid\), 'third' \(Tanh\), 'fourth' \(Abs\) "
                     r"in one loop", source)
    assert "// Step 2" not in source


def test_arena_reuses_dead_buffers(tmp_path):
    graph = passes.run_all(frontend.import_model(save(_chain_model(_UNFUSED_CHAIN), tmp_path)))
    plan = memory.plan(graph)
    # a, b, c are 1 KiB each; at most two are alive at once.
    assert plan.arena_bytes == 2 * 1024
    offsets = {name: plan.storage[name].offset for name in ("a", "b", "c")}
    assert offsets["a"] != offsets["b"] and offsets["b"] != offsets["c"]


def test_no_heap_allocation_in_run(tmp_path):
    source = _generate(save(_chain_model(), tmp_path))["source"]
    for forbidden in ("new ", "malloc", "std::vector", "std::string"):
        assert forbidden not in source


def test_weights_folded_away_are_not_embedded(tmp_path):
    inits = {"s": np.ones(3, np.float32), "b": np.zeros(3, np.float32), "m": np.zeros(3, np.float32),
             "v": np.ones(3, np.float32)}
    model = make_model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
                       [("x", [1, 3, 2, 2])], [("y", None)], inits)
    source = cli.generate_files(save(model, tmp_path), {}, cpu="generic", namespace="t", class_name="M",
                                header_include="m.h", model_label="m")["source"]
    assert "Constant 'm'" not in source and "Constant 'v'" not in source


def test_report_counts_ops_flops_and_bytes(tmp_path):
    import json

    inits = {"w": np.zeros((4, 3, 3, 3), np.float32), "fc": np.zeros((4, 5), np.float32),
             "shape": np.array([1, 4], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Reshape", ["f", "shape"], ["p"], name="reshape"),
             helper.make_node("MatMul", ["p", "fc"], ["y"], name="fc")]
    model = make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 5])], inits)
    files = cli.generate_files(save(model, tmp_path), {}, cpu="aarch64", namespace="t", class_name="M",
                               header_include="m.h", model_label="//t:m.onnx")
    report = json.loads(files["report"])
    conv_flops = 2 * (1 * 4 * 8 * 8) * 3 * 3 * 3  # outputs x (C x KH x KW) multiply-adds
    gap_flops = 4  # one per output element
    matmul_flops = 2 * 5 * 4
    assert report["flops"] == conv_flops + gap_flops + matmul_flops
    assert report["ops"] == {"Conv": 1, "Flatten": 1, "GlobalAveragePool": 1, "MatMul": 1, "Reshape": 1}
    assert report["fused_activations"] == 1 and report["cpu"] == "aarch64" and report["model"] == "//t:m.onnx"
    # The conv's weights are packed in panels of 8 output channels: 4 real rows + 4 zero rows; the
    # MatMul's constant [4, 5] in one panel 32 columns wide.
    assert report["weight_bytes"] == (8 * 3 * 3 * 3 + 4 * 32) * 4
    assert report["generated_bytes"]["source"] == len(files["source"].encode())


def test_weights_go_to_a_blob_the_assembler_embeds(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5
    bias = np.array([7, 8, 9], np.float32)
    # Elementwise ops read constants as they are (a MatMul might pack its weights).
    nodes = [helper.make_node("Mul", ["x", "w"], ["m"], name="scale"),
             helper.make_node("Add", ["m", "bias"], ["y"], name="add")]
    model = make_model(nodes, [("x", [2, 3])], [("y", [2, 3])], {"w": w, "bias": bias})
    files = cli.generate_files(save(model, tmp_path), {}, cpu="x86_64", namespace="a::b", class_name="M",
                               header_include="m.h", model_label="//a/b:m.onnx", weights_path="a/b/m_weights.bin")
    blob, asm, source = files["weights"], files["weights_asm"], files["source"]
    # Each tensor at a multiple of 64 bytes, as the kernels read it, little-endian.
    assert blob[:24] == w.astype("<f4").tobytes()
    assert blob[24:64] == bytes(40) and blob[64:] == bias.astype("<f4").tobytes()
    assert '.incbin "a/b/m_weights.bin"' in asm
    for symbol, offset, size in (("pure_model_1a1b1M_w0", 0, 6), ("pure_model_1a1b1M_w1", 64, 3)):
        assert f".set {symbol}, .Lpure_model_1a1b1M_weights + {offset}" in asm
        assert f".size {symbol}, {size * 4}" in asm
        assert f" float {symbol}[{size}];" in source
    assert "0.5f" not in source  # no literal weights left in the source
    report = json.loads(files["report"])
    assert report["generated_bytes"]["weights"] == 76


def test_two_models_link_into_one_program(tmp_path):
    # Two classes meet in one file and one link: their include guards and weight symbols must
    # not collide, even when the namespaces differ only in where `::` falls.
    from helpers import _kernels_include, write_generated
    import subprocess

    model = make_model([helper.make_node("Add", ["x", "c"], ["y"])], [("x", [4])], [("y", [4])],
                       {"c": np.array([1, 2, 3, 4], np.float32)})
    path = save(model, tmp_path)
    sources = []
    for stem, namespace in (("one", "a::b_c"), ("two", "a_b::c")):
        files = cli.generate_files(path, {}, cpu="generic", namespace=namespace, class_name="M",
                                   header_include=f"{stem}.h", model_label="m",
                                   weights_path=str(tmp_path / f"{stem}_weights.bin"))
        sources += write_generated(files, str(tmp_path), stem)
    (tmp_path / "main.cc").write_text(
        '#include "one.h"\n#include "two.h"\nint main() {\n  static a::b_c::M one;\n  static a_b::c::M two;\n'
        "  float x[4] = {1, 1, 1, 1}, y[4], z[4];\n  one.Run(x, y);\n  two.Run(x, z);\n"
        "  return y[3] == 5.f && z[0] == 2.f ? 0 : 1;\n}\n")
    binary = tmp_path / "main"
    subprocess.run(["g++", "-std=c++17", "-O1", "-I", str(tmp_path), "-I", _kernels_include(),
                    str(tmp_path / "main.cc"), *sources, "-o", str(binary)], check=True)
    subprocess.run([str(binary)], check=True)
