"""The generator's Python packages, installed from a hash-locked list of wheels.

Why not rules_python's pip integration: the rules_python that Debian ships (0.22.1, the only
one reachable without a module registry) fetches wheels through Bazel's downloader and needs a
hermetic interpreter download; neither works on a machine that reaches PyPI only through pip.
So this repository rule runs the build machine's own `python3 -m pip install --require-hashes`
on the lock file: pip then honours the user's usual environment (index URL, find-links, CA
bundle, proxy), and no package can enter that the lock does not name by hash.

The packages are installed into the repository and put first on the generator's import path,
and the generator's entry points drop the interpreter's own site-packages, so the build sees
exactly the locked versions. The lock file is an input of the repository rule and the
installed files are runfiles of the generator, so changing a locked version refetches the
repository and changes every codegen action's key.
"""

# pip's own environment, so that users behind a mirror or proxy can fetch; a change refetches.
PIP_ENVIRONMENT = [
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_TRUSTED_HOST",
    "PIP_CONFIG_FILE",
    "PIP_DEFAULT_TIMEOUT",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
]

_BUILD = """\
load("@rules_python//python:defs.bzl", "py_library")

package(default_visibility = ["//visibility:public"])

# Every locked package, importable as installed by pip (site/ goes on sys.path).
py_library(
    name = "site_packages",
    srcs = glob(["site/**/*.py"], allow_empty = True),
    data = glob(
        ["site/**"],
        exclude = [
            "site/**/*.py",
            "site/**/__pycache__/**",
            # Console scripts carry the absolute path of the interpreter that installed them.
            "site/bin/**",
            "site/**/RECORD",
            "site/**/direct_url.json",
            "site/**/* *",
        ],
    ),
    imports = ["site"],
)

exports_files(["interpreter.txt"])
"""

def _pure_model_python_deps_impl(rctx):
    python = rctx.which("python3")
    if not python:
        fail("rules_pure_model: no python3 on PATH; the code generator needs Python 3.11 or newer with pip")
    lock = rctx.path(rctx.attr.lock)
    result = rctx.execute(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "--no-compile",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--target",
            "site",
            "--requirement",
            lock,
        ],
        # Debian marks its interpreter "externally managed"; --target writes only here.
        environment = {"PIP_BREAK_SYSTEM_PACKAGES": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        timeout = 900,
        quiet = True,
    )
    if result.return_code != 0:
        fail(("rules_pure_model: pip could not install the generator's locked Python packages ({lock}) " +
              "with {python}:\n{err}").format(lock = rctx.attr.lock, python = python, err = result.stderr[-4000:]))
    version = rctx.execute([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    rctx.file("interpreter.txt", "%s\npython %s" % (python, version.stdout.strip()))
    rctx.file("BUILD.bazel", _BUILD)

pure_model_python_deps = repository_rule(
    implementation = _pure_model_python_deps_impl,
    doc = "Installs the wheels of a hash-locked requirements file with the build machine's python3 and pip.",
    attrs = {
        "lock": attr.label(
            mandatory = True,
            allow_single_file = True,
            doc = "A requirements file in which every line pins a version and its sha256 hashes.",
        ),
    },
    environ = PIP_ENVIRONMENT + ["PATH"],
)

def _python_deps_impl(_mctx):
    pure_model_python_deps(
        name = "pure_model_python_deps",
        lock = Label("//tools/codegen/deps:requirements_lock.txt"),
    )

python_deps = module_extension(
    implementation = _python_deps_impl,
    doc = "Creates @pure_model_python_deps, the generator's locked Python packages.",
)
