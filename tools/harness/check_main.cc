// <model>_test: runs the model on stored inputs and compares its outputs with stored expected
// values. Also checks that the model is deterministic and keeps no hidden state: a second
// instance, a second run of the first instance, and two instances running concurrently on two
// threads must reproduce the first run bit for bit.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "pure_model/narrow_floats.h"
#include "tools/harness/harness_util.h"
#include "tools/harness/model_descriptor.h"
#include "tools/harness/npy.h"

namespace pure_model_harness {
namespace {

std::string Usage(const std::string& program, const ModelDescriptor& model) {
  return "Usage: " + program +
         " --data_dir=<dir> [--rtol=R]\n"
         "\n"
         "Runs the model on <dir>/inputs/<input name>.npy and compares each output with\n"
         "<dir>/expected/<output name>.npy (characters outside [A-Za-z0-9_.-] in names become\n"
         "'_'). Floating-point outputs pass when max|actual - expected| <= R * max|expected|\n"
         "(default R = 1e-4) and NaNs and infinities match; other outputs must match exactly.\n"
         "Every output must also be reproduced bit for bit by a second instance and by a second\n"
         "run of the first. A relative <dir> is taken from the current directory, then from\n"
         "$TEST_SRCDIR.\n"
         "\n" +
         DescribeModel(model);
}

// Each output buffer is followed by this many bytes of a known value; if any of them change, the
// model wrote past the end of the output.
constexpr std::size_t kGuardBytes = 64;
constexpr unsigned char kGuardByte = 0xe7;

// The outputs of one run, each followed by guard bytes.
class RunOutputs {
 public:
  // Prefills every output with `fill`. Giving each run a different fill makes an element the
  // model never writes show up as a difference between runs.
  RunOutputs(const ModelDescriptor& model, unsigned char fill)
      : model_(model), storage_(model.num_outputs), pointers_(model.num_outputs) {
    for (int i = 0; i < model.num_outputs; ++i) {
      const std::size_t bytes = model.outputs[i].bytes;
      storage_[i].assign(bytes + kGuardBytes, kGuardByte);
      std::memset(storage_[i].data(), fill, bytes);
      pointers_[i] = storage_[i].data();
    }
  }

  void* const* pointers() const { return pointers_.data(); }
  const unsigned char* data(int i) const { return storage_[i].data(); }

  bool GuardIntact(int i) const {
    for (std::size_t j = model_.outputs[i].bytes; j < storage_[i].size(); ++j) {
      if (storage_[i][j] != kGuardByte) return false;
    }
    return true;
  }

