"""Analysis tests of pure_model_codegen, mostly through the pure_model_library macro users call.

The generator never runs in an analysis test, so the targets under test may bind inputs their
model does not have; they are tagged manual because building them would fail.
"""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("@rules_cc//cc/common:cc_info.bzl", "CcInfo")
load("//rules:defs.bzl", "PureModelInfo", "pure_model_library")

# The rule is private; only a target that calls it directly can give it a cpu the macro never
# would.
# buildifier: disable=bzl-visibility
load("//rules/private:codegen.bzl", "pure_model_codegen")

def _platform(label):
    return {"//command_line_option:platforms": str(label)}

# Every test that looks at --cpu pins the target platform, so that the results do not depend on
# the host or on a --platforms flag given to `bazel test`.
_ARM64 = _platform(Label("//platforms:arm64"))
_X86_64 = _platform(Label("//platforms:x86_64"))
_NO_CPU = _platform(Label(":linux_without_cpu"))

def _flag_values(argv, flag):
    # Args writes a flag and its value as two items; a repeated flag yields several values.
    return [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == flag]

def _codegen_action(env):
    # The rule registers exactly one action; a second one would be a change worth a failing test.
    actions = analysistest.target_actions(env)
    asserts.equals(env, ["PureModelCodegen"], [a.mnemonic for a in actions], "action mnemonics")
    return actions[0] if actions else None

def _codegen_argv(env):
    action = _codegen_action(env)
    return action.argv if action else []

def _short_paths(files):
    return [f.short_path for f in files]

# The plain library and its profiling variant (<name>_profiled_codegen, --profile_steps) differ
# only in their file names and that one flag.
_VARIANT_ATTRS = {"profiled": attr.bool(doc = "Whether the target under test is the profiling variant.")}

def _outputs_test_impl(ctx):
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    prefix = ctx.label.package + "/two_layer_mlp" + ("_profiled" if ctx.attr.profiled else "")
    expected = [
        prefix + ".h",
        prefix + ".cc",
        prefix + "_weights.S",
        prefix + "_weights.bin",
        prefix + "_descriptor.cc",
        prefix + "_report.json",
    ]
    action = _codegen_action(env)
    if action:
        outputs = _short_paths(action.outputs.to_list())
        asserts.equals(env, sorted(expected), sorted(outputs), "action outputs")

    # The descriptor belongs to the run/benchmark/test tools, not to the library's files.
    asserts.equals(
        env,
        sorted(expected[:4]),
        sorted(_short_paths(target[DefaultInfo].files.to_list())),
        "DefaultInfo files",
    )
    asserts.equals(
        env,
        [prefix + "_report.json"],
        _short_paths(target[OutputGroupInfo].pure_model_report.to_list()),
        "pure_model_report output group",
    )
    return analysistest.end(env)

_outputs_test = analysistest.make(_outputs_test_impl, attrs = _VARIANT_ATTRS, config_settings = _X86_64)

def _arguments_test_impl(ctx):
    env = analysistest.begin(ctx)
    info = analysistest.target_under_test(env)[PureModelInfo]
    argv = _codegen_argv(env)
    package = ctx.label.package
    expected = {
        "--model": [info.model.path],
        "--model_label": ["//examples/mlp:mlp.onnx"],
        "--cpu": ["x86_64"],
        "--namespace": [package.replace("/", "::")],
        # The profiling variant keeps the class: only its files are named apart.
        "--class_name": ["TwoLayerMlp"],
        "--header_include": [package + ("/two_layer_mlp_profiled.h" if ctx.attr.profiled else "/two_layer_mlp.h")],
        # Sorted, whatever the order of the dict: the command line is part of the action key.
        "--input_shape": ["batch_norm=1", "features=1,64", "z=1,2"],
        "--out_header": [info.header.path],
        "--out_source": [info.source.path],
        "--out_weights": [info.weights.path],
        "--out_weights_asm": [info.weights_asm.path],
        # Execroot-relative, where the assembler runs.
        "--weights_path": [info.weights.path],
        "--out_descriptor": [info.descriptor.path],
        "--out_report": [info.report.path],
    }
    for flag, values in expected.items():
        asserts.equals(env, values, _flag_values(argv, flag), flag)

    # Flags without a value.
    switches = ["--profile_steps"] if ctx.attr.profiled else []
    asserts.equals(env, switches, [a for a in argv if a == "--profile_steps"], "--profile_steps")
    flags = [a for a in argv if a.startswith("--")]
    asserts.equals(env, sorted(expected.keys() + switches), sorted({f: None for f in flags}.keys()), "flags")
    return analysistest.end(env)

