#include "tools/harness/harness_util.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "pure_model/narrow_floats.h"

namespace pure_model_harness {
namespace {

bool ParseInt64(const std::string& text, std::int64_t* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *value = parsed;
  return true;
}

bool ParseDouble(const std::string& text, double* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const double parsed = std::strtod(text.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(parsed)) return false;
  *value = parsed;
  return true;
}

std::string FormatDims(const std::int64_t* dims, int rank) {
  std::string text = "[";
  for (int i = 0; i < rank; ++i) {
    if (i > 0) text += ",";
    text += std::to_string(dims[i]);
  }
  return text + "]";
}

bool ValidateTensor(const TensorInfo& info, const std::string& what, std::string* error) {
  if (info.name == nullptr) {
    *error = what + " has no name";
    return false;
  }
  const std::string named = what + " '" + info.name + "'";
  const std::size_t element_size = DTypeSize(info.dtype);
  if (element_size == 0) {
    *error = named + " has unknown dtype " + std::to_string(static_cast<int>(info.dtype));
    return false;
  }
  if (info.rank < 0 || (info.rank > 0 && info.dims == nullptr)) {
    *error = named + " has an invalid rank or no dims";
    return false;
  }
  std::size_t elements = 1;
  for (int i = 0; i < info.rank; ++i) {
    if (info.dims[i] < 0) {
      *error = named + " has a negative dimension: " + FormatDims(info.dims, info.rank);
      return false;
    }
    elements *= static_cast<std::size_t>(info.dims[i]);
  }
  if (elements != info.elements || elements * element_size != info.bytes) {
    *error = named + " is " + FormatType(info) + " but claims " + std::to_string(info.elements) +
             " elements and " + std::to_string(info.bytes) + " bytes";
    return false;
  }
  return true;
}

// SplitMix64: tiny, fast, and the same sequence on every platform, which the <random>
// distributions do not promise.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

template <typename T>
void Store(unsigned char* data, std::size_t index, T value) {
  std::memcpy(data + index * sizeof(T), &value, sizeof(T));
}

}  // namespace

// ---- Command line --------------------------------------------------------------------------

std::string ProgramName(const char* argv0) {
  if (argv0 == nullptr || *argv0 == '\0') return "harness";
  const char* slash = std::strrchr(argv0, '/');
  return slash != nullptr ? slash + 1 : argv0;
}

int Fail(const std::string& program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program.c_str(), message.c_str());
  return 1;
}

void FlagParser::AddString(const std::string& name, std::string* value) {
  flags_.push_back({name, true, [value](const std::string& text, std::string*) {
                      *value = text;
                      return true;
                    }});
}

void FlagParser::AddRepeated(const std::string& name, std::vector<std::string>* values) {
  flags_.push_back({name, true, [values](const std::string& text, std::string*) {
                      values->push_back(text);
                      return true;
                    }});
}

void FlagParser::AddInt(const std::string& name, std::int64_t min_value, std::int64_t* value) {
  flags_.push_back({name, true, [=](const std::string& text, std::string* error) {
                      std::int64_t parsed = 0;
                      if (!ParseInt64(text, &parsed) || parsed < min_value) {
                        *error = "--" + name + " wants an integer >= " +
                                 std::to_string(min_value) + ", got '" + text + "'";
                        return false;
                      }
                      *value = parsed;
                      return true;
                    }});
}

void FlagParser::AddDouble(const std::string& name, double min_value, double* value) {
  flags_.push_back({name, true, [=](const std::string& text, std::string* error) {
                      double parsed = 0;
                      if (!ParseDouble(text, &parsed) || parsed < min_value) {
                        char bound[32];
                        std::snprintf(bound, sizeof(bound), "%g", min_value);
                        *error = "--" + name + " wants a finite number >= " + bound +
                                 ", got '" + text + "'";
                        return false;
                      }
                      *value = parsed;
                      return true;
                    }});
}

void FlagParser::AddSwitch(const std::string& name, bool* value) {
  flags_.push_back({name, false, [value](const std::string&, std::string*) {
                      *value = true;
                      return true;
                    }});
}

