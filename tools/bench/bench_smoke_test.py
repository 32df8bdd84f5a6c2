"""Smoke test of //tools/bench: the tool on the example MLP with --runs=3, prebuilt binaries.

Checks that results.md, results.json and ratios.png appear and that the fields are sane (present,
positive, consistent with each other and with the build report). Never checks a timing against a
bound: the tool only reports.
"""

import argparse
import json
import os
import sys
import tempfile
import unittest

import bench

FLAGS = None


class BenchSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        os.environ.setdefault("MPLCONFIGDIR", cls.out)
        os.environ.pop("BUILD_WORKING_DIRECTORY", None)
        cls.exit_code = bench.main([
            "--prebuilt=mlp|%s|%s|%s" % (FLAGS.benchmark, FLAGS.onnx, FLAGS.report),
            "--ort_benchmark=" + FLAGS.ort_benchmark,
            "--peak_flops=" + FLAGS.peak_flops,
            "--runs=3", "--rounds=2", "--warmup=1",
            "--out=" + cls.out,
        ])
        with open(os.path.join(cls.out, "results.json"), encoding="utf-8") as f:
            cls.results = json.load(f)
        with open(FLAGS.report, encoding="utf-8") as f:
            cls.report = json.load(f)

    def test_exit_code_and_files(self):
        self.assertEqual(self.exit_code, 0)
        with open(os.path.join(self.out, "ratios.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open(os.path.join(self.out, "results.md"), encoding="utf-8") as f:
            table = f.read()
        self.assertIn("| mlp | ", table)
        self.assertIn("| **geomean** |", table)

    def test_model_fields(self):
        (model,) = self.results["models"]
        self.assertEqual(model["name"], "mlp")
        self.assertIsNone(model["error"])
        self.assertEqual(model["runs_per_process"], 3)
        self.assertEqual(model["input_shapes"], {"features": [1, 64]})
        self.assertEqual(model["report"]["flops"], self.report["flops"])
        self.assertGreater(model["report"]["flops"], 0)
        for who in ("ours", "ort"):
            summary = model[who]
            processes = model[who + "_processes"]
            self.assertEqual(len(processes), 2)
            for record in processes:
                self.assertEqual(record["runs"], 3)
                self.assertEqual(record["warmup"], 1)
            self.assertGreater(summary["median_ms"], 0)
            self.assertLessEqual(summary["min_ms"], summary["median_ms"])
            self.assertGreater(summary["peak_rss_kb"], 0)
            self.assertTrue(summary["deterministic"])
            self.assertGreater(model["gflops"][who], 0)
        self.assertTrue(model["ort_processes"][0]["runtime"].startswith("onnxruntime "))
        self.assertEqual(model["ours_processes"][0]["weight_bytes"], self.report["weight_bytes"])

    def test_sizes_and_ratios(self):
        (model,) = self.results["models"]
        sizes = model["sizes"]
        self.assertGreater(sizes["ours_stripped_bytes"], 0)
        self.assertLessEqual(sizes["ours_stripped_bytes"], os.path.getsize(FLAGS.benchmark))
        self.assertEqual(sizes["model_file_bytes"], os.path.getsize(FLAGS.onnx))
        self.assertIn("libonnxruntime.so", sizes["libonnxruntime"])
        self.assertGreater(sizes["libonnxruntime_stripped_bytes"], 1_000_000)
        self.assertEqual(sizes["ort_total_bytes"], sizes["ort_harness_stripped_bytes"]
                         + sizes["libonnxruntime_stripped_bytes"] + sizes["model_file_bytes"])
        ratios = model["ratios"]
        self.assertAlmostEqual(ratios["latency"], model["ours"]["median_ms"] / model["ort"]["median_ms"])
        self.assertAlmostEqual(ratios["peak_rss"], model["ours"]["peak_rss_kb"] / model["ort"]["peak_rss_kb"])
        self.assertAlmostEqual(ratios["deployed_bytes"], sizes["ours_stripped_bytes"] / sizes["ort_total_bytes"])
        for key, value in self.results["meta"]["geomean"].items():
            self.assertAlmostEqual(value, ratios[key])  # one model: the geomean is its ratio

    def test_peak(self):
        peaks = self.results["peak_gflops"]
        self.assertEqual(peaks["notes"], 116.5)
        self.assertGreater(peaks["measured"], 0)

    def test_models_file_parses(self):
        specs = bench.read_models_file(FLAGS.models_file)
        names = [s.name for s in specs]
        self.assertEqual(names[:4], ["mlp", "cnn", "mobilenetv2", "resnet18"])
        self.assertEqual(specs[2].input_shapes, {"image": [1, 3, 224, 224]})

    def test_durations_from_profile(self):
        def action(name, mnemonic, micros):
            return {"cat": "action processing", "ph": "X", "name": name, "dur": micros,
                    "args": {"mnemonic": mnemonic}}

        pkg = bench.SCRATCH_PACKAGE
        trace = {"traceEvents": [
            action(f"Generating C++ for model //{pkg}:timing_m_codegen (x86_64)", "PureModelCodegen", 2_000_000),
            action(f"Compiling {pkg}/timing_m.cc", "CppCompile", 3_000_000),
            action(f"Compiling {pkg}/timing_m_descriptor.cc", "CppCompile", 500_000),
            action(f"Linking {pkg}/timing_m_benchmark", "CppLink", 250_000),
            action("Compiling tools/harness/npy.cc", "CppCompile", 9_000_000),
        ]}
        times = bench.durations_from_profile(trace, pkg, "timing_m", 7.0)
        self.assertEqual(times["codegen_s"], 2.0)
        self.assertEqual(times["compile_s"], 3.0)
        self.assertEqual(times["compile_other_s"], 0.5)
        self.assertEqual(times["link_s"], 0.25)
        self.assertEqual(times["actions_s"], 5.75)
        self.assertEqual(times["wall_s"], 7.0)
        self.assertIsNone(bench.durations_from_profile({"traceEvents": []}, pkg, "timing_m", 1.0))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("benchmark", "onnx", "report", "ort_benchmark", "peak_flops", "models_file"):
        parser.add_argument("--" + flag, required=True)
    FLAGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)
