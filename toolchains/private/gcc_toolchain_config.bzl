"""A cc_toolchain_config for a system gcc, native or cross, found by absolute path."""

load("@bazel_tools//tools/build_defs/cc:action_names.bzl", "ACTION_NAMES")
load(
    "@bazel_tools//tools/cpp:cc_toolchain_config_lib.bzl",
    "feature",
    "flag_group",
    "flag_set",
    "tool_path",
)

_COMPILE_ACTIONS = [
    ACTION_NAMES.assemble,
    ACTION_NAMES.preprocess_assemble,
    ACTION_NAMES.c_compile,
    ACTION_NAMES.cpp_compile,
    ACTION_NAMES.cpp_header_parsing,
    ACTION_NAMES.cpp_module_compile,
]

_CXX_ACTIONS = [
    ACTION_NAMES.cpp_compile,
    ACTION_NAMES.cpp_header_parsing,
    ACTION_NAMES.cpp_module_compile,
]

_LINK_ACTIONS = [
    ACTION_NAMES.cpp_link_executable,
    ACTION_NAMES.cpp_link_dynamic_library,
    ACTION_NAMES.cpp_link_nodeps_dynamic_library,
]

def _flags_feature(name, actions, flags, enabled = True):
    return feature(
        name = name,
        enabled = enabled,
        flag_sets = [flag_set(actions = actions, flag_groups = [flag_group(flags = flags)])] if flags else [],
    )

def _gcc_toolchain_config_impl(ctx):
    prefix = ctx.attr.tool_prefix
    tool_paths = [
        tool_path(name = tool, path = prefix + tool)
        for tool in ["ar", "cpp", "gcc", "gcov", "ld", "nm", "objcopy", "objdump", "strip"]
    ] + [
        # Bazel calls the compiler for C++ too; gcc picks the language from the file name.
        tool_path(name = "dwp", path = "/bin/false"),
        tool_path(name = "llvm-cov", path = "/bin/false"),
    ]
    features = [
        _flags_feature("default_compile_flags", _COMPILE_ACTIONS, [
            "-fPIC",
            "-Wall",
            "-no-canonical-prefixes",
            "-fno-canonical-system-headers",
            # The harnesses run model instances on threads.
            "-pthread",
            # Object files must not depend on when or where they were built.
            "-Wno-builtin-macro-redefined",
            "-D__DATE__=\"redacted\"",
            "-D__TIMESTAMP__=\"redacted\"",
            "-D__TIME__=\"redacted\"",
        ] + ctx.attr.extra_compile_flags),
        _flags_feature("default_cxx_flags", _CXX_ACTIONS, ["-std=c++17"]),
        _flags_feature("default_link_flags", _LINK_ACTIONS, [
            "-no-canonical-prefixes",
            "-Wl,--build-id=none",
            "-pthread",
            "-lstdc++",
            "-lm",
        ] + ctx.attr.extra_link_flags),
        # Bazel turns on the feature named after --compilation_mode; each carries its flags.
        _mode_feature("opt", ["-O2", "-DNDEBUG", "-ffunction-sections", "-fdata-sections"]),
        _mode_feature("dbg", ["-O0", "-g"]),
        _mode_feature("fastbuild", ["-O1"]),
        feature(name = "supports_pic", enabled = True),
    ]
    return cc_common.create_cc_toolchain_config_info(
        ctx = ctx,
        features = features,
        cxx_builtin_include_directories = ctx.attr.include_directories,
        toolchain_identifier = ctx.attr.toolchain_identifier,
        host_system_name = "x86_64-linux-gnu",
        target_system_name = ctx.attr.target_system_name,
        target_cpu = ctx.attr.cpu,
        target_libc = "glibc",
        compiler = "gcc",
        abi_version = "gcc",
        abi_libc_version = "glibc",
        tool_paths = tool_paths,
    )

def _mode_feature(mode, flags):
    return feature(
        name = mode,
        flag_sets = [flag_set(actions = _COMPILE_ACTIONS, flag_groups = [flag_group(flags = flags)])],
    )

gcc_toolchain_config = rule(
    implementation = _gcc_toolchain_config_impl,
    doc = "Describes a system gcc (native or cross) to Bazel's C++ rules.",
    provides = [CcToolchainConfigInfo],
    attrs = {
        "cpu": attr.string(mandatory = True, doc = "Bazel's name for the target CPU, e.g. `k8` or `aarch64`."),
        "extra_compile_flags": attr.string_list(doc = "Flags added to every compile action."),
        "extra_link_flags": attr.string_list(doc = "Flags added to every link action."),
        "include_directories": attr.string_list(
            mandatory = True,
            doc = "The compiler's built-in include directories; headers found there need no declaration.",
        ),
        "target_system_name": attr.string(mandatory = True, doc = "The GNU triple of the target."),
        "tool_prefix": attr.string(
            mandatory = True,
            doc = "Absolute path prefix of the binutils and gcc, e.g. `/usr/bin/aarch64-linux-gnu-`.",
        ),
        "toolchain_identifier": attr.string(mandatory = True, doc = "A unique name for this toolchain."),
    },
)