const FlagParser::Flag* FlagParser::Find(const std::string& name) const {
  for (const Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

bool FlagParser::Parse(int argc, char** argv, std::string* error) const {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string name, value;
    bool has_value = false;
    if (arg == "-h" && Find("help") != nullptr) {
      name = "help";
    } else if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      const std::size_t equals = arg.find('=');
      name = arg.substr(2, equals == std::string::npos ? std::string::npos : equals - 2);
      if (equals != std::string::npos) {
        value = arg.substr(equals + 1);
        has_value = true;
      }
    } else {
      *error = "unexpected argument '" + arg + "' (flags look like --name=value; see --help)";
      return false;
    }

    const Flag* flag = Find(name);
    if (flag == nullptr) {
      *error = "unknown flag --" + name + " (see --help)";
      return false;
    }
    if (!flag->takes_value && has_value) {
      *error = "--" + name + " takes no value";
      return false;
    }
    if (flag->takes_value && !has_value) {
      if (i + 1 >= argc) {
        *error = "--" + name + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    if (!flag->set(value, error)) return false;
  }
  return true;
}

bool ParseTimingFlags(int argc, char** argv, std::int64_t* runs, std::int64_t* warmup, std::int64_t* seed,
                      bool* help, std::string* error) {
  FlagParser flags;
  flags.AddInt("runs", 1, runs);
  flags.AddInt("warmup", 0, warmup);
  flags.AddInt("seed", 0, seed);
  flags.AddSwitch("help", help);
  return flags.Parse(argc, argv, error);
}

// ---- Paths ---------------------------------------------------------------------------------

std::string ResolvePath(const std::string& base, const std::string& path) {
  if (base.empty() || path.empty() || path[0] == '/') return path;
  return (std::filesystem::path(base) / path).string();
}

std::string UserWorkingDirectory() {
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  return dir != nullptr ? dir : "";
}

bool MakeDirectories(const std::string& path, std::string* error) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_directory(path, ec)) {
    *error = "cannot create directory " + path + ": a file of that name is in the way";
    return false;
  }
  std::filesystem::create_directories(path, ec);
  if (ec) {
    *error = "cannot create directory " + path + ": " + ec.message();
    return false;
  }
  return true;
}

std::string TensorFileName(const char* tensor_name) {
  std::string name = tensor_name;
  for (char& c : name) {
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-';
    if (!keep) c = '_';
  }
  return name + ".npy";
}

bool CheckDistinctFileNames(const TensorInfo* tensors, int count, const char* role,
                            std::string* error) {
  std::map<std::string, const char*> seen;
  for (int i = 0; i < count; ++i) {
    const std::string file = TensorFileName(tensors[i].name);
    const auto inserted = seen.emplace(file, tensors[i].name);
    if (!inserted.second) {
      *error = std::string(role) + "s '" + inserted.first->second + "' and '" + tensors[i].name +
               "' would both be stored as " + file;
      return false;
    }
  }
  return true;
}

// ---- Tensors -------------------------------------------------------------------------------

std::string FormatType(DType dtype, const std::int64_t* dims, int rank) {
  return DTypeName(dtype) + FormatDims(dims, rank);
}

std::string FormatType(const TensorInfo& info) {
  return FormatType(info.dtype, info.dims, info.rank);
}

std::string DescribeModel(const ModelDescriptor& model) {
  std::string text = "Model " + std::string(model.model_name) + " has inputs:\n";
  for (int i = 0; i < model.num_inputs; ++i) {
    text += "  '" + std::string(model.inputs[i].name) + "': " + FormatType(model.inputs[i]) + "\n";
  }
  if (model.num_inputs == 0) text += "  (none)\n";
  text += "and outputs:\n";
  for (int i = 0; i < model.num_outputs; ++i) {
    text +=
        "  '" + std::string(model.outputs[i].name) + "': " + FormatType(model.outputs[i]) + "\n";
  }
  if (model.num_outputs == 0) text += "  (none)\n";
  return text;
}

