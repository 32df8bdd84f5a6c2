"""The extraction suite: plays the attacker against what each deployment ships.

For every case it searches the shipped files for the model's weights (any dimension order),
names and ONNX structure (tools/extraction/extraction.py), prints the findings as the Markdown
table the README shows, and holds each deployment to its promise:

- `plain`: our app binary, stripped as a release would be, holds no name from the model, no piece of the ONNX file and no
  ONNX signature. Its weights are there in packed layouts (only masked ones would hide), so they
  are reported, not asserted.
- `obfuscated`: nothing at all: no weight tensor (not even half of one), no name, no structure.
- `onnxruntime`: the model file ships, so everything is recoverable. Asserting that is what keeps
  the searches honest: a suite that found nothing anywhere would prove nothing.

Run `tools/bazel test //tests/extraction:extraction_suite_test --test_output=all` to see the table.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import bench
import extraction

# What each kind of deployment is called in the table.
DEPLOYMENTS = {
    "plain": "ours",
    "obfuscated": "ours, obfuscate = True",
    "onnxruntime": "ONNX Runtime (model file + libonnxruntime.so + app)",
}


def _artifacts(spec):
    """Paths of the shipped files; `ldd:<binary>` stands for the libonnxruntime that binary loads."""
    paths = []
    for item in spec.split(","):
        if item.startswith("ldd:"):
            libraries = bench.shared_libraries(item[len("ldd:"):])
            runtime = [p for name, p in libraries.items() if name.startswith("libonnxruntime.so")]
            if not runtime:
                raise SystemExit(f"{item[4:]} does not load libonnxruntime.so (ldd: {libraries})")
            paths.extend(runtime)
        else:
            paths.append(item)
    return paths


def _shipped_bytes(path):
    """The file as a release would ship it: ELF files through `strip --strip-all` (Bazel's
    `.stripped` outputs keep the symbol table), other files as they are."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "stripped")
        result = subprocess.run(["strip", "--strip-all", "-o", copy, path], capture_output=True)
        with open(copy if result.returncode == 0 else path, "rb") as f:
            return f.read()


def _problems(expectation, report):
    if expectation == "onnxruntime":
        everything = (report.tensors_recovered == report.weight_tensors and report.weight_share == 1.0
                      and report.structure_chunks_found == report.structure_chunks_total
                      and report.names_recovered == report.names_searched)
        return [] if everything else ["the model file ships, yet the searches did not recover all of it"]
    problems = []
    if report.names_recovered:
        problems.append(f"names from the model: {report.names_found}")
    if report.structure_chunks_found:
        problems.append(f"{report.structure_chunks_found} pieces of the ONNX file")
    if report.signatures_found:
        problems.append(f"ONNX signatures: {report.signatures_found}")
    if expectation == "obfuscated":
        leaked = [t for t in report.tensors if t.recovered_elements]
        if leaked:
            problems.append("weights: " + ", ".join(f"{t.name} {t.share:.1%}" for t in leaked))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", required=True,
                        help="MODEL_LABEL;DEPLOYMENT;MODEL.onnx;FILE[,FILE...] (DEPLOYMENT: one of "
                        f"{', '.join(DEPLOYMENTS)})")
    options = parser.parse_args(argv)
    rows, failures = [], []
    for case in options.case:
        label, expectation, model, files = case.split(";")
        if expectation not in DEPLOYMENTS:
            raise SystemExit(f"unknown deployment {expectation!r} in {case!r}")
        deployment = DEPLOYMENTS[expectation]
        paths = _artifacts(files)
        blobs = [_shipped_bytes(path) for path in paths]
        report = extraction.attack(model, deployment, blobs)
        print(f"{label}: {report.summary()}")
        rows.append((label, deployment, report))
        failures += [f"{label} / {deployment}: {p}" for p in _problems(expectation, report)]
    table = extraction.markdown_table(rows)
    print("\n" + table + "\n")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
