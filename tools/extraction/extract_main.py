"""Searches shipped files for what they reveal of an ONNX model (see extraction.py).

  tools/bazel run //tools/extraction:extract -- --model=m.onnx --artifact=app [--artifact=lib.so ...]
      [--json_out=report.json]

Prints one summary line; exits 0 whatever it finds (the tests decide what is acceptable).
"""

import argparse
import json
import os
import sys

from pure_model_codegen import hermetic

hermetic.drop_system_site_packages()

import extraction  # noqa: E402  (after the locked packages are in place)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the ONNX model an attacker wants")
    parser.add_argument("--artifact", action="append", required=True, help="a shipped file (repeatable)")
    parser.add_argument("--label", default=None, help="what to call the deployment in the report")
    parser.add_argument("--json_out", default=None, help="where to write the full report as JSON")
    options = parser.parse_args(argv)
    blobs = []
    for path in options.artifact:
        with open(path, "rb") as f:
            blobs.append(f.read())
    label = options.label or " + ".join(os.path.basename(p) for p in options.artifact)
    report = extraction.attack(options.model, label, blobs)
    print(report.summary())
    if options.json_out:
        with open(options.json_out, "w") as f:
            json.dump(report.to_json(), f, indent=1, sort_keys=True)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
