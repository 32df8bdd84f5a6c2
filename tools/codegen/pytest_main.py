"""Runs the generator's pytest suite under `bazel test` (the same tests run with plain pytest)."""

import os
import sys

from pure_model_codegen import hermetic

hermetic.drop_system_site_packages()

import pytest  # noqa: E402  (after the path fix: the locked pytest, not the system's)

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(pytest.main([os.path.join(here, "tests"), "-c", os.path.join(here, "pytest.ini"),
                          "-p", "no:cacheprovider"] + sys.argv[1:]))