_arguments_test = analysistest.make(_arguments_test_impl, attrs = _VARIANT_ATTRS, config_settings = _X86_64)

def _overrides_test_impl(ctx):
    env = analysistest.begin(ctx)
    argv = _codegen_argv(env)
    asserts.equals(env, ["vision::models"], _flag_values(argv, "--namespace"), "--namespace")
    asserts.equals(env, ["Detector"], _flag_values(argv, "--class_name"), "--class_name")

    # The header keeps the target's name: only the C++ names change.
    asserts.equals(
        env,
        [ctx.label.package + "/renamed.h"],
        _flag_values(argv, "--header_include"),
        "--header_include",
    )
    asserts.equals(env, [], _flag_values(argv, "--input_shape"), "--input_shape")
    return analysistest.end(env)

_overrides_test = analysistest.make(_overrides_test_impl, config_settings = _X86_64)

def _input_values_test_impl(ctx):
    # Every action that reads the model binds the same inputs: the library's, the profiled copy's
    # and the reference data's (which must leave the bound inputs out of the test's files).
    env = analysistest.begin(ctx)
    actions = analysistest.target_actions(env)
    asserts.equals(env, [ctx.attr.mnemonic], [a.mnemonic for a in actions], "action mnemonics")
    argv = actions[0].argv if actions else []
    asserts.equals(env, ["batch_norm=0.5", "z=1,2"], _flag_values(argv, "--input_value"), "--input_value")
    asserts.equals(env, ["features=1,64"], _flag_values(argv, "--input_shape"), "--input_shape")
    return analysistest.end(env)

_input_values_test = analysistest.make(
    _input_values_test_impl,
    attrs = {"mnemonic": attr.string(doc = "The one action the target under test registers.")},
    config_settings = _X86_64,
)

def _cpu_test_impl(ctx):
    env = analysistest.begin(ctx)
    info = analysistest.target_under_test(env)[PureModelInfo]
    asserts.equals(env, [ctx.attr.expected_cpu], _flag_values(_codegen_argv(env), "--cpu"), "--cpu")
    asserts.equals(env, ctx.attr.expected_cpu, info.cpu, "PureModelInfo.cpu")
    return analysistest.end(env)

_CPU_TEST_ATTRS = {"expected_cpu": attr.string(doc = "The --cpu the platform must select.")}

# One rule per platform: an analysis test's configuration is fixed when its rule is defined.
_cpu_arm64_test = analysistest.make(
    _cpu_test_impl,
    attrs = _CPU_TEST_ATTRS,
    config_settings = _ARM64,
)
_cpu_x86_64_test = analysistest.make(
    _cpu_test_impl,
    attrs = _CPU_TEST_ATTRS,
    config_settings = _X86_64,
)
_cpu_generic_test = analysistest.make(
    _cpu_test_impl,
    attrs = _CPU_TEST_ATTRS,
    config_settings = _NO_CPU,
)

def _provider_test_impl(ctx):
    env = analysistest.begin(ctx)
    info = analysistest.target_under_test(env)[PureModelInfo]
    action = _codegen_action(env)
    asserts.equals(env, "examples/mlp/mlp.onnx", info.model.short_path, "model")
    asserts.true(env, info.model.is_source, "model is the source file, not a copy")
    asserts.equals(env, "two_layer_mlp.h", info.header.basename, "header")
    asserts.equals(env, "two_layer_mlp.cc", info.source.basename, "source")
    asserts.equals(env, "two_layer_mlp_weights.bin", info.weights.basename, "weights")
    asserts.equals(env, "two_layer_mlp_weights.S", info.weights_asm.basename, "weights_asm")
    asserts.equals(env, "two_layer_mlp_descriptor.cc", info.descriptor.basename, "descriptor")
    asserts.equals(env, "two_layer_mlp_report.json", info.report.basename, "report")
    asserts.equals(env, "aarch64", info.cpu, "cpu")
    if action:
        # The provider hands out the files the action writes, not other files of the same name.
        asserts.equals(
            env,
            sorted([
                info.header.path,
                info.source.path,
                info.weights.path,
                info.weights_asm.path,
                info.descriptor.path,
                info.report.path,
            ]),
            sorted([f.path for f in action.outputs.to_list()]),
            "provider files are the action's outputs",
        )
        asserts.true(env, info.model in action.inputs.to_list(), "model is an action input")
    return analysistest.end(env)

