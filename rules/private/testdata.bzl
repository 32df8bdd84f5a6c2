"""Reference inputs and outputs for a model, computed by onnx's reference evaluator or ONNX Runtime."""

def _pure_model_testdata_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add("--model", ctx.file.model)
    args.add_all(sorted(ctx.attr.input_shapes.items()), map_each = _input_shape_flag, before_each = "--input_shape")
    args.add_all(sorted(ctx.attr.input_values.items()), map_each = _input_shape_flag, before_each = "--input_value")
    args.add("--seed", ctx.attr.seed)
    args.add("--out_dir", out.path)
    tool = ctx.executable._ort_reference if ctx.attr.reference == "onnxruntime" else ctx.executable._make_testdata
    ctx.actions.run(
        executable = tool,
        arguments = [args],
        inputs = [ctx.file.model],
        outputs = [out],
        mnemonic = "PureModelReference",
        progress_message = "Computing reference outputs for %{label} with " + _REFERENCE_NAMES[ctx.attr.reference],
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

_REFERENCE_NAMES = {
    "onnx": "onnx's reference evaluator",
    "onnxruntime": "ONNX Runtime",
}

def _input_shape_flag(item):
    # NAME=VALUES, for --input_shape and --input_value alike.
    return "%s=%s" % item

pure_model_testdata = rule(
    implementation = _pure_model_testdata_impl,
    doc = """Writes seeded random inputs for a model and the outputs a reference (onnx's reference
evaluator, or ONNX Runtime) computes from them, as `inputs/*.npy` and `expected/*.npy` in one
directory.""",
    attrs = {
        "input_shapes": attr.string_dict(doc = "Input name -> comma-separated dimensions."),
        "input_values": attr.string_dict(
            doc = "Input name -> comma-separated values of inputs the generated model binds; they get no file.",
        ),
        "model": attr.label(mandatory = True, allow_single_file = [".onnx"], doc = "The ONNX model file."),
        "reference": attr.string(
            default = "onnx",
            values = ["onnx", "onnxruntime"],
            doc = "What computes the expected outputs: `onnx`, onnx's reference evaluator (Python, " +
                  "the generator's locked onnx), or `onnxruntime`, ONNX Runtime through the build " +
                  "machine's libonnxruntime (the root tools/bazel provisions has Debian's 1.23.2).",
        ),
        "seed": attr.int(default = 0, doc = "Seed of the random inputs."),
        "_make_testdata": attr.label(
            default = Label("//tools/codegen:make_testdata"),
            executable = True,
            cfg = "exec",
            doc = "The reference tool for `onnx`.",
        ),
        "_ort_reference": attr.label(
            default = Label("//tools/onnxruntime:ort_reference"),
            executable = True,
            cfg = "exec",
            doc = "The reference tool for `onnxruntime`.",
        ),
    },
)
