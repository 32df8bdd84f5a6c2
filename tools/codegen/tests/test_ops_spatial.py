"""Spatial resampling (Resize, Upsample, ConvTranspose), generated, compiled and run.

onnx's own backend cases for these ops feed scales, sizes and roi as graph inputs, which the
generator must refuse (they decide the output's shape). Here each case's extra inputs become
initializers, the cases of one opset merge into one model (one compile for dozens of cases), and
the generated code's outputs are compared with the cases' expected outputs. Further cases
compare with onnx's reference evaluator, and the refusals are checked.
"""

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from helpers import run_generated
from pure_model_codegen import cli
from pure_model_codegen.errors import CodegenError

RNG = np.random.default_rng(5)


def _backend_cases(module_name, prefix):
    """onnx's node test cases whose names start with `prefix`, built by importing their module."""
    import importlib
    import warnings

    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module(f"onnx.backend.test.case.node.{module_name}")
    return [c for c in node_cases._NodeTestCases if c.name.startswith(prefix)]


def _merged(cases, data_inputs=1):
    """One model running every case side by side: (model, feeds, expected outputs).

    The first `data_inputs` inputs of each case stay graph inputs; the rest become initializers.
    """
    nodes, inputs, outputs, inits, feeds, expected = [], [], [], [], {}, []
    for k, case in enumerate(cases):
        (ins, outs), = case.data_sets[:1]
        graph = case.model.graph
        rename = {vi.name: f"c{k}_{vi.name}" for vi in list(graph.input) + list(graph.output)}
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = f"c{k}_{case.name}"
            copy.input[:] = [rename.get(n, n) if n else "" for n in node.input]
            copy.output[:] = [rename.get(n, n) for n in node.output]
            nodes.append(copy)
        for i, (vi, value) in enumerate(zip(graph.input, ins)):
            name = rename[vi.name]
            if i < data_inputs:
                inputs.append(helper.make_tensor_value_info(name, vi.type.tensor_type.elem_type, value.shape))
                feeds[name] = value
            else:
                inits.append(numpy_helper.from_array(np.asarray(value), name))
        for vi, value in zip(graph.output, outs):
            outputs.append(helper.make_tensor_value_info(rename[vi.name], vi.type.tensor_type.elem_type, value.shape))
            expected.append(np.asarray(value))
    opset = cases[0].model.opset_import[0].version
    model = helper.make_model(helper.make_graph(nodes, "cases", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    return model, feeds, expected


def _run_merged(tmp_path, cases, data_inputs=1, rtol=1e-3, atol=1e-5):
    by_opset = {}
    for case in cases:
        by_opset.setdefault(case.model.opset_import[0].version, []).append(case)
    for opset, group in sorted(by_opset.items()):
        workdir = os.path.join(str(tmp_path), f"opset{opset}")
        os.makedirs(workdir)
        model, feeds, expected = _merged(group, data_inputs)
        path = os.path.join(workdir, "model.onnx")
        onnx.save(model, path)
        got, _ = run_generated(path, feeds, expected, workdir)
        for case, out, ref in zip(group, got, expected):
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol, err_msg=case.name)


# --- Resize and Upsample -----------------------------------------------------------------------

def test_resize_backend_cases(tmp_path):
    cases = _backend_cases("resize", "test_resize") + _backend_cases("upsample", "test_upsample")
    assert len(cases) == 40
    _run_merged(tmp_path, cases)


# --- ConvTranspose -----------------------------------------------------------------------------

def test_convtranspose_backend_cases(tmp_path):
    cases = _backend_cases("convtranspose", "test_convtranspose")
    assert len(cases) == 11
    # X and W stay inputs: the weights reach the kernel at run time, unpacked.
    _run_merged(tmp_path, cases, data_inputs=2)


def _graph_model(nodes, feeds, inits, opset, outputs):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(next(iter(feeds.values())).dtype), None)
         for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _check_nodes(tmp_path, nodes, feeds, inits=(), opset=19, rtol=1e-4, outputs=None, equivalent=None):
    """Runs `nodes` as one model whose outputs are `outputs` (default: every node's) and compares
    them with onnx's reference evaluator. Where the evaluator lacks the op or version (Upsample-7,
    Resize-10) or gets it wrong (ConvTranspose with groups of several output channels),
    `equivalent` = (nodes, opset) computes the same outputs from ops it does run right."""
    outputs = outputs or [o for n in nodes for o in n.output]
    model = _graph_model(nodes, feeds, inits, opset, outputs)
    reference = _graph_model(*equivalent[:1], feeds, inits, equivalent[1], outputs) if equivalent else model
    expected = ReferenceEvaluator(reference).run(None, feeds)
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(e.dtype), e.shape)
                              for o, e in zip(outputs, expected))
    path = os.path.join(str(tmp_path), "model.onnx")
    onnx.save(model, path)
    got, files = run_generated(path, feeds, expected, str(tmp_path))
    for name, out, ref in zip(outputs, got, expected):
        assert out.shape == ref.shape, f"{name}: shape {out.shape}, expected {ref.shape}"
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(out, ref, err_msg=name)
    return files


