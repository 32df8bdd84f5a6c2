"""The pure_model_library macro: one ONNX model, one cc_library, and tools to run and check it."""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")
load(":codegen.bzl", "pure_model_codegen")
load(":testdata.bzl", "pure_model_testdata")

_CPU = {
    Label("@platforms//cpu:aarch64"): "aarch64",
    Label("@platforms//cpu:x86_64"): "x86_64",
    "//conditions:default": "generic",
}

# The x86-64 level of the target platform (see //platforms); the kernels are written once with
# generic vectors and the compiler maps them onto what the level allows.
_ISA_COPTS = select({
    Label("//platforms:is_x86_64_v3"): ["-march=x86-64-v3"],
    Label("//platforms:is_x86_64_v4"): ["-march=x86-64-v4"],
    "//conditions:default": [],
})

# Floating-point operations never trap in the generated code (nothing reads the exception
# flags), and telling the compiler so changes no result. Without it gcc 16 keeps a branch for
# selects whose sides do arithmetic (Clip, the Tanh, Exp and Sigmoid kernels), so those loops
# stay scalar and mispredict: a Clip over 819200 floats took 1.3 ms instead of 0.07 ms. Always
# added, whatever `copts` a caller gives.
_FP_COPTS = ["-fno-trapping-math"]

def pure_model_library(
        name,
        model,
        input_shapes = {},
        input_values = {},
        output_shapes = {},
        namespace = None,
        class_name = None,
        copts = ["-O3"],
        obfuscate = False,
        obfuscation_key = "",
        test = True,
        test_rtol = 1e-4,
        test_reference = "onnx",
        test_size = "small",
        visibility = None,
        tags = [],
        **kwargs):
    """Turns an ONNX model into a C++ library at build time.

    The model becomes code: a class with a `Run()` method, shapes as compile-time constants,
    weights embedded as read-only data (a binary blob the assembler includes as it is, so the
    compiler never parses them) and a statically planned activation arena. Nothing is
    read at run time and nothing is allocated while running.

    ```starlark
    # app/vision/BUILD.bazel
    load("@rules_pure_model//rules:defs.bzl", "pure_model_library")

    pure_model_library(
        name = "det",
        model = "det.onnx",
        input_shapes = {"x": "1,3,224,224"},
    )
    ```

    A `cc_library` or `cc_binary` then depends on `:det`, includes `"app/vision/det.h"` and calls
    `app::vision::Det().Run(x, y)`: one pointer per input, then one per output, in the model's
    order. The class has the shape and element count of each input and output as
    `static constexpr` members (`kXShape`, `kXElements`), and `kArenaBytes` and `kWeightBytes`.

    Targets created (for `name = "det"` in package `app/vision`):

    - `det`: a `cc_library` with header `det.h` declaring `class app::vision::Det`
      (namespace from the package, class from the name). This is what apps depend on.
    - `det_run`: `det_run --input=<input name>=<file.npy> ... --output_dir=<dir>` runs the model
      on `.npy` inputs and writes `<dir>/<output name>.npy`.
    - `det_benchmark`: `det_benchmark --runs=N --warmup=M` times the model on random inputs and
      ends with one JSON line (median_ms, min_ms, p90_ms, peak_rss_kb, arena_bytes, weight_bytes).
    - `det_profile`: `det_profile --runs=N --warmup=M` times each step of `Run()` on random
      inputs (thread CPU time) and prints the steps, slowest first (`N: node name (Op)`, ms per run, share of the
      total), the total and the sum of the steps; it ends with one JSON line of the per-step
      numbers. It links a separately generated, instrumented copy of the model
      (`det_profiled`): the library apps use carries no timing code and no node names.
    - `det_test` (unless `test = False`): a `cc_test` comparing the generated code's outputs with
      onnx's reference evaluator (or ONNX Runtime, see `test_reference`) on seeded random inputs. It runs for the target platform, so
      `--config=arm64` checks the aarch64 build under qemu.
    - `det_codegen`, `det_descriptor`, `det_testdata`, `det_profiled_codegen`, `det_profiled`,
      `det_profiled_descriptor`: internal steps of the above.

    Args:
      name: Name of the library, and the prefix of the other targets.
      model: The `.onnx` file: a file in the package, or a target that produces exactly one
        `.onnx` file.
      input_shapes: Binds dynamic input dimensions, input name to comma-separated
        dimensions: `{"x": "1,3,224,224"}`. A model with a dynamic dimension left unbound fails
        the build, naming the input and the dimension.
      input_values: Binds inputs that are configuration rather than data at generation time,
        input name to comma-separated values: `{"sr": "16000"}`. Each becomes a constant of the
        model (branches it selects are chosen at generation time, shapes it gives are known), is
        no parameter of `Run()` nor an input of the tools, and the header documents its value.
        The count and type of the values must fit the input's declared shape and element type
        (one dynamic dimension is taken from the count; `input_shapes` may give the shape).
      output_shapes: States the shape of outputs whose declaration in the model is wrong, output
        name to comma-separated dimensions: `{"387": "20,1,8210"}`. Without it, an output the
        graph computes with another shape than the model declares fails the build (the header
        would mislead callers sizing their buffers); with it, the generator checks the graph
        computes exactly the stated shape, and the header carries it.
      namespace: C++ namespace of the class. Default: the package path with `/` as `::`
        (and `-`, `.` as `_`); `pure_model` in the root package.
      class_name: C++ class name. Default: `name` in CamelCase (`det_v2` gives `DetV2`).
      copts: Compiler options for the generated code. Models are arithmetic; they are
        optimised even in fastbuild builds.
      obfuscate: Store the weights masked, so that the binary holds no weight tensor as it is:
        the tensors are shuffled in the weights blob and XORed with a keystream
        (`runtime/include/pure_model/masked.h`), and every kernel unmasks each value as it loads
        it, inside its loops (no unmasked copy is ever made). The key comes from the model's bytes
        and `obfuscation_key`, so builds stay reproducible and cacheable. It keeps weights from
        anyone reading the binary, not from anyone running it (the key is inside). Costs some
        speed in the weight-bound kernels (measure with `//tools/bench`). The library carries
        no node, tensor or op names either way.
      obfuscation_key: With `obfuscate`: a string mixed into the key, so that two builds of the
        same model can mask differently.
      test: Whether to create `<name>_test`.
      test_rtol: Tolerance of `<name>_test`: the largest error allowed, relative to the
        largest magnitude of each reference output.
      test_reference: What computes `<name>_test`'s expected outputs: `"onnx"`, onnx's
        reference evaluator, or `"onnxruntime"`, ONNX Runtime through the build machine's
        `libonnxruntime` (installed in the root `tools/bazel` provisions; elsewhere the build
        machine needs ONNX Runtime's C++ headers and library). Either runs at build time in
        the exec configuration, so the test is the same for every target platform.
      test_size: Bazel `size` of `<name>_test`, which sets its timeout: a big model run under
        qemu (`--config=arm64`) may need `"medium"`.
      visibility: Visibility of `name`, `<name>_run`, `<name>_benchmark`, `<name>_profile` and
        `<name>_test`;
        the internal targets are private.
      tags: Tags for every target, e.g. `["manual"]`.
      **kwargs: Passed to the `cc_library` (e.g. `deprecation`, `target_compatible_with`).
    """
    codegen_args = dict(
        model = model,
        input_shapes = input_shapes,
        input_values = input_values,
        output_shapes = output_shapes,
        namespace = namespace,
        class_name = class_name,
        obfuscate = obfuscate,
        obfuscation_key = obfuscation_key,
        copts = copts,
        tags = tags,
    )
    _generated_library(name, name, visibility, codegen_args, kwargs)
    for tool, main in (("run", "run_main"), ("benchmark", "benchmark_main")):
        cc_binary(
            name = "%s_%s" % (name, tool),
            deps = [":" + name + "_descriptor", Label("//tools/harness:" + main)],
            tags = tags,
            visibility = visibility,
        )

    # The profiling variant: a second codegen action with --profile_steps, so that the library
    # above stays free of timing code and node names. Same namespace and class; the profile binary
    # links only this copy, which takes over `target_compatible_with` (nothing else of kwargs:
    # it is no target apps use).
    _generated_library(
        name + "_profiled",
        name,
        ["//visibility:private"],
        codegen_args,
        {"target_compatible_with": kwargs.get("target_compatible_with")},
        profile_steps = True,
    )
    cc_binary(
        name = name + "_profile",
        deps = [":" + name + "_profiled_descriptor", Label("//tools/harness:profile_main")],
        tags = tags,
        visibility = visibility,
    )
    if test:
        pure_model_testdata(
            name = name + "_testdata",
            model = model,
            input_shapes = input_shapes,
            input_values = input_values,
            reference = test_reference,
            tags = tags,
            visibility = ["//visibility:private"],
        )
        cc_test(
            name = name + "_test",
            size = test_size,
            deps = [":" + name + "_descriptor", Label("//tools/harness:check_main")],
            data = [":" + name + "_testdata"],
            args = [
                "--data_dir=$(rootpath :%s_testdata)" % name,
                "--rtol=%s" % test_rtol,
            ],
            tags = tags,
            visibility = visibility,
        )