_provider_test = analysistest.make(_provider_test_impl, config_settings = _ARM64)

def _library_test_impl(ctx):
    env = analysistest.begin(ctx)
    headers = analysistest.target_under_test(env)[CcInfo].compilation_context.direct_public_headers
    asserts.equals(env, [ctx.label.package + "/two_layer_mlp.h"], _short_paths(headers), "headers")
    return analysistest.end(env)

_library_test = analysistest.make(_library_test_impl, config_settings = _X86_64)

def _reference_test_impl(ctx):
    env = analysistest.begin(ctx)
    actions = analysistest.target_actions(env)
    asserts.equals(env, ["PureModelReference"], [a.mnemonic for a in actions], "action mnemonics")
    if actions:
        argv = actions[0].argv
        asserts.true(
            env,
            argv[0].endswith(ctx.attr.expected_tool),
            "reference tool %s, expected one ending in %s" % (argv[0], ctx.attr.expected_tool),
        )
        asserts.equals(env, ["features=1,64"], _flag_values(argv, "--input_shape"), "--input_shape")
        asserts.equals(env, ["0"], _flag_values(argv, "--seed"), "--seed")
    return analysistest.end(env)

_reference_test = analysistest.make(
    _reference_test_impl,
    attrs = {"expected_tool": attr.string(doc = "How the path of the reference tool ends.")},
)

def _obfuscate_test_impl(ctx):
    env = analysistest.begin(ctx)
    argv = _codegen_argv(env)
    asserts.equals(env, ["--obfuscate"], [a for a in argv if a == "--obfuscate"], "--obfuscate")
    asserts.equals(env, ctx.attr.expected_key, _flag_values(argv, "--obfuscation_key"), "--obfuscation_key")
    asserts.true(env, analysistest.target_under_test(env)[PureModelInfo].obfuscated, "PureModelInfo.obfuscated")
    return analysistest.end(env)

_obfuscate_test = analysistest.make(
    _obfuscate_test_impl,
    attrs = {"expected_key": attr.string_list(doc = "The --obfuscation_key values expected (none or one).")},
    config_settings = _X86_64,
)

def _failure_test_impl(ctx):
    env = analysistest.begin(ctx)
    asserts.expect_failure(env, ctx.attr.expected_error)
    return analysistest.end(env)

_failure_test = analysistest.make(
    _failure_test_impl,
    attrs = {"expected_error": attr.string(doc = "A part of the expected analysis error.")},
    expect_failure = True,
)