def _generate(tmp_path, nodes, feeds, inits=(), opset=19, outputs=None):
    outputs = outputs or [o for n in nodes for o in n.output]
    model = _graph_model(nodes, feeds, inits, opset, outputs)
    # Outputs of the first input's type and rank (the checker wants a shape), extents left open.
    first = next(iter(feeds.values()))
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(first.dtype),
                                                            [None] * first.ndim) for o in outputs)
    path = os.path.join(str(tmp_path), "model.onnx")
    onnx.save(model, path)
    return cli.generate_files(path, {k: v.shape for k, v in feeds.items()}, cpu="generic", namespace="t",
                              class_name="Model", header_include="model.h", model_label="test")


def test_resize_modes_and_axes(tmp_path):
    """Modes beyond onnx's cases: rank 3 and 5, scales that round, several axes with antialias."""
    x = RNG.uniform(-1, 1, (2, 3, 7, 9)).astype(np.float32)
    nodes, inits = [], {}

    def resize(name, scales=None, sizes=None, **attrs):
        inputs = ["x", "", ""]
        if scales is not None:
            inits[f"{name}_scales"] = np.asarray(scales, np.float32)
            inputs[2] = f"{name}_scales"
        if sizes is not None:
            inits[f"{name}_sizes"] = np.asarray(sizes, np.int64)
            inputs.append(f"{name}_sizes")
        nodes.append(helper.make_node("Resize", inputs, [name], **attrs))

    resize("up_linear", scales=[1, 1, 2.5, 1.5], mode="linear")
    resize("down_cubic", scales=[1, 1, 0.6, 0.45], mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5)
    resize("aa_linear", sizes=[3, 4], axes=[2, 3], mode="linear", antialias=1)
    resize("aa_cubic", sizes=[5, 2], axes=[3, 2], mode="cubic", antialias=1, keep_aspect_ratio_policy="stretch")
    resize("channels", scales=[1, 2, 1, 1], mode="linear", coordinate_transformation_mode="align_corners")
    resize("batch_nearest", scales=[1.5, 1, 0.5, 1], nearest_mode="ceil",
           coordinate_transformation_mode="half_pixel_symmetric")
    resize("symmetric", scales=[1, 1, 1.7, 0.8], mode="linear", coordinate_transformation_mode="half_pixel_symmetric")
    resize("pytorch", sizes=[2, 3, 1, 4], mode="linear", coordinate_transformation_mode="pytorch_half_pixel")
    resize("identity", scales=[1, 1, 1, 1], mode="cubic")
    _check_nodes(tmp_path, nodes, {"x": x}, inits)


def test_resize_nearest_any_type_and_crop(tmp_path):
    x = RNG.integers(-100, 100, (1, 2, 5, 6)).astype(np.int8)
    inits = {"scales": np.asarray([1, 1, 2, 0.5], np.float32), "roi": np.asarray([0.2, 0.1, 1.2, 0.7], np.float32),
             "sizes": np.asarray([4, 5], np.int64)}
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor"),
             helper.make_node("Resize", ["x", "roi", "", "sizes"], ["crop"], axes=[2, 3],
                              coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0)]
    _check_nodes(tmp_path, nodes, {"x": x}, inits)