bool ValidateModel(const ModelDescriptor& model, std::string* error) {
  std::string problem;
  if (model.model_name == nullptr) {
    problem = "no model_name";
  } else if (model.num_inputs < 0 || model.num_outputs < 0 ||
             (model.num_inputs > 0 && model.inputs == nullptr) ||
             (model.num_outputs > 0 && model.outputs == nullptr)) {
    problem = "bad input or output table";
  } else if (model.create == nullptr || model.destroy == nullptr || model.run == nullptr) {
    problem = "missing create, destroy or run";
  } else if (model.num_steps < 0 ||
             (model.num_steps > 0 && (model.step_names == nullptr || model.step_times == nullptr))) {
    problem = "bad step table";
  } else {
    for (int i = 0; i < model.num_inputs && problem.empty(); ++i) {
      ValidateTensor(model.inputs[i], "input " + std::to_string(i), &problem);
    }
    for (int i = 0; i < model.num_outputs && problem.empty(); ++i) {
      ValidateTensor(model.outputs[i], "output " + std::to_string(i), &problem);
    }
  }
  if (problem.empty()) return true;
  *error = "the model descriptor is inconsistent (a bug in the generator): " + problem;
  return false;
}

bool LoadTensor(const std::string& what, const TensorInfo& info, const std::string& path,
                const std::string& shown_path, NpyArray* out, std::string* error) {
  if (!ReadNpy(path, out, error)) {
    *error = what + ": " + *error;
    return false;
  }
  const bool same_shape = out->shape.size() == static_cast<std::size_t>(info.rank) &&
                          std::equal(out->shape.begin(), out->shape.end(), info.dims);
  if (IsOpaqueToNumpy(out->dtype) && IsOpaqueToNumpy(info.dtype) &&
      DTypeSize(out->dtype) == DTypeSize(info.dtype)) {
    out->dtype = info.dtype;  // the file's bytes can only say their size
  }
  if (out->dtype != info.dtype || !same_shape) {
    *error = what + ": expected " + FormatType(info) + ", got " +
             FormatType(out->dtype, out->shape.data(), static_cast<int>(out->shape.size())) +
             " from " + shown_path;
    return false;
  }
  return true;
}

// ---- Random inputs -------------------------------------------------------------------------

// Floats are uniform in [-1, 1) on a grid every value of which the type represents exactly.
// Integers are in [0, 4), small and non-negative so that they are valid indices for any
// gather-like op on a non-trivial axis; bools are 0 or 1.
void FillRandom(const TensorInfo& info, std::uint64_t seed, unsigned char* data) {
  Random random(seed);
  for (std::size_t i = 0; i < info.elements; ++i) {
    const std::uint64_t bits = random.Next();
    const std::uint64_t small = bits >> 62;
    const float quarter = static_cast<float>(bits >> 61) * 0.25f - 1.0f;
    switch (info.dtype) {
      case DType::kFloat32:
        Store(data, i, static_cast<float>(bits >> 40) * 0x1p-23f - 1.0f);
        break;
      case DType::kFloat64:
        Store(data, i, static_cast<double>(bits >> 11) * 0x1p-52 - 1.0);
        break;
      case DType::kFloat16:
        // 11 bits, so that rounding to half precision cannot carry a value up to 1.
        Store(data, i,
              pure_model::RoundToFloat16(static_cast<float>(bits >> 53) * 0x1p-10f - 1.0f));
        break;
      case DType::kBFloat16:  // 8 bits, which bfloat16 holds exactly
        Store(data, i,
              pure_model::RoundToBFloat16(static_cast<float>(bits >> 56) * 0x1p-7f - 1.0f));
        break;
      // The float8 types: a multiple of 1/4, which all of them hold; float4e2m1: -1/2 or 1/2.
      case DType::kFloat8E4M3FN:
        Store(data, i, pure_model::RoundToFloat8E4M3FN(quarter));
        break;
      case DType::kFloat8E4M3FNUZ:
        Store(data, i, pure_model::RoundToFloat8E4M3FNUZ(quarter));
        break;
      case DType::kFloat8E5M2:
        Store(data, i, pure_model::RoundToFloat8E5M2(quarter));
        break;
      case DType::kFloat8E5M2FNUZ:
        Store(data, i, pure_model::RoundToFloat8E5M2FNUZ(quarter));
        break;
      case DType::kFloat4E2M1:
        Store(data, i, pure_model::RoundToFloat4E2M1(quarter < 0.0f ? -0.5f : 0.5f));
        break;
      case DType::kUint4:
        Store(data, i, pure_model::WrapToUInt4(static_cast<std::int64_t>(small)));
        break;
      case DType::kInt4:
        Store(data, i, pure_model::WrapToInt4(static_cast<std::int64_t>(small)));
        break;
      case DType::kUint2:
        Store(data, i, pure_model::WrapToUInt2(static_cast<std::int64_t>(small)));
        break;
      case DType::kInt2:  // holds -2..1: 0 or 1
        Store(data, i, pure_model::WrapToInt2(static_cast<std::int64_t>(bits >> 63)));
        break;
      case DType::kBool:
        Store(data, i, static_cast<std::uint8_t>(bits >> 63));
        break;
      case DType::kInt8:
        Store(data, i, static_cast<std::int8_t>(small));
        break;
      case DType::kUint8:
        Store(data, i, static_cast<std::uint8_t>(small));
        break;
      case DType::kInt16:
        Store(data, i, static_cast<std::int16_t>(small));
        break;
      case DType::kUint16:
        Store(data, i, static_cast<std::uint16_t>(small));
        break;
      case DType::kInt32:
        Store(data, i, static_cast<std::int32_t>(small));
        break;
      case DType::kUint32:
        Store(data, i, static_cast<std::uint32_t>(small));
        break;
      case DType::kInt64:
        Store(data, i, static_cast<std::int64_t>(small));
        break;
      case DType::kUint64:
        Store(data, i, static_cast<std::uint64_t>(small));
        break;
    }
  }
}