def codegen_test_suite(name):
    """Creates the targets under test, one test per behaviour, and a test_suite of them all.

    Args:
      name: Name of the test_suite.
    """

    # The common case: inputs bound out of order, package-derived namespace, name-derived class.
    pure_model_library(
        name = "two_layer_mlp",
        model = Label("//examples/mlp:mlp.onnx"),
        input_shapes = {"z": "1,2", "features": "1,64", "batch_norm": "1"},
        test = False,
        tags = ["manual"],
    )
    # Inputs bound to values at generation time (input_values), unordered.
    pure_model_library(
        name = "bound_inputs",
        model = Label("//examples/mlp:mlp.onnx"),
        input_shapes = {"features": "1,64"},
        input_values = {"z": "1,2", "batch_norm": "0.5"},
        tags = ["manual"],
    )
    pure_model_library(
        name = "renamed",
        model = Label("//examples/mlp:mlp.onnx"),
        namespace = "vision::models",
        class_name = "Detector",
        test = False,
        tags = ["manual"],
    )

    # <name>_test's expected outputs, from each reference.
    for reference in ("onnx", "onnxruntime"):
        pure_model_library(
            name = "checked_by_" + reference,
            model = Label("//examples/mlp:mlp.onnx"),
            input_shapes = {"features": "1,64"},
            test_reference = reference,
            tags = ["manual"],
        )

    # Masked weights, with and without a key of the user's; a key without obfuscate is a mistake.
    masking = {
        "key_without_obfuscate": {"obfuscation_key": "tenant 42"},
        "obfuscated": {"obfuscate": True, "obfuscation_key": "tenant 42"},
        "obfuscated_without_key": {"obfuscate": True},
    }
    for library, attrs in masking.items():
        pure_model_library(
            name = library,
            model = Label("//examples/mlp:mlp.onnx"),
            test = False,
            tags = ["manual"],
            **attrs
        )

    # A text file where a model belongs: the rule's allow_single_file rejects it.
    pure_model_library(
        name = "not_a_model",
        model = "not_a_model.txt",
        test = False,
        tags = ["manual"],
    )

    # Two models where one belongs.
    native.filegroup(
        name = "two_models",
        srcs = [
            Label("//examples/cnn:cnn.onnx"),
            Label("//examples/mlp:mlp.onnx"),
        ],
        tags = ["manual"],
    )
    pure_model_library(
        name = "two_models_library",
        model = ":two_models",
        test = False,
        tags = ["manual"],
    )

    # The macro always selects a valid cpu, so only the rule itself can be given a wrong one.
    pure_model_codegen(
        name = "unknown_cpu_codegen",
        model = Label("//examples/mlp:mlp.onnx"),
        cpu = "riscv64",
        library_name = "unknown_cpu",
        header = "unknown_cpu.h",
        source = "unknown_cpu.cc",
        weights = "unknown_cpu_weights.bin",
        weights_asm = "unknown_cpu_weights.S",
        descriptor = "unknown_cpu_descriptor.cc",
        tags = ["manual"],
    )

    mlp = ":two_layer_mlp_codegen"
    tests = {
        "codegen_outputs_test": (_outputs_test, mlp, {}),
        "codegen_arguments_test": (_arguments_test, mlp, {}),
        "codegen_profiled_outputs_test": (_outputs_test, ":two_layer_mlp_profiled_codegen", {"profiled": True}),
        "codegen_profiled_arguments_test": (_arguments_test, ":two_layer_mlp_profiled_codegen", {"profiled": True}),
        "codegen_overrides_test": (_overrides_test, ":renamed_codegen", {}),
        "codegen_provider_test": (_provider_test, mlp, {}),
        "codegen_cpu_arm64_test": (_cpu_arm64_test, mlp, {"expected_cpu": "aarch64"}),
        "codegen_cpu_x86_64_test": (_cpu_x86_64_test, mlp, {"expected_cpu": "x86_64"}),
        "codegen_cpu_generic_test": (_cpu_generic_test, mlp, {"expected_cpu": "generic"}),
        "library_headers_test": (_library_test, ":two_layer_mlp", {}),
        "codegen_input_values_test": (_input_values_test, ":bound_inputs_codegen", {"mnemonic": "PureModelCodegen"}),
        "codegen_profiled_input_values_test": (
            _input_values_test,
            ":bound_inputs_profiled_codegen",
            {"mnemonic": "PureModelCodegen"},
        ),
        "testdata_input_values_test": (_input_values_test, ":bound_inputs_testdata", {"mnemonic": "PureModelReference"}),
        "testdata_onnx_reference_test": (
            _reference_test,
            ":checked_by_onnx_testdata",
            {"expected_tool": "tools/codegen/make_testdata"},
        ),
        "testdata_onnxruntime_reference_test": (
            _reference_test,
            ":checked_by_onnxruntime_testdata",
            {"expected_tool": "tools/onnxruntime/ort_reference"},
        ),
        "codegen_obfuscate_test": (_obfuscate_test, ":obfuscated_codegen", {"expected_key": ["tenant 42"]}),
        # The profiling copy is masked too, so that its step times are those of the library.
        "codegen_obfuscate_profiled_test": (_obfuscate_test, ":obfuscated_profiled_codegen", {"expected_key": ["tenant 42"]}),
        "codegen_obfuscate_without_key_test": (_obfuscate_test, ":obfuscated_without_key_codegen", {"expected_key": []}),
        "codegen_rejects_key_without_obfuscate_test": (
            _failure_test,
            ":key_without_obfuscate_codegen",
            {"expected_error": "obfuscation_key is only used with obfuscate = True"},
        ),
        "codegen_rejects_non_onnx_model_test": (
            _failure_test,
            ":not_a_model_codegen",
            {"expected_error": "expected .onnx"},
        ),
        "codegen_rejects_two_models_test": (
            _failure_test,
            ":two_models_library_codegen",
            {"expected_error": "must produce a single file"},
        ),
        "codegen_rejects_unknown_cpu_test": (
            _failure_test,
            ":unknown_cpu_codegen",
            {"expected_error": 'cpu must be one of generic, x86_64, aarch64, not "riscv64"'},
        ),
    }
    for test_name, (rule, target, attrs) in tests.items():
        rule(name = test_name, target_under_test = target, size = "small", **attrs)
    native.test_suite(name = name, tests = [":" + t for t in tests])