def test_resize_nearest_integer_enlargement(tmp_path):
    """Whole-number scales on the last two axes (PP-OCR's x2/x4/x8): rows written once, then copied.
    The half_pixel ones round to the same source as the asymmetric floor ones; round_prefer_ceil at
    scale 2 picks another pattern, and so does a resized channel axis: those keep the gather."""
    x = RNG.integers(-100, 100, (1, 3, 4, 5)).astype(np.int32)
    inits = {"x2": np.asarray([1, 1, 2, 2], np.float32), "x8x4": np.asarray([1, 1, 8, 4], np.float32),
             "w3": np.asarray([1, 1, 1, 3], np.float32), "c2": np.asarray([1, 2, 2, 2], np.float32)}
    nodes = [helper.make_node("Resize", ["x", "", "x2"], ["a"], mode="nearest"),
             helper.make_node("Resize", ["x", "", "x8x4"], ["b"], coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor"),
             helper.make_node("Resize", ["x", "", "w3"], ["c"]),
             helper.make_node("Resize", ["x", "", "x2"], ["d"], nearest_mode="round_prefer_ceil",
                              coordinate_transformation_mode="asymmetric"),
             helper.make_node("Resize", ["x", "", "c2"], ["e"])]
    files = _check_nodes(tmp_path, nodes, {"x": x}, inits)
    assert files["source"].count("each element repeated") == 3


def test_resize_scales_folded_from_a_shape_subgraph(tmp_path):
    """As exporters write it: sizes = Concat(Shape(x)[:2], constant), folded once shapes are bound."""
    x = RNG.uniform(-1, 1, (1, 4, 6, 5)).astype(np.float32)
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "two"], ["nc"]),
             helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear")]
    inits = {"zero": np.asarray([0], np.int64), "two": np.asarray([2], np.int64), "hw": np.asarray([9, 10], np.int64)}
    files = _check_nodes(tmp_path, nodes, {"x": x}, inits, opset=13, outputs=["y"])
    assert "ResampleAxis" in files["source"] and "Shape" not in files["source"].split("Run(")[1]


def test_resize_legacy_versions(tmp_path):
    """Resize-10 and Upsample: asymmetric coordinates; nearest rounds down when enlarging, up when shrinking."""
    x = RNG.uniform(-1, 1, (1, 2, 4, 6)).astype(np.float32)
    inits = {"up": np.asarray([1, 1, 2, 1.5], np.float32), "down": np.asarray([1, 1, 0.5, 0.7], np.float32)}
    nodes = [helper.make_node("Resize", ["x", "up"], ["nearest_up"]),
             helper.make_node("Resize", ["x", "down"], ["nearest_down"]),
             helper.make_node("Resize", ["x", "up"], ["linear_up"], mode="linear")]
    asymmetric = dict(coordinate_transformation_mode="asymmetric")
    equivalent = [helper.make_node("Resize", ["x", "", "up"], ["nearest_up"], nearest_mode="floor", **asymmetric),
                  helper.make_node("Resize", ["x", "", "down"], ["nearest_down"], nearest_mode="ceil", **asymmetric),
                  helper.make_node("Resize", ["x", "", "up"], ["linear_up"], mode="linear", **asymmetric)]
    _check_nodes(tmp_path, nodes, {"x": x}, inits, opset=10, equivalent=(equivalent, 19))
    (tmp_path / "upsample7").mkdir()
    nodes = [helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 3.0], mode="linear")]
    equivalent = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", **asymmetric)]
    _check_nodes(tmp_path / "upsample7", nodes, {"x": x}, opset=7,
                 equivalent=(equivalent, 19), inits={"scales": np.asarray([1, 1, 2, 3], np.float32)})