 private:
  const ModelDescriptor& model_;
  std::vector<std::vector<unsigned char>> storage_;
  std::vector<void*> pointers_;
};

template <typename T>
T Load(const unsigned char* data, std::size_t index) {
  T value;
  std::memcpy(&value, data + index * sizeof(T), sizeof(T));
  return value;
}

bool IsFloat(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kFloat32:
    case DType::kFloat64:
    case DType::kBFloat16:
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
    case DType::kFloat4E2M1:
      return true;
    default:
      return false;
  }
}

double FloatAt(DType dtype, const unsigned char* data, std::size_t index) {
  switch (dtype) {
    case DType::kFloat16:
      return pure_model::ToFloat(Load<pure_model::Float16>(data, index));
    case DType::kBFloat16:
      return pure_model::ToFloat(Load<pure_model::BFloat16>(data, index));
    case DType::kFloat8E4M3FN:
      return pure_model::ToFloat(Load<pure_model::Float8E4M3FN>(data, index));
    case DType::kFloat8E4M3FNUZ:
      return pure_model::ToFloat(Load<pure_model::Float8E4M3FNUZ>(data, index));
    case DType::kFloat8E5M2:
      return pure_model::ToFloat(Load<pure_model::Float8E5M2>(data, index));
    case DType::kFloat8E5M2FNUZ:
      return pure_model::ToFloat(Load<pure_model::Float8E5M2FNUZ>(data, index));
    case DType::kFloat4E2M1:
      return pure_model::ToFloat(Load<pure_model::Float4E2M1>(data, index));
    case DType::kFloat32:
      return Load<float>(data, index);
    default:
      return Load<double>(data, index);
  }
}

std::string ElementText(DType dtype, const unsigned char* data, std::size_t index) {
  if (IsFloat(dtype)) {
    char text[32];
    // Enough digits to tell apart any two values of the type.
    std::snprintf(text, sizeof(text), dtype == DType::kFloat64 ? "%.17g" : "%.9g",
                  FloatAt(dtype, data, index));
    return text;
  }
  switch (dtype) {
    case DType::kBool:
      return Load<std::uint8_t>(data, index) != 0 ? "true" : "false";
    case DType::kInt8:
      return std::to_string(Load<std::int8_t>(data, index));
    case DType::kUint8:
      return std::to_string(Load<std::uint8_t>(data, index));
    case DType::kInt16:
      return std::to_string(Load<std::int16_t>(data, index));
    case DType::kUint16:
      return std::to_string(Load<std::uint16_t>(data, index));
    case DType::kInt32:
      return std::to_string(Load<std::int32_t>(data, index));
    case DType::kUint32:
      return std::to_string(Load<std::uint32_t>(data, index));
    case DType::kInt64:
      return std::to_string(Load<std::int64_t>(data, index));
    case DType::kUint64:
      return std::to_string(Load<std::uint64_t>(data, index));
    case DType::kUint4:
      return std::to_string(pure_model::ToInt(Load<pure_model::UInt4>(data, index)));
    case DType::kInt4:
      return std::to_string(pure_model::ToInt(Load<pure_model::Int4>(data, index)));
    case DType::kUint2:
      return std::to_string(pure_model::ToInt(Load<pure_model::UInt2>(data, index)));
    case DType::kInt2:
      return std::to_string(pure_model::ToInt(Load<pure_model::Int2>(data, index)));
    default:  // the floats, above
      break;
  }
  return "?";
}

// The position of the element at flat (C-order) `index`, as "[i,j,k]".
std::string IndexText(const TensorInfo& info, std::size_t index) {
  std::vector<std::int64_t> position(info.rank);
  for (int d = info.rank - 1; d >= 0; --d) {
    const auto dim = static_cast<std::size_t>(info.dims[d]);
    position[d] = static_cast<std::int64_t>(index % dim);
    index /= dim;
  }
  std::string text = "[";
  for (int d = 0; d < info.rank; ++d) {
    if (d > 0) text += ",";
    text += std::to_string(position[d]);
  }
  return text + "]";
}

std::string Number(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g", value);
  return text;
}

std::string DescribeElement(const TensorInfo& info, const unsigned char* actual,
                            const unsigned char* expected, std::size_t index) {
  return IndexText(info, index) + ": actual " + ElementText(info.dtype, actual, index) +
         ", expected " + ElementText(info.dtype, expected, index);
}

struct Verdict {
  std::string measure;  // what was measured, e.g. "max_abs_err=... (rtol 0.0001)"
  bool ok = true;
  std::vector<std::string> details;  // why not ok
};

// NaN matches NaN and an infinity matches the same infinity; otherwise a non-finite value on
// either side is a mismatch. Finite pairs must satisfy the rtol bound, scaled by the largest
// finite expected magnitude so that outputs near zero are not held to an impossible standard.
Verdict CompareFloats(const TensorInfo& info, const unsigned char* actual,
                      const unsigned char* expected, double rtol) {
  double scale = 1e-6;
  for (std::size_t i = 0; i < info.elements; ++i) {
    const double e = FloatAt(info.dtype, expected, i);
    if (std::isfinite(e)) scale = std::max(scale, std::fabs(e));
  }
  double max_error = 0;
  std::size_t worst = 0, nonfinite_mismatches = 0, first_nonfinite = 0;
  for (std::size_t i = 0; i < info.elements; ++i) {
    const double a = FloatAt(info.dtype, actual, i);
    const double e = FloatAt(info.dtype, expected, i);
    if (std::isfinite(a) && std::isfinite(e)) {
      const double error = std::fabs(a - e);
      if (error > max_error) {
        max_error = error;
        worst = i;
      }
    } else if (!(std::isnan(a) && std::isnan(e)) && !(a == e)) {
      if (nonfinite_mismatches++ == 0) first_nonfinite = i;
    }
  }

  Verdict verdict;
  char rtol_text[32];
  std::snprintf(rtol_text, sizeof(rtol_text), "%g", rtol);
  verdict.measure = "max_abs_err=" + Number(max_error) + " scale=" + Number(scale) +
                    " rel=" + Number(max_error / scale) + " (rtol " + rtol_text + ")";
  if (max_error > rtol * scale) {
    verdict.ok = false;
    verdict.details.push_back("largest error at " + DescribeElement(info, actual, expected, worst));
  }
  if (nonfinite_mismatches > 0) {
    verdict.ok = false;
    verdict.details.push_back(std::to_string(nonfinite_mismatches) +
                              " NaN or infinite values do not match, first at " +
                              DescribeElement(info, actual, expected, first_nonfinite));
  }
  return verdict;
}

Verdict CompareExactly(const TensorInfo& info, const unsigned char* actual,
                       const unsigned char* expected) {
  const std::size_t size = DTypeSize(info.dtype);
  std::size_t mismatches = 0, first = 0;
  for (std::size_t i = 0; i < info.elements; ++i) {
    if (std::memcmp(actual + i * size, expected + i * size, size) != 0) {
      if (mismatches++ == 0) first = i;
    }
  }
  Verdict verdict;
  verdict.measure = "exact";
  if (mismatches > 0) {
    verdict.ok = false;
    verdict.details.push_back(std::to_string(mismatches) + " of " +
                              std::to_string(info.elements) + " elements differ, first at " +
                              DescribeElement(info, actual, expected, first));
  }
  return verdict;
}

// Adds a failure to `verdict` if `again` is not bit-identical to `first`.
void CheckSame(const TensorInfo& info, const unsigned char* first, const unsigned char* again,
               const char* what, Verdict* verdict) {
  if (std::memcmp(first, again, info.bytes) == 0) return;
  const std::size_t size = DTypeSize(info.dtype);
  std::size_t index = 0;
  while (std::memcmp(first + index * size, again + index * size, size) == 0) ++index;
  verdict->ok = false;
  verdict->details.push_back(std::string(what) + " gave different bits, first at " +
                             IndexText(info, index) + ": " +
                             ElementText(info.dtype, again, index) + " instead of " +
                             ElementText(info.dtype, first, index));
}

// Tests normally run in their runfiles tree, where a relative --data_dir is found from the
// current directory; $TEST_SRCDIR covers runners that start the test somewhere else.
bool FindDataDir(const std::string& flag, std::string* dir, std::string* error) {
  std::vector<std::string> tried = {flag};
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (flag[0] != '/' && srcdir != nullptr && *srcdir != '\0') {
    tried.push_back(ResolvePath(srcdir, flag));
  }
  for (const std::string& candidate : tried) {
    if (std::filesystem::is_directory(candidate)) {
      *dir = candidate;
      return true;
    }
  }
  std::error_code ec;
  *error = "--data_dir: no directory " + std::filesystem::absolute(tried[0], ec).string();
  if (tried.size() > 1) *error += " nor " + tried[1];
  return false;
}

int CheckMain(int argc, char** argv) {
  const std::string program = ProgramName(argv[0]);
  const ModelDescriptor& model = Model();
  std::string error;
  if (!ValidateModel(model, &error)) return Fail(program, error);

  std::string data_dir_flag;
  double rtol = 1e-4;
  bool help = false;
  FlagParser flags;
  flags.AddString("data_dir", &data_dir_flag);
  flags.AddDouble("rtol", 0.0, &rtol);
  flags.AddSwitch("help", &help);
  if (!flags.Parse(argc, argv, &error)) return Fail(program, error);
  if (help) {
    std::fputs(Usage(program, model).c_str(), stdout);
    return 0;
  }
  if (data_dir_flag.empty()) return Fail(program, "missing --data_dir (see --help)");
  std::string data_dir;
  if (!FindDataDir(data_dir_flag, &data_dir, &error) ||
      !CheckDistinctFileNames(model.inputs, model.num_inputs, "input", &error) ||
      !CheckDistinctFileNames(model.outputs, model.num_outputs, "output", &error)) {
    return Fail(program, error);
  }

  std::vector<NpyArray> arrays(model.num_inputs);
  std::vector<const void*> inputs(model.num_inputs);
  bool loaded = true;
  for (int i = 0; i < model.num_inputs; ++i) {
    const TensorInfo& info = model.inputs[i];
    const std::string file = "inputs/" + TensorFileName(info.name);
    if (!LoadTensor("input '" + std::string(info.name) + "'", info, ResolvePath(data_dir, file),
                    ResolvePath(data_dir_flag, file), &arrays[i], &error)) {
      Fail(program, error);
      loaded = false;
    }
    inputs[i] = arrays[i].data.data();
  }
  if (!loaded) return 1;

  // Both instances are alive at once, so that state shared between instances (a static
  // buffer, say) cannot hide behind one being destroyed before the other is created.
  RunOutputs first(model, 0xa5), fresh(model, 0x5a), again(model, 0xc3);
  ModelInstance instance(model);
  if (!instance.ok()) return Fail(program, "could not create a model instance");
  const auto first_start = std::chrono::steady_clock::now();
  instance.Run(inputs.data(), first.pointers());
  const double first_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - first_start).count();
  ModelInstance second_instance(model);
  if (!second_instance.ok()) return Fail(program, "could not create a second model instance");
  second_instance.Run(inputs.data(), fresh.pointers());
  instance.Run(inputs.data(), again.pointers());