def _generated_library(prefix, library_name, visibility, codegen_args, library_kwargs, profile_steps = False):
    """`<prefix>_codegen`, the cc_library `<prefix>` over its sources, and `<prefix>_descriptor`."""
    copts = codegen_args["copts"]
    tags = codegen_args["tags"]
    pure_model_codegen(
        name = prefix + "_codegen",
        library_name = library_name,
        cpu = select(_CPU),
        header = prefix + ".h",
        source = prefix + ".cc",
        weights = prefix + "_weights.bin",
        weights_asm = prefix + "_weights.S",
        descriptor = prefix + "_descriptor.cc",
        profile_steps = profile_steps,
        visibility = ["//visibility:private"],
        **{k: v for k, v in codegen_args.items() if k != "copts"}
    )
    cc_library(
        name = prefix,
        hdrs = [prefix + ".h"],
        srcs = [prefix + ".cc", prefix + "_weights.S"],
        # Read by the assembler (`.incbin`), never parsed by the compiler.
        additional_compiler_inputs = [prefix + "_weights.bin"],
        copts = copts + _ISA_COPTS + _FP_COPTS,
        deps = [Label("//runtime:kernels")],
        visibility = visibility,
        tags = tags,
        **library_kwargs
    )
    cc_library(
        name = prefix + "_descriptor",
        srcs = [prefix + "_descriptor.cc"],
        copts = copts,
        deps = [":" + prefix, Label("//tools/harness:model_descriptor")],
        tags = tags,
        visibility = ["//visibility:private"],
        alwayslink = True,
    )
