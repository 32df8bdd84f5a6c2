// ort_benchmark: times an ONNX model with ONNX Runtime's C++ API, the way <model>_benchmark
// times the generated code, so the two can be compared line for line:
//
//   tools/bazel run //tools/bench:ort_benchmark -- --model=path/to/m.onnx --runs=50 --warmup=5
//
// One intra-op and one inter-op thread, sequential execution, all graph optimisations. The inputs
// are the same pseudo-random numbers <model>_benchmark uses (SplitMix64, one stream per input),
// outputs are preallocated when their shapes are static (as the generated code's are), and only
// Session::Run is timed. A human summary goes to stderr; stdout gets one JSON line with the same
// fields as <model>_benchmark's (arena_bytes and weight_bytes are null: ONNX Runtime plans its
// own memory), plus the runtime's version, the model file's size and the session's setup time.
// Peak RSS is the process's VmHWM, which includes loading and optimising the model.
//
// Creating a session with Debian's libonnxruntime floods stderr with harmless schema
// re-registration lines; this program filters them out (--keep_schema_errors keeps them).
#include <onnxruntime/onnxruntime_cxx_api.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tools/harness/harness_util.h"
#include "tools/onnxruntime/ort_util.h"

namespace {

using pure_model_ort::ElementSize;
using pure_model_ort::Tensor;

volatile std::uint64_t g_sink;

const char kUsage[] =
    "Usage: ort_benchmark --model=FILE.onnx [--runs=N] [--warmup=M] [--seed=S]\n"
    "                     [--input_shape=NAME=D0,D1,...]... [--keep_schema_errors]\n"
    "\n"
    "Times N runs of one ONNX Runtime session (default 50) after M untimed warmup runs\n"
    "(default 5), with 1 intra-op and 1 inter-op thread, sequential execution and\n"
    "ORT_ENABLE_ALL, on the pseudo-random inputs <model>_benchmark uses for seed S (default 0).\n"
    "--input_shape binds an input's dynamic dimensions. A relative --model is taken from the\n"
    "directory `bazel run` was invoked in. Prints a summary to stderr and one JSON line to\n"
    "stdout.\n";

// ---- flags ---------------------------------------------------------------------------------

struct Flags {
  std::string model;
  std::int64_t runs = 50, warmup = 5, seed = 0;
  std::map<std::string, std::vector<std::int64_t>> input_shapes;
  bool keep_schema_errors = false;
  bool help = false;
};

bool ParseInt(const std::string& text, std::int64_t min_value, std::int64_t* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || parsed < min_value) return false;
  *value = parsed;
  return true;
}

bool ParseFlags(int argc, char** argv, Flags* flags, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      flags->help = true;
      continue;
    }
    if (arg == "--keep_schema_errors") {
      flags->keep_schema_errors = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      *error = "unexpected argument '" + arg + "'";
      return false;
    }
    std::string name = arg.substr(2), value;
    const std::size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      *error = "--" + name + " needs a value";
      return false;
    }
    if (name == "model") {
      flags->model = value;
    } else if (name == "runs" || name == "warmup" || name == "seed") {
      std::int64_t* target = name == "runs" ? &flags->runs : name == "warmup" ? &flags->warmup : &flags->seed;
      if (!ParseInt(value, name == "runs" ? 1 : 0, target)) {
        *error = "--" + name + ": expected an integer >= " + (name == "runs" ? "1" : "0") +
                 ", got '" + value + "'";
        return false;
      }
    } else if (name == "input_shape") {
      const std::size_t split = value.find('=');
      std::vector<std::int64_t> dims;
      if (split == std::string::npos || split == 0 || !pure_model_ort::ParseShape(value.substr(split + 1), &dims)) {
        *error = "--input_shape: expected NAME=D0,D1,..., got '" + value + "'";
        return false;
      }
      flags->input_shapes[value.substr(0, split)] = dims;
    } else {
      *error = "unknown flag --" + name;
      return false;
    }
  }
  if (!flags->help && flags->model.empty()) {
    *error = "--model is required";
    return false;
  }
  return true;
}

