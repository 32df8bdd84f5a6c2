"""Checks outputs written by a `<name>_run` tool against onnx's reference evaluator.

    compare_with_reference.py MODEL.onnx INPUT_NAME=FILE.npy ... -- OUTPUT_DIR

Passes when every output is within 1e-4 of the reference, relative to the output's largest
magnitude.
"""

import os
import re
import sys

import numpy as np
from onnx.reference import ReferenceEvaluator

RTOL = 1e-4


def main(argv):
    separator = argv.index("--")
    model, feeds_args, out_dir = argv[1], argv[2:separator], argv[separator + 1]
    feeds = {}
    for item in feeds_args:
        name, path = item.split("=", 1)
        feeds[name] = np.load(path)
    evaluator = ReferenceEvaluator(model)
    failures = 0
    for name, expected in zip(evaluator.output_names, evaluator.run(None, feeds)):
        got = np.load(os.path.join(out_dir, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".npy"))
        scale = max(float(np.abs(expected).max()), 1e-6)
        err = float(np.abs(got.astype(np.float64) - expected).max())
        ok = got.shape == expected.shape and got.dtype == expected.dtype and err <= RTOL * scale
        print(f"{'ok  ' if ok else 'FAIL'} {name}: shape {list(got.shape)} max_abs_err={err:.3g} scale={scale:.3g}")
        failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
