"""If, Loop and Scan: branches chosen at generation time or guarded at run time, bodies unrolled."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import assert_close, compile_and_run, run_generated, save
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _branch(name, nodes, outputs):
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])


def _if(cond, then_nodes, then_out, else_nodes, else_out, outputs, name="choose"):
    return helper.make_node("If", [cond], outputs, name=name,
                            then_branch=_branch("then", then_nodes, then_out),
                            else_branch=_branch("else", else_nodes, else_out))


def generate(path, shapes=None, values=None):
    return cli.generate_files(path, shapes or {}, cpu="generic", namespace="t", class_name="M", header_include="m.h",
                              model_label=path, input_values=values)


def _relu_or_neg(cond_nodes, cond, extra_inputs=()):
    """y = Relu(x) if cond else Neg(x), reading x from the enclosing graph."""
    return _model(cond_nodes + [_if(cond, [helper.make_node("Relu", ["x"], ["a"], name="relu")], [("a", F, [2, 3])],
                                    [helper.make_node("Neg", ["x"], ["b"], name="neg")], [("b", F, [2, 3])], ["y"])],
                  [("x", F, [2, 3])] + list(extra_inputs), [("y", F, [2, 3])])


def test_if_condition_folded_from_shapes_inlines_one_branch(tmp_path):
    # Shape(x)[0] == 2: known once the shape is, so only the Relu branch is generated.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["d0"], axis=0),
             helper.make_node("Equal", ["d0", "two"], ["c"])]
    model = _relu_or_neg(nodes, "c")
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0, np.int64), "zero"),
                                    numpy_helper.from_array(np.array(2, np.int64), "two")])
    path = save(model, tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    got, expected, files = compile_and_run(path, {"x": x}, workdir=str(tmp_path))
    assert_close(got, expected)
    assert "choose/then/relu" in files["source"] and "neg" not in files["source"]
    assert "runs only when" not in files["source"]


def test_if_condition_from_a_bound_input(tmp_path):
    # silero-vad's pattern: a sample-rate input selects the branch; bound, the other branch goes,
    # even though its outputs have another shape.
    model = _model(
        [helper.make_node("Equal", ["sr", "k16000"], ["c"]),
         _if("c", [helper.make_node("Relu", ["x"], ["a"], name="relu")], [("a", F, [2, 3])],
             [helper.make_node("ReduceSum", ["x"], ["b"], keepdims=0, name="sum")], [("b", F, [])], ["y"])],
        [("x", F, [2, 3]), ("sr", I64, [])], [("y", F, [2, 3])], {"k16000": np.array(16000, np.int64)})
    path = save(model, tmp_path)
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    got, expected, files = compile_and_run(path, {"x": x}, input_values={"sr": np.array(16000, np.int64)},
                                           workdir=str(tmp_path))
    assert_close(got, expected)
    assert "void Run(const float* x, float* y);" in files["header"]
    with pytest.raises(CodegenError, match="both branches must give the same shapes"):
        generate(path)


@pytest.mark.parametrize("cond", [True, False])
def test_if_condition_at_run_time_guards_both_branches(tmp_path, cond):
    path = save(_relu_or_neg([], "c", [("c", B, [])]), tmp_path)
    x = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    got, expected, files = compile_and_run(path, {"x": x, "c": np.array(cond)}, workdir=str(tmp_path))
    assert_close(got, expected)
    assert "runs only when 'c' is true" in files["source"] and "runs only when 'c' is false" in files["source"]
    # Only one branch runs: its result and the other's share arena bytes (one 64-byte slot).
    assert "kArenaBytes = 64;" in files["header"]


def _loop_model(trip, cond_init, body_nodes, body_outputs, carried, scans, inputs, initializers=(), cond=None):
    """Loop over body(iteration, cond, carried...) -> (cond, carried..., scans...)."""
    if cond is None:
        body_nodes.insert(0, helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, [])]
        + [helper.make_tensor_value_info(f"{n}_in", F, s) for n, s in carried],
        [helper.make_tensor_value_info(cond or "cond_out", B, [])]
        + [helper.make_tensor_value_info(n, F, s) for n, s in body_outputs])
    # An omitted condition would be true, but onnx's reference evaluator then runs no iteration.
    if not cond_init:
        cond_init = "start"
        initializers = dict(initializers, start=np.array(True))
    loop = helper.make_node("Loop", [trip, cond_init] + [n for n, _ in carried],
                            [f"{n}_final" for n, _ in carried] + [f"{n}_all" for n, _ in scans], name="loop", body=body)
    outputs = [(f"{n}_final", F, s) for n, s in carried] + [(f"{n}_all", F, s) for n, s in scans]
    return _model([loop], inputs, outputs, initializers)


def test_loop_with_static_trip_count_unrolls_and_folds_the_iteration(tmp_path):
    # As onnx's test_loop11: y += x[i:i+1] for i in 0..4, and every y as a scan output. The Slice
    # by the iteration number folds in each unrolled copy.
    body = [helper.make_node("Add", ["i", "one"], ["end"]),
            helper.make_node("Unsqueeze", ["i", "axis0"], ["start1"]),
            helper.make_node("Unsqueeze", ["end", "axis0"], ["end1"]),
            helper.make_node("Slice", ["table", "start1", "end1"], ["piece"]),
            helper.make_node("Add", ["y_in", "piece"], ["y_out"]),
            helper.make_node("Identity", ["y_out"], ["scan_out"])]
    model = _loop_model("trips", "", body, [("y_out", [1]), ("scan_out", [1])], [("y", [1])], [("scan", [5, 1])],
                        [("y", F, [1])],
                        {"trips": np.array(5, np.int64), "one": np.array(1, np.int64),
                         "axis0": np.array([0], np.int64), "table": np.arange(1, 6, dtype=np.float32)})
    path = save(model, tmp_path)
    got, expected, files = compile_and_run(path, {"y": np.array([0.5], np.float32)}, workdir=str(tmp_path))
    assert_close(got, expected)
    assert "loop/4/" in files["source"] and "loop/5/" not in files["source"]


@pytest.mark.parametrize("start", [0.25, 5.0])
def test_loop_condition_at_run_time_stops_the_later_iterations(tmp_path, start):
    # y doubles while it is below 10, at most 6 times: how often depends on the input.
    body = [helper.make_node("Mul", ["y_in", "two"], ["y_out"]),
            helper.make_node("ReduceMax", ["y_out"], ["peak"], keepdims=0),
            helper.make_node("Less", ["peak", "ten"], ["keep_going"])]
    model = _loop_model("trips", "", body, [("y_out", [2])], [("y", [2])], [], [("y", F, [2])],
                        {"trips": np.array(6, np.int64), "two": np.array(2, np.float32),
                         "ten": np.array(10, np.float32)}, cond="keep_going")
    path = save(model, tmp_path)
    got, expected, files = compile_and_run(path, {"y": np.array([start, 1.0], np.float32)}, workdir=str(tmp_path))
    assert_close(got, expected)
    assert "runs only when 'loop/2/keep_going'" not in files["source"]  # guarded by the selected condition
    assert "runs only when 'loop/1/cond'" in files["source"]


def test_loop_refusals(tmp_path):
    body = [helper.make_node("Identity", ["y_in"], ["y_out"])]
    path = save(_loop_model("n", "", list(body), [("y_out", [1])], [("y", [1])], [], [("y", F, [1]), ("n", I64, [])]),
                tmp_path, "runtime_trips.onnx")
    with pytest.raises(CodegenError, match="trip count 'n' depends on the model's inputs"):
        generate(path)
    body = [helper.make_node("Identity", ["y_in"], ["y_out"]), helper.make_node("Identity", ["y_in"], ["s_out"])]
    path = save(_loop_model("trips", "go", body, [("y_out", [1]), ("s_out", [1])], [("y", [1])], [("s", [3, 1])],
                            [("y", F, [1]), ("go", B, [])], {"trips": np.array(3, np.int64)}), tmp_path, "scan.onnx")
    with pytest.raises(CodegenError, match="condition 'go' depends on the model's inputs; scan outputs need a count"):
        generate(path)
    body = [helper.make_node("Identity", ["y_in"], ["y_out"])]
    path = save(_loop_model("trips", "", body, [("y_out", [1])], [("y", [1])], [], [("y", F, [1])],
                            {"trips": np.array(1 << 20, np.int64)}), tmp_path, "long.onnx")
    with pytest.raises(CodegenError, match="unrolls to more than"):
        generate(path)


def test_scan_directions_axes_and_states(tmp_path):
    # Two states (a running sum and a running max), two scan inputs read along different axes and
    # directions, two scan outputs written along different axes and directions.
    body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "a"], ["sum_out"]),
         helper.make_node("Max", ["max_in", "b"], ["max_out"]),
         helper.make_node("Mul", ["sum_out", "b"], ["prod"]),
         helper.make_node("Identity", ["max_out"], ["seen"])],
        "body",
        [helper.make_tensor_value_info(n, F, [3]) for n in ("sum_in", "max_in", "a", "b")],
        [helper.make_tensor_value_info(n, F, [3]) for n in ("sum_out", "max_out", "prod", "seen")])
    scan = helper.make_node("Scan", ["s0", "m0", "xa", "xb"], ["s", "m", "p", "q"], name="scan", body=body,
                            num_scan_inputs=2, scan_input_axes=[0, 1], scan_input_directions=[0, 1],
                            scan_output_axes=[1, 0], scan_output_directions=[1, 0])
    model = _model([scan], [("s0", F, [3]), ("m0", F, [3]), ("xa", F, [4, 3]), ("xb", F, [3, 4])],
                   [("s", F, [3]), ("m", F, [3]), ("p", F, [3, 4]), ("q", F, [4, 3])], opset=11)
    path = save(model, tmp_path)
    rng = np.random.default_rng(3)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in
             (("s0", (3,)), ("m0", (3,)), ("xa", (4, 3)), ("xb", (3, 4)))}
    # onnx's reference evaluator runs forward scans only: numpy is the reference here.
    total, peak, prods, seen = feeds["s0"], feeds["m0"], [], []
    for t in range(4):
        total = total + feeds["xa"][t]
        peak = np.maximum(peak, feeds["xb"][:, 3 - t])
        prods.append(total * feeds["xb"][:, 3 - t])
        seen.append(peak)
    expected = [total, peak, np.stack(prods[::-1], axis=1), np.stack(seen, axis=0)]
    got, _ = run_generated(path, feeds, expected, str(tmp_path))
    assert_close(dict(enumerate(got)), dict(enumerate(expected)))


def test_if_inside_a_loop_reads_the_body_and_the_outer_graph(tmp_path):
    # Each iteration adds x when its running value is negative, else subtracts it; the branches
    # read y_in (a body tensor) and x (the outer graph's).
    branch = _if("negative", [helper.make_node("Add", ["y_in", "x"], ["up"])], [("up", F, [2])],
                 [helper.make_node("Sub", ["y_in", "x"], ["down"])], [("down", F, [2])], ["y_out"], name="step")
    body = [helper.make_node("ReduceSum", ["y_in"], ["total"], keepdims=0),
            helper.make_node("Less", ["total", "zero"], ["negative"]), branch]
    model = _loop_model("trips", "", body, [("y_out", [2])], [("y", [2])], [], [("y", F, [2]), ("x", F, [2])],
                        {"trips": np.array(4, np.int64), "zero": np.array(0, np.float32)})
    path = save(model, tmp_path)
    feeds = {"y": np.array([-1.0, 0.25], np.float32), "x": np.array([0.5, 0.75], np.float32)}
    got, expected, _ = compile_and_run(path, feeds, workdir=str(tmp_path))
    assert_close(got, expected)


def test_a_refusal_in_a_run_time_branch_says_how_to_decide_it(tmp_path):
    # The else branch cannot run on x (a Reshape that does not fit): with the condition bound it
    # is dropped; at run time the refusal names the branch and the way out.
    model = _model(
        [helper.make_node("Equal", ["mode", "one"], ["c"]),
         _if("c", [helper.make_node("Relu", ["x"], ["a"])], [("a", F, [2, 3])],
             [helper.make_node("Reshape", ["x", "bad_shape"], ["b"])], [("b", F, [2, 3])], ["y"])],
        [("x", F, [2, 3]), ("mode", I64, [])], [("y", F, [2, 3])],
        {"one": np.array(1, np.int64), "bad_shape": np.array([4, 4], np.int64)})
    path = save(model, tmp_path)
    with pytest.raises(CodegenError, match="taken when 'c' is false; if the model's inputs never take it, bind"):
        generate(path)
    generate(path, values={"mode": ["1"]})


def test_a_branch_reading_a_later_tensor_is_refused(tmp_path):
    model = _relu_or_neg([], "c", [("c", B, [])])
    model.graph.node[0].attribute[0].g.node[0].input[0] = "later"
    model.graph.node.append(helper.make_node("Identity", ["x"], ["later"]))
    model.graph.output.append(helper.make_tensor_value_info("later", F, [2, 3]))
    with pytest.raises(CodegenError, match="'later'"):
        generate(save(model, tmp_path))


def test_scan8_is_refused(tmp_path):
    body = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "body",
                             [helper.make_tensor_value_info("a", F, [2])], [helper.make_tensor_value_info("b", F, [2])])
    scan = helper.make_node("Scan", ["", "x"], ["y"], body=body, num_scan_inputs=1)
    path = save(_model([scan], [("x", F, [1, 3, 2])], [("y", F, [1, 3, 2])], opset=8), tmp_path)
    with pytest.raises(CodegenError, match="Scan-8"):
        generate(path)