std::uint64_t InputSeed(std::uint64_t seed, int index) {
  return seed ^ (0xd1b54a32d192ed03u * static_cast<std::uint64_t>(index + 1));
}

void MakeRandomInputs(const ModelDescriptor& model, std::uint64_t seed,
                      std::vector<std::vector<unsigned char>>* data,
                      std::vector<const void*>* pointers) {
  data->assign(model.num_inputs, {});
  pointers->assign(model.num_inputs, nullptr);
  for (int i = 0; i < model.num_inputs; ++i) {
    (*data)[i].resize(model.inputs[i].bytes);
    FillRandom(model.inputs[i], InputSeed(seed, i), (*data)[i].data());
    (*pointers)[i] = (*data)[i].data();
  }
}

void MakeOutputBuffers(const ModelDescriptor& model, std::vector<std::vector<unsigned char>>* data,
                       std::vector<void*>* pointers) {
  data->assign(model.num_outputs, {});
  pointers->assign(model.num_outputs, nullptr);
  for (int i = 0; i < model.num_outputs; ++i) {
    (*data)[i].resize(model.outputs[i].bytes);
    (*pointers)[i] = (*data)[i].data();
  }
}

// ---- Output --------------------------------------------------------------------------------

std::string JsonString(const std::string& text) {
  std::string json = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      json += '\\';
      json += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned>(c));
      json += escaped;
    } else {
      json += c;
    }
  }
  return json + "\"";
}

// ---- Model instances -----------------------------------------------------------------------

ModelInstance::ModelInstance(const ModelDescriptor& model)
    : model_(model),
      instance_(model.create()),
      // A model without an arena has no state to allocate, so a null instance is a legitimate
      // answer from it, not a failure.
      ok_(instance_ != nullptr || model.arena_bytes == 0) {}

ModelInstance::~ModelInstance() {
  if (instance_ != nullptr) model_.destroy(instance_);
}

// ---- Measurements --------------------------------------------------------------------------

TimingSummary Summarize(std::vector<double> times_ms) {
  std::sort(times_ms.begin(), times_ms.end());
  const std::size_t n = times_ms.size();
  TimingSummary summary;
  summary.min_ms = times_ms.front();
  summary.max_ms = times_ms.back();
  double total = 0;
  for (double t : times_ms) total += t;
  summary.mean_ms = total / static_cast<double>(n);
  summary.median_ms = n % 2 == 1 ? times_ms[n / 2] : (times_ms[n / 2 - 1] + times_ms[n / 2]) / 2;
  const auto rank = static_cast<std::size_t>(std::ceil(0.9 * static_cast<double>(n)));
  summary.p90_ms = times_ms[std::max<std::size_t>(rank, 1) - 1];
  return summary;
}

long long PeakRssKb() {
  std::FILE* file = std::fopen("/proc/self/status", "r");
  if (file == nullptr) return -1;
  long long kb = -1;
  char line[256];
  while (std::fgets(line, sizeof(line), file) != nullptr) {
    if (std::sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
  }
  std::fclose(file);
  return kb;
}

}  // namespace pure_model_harness
