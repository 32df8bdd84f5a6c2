"""Regression test: every case results.txt lists as `pass` must still pass.

Runs under `bazel test //tests/conformance:conformance_test` (part of `tools/bazel test //...`).
A case that stops passing fails the test and is named in its log; after a deliberate change,
regenerate the file with `tools/bazel run //tests/conformance:run_conformance`.
"""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)  # Bazel's stub does not put the script's directory on sys.path

import run_conformance  # noqa: E402  (puts the locked packages first on import)

if __name__ == "__main__":
    sys.exit(run_conformance.main(["--check", os.path.join(here, "results.txt"), "--jobs", "2"] + sys.argv[1:]))
