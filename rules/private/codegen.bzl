"""The PureModelCodegen action: an ONNX model in, C++ sources out."""

PureModelInfo = provider(
    doc = """What the generator made of one model: its generated files and the CPU they were
specialised for. Returned by the `<name>_codegen` target of `pure_model_library`.""",
    fields = {
        "model": "File: the ONNX model the sources were generated from.",
        "header": "File: the generated header.",
        "source": "File: the generated implementation.",
        "weights": "File: the weights blob (every constant the code reads, packed as the kernels read it).",
        "weights_asm": "File: the assembler source that embeds the weights blob (`.incbin`) and names its tensors.",
        "descriptor": "File: the generated harness descriptor (names and shapes for the run/benchmark/test tools).",
        "report": "File: the JSON build report (ops, FLOPs, arena and weight bytes, generated file sizes).",
        "cpu": "string: the target CPU the code was specialised for.",
        "obfuscated": "bool: whether the weights blob is masked (`obfuscate = True`).",
    },
)

_CPUS = ["generic", "x86_64", "aarch64"]

def _cpp_namespace(package):
    # A namespace derived from the package, so two models in different packages never clash.
    parts = [p for p in package.replace("-", "_").replace(".", "_").split("/") if p]
    return "::".join(parts) if parts else "pure_model"

