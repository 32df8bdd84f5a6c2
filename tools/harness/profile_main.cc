// <model>_profile: where the time of one run goes, step by step. Runs a model generated with
// --profile_steps (whose Run() times each of its steps) on deterministic pseudo-random inputs and
// prints a table of the steps, slowest first, to stderr; stdout gets exactly one JSON line with
// the per-step numbers in the order of Run(), for scripts.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "tools/harness/harness_util.h"
#include "tools/harness/model_descriptor.h"

namespace pure_model_harness {
namespace {

// Keeps the outputs observable, so that no optimizer can decide the runs are dead code.
volatile unsigned char g_sink;

std::string Usage(const std::string& program, const ModelDescriptor& model) {
  return "Usage: " + program +
         " [--runs=N] [--warmup=M] [--seed=S]\n"
         "\n"
         "Times each step of N runs of one model instance (default 50) after M untimed warmup\n"
         "runs (default 5), on pseudo-random inputs determined by S (default 0), in thread CPU\n"
         "time (other processes do not count). Prints the\n"
         "steps, slowest first, to stderr and one JSON line to stdout.\n"
         "\n" +
         DescribeModel(model);
}

double ThreadCpuMs() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

std::vector<double> StepTimes(const ModelInstance& instance, int num_steps) {
  std::vector<double> ns(static_cast<std::size_t>(num_steps));
  if (num_steps > 0) instance.StepTimes(ns.data());
  return ns;
}

int ProfileMain(int argc, char** argv) {
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
  if (model.step_times == nullptr) {
    return Fail(program, std::string("model ") + model.model_name +
                             " was not generated with --profile_steps: it has no step times");
  }

  std::vector<std::vector<unsigned char>> input_data, output_data;
  std::vector<const void*> inputs;
  std::vector<void*> outputs;
  MakeRandomInputs(model, static_cast<std::uint64_t>(seed), &input_data, &inputs);
  MakeOutputBuffers(model, &output_data, &outputs);

  ModelInstance instance(model);
  if (!instance.ok()) return Fail(program, "could not create a model instance");
  for (std::int64_t i = 0; i < warmup; ++i) instance.Run(inputs.data(), outputs.data());

  // The instance sums step times over all its runs: the difference of two readings is the runs
  // in between.
  const int num_steps = model.num_steps;
  const std::vector<double> before = StepTimes(instance, num_steps);
  std::vector<double> run_ms;
  run_ms.reserve(static_cast<std::size_t>(runs));
  for (std::int64_t i = 0; i < runs; ++i) {
    // Thread CPU time, as the steps are timed (see the generated Run()).
    const double start = ThreadCpuMs();
    instance.Run(inputs.data(), outputs.data());
    run_ms.push_back(ThreadCpuMs() - start);
    for (int o = 0; o < model.num_outputs; ++o) {
      if (model.outputs[o].bytes > 0) g_sink = static_cast<unsigned char*>(outputs[o])[0];
    }
  }
  const std::vector<double> after = StepTimes(instance, num_steps);

  const double n = static_cast<double>(runs);
  std::vector<double> step_ms(static_cast<std::size_t>(num_steps));
  for (int s = 0; s < num_steps; ++s) step_ms[s] = (after[s] - before[s]) / 1e6 / n;
  const double total_ms = std::accumulate(run_ms.begin(), run_ms.end(), 0.0) / n;
  const double steps_ms = std::accumulate(step_ms.begin(), step_ms.end(), 0.0);
  const double median_ms = Summarize(run_ms).median_ms;
  const auto share = [&](double ms) { return total_ms > 0 ? 100.0 * ms / total_ms : 0.0; };

  std::vector<int> order(static_cast<std::size_t>(num_steps));
  std::iota(order.begin(), order.end(), 0);
  // Slowest first; ties keep the order of Run().
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return step_ms[a] > step_ms[b]; });

  std::fprintf(stderr, "%s: %d steps, %lld runs after %lld warmup, mean per run\n\n",
               model.model_name, num_steps, static_cast<long long>(runs),
               static_cast<long long>(warmup));
  std::fprintf(stderr, "%12s %8s %8s  %s\n", "ms/run", "share", "cumul.", "step");
  double cumulative = 0;
  for (const int s : order) {
    cumulative += step_ms[s];
    std::fprintf(stderr, "%12.6f %7.2f%% %7.2f%%  %s\n", step_ms[s], share(step_ms[s]),
                 share(cumulative), model.step_names[s]);
  }
  std::fprintf(stderr, "\n%12.6f %7.2f%%           sum of steps\n", steps_ms, share(steps_ms));
  std::fprintf(stderr,
               "%12.6f %7.2f%%           total (thread CPU time of Run(); median %.6f ms): the rest is "
               "timing overhead and output copies\n",
               total_ms, 100.0, median_ms);

  std::string json = "{\"model\": " + JsonString(model.model_name) +
                     ", \"runs\": " + std::to_string(runs) +
                     ", \"warmup\": " + std::to_string(warmup) +
                     ", \"seed\": " + std::to_string(seed);
  char number[64];
  std::snprintf(number, sizeof(number), "%.6g", total_ms);
  json += std::string(", \"total_ms\": ") + number;
  std::snprintf(number, sizeof(number), "%.6g", median_ms);
  json += std::string(", \"median_total_ms\": ") + number;
  std::snprintf(number, sizeof(number), "%.6g", steps_ms);
  json += std::string(", \"steps_ms\": ") + number + ", \"steps\": [";
  for (int s = 0; s < num_steps; ++s) {
    std::snprintf(number, sizeof(number), "%.6g", step_ms[s]);
    json += std::string(s > 0 ? ", " : "") + "{\"step\": " + JsonString(model.step_names[s]) +
            ", \"ms\": " + number;
    std::snprintf(number, sizeof(number), "%.4g", share(step_ms[s]) / 100.0);
    json += std::string(", \"share\": ") + number + "}";
  }
  json += "]}";
  std::printf("%s\n", json.c_str());
  return 0;
}

}  // namespace
}  // namespace pure_model_harness

int main(int argc, char** argv) { return pure_model_harness::ProfileMain(argc, argv); }