std::uint64_t Checksum(const std::vector<Ort::Value>& outputs) {
  std::uint64_t hash = 0xcbf29ce484222325u;
  for (const Ort::Value& value : outputs) {
    const Ort::TensorTypeAndShapeInfo info = value.GetTensorTypeAndShapeInfo();
    const std::size_t bytes = info.GetElementCount() * ElementSize(info.GetElementType());
    const auto* data = static_cast<const unsigned char*>(value.GetTensorRawData());
    for (std::size_t j = 0; j < bytes; ++j) hash = (hash ^ data[j]) * 0x100000001b3u;
  }
  return hash;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "ort_benchmark: error: %s\n", message.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) return Fail(error + "\n\n" + kUsage);
  if (flags.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::string path = flags.model;
  const char* working_directory = std::getenv("BUILD_WORKING_DIRECTORY");
  if (!path.empty() && path[0] != '/' && working_directory != nullptr && *working_directory) {
    path = std::string(working_directory) + "/" + path;
  }
  std::FILE* model_file = std::fopen(path.c_str(), "rb");
  if (model_file == nullptr) return Fail("cannot open --model " + path);
  std::fseek(model_file, 0, SEEK_END);
  const long model_bytes = std::ftell(model_file);
  std::fclose(model_file);
  std::string model_name = path.substr(path.find_last_of('/') + 1);
  if (model_name.size() > 5 && model_name.compare(model_name.size() - 5, 5, ".onnx") == 0) {
    model_name.resize(model_name.size() - 5);
  }

  std::optional<pure_model_ort::StderrFilter> filter;
  if (!flags.keep_schema_errors) filter.emplace();

  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "ort_benchmark");
  const auto setup_start = std::chrono::steady_clock::now();
  Ort::Session session(env, path.c_str(), pure_model_ort::SingleThreadOptions());
  const double session_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - setup_start).count();
  // Everything that prints the spam has run.
  if (filter) filter->Stop();

  Ort::AllocatorWithDefaultOptions allocator;
  const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);

  std::vector<Tensor> inputs;
  std::vector<Ort::Value> input_values;
  if (!pure_model_ort::MakeInputs(session, flags.input_shapes, {},
                                  static_cast<std::uint64_t>(flags.seed), &inputs, &input_values,
                                  &error)) {
    return Fail(error);
  }

  // Outputs with static shapes are preallocated and reused, like the generated code's
  // caller-owned buffers; the others are allocated by ONNX Runtime on every run.
  std::vector<Tensor> outputs(session.GetOutputCount());
  bool preallocated = true;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::string name = session.GetOutputNameAllocated(i, allocator).get();
    const Ort::TypeInfo type_info = session.GetOutputTypeInfo(i);
    bool dynamic;
    if (!pure_model_ort::Describe("output", name, type_info, {}, &outputs[i], &dynamic, &error)) return Fail(error);
    preallocated &= !dynamic;
  }
  std::vector<Ort::Value> output_values;
  for (Tensor& output : outputs) {
    if (!preallocated) {
      output_values.emplace_back(nullptr);
      continue;
    }
    output.data.resize(std::max<std::size_t>(1, output.Bytes()));
    output_values.push_back(Ort::Value::CreateTensor(memory, output.data.data(), output.Bytes(),
                                                     output.dims.data(), output.dims.size(),
                                                     output.type));
  }
  std::vector<const char*> input_names, output_names;
  for (const Tensor& t : inputs) input_names.push_back(t.name.c_str());
  for (const Tensor& t : outputs) output_names.push_back(t.name.c_str());

  const Ort::RunOptions run_options;
  auto run = [&] {
    if (preallocated) {
      session.Run(run_options, input_names.data(), input_values.data(), input_values.size(),
                  output_names.data(), output_values.data(), output_values.size());
    } else {
      output_values = session.Run(run_options, input_names.data(), input_values.data(),
                                  input_values.size(), output_names.data(), output_names.size());
    }
  };

  for (std::int64_t i = 0; i < flags.warmup; ++i) run();
  bool have_reference = flags.warmup > 0;
  std::uint64_t reference = have_reference ? Checksum(output_values) : 0;
  bool deterministic = true;
  std::vector<double> times_ms;
  times_ms.reserve(static_cast<std::size_t>(flags.runs));
  for (std::int64_t i = 0; i < flags.runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    const auto end = std::chrono::steady_clock::now();
    times_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    const std::uint64_t run_checksum = Checksum(output_values);
    g_sink = run_checksum;
    if (!have_reference) {
      reference = run_checksum;
      have_reference = true;
    } else if (run_checksum != reference) {
      deterministic = false;
    }
  }
  const std::uint64_t final_checksum = g_sink;
  const pure_model_harness::TimingSummary s = pure_model_harness::Summarize(times_ms);
  const long long peak_rss_kb = pure_model_harness::PeakRssKb();
  const std::string version = Ort::GetVersionString();

  std::fprintf(stderr,
               "%s (onnxruntime %s): %lld runs after %lld warmup: median %.4g ms, min %.4g, mean "
               "%.4g, p90 %.4g, max %.4g; peak RSS %lld kB; session setup %.4g ms\n",
               model_name.c_str(), version.c_str(), static_cast<long long>(flags.runs),
               static_cast<long long>(flags.warmup), s.median_ms, s.min_ms, s.mean_ms, s.p90_ms,
               s.max_ms, peak_rss_kb, session_ms);
  if (!deterministic) std::fprintf(stderr, "ort_benchmark: warning: outputs differed between runs on the same inputs\n");
  std::printf(
      "{\"model\": %s, \"runtime\": %s, \"runs\": %lld, \"warmup\": %lld, \"seed\": %lld, "
      "\"median_ms\": %.6g, \"min_ms\": %.6g, \"mean_ms\": %.6g, \"p90_ms\": %.6g, "
      "\"max_ms\": %.6g, \"peak_rss_kb\": %lld, \"arena_bytes\": null, \"weight_bytes\": null, "
      "\"model_bytes\": %ld, \"session_ms\": %.6g, \"output_checksum\": \"%016" PRIx64
      "\", \"deterministic\": %s}\n",
      pure_model_harness::JsonString(model_name).c_str(),
      pure_model_harness::JsonString("onnxruntime " + version).c_str(),
      static_cast<long long>(flags.runs), static_cast<long long>(flags.warmup),
      static_cast<long long>(flags.seed), s.median_ms, s.min_ms, s.mean_ms, s.p90_ms, s.max_ms,
      peak_rss_kb, model_bytes, session_ms, final_checksum, deterministic ? "true" : "false");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pure_model_ort::CatchErrors("ort_benchmark", Main, argc, argv);
}
