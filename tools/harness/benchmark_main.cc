// <model>_benchmark: times the model on deterministic pseudo-random inputs. A human summary goes
// to stderr; stdout gets exactly one JSON line, for scripts.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/harness/harness_util.h"
#include "tools/harness/model_descriptor.h"
#include "tools/harness/npy.h"

namespace pure_model_harness {
namespace {

// Keeps the results observable, so that no optimizer (LTO included) can decide the runs are
// dead code.
volatile std::uint64_t g_sink;

std::string Usage(const std::string& program, const ModelDescriptor& model) {
  return "Usage: " + program +
         " [--runs=N] [--warmup=M] [--seed=S]\n"
         "\n"
         "Times N runs of one model instance (default 50) after M untimed warmup runs (default\n"
         "5), on pseudo-random inputs determined by S (default 0). Prints a summary to stderr\n"
         "and one JSON line to stdout.\n"
         "\n" +
         DescribeModel(model);
}

// FNV-1a over every output byte.
std::uint64_t Checksum(const ModelDescriptor& model, const std::vector<void*>& outputs) {
  std::uint64_t hash = 0xcbf29ce484222325u;
  for (int i = 0; i < model.num_outputs; ++i) {
    const auto* bytes = static_cast<const unsigned char*>(outputs[i]);
    for (std::size_t j = 0; j < model.outputs[i].bytes; ++j) {
      hash = (hash ^ bytes[j]) * 0x100000001b3u;
    }
  }
  return hash;
}

int BenchmarkMain(int argc, char** argv) {
  const std::string program = ProgramName(argv[0]);
  const ModelDescriptor& model = Model();
  std::string error;
  if (!ValidateModel(model, &error)) return Fail(program, error);

  std::int64_t runs = 50, warmup = 5, seed = 0;
  bool help = false;
  if (!ParseTimingFlags(argc, argv, &runs, &warmup, &seed, &help, &error)) return Fail(program, error);
  if (help) {
    std::fputs(Usage(program, model).c_str(), stdout);
    return 0;
  }

  std::vector<std::vector<unsigned char>> input_data, output_data;
  std::vector<const void*> inputs;
  std::vector<void*> outputs;
  MakeRandomInputs(model, static_cast<std::uint64_t>(seed), &input_data, &inputs);
  MakeOutputBuffers(model, &output_data, &outputs);

  ModelInstance instance(model);
  if (!instance.ok()) return Fail(program, "could not create a model instance");
  for (std::int64_t i = 0; i < warmup; ++i) instance.Run(inputs.data(), outputs.data());
  // Every run sees the same inputs, so every run should produce the same outputs.
  bool have_reference = warmup > 0;
  std::uint64_t reference = have_reference ? Checksum(model, outputs) : 0;

  std::vector<double> times_ms;
  times_ms.reserve(static_cast<std::size_t>(runs));
  bool deterministic = true;
  for (std::int64_t i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    instance.Run(inputs.data(), outputs.data());
    const auto end = std::chrono::steady_clock::now();
    times_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    // Outside the timed region: consume every run's outputs, and notice if they change.
    const std::uint64_t run_checksum = Checksum(model, outputs);
    g_sink = run_checksum;
    if (!have_reference) {
      reference = run_checksum;
      have_reference = true;
    } else if (run_checksum != reference) {
      deterministic = false;
    }
  }
  const std::uint64_t final_checksum = g_sink;
  const TimingSummary s = Summarize(times_ms);
  const long long peak_rss_kb = PeakRssKb();

  std::fprintf(stderr,
               "%s: %lld runs after %lld warmup: median %.4g ms, min %.4g, mean %.4g, p90 %.4g, "
               "max %.4g; peak RSS %lld kB; arena %zu bytes, weights %zu bytes\n",
               model.model_name, static_cast<long long>(runs), static_cast<long long>(warmup),
               s.median_ms, s.min_ms, s.mean_ms, s.p90_ms, s.max_ms, peak_rss_kb,
               model.arena_bytes, model.weight_bytes);
  if (!deterministic) {
    std::fprintf(stderr, "%s: warning: outputs differed between runs on the same inputs\n",
                 program.c_str());
  }
  std::printf(
      "{\"model\": %s, \"runs\": %lld, \"warmup\": %lld, \"seed\": %lld, "
      "\"median_ms\": %.6g, \"min_ms\": %.6g, \"mean_ms\": %.6g, \"p90_ms\": %.6g, "
      "\"max_ms\": %.6g, \"peak_rss_kb\": %lld, \"arena_bytes\": %zu, \"weight_bytes\": %zu, "
      "\"output_checksum\": \"%016" PRIx64 "\", \"deterministic\": %s}\n",
      JsonString(model.model_name).c_str(), static_cast<long long>(runs),
      static_cast<long long>(warmup), static_cast<long long>(seed), s.median_ms, s.min_ms,
      s.mean_ms, s.p90_ms, s.max_ms, peak_rss_kb, model.arena_bytes, model.weight_bytes,
      final_checksum, deterministic ? "true" : "false");
  return 0;
}

}  // namespace
}  // namespace pure_model_harness

int main(int argc, char** argv) { return pure_model_harness::BenchmarkMain(argc, argv); }