  // Two more instances run on two threads at once, many times over so that the runs overlap:
  // instances may share nothing writable, so each must still reproduce the first run. A run that
  // takes long overlaps the other thread's anyway, so big models (real networks, or anything
  // under qemu) repeat fewer times, down to 2, and the test stays within its timeout.
  constexpr int kMaxConcurrentRuns = 16, kMinConcurrentRuns = 2;
  constexpr double kConcurrentSeconds = 0.5;
  const int concurrent_runs = static_cast<int>(std::clamp(
      std::ceil(kConcurrentSeconds / std::max(first_seconds, 1e-9)),
      static_cast<double>(kMinConcurrentRuns), static_cast<double>(kMaxConcurrentRuns)));
  RunOutputs thread_a(model, 0x3c), thread_b(model, 0xe1);
  {
    ModelInstance a(model), b(model);
    if (!a.ok() || !b.ok()) return Fail(program, "could not create the instances for the threads");
    auto work = [&inputs, concurrent_runs](const ModelInstance* m, const RunOutputs* out) {
      for (int run = 0; run < concurrent_runs; ++run) m->Run(inputs.data(), out->pointers());
    };
    std::thread first_thread(work, &a, &thread_a);
    std::thread second_thread(work, &b, &thread_b);
    first_thread.join();
    second_thread.join();
  }