def test_resize_refusals(tmp_path):
    x = RNG.uniform(-1, 1, (1, 1, 4, 4)).astype(np.float32)
    scales = np.asarray([1, 1, 2, 2], np.float32)
    with pytest.raises(CodegenError, match="scales.*must be known at generation time"):
        _generate(tmp_path, [helper.make_node("Resize", ["x", "", "s"], ["y"])], {"x": x, "s": scales})
    with pytest.raises(CodegenError, match="antialias applies to the linear and cubic modes only"):
        _generate(tmp_path, [helper.make_node("Resize", ["x", "", "s"], ["y"], antialias=1)], {"x": x},
                  {"s": scales})
    with pytest.raises(CodegenError, match="coordinate_transformation_mode 'half_pixel_symmetric' is not one of"):
        _generate(tmp_path, [helper.make_node("Resize", ["x", "", "s"], ["y"],
                                              coordinate_transformation_mode="half_pixel_symmetric")],
                  {"x": x}, {"s": scales}, opset=18)
    with pytest.raises(CodegenError, match="has both scales and sizes"):
        _generate(tmp_path, [helper.make_node("Resize", ["x", "", "s", "z"], ["y"])], {"x": x},
                  {"s": scales, "z": np.asarray([1, 1, 8, 8], np.int64)})
    with pytest.raises(CodegenError, match="supports float32 here"):
        _generate(tmp_path, [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")],
                  {"x": x.astype(np.int32)}, {"s": scales})
    with pytest.raises(CodegenError, match="Upsample is deprecated"):
        _generate(tmp_path, [helper.make_node("Upsample", ["x", "s"], ["y"])], {"x": x}, {"s": scales}, opset=10)


def test_convtranspose_constant_weights(tmp_path):
    """Weights packed at generation time; groups with several output channels each, 1-D to 3-D."""
    x2 = RNG.uniform(-1, 1, (2, 6, 5, 7)).astype(np.float32)
    x1 = RNG.uniform(-1, 1, (1, 4, 9)).astype(np.float32)
    inits = {
        "w_group": RNG.uniform(-1, 1, (6, 3, 3, 2)).astype(np.float32),  # 3 groups of 2 -> 9 channels
        "b_group": RNG.uniform(-1, 1, (9,)).astype(np.float32),
        "w_ocr": RNG.uniform(-1, 1, (6, 11, 2, 2)).astype(np.float32),  # PP-OCR's 2x2, stride 2
        "w_1d": RNG.uniform(-1, 1, (4, 2, 4)).astype(np.float32),
        "w_3d": RNG.uniform(-1, 1, (6, 2, 2, 3, 2)).astype(np.float32),
    }
    nodes = [
        helper.make_node("ConvTranspose", ["x2", "w_group", "b_group"], ["grouped"], group=3, strides=[2, 1],
                         pads=[1, 0, 0, 1], dilations=[1, 2], output_padding=[1, 0]),
        helper.make_node("ConvTranspose", ["x2", "w_ocr"], ["ocr"], strides=[2, 2]),
        helper.make_node("ConvTranspose", ["x1", "w_1d"], ["one_d"], strides=[3], pads=[2, 1], output_padding=[2]),
    ]
    # The grouped node as the reference evaluator runs it right: one ConvTranspose per group.
    equivalent = nodes[1:] + [
        helper.make_node("Split", ["x2", "three"], [f"x2_{g}" for g in range(3)], axis=1),
        helper.make_node("Split", ["w_group", "three"], [f"w_{g}" for g in range(3)], axis=0),
        helper.make_node("Split", ["b_group", "threes"], [f"b_{g}" for g in range(3)], axis=0),
    ] + [helper.make_node("ConvTranspose", [f"x2_{g}", f"w_{g}", f"b_{g}"], [f"y_{g}"], strides=[2, 1], pads=[1, 0, 0, 1],
                          dilations=[1, 2], output_padding=[1, 0]) for g in range(3)] + [
        helper.make_node("Concat", [f"y_{g}" for g in range(3)], ["grouped"], axis=1)]
    inits["three"], inits["threes"] = np.asarray([2, 2, 2], np.int64), np.asarray([3, 3, 3], np.int64)
    _check_nodes(tmp_path, nodes, {"x2": x2, "x1": x1}, inits, opset=17, equivalent=(equivalent, 18))
    (tmp_path / "3d").mkdir()
    x3 = RNG.uniform(-1, 1, (1, 6, 3, 4, 3)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x3", "w_3d"], ["three_d"], strides=[1, 2, 2], pads=[0, 1, 1, 1, 0, 0])]
    _check_nodes(tmp_path / "3d", nodes, {"x3": x3}, {"w_3d": inits["w_3d"]}, opset=17)


def test_convtranspose_kernel_equal_to_stride(tmp_path):
    """Taps that never overlap (PP-OCR's upsampling): each output written once, with the bias."""
    x2 = RNG.uniform(-1, 1, (2, 6, 5, 7)).astype(np.float32)
    x1 = RNG.uniform(-1, 1, (1, 3, 37)).astype(np.float32)
    x3 = RNG.uniform(-1, 1, (1, 4, 2, 3, 5)).astype(np.float32)
    inits = {"w2": RNG.uniform(-1, 1, (6, 5, 2, 3)).astype(np.float32), "b2": RNG.uniform(-1, 1, (5,)).astype(np.float32),
             "w1": RNG.uniform(-1, 1, (3, 3, 4)).astype(np.float32),
             "w3": RNG.uniform(-1, 1, (4, 3, 2, 2, 2)).astype(np.float32), "b3": RNG.uniform(-1, 1, (3,)).astype(np.float32)}
    nodes = [helper.make_node("ConvTranspose", ["x2", "w2", "b2"], ["two_d"], strides=[2, 3]),
             helper.make_node("ConvTranspose", ["x1", "w1"], ["one_d"], strides=[4]),
             helper.make_node("ConvTranspose", ["x3", "w3", "b3"], ["three_d"], strides=[2, 2, 2])]
    _check_nodes(tmp_path, nodes, {"x2": x2, "x1": x1, "x3": x3}, inits, opset=17)


def test_convtranspose_output_shape_and_auto_pad(tmp_path):
    x = RNG.uniform(-1, 1, (1, 2, 4, 5)).astype(np.float32)
    w = RNG.uniform(-1, 1, (2, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["upper"], strides=[2, 2], auto_pad="SAME_UPPER"),
             helper.make_node("ConvTranspose", ["x", "w"], ["lower"], strides=[2, 3], auto_pad="SAME_LOWER"),
             helper.make_node("ConvTranspose", ["x", "w"], ["valid"], strides=[2, 2], auto_pad="VALID"),
             helper.make_node("ConvTranspose", ["x", "w"], ["shaped"], strides=[2, 2], output_shape=[10, 12])]
    _check_nodes(tmp_path, nodes, {"x": x}, {"w": w}, opset=17)


def test_convtranspose_refusals(tmp_path):
    x = RNG.uniform(-1, 1, (1, 4, 3, 3)).astype(np.float32)
    with pytest.raises(CodegenError, match="group 3 does not divide the 4 input channels"):
        _generate(tmp_path, [helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=3)], {"x": x},
                  {"w": np.zeros((4, 1, 2, 2), np.float32)})
    with pytest.raises(CodegenError, match="output_padding"):
        _generate(tmp_path, [helper.make_node("ConvTranspose", ["x", "w"], ["y"], output_padding=[2, 0])], {"x": x},
                  {"w": np.zeros((4, 1, 2, 2), np.float32)})
    with pytest.raises(CodegenError, match="supports float32"):
        _generate(tmp_path, [helper.make_node("ConvTranspose", ["x", "w"], ["y"])], {"x": x.astype(np.float64)},
                  {"w": np.zeros((4, 1, 2, 2), np.float64)})


# --- GridSample --------------------------------------------------------------------------------

def test_gridsample_backend_cases(tmp_path):
    cases = _backend_cases("gridsample", "test_gridsample")
    assert len(cases) == 18
    _run_merged(tmp_path, cases, data_inputs=2)


def test_gridsample_paddings_far_outside(tmp_path):
    """Grid points well beyond the image, where reflection folds several times."""
    x = RNG.uniform(-1, 1, (2, 3, 5, 4)).astype(np.float32)
    grid = RNG.uniform(-3.5, 3.5, (2, 6, 7, 2)).astype(np.float32)
    nodes = [helper.make_node("GridSample", ["x", "grid"], [f"{mode}_{padding}_{align}"], mode=mode,
                              padding_mode=padding, align_corners=align)
             for mode in ("nearest", "linear", "cubic") for padding in ("zeros", "border", "reflection")
             for align in (0, 1)]
    _check_nodes(tmp_path, nodes, {"x": x, "grid": grid}, opset=20)


# --- Col2Im, AffineGrid, CenterCropPad ---------------------------------------------------------

def test_col2im_affine_grid_center_crop_pad_backend_cases(tmp_path):
    """Their shapes (image_shape, block_shape, size, shape) become initializers."""
    cases = (_backend_cases("col2im", "test_col2im") + _backend_cases("affinegrid", "test_affine_grid")
             + _backend_cases("center_crop_pad", "test_center_crop_pad"))
    cases = [c for c in cases if not c.name.endswith("_expanded")]  # those run the ops' function bodies
    assert len(cases) == 5 + 4 + 6
    _run_merged(tmp_path, cases)


def test_center_crop_pad_integers_and_col2im_3d(tmp_path):
    x = RNG.integers(-9, 9, (3, 5, 4)).astype(np.int32)
    nodes = [helper.make_node("CenterCropPad", ["x", "shape"], ["y"], axes=[0, -1])]
    _check_nodes(tmp_path, nodes, {"x": x}, {"shape": np.asarray([6, 1], np.int64)}, opset=18)
    (tmp_path / "col2im").mkdir()
    cols = RNG.uniform(-1, 1, (2, 3 * 2 * 2 * 2, 4 * 2 * 4)).astype(np.float32)
    nodes = [helper.make_node("Col2Im", ["cols", "image", "block"], ["y"], strides=[1, 2, 1], pads=[0, 1, 1, 1, 0, 0],
                              dilations=[2, 1, 1])]
    inits = {"image": np.asarray([5, 4, 4], np.int64), "block": np.asarray([2, 2, 2], np.int64)}
    _check_nodes(tmp_path / "col2im", nodes, {"cols": cols}, inits, opset=18)
