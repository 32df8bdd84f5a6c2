"""Entry point of //tools/bench/models:fill_weights: graph with statistics in, model out."""

import argparse
import os
import sys

from pure_model_codegen import hermetic

# The locked onnx and numpy only, so that the filled model is the same on every machine.
hermetic.drop_system_site_packages()

import onnx  # noqa: E402  (after the path fix)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fill_weights  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Fills a benchmark model graph with seeded random weights.")
    parser.add_argument("--graph", required=True, help="graph .onnx written by make_models.py")
    parser.add_argument("--out", required=True, help="the model to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    onnx.save(fill_weights.fill(onnx.load(args.graph), args.seed), args.out)


if __name__ == "__main__":
    main()
