"""WORKSPACE-mode setup for rules_pure_model. (With bzlmod, MODULE.bazel does all of this.)

    local_repository(name = "rules_pure_model", path = "...")  # or http_archive
    load("@rules_pure_model//rules:repositories.bzl", "rules_pure_model_dependencies")
    rules_pure_model_dependencies()
    register_toolchains("@rules_pure_model//toolchains:all")  # optional

The workspace must also provide `platforms`, `rules_cc`, `rules_python` and `bazel_skylib`
(the versions in MODULE.bazel or newer), as it does for most rule sets; this function does not
download them, so it never fights the versions a monorepo already pins.
"""

load("//rules/private:python_deps.bzl", "pure_model_python_deps")

def rules_pure_model_dependencies():
    """Declares the repositories rules_pure_model itself brings: the generator's locked Python packages."""
    if not native.existing_rule("pure_model_python_deps"):
        pure_model_python_deps(
            name = "pure_model_python_deps",
            lock = Label("//tools/codegen/deps:requirements_lock.txt"),
        )
