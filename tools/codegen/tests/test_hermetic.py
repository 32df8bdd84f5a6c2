"""Under Bazel, the generator imports exactly the locked packages and nothing from the system."""

import os
import re

import pytest

LOCK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deps", "requirements_lock.txt")


def _locked_versions():
    with open(LOCK) as f:
        return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", f.read(), re.M))


@pytest.mark.skipif("TEST_SRCDIR" not in os.environ, reason="checks the Bazel test environment")
@pytest.mark.parametrize("module,project", [("onnx", "onnx"), ("numpy", "numpy"), ("mako", "mako"),
                                            ("absl", "absl-py"), ("pytest", "pytest"),
                                            ("hypothesis", "hypothesis")])
def test_imports_come_from_the_locked_wheels(module, project):
    imported = __import__(module)
    path = os.path.abspath(imported.__file__)
    assert "pure_model_python_deps" in path, f"{module} imported from {path}, not from the locked wheels"
    from importlib import metadata

    assert metadata.version(project) == _locked_versions()[project]


def test_lock_pins_every_requirement_with_hashes():
    text = open(LOCK).read()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M)
    requirements = open(os.path.join(os.path.dirname(LOCK), "requirements.in")).read()
    wanted = {re.sub(r"[-_.]+", "-", m).lower() for m in re.findall(r"^([A-Za-z0-9_.-]+)==", requirements, re.M)}
    assert wanted <= {name for name, _ in entries}
    assert len(entries) == len(re.findall(r"^\S+==", text, re.M))  # every pin carries hashes