  int passed = 0, failed = 0;
  for (int i = 0; i < model.num_outputs; ++i) {
    const TensorInfo& info = model.outputs[i];
    const std::string file = "expected/" + TensorFileName(info.name);
    NpyArray expected;
    Verdict verdict;
    if (!LoadTensor("reference file", info, ResolvePath(data_dir, file),
                    ResolvePath(data_dir_flag, file), &expected, &error)) {
      verdict.measure = "not compared";
      verdict.ok = false;
      verdict.details.push_back(error);
    } else if (IsFloat(info.dtype)) {
      verdict = CompareFloats(info, first.data(i), expected.data.data(), rtol);
    } else {
      verdict = CompareExactly(info, first.data(i), expected.data.data());
    }
    CheckSame(info, first.data(i), fresh.data(i), "a second instance", &verdict);
    CheckSame(info, first.data(i), again.data(i), "a second run of the first instance",
              &verdict);
    CheckSame(info, first.data(i), thread_a.data(i), "an instance on a thread", &verdict);
    CheckSame(info, first.data(i), thread_b.data(i), "a concurrent instance on another thread",
              &verdict);
    if (!first.GuardIntact(i) || !fresh.GuardIntact(i) || !again.GuardIntact(i) ||
        !thread_a.GuardIntact(i) || !thread_b.GuardIntact(i)) {
      verdict.ok = false;
      verdict.details.push_back("the model wrote past the end of this output");
    }

    std::printf("output '%s': %s %s: %s\n", info.name, FormatType(info).c_str(),
                verdict.measure.c_str(), verdict.ok ? "ok" : "FAILED");
    for (const std::string& detail : verdict.details) std::printf("  %s\n", detail.c_str());
    if (verdict.ok) {
      ++passed;
    } else {
      ++failed;
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace pure_model_harness

int main(int argc, char** argv) { return pure_model_harness::CheckMain(argc, argv); }