def _class_name(name):
    return "".join([p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_") if p])

def _pure_model_codegen_impl(ctx):
    if ctx.attr.cpu not in _CPUS:
        # Checked here, not with attr.string(values = ...): Bazel checks `values` while loading,
        # where one bad target breaks its whole package and no analysis test can observe it.
        fail("cpu must be one of %s, not %r" % (", ".join(_CPUS), ctx.attr.cpu))
    model = ctx.file.model
    namespace = ctx.attr.namespace or _cpp_namespace(ctx.label.package)
    class_name = ctx.attr.class_name or _class_name(ctx.attr.library_name)
    header = ctx.outputs.header
    args = ctx.actions.args()
    args.add("--model", model)

    # The label, not the path: generated files must not depend on where the checkout is.
    args.add("--model_label", _display_label(ctx.attr.model.label))
    args.add("--cpu", ctx.attr.cpu)
    args.add("--namespace", namespace)
    args.add("--class_name", class_name)
    args.add("--header_include", _repo_relative_path(header))
    args.add_all(
        sorted(ctx.attr.input_shapes.items()),
        map_each = _input_shape_flag,
        before_each = "--input_shape",
    )
    args.add_all(
        sorted(ctx.attr.input_values.items()),
        map_each = _input_shape_flag,
        before_each = "--input_value",
    )
    args.add_all(
        sorted(ctx.attr.output_shapes.items()),
        map_each = _input_shape_flag,
        before_each = "--output_shape",
    )
    args.add("--out_header", header)
    args.add("--out_source", ctx.outputs.source)
    args.add("--out_weights", ctx.outputs.weights)
    args.add("--out_weights_asm", ctx.outputs.weights_asm)

    # The assembler runs in the execution root and reads the blob by this path, so the blob must
    # be an input of that compile action (the macro passes it as additional_compiler_inputs).
    args.add("--weights_path", ctx.outputs.weights.path)
    args.add("--out_descriptor", ctx.outputs.descriptor)
    if ctx.attr.profile_steps:
        args.add("--profile_steps")
    if ctx.attr.obfuscate:
        args.add("--obfuscate")
        if ctx.attr.obfuscation_key:
            args.add("--obfuscation_key", ctx.attr.obfuscation_key)
    elif ctx.attr.obfuscation_key:
        fail("obfuscation_key is only used with obfuscate = True")
    report_suffix = "_profiled_report.json" if ctx.attr.profile_steps else "_report.json"
    report = ctx.actions.declare_file(ctx.attr.library_name + report_suffix)
    args.add("--out_report", report)
    ctx.actions.run(
        executable = ctx.executable._codegen,
        arguments = [args],
        inputs = [model],
        outputs = [header, ctx.outputs.source, ctx.outputs.weights, ctx.outputs.weights_asm, ctx.outputs.descriptor, report],
        mnemonic = "PureModelCodegen",
        progress_message = "Generating C++ for model %{label} (" + ctx.attr.cpu +
                           (", profiled" if ctx.attr.profile_steps else "") + ")",
    )
    return [
        DefaultInfo(files = depset([header, ctx.outputs.source, ctx.outputs.weights_asm, ctx.outputs.weights])),
        # `bazel build //pkg:name_codegen --output_groups=pure_model_report` writes the reports.
        OutputGroupInfo(pure_model_report = depset([report])),
        PureModelInfo(
            model = model,
            header = header,
            source = ctx.outputs.source,
            weights = ctx.outputs.weights,
            weights_asm = ctx.outputs.weights_asm,
            descriptor = ctx.outputs.descriptor,
            report = report,
            cpu = ctx.attr.cpu,
            obfuscated = ctx.attr.obfuscate,
        ),
    ]

def _display_label(label):
    # Bazel 7 spells main-repository labels "@@//pkg:name"; users write "//pkg:name".
    text = str(label)
    return text[2:] if text.startswith("@@//") else text

def _repo_relative_path(file):
    # short_path is "pkg/x.h" in the main repository and "../repo/pkg/x.h" in others; includes
    # are resolved from the root of the file's own repository either way.
    path = file.short_path
    return path.split("/", 2)[2] if path.startswith("../") else path

def _input_shape_flag(item):
    # NAME=VALUES, for --input_shape, --input_value and --output_shape alike.
    name, values = item
    return "%s=%s" % (name, values)

pure_model_codegen = rule(
    implementation = _pure_model_codegen_impl,
    doc = """Runs the code generator on an ONNX model: one `PureModelCodegen` action writes the
header, the source, the weights blob with the assembler source that embeds it, and the harness
descriptor, and the target returns `PureModelInfo`.

Used by the `pure_model_library` macro, which also wraps the sources in a `cc_library`; call
that instead.""",
    attrs = {
        "class_name": attr.string(doc = "C++ class name; default: the library name in CamelCase."),
        "cpu": attr.string(
            mandatory = True,
            doc = """The target CPU the code is specialised for: `generic`, `x86_64` or
`aarch64`. The macro selects it from the target platform.""",
        ),
        "descriptor": attr.output(mandatory = True, doc = "The harness descriptor source to write."),
        "header": attr.output(mandatory = True, doc = "The header to write."),
        "input_shapes": attr.string_dict(doc = "Input name -> comma-separated dimensions, binding dynamic dimensions."),
        "input_values": attr.string_dict(
            doc = """Input name -> comma-separated values, binding inputs at generation time: each
becomes a constant of the model and leaves `Run()`'s parameters. The count and type of the values
must fit the input's declared shape and element type.""",
        ),
        "library_name": attr.string(mandatory = True, doc = "Name of the cc_library the sources are for."),
        "model": attr.label(
            mandatory = True,
            allow_single_file = [".onnx"],
            doc = "The ONNX model file.",
        ),
        "namespace": attr.string(doc = "C++ namespace; default: derived from the package path."),
        "obfuscate": attr.bool(
            doc = """Mask and shuffle the weights blob so that it holds no weight tensor as it is;
the kernels unmask each value as they load it (see `pure_model_library`).""",
        ),
        "obfuscation_key": attr.string(
            doc = "With `obfuscate`: a string mixed into the key derived from the model's bytes.",
        ),
        "output_shapes": attr.string_dict(
            doc = """Output name -> comma-separated dimensions, replacing the shape the model
declares for that output (for models whose graph contradicts their declaration; the generator
checks the graph computes exactly this shape).""",
        ),
        "profile_steps": attr.bool(
            doc = """Generate the profiling variant: `Run()` times each of its steps and the
descriptor names them, for `<name>_profile`. The report is then `<library_name>_profiled_report.json`.""",
        ),
        "source": attr.output(mandatory = True, doc = "The implementation source to write."),
        "weights": attr.output(mandatory = True, doc = "The weights blob to write (`.bin`)."),
        "weights_asm": attr.output(
            mandatory = True,
            doc = "The assembler source to write (`.S`) that embeds the weights blob.",
        ),
        "_codegen": attr.label(
            default = Label("//tools/codegen"),
            executable = True,
            cfg = "exec",
            doc = "The generator.",
        ),
    },
)
