#include "tools/onnxruntime/ort_util.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "tools/harness/harness_util.h"

namespace pure_model_ort {

// ---- StderrFilter ----------------------------------------------------------------------------

StderrFilter::StderrFilter() {
  int fds[2];
  if (pipe(fds) != 0) return;
  original_ = dup(STDERR_FILENO);
  if (original_ < 0 || dup2(fds[1], STDERR_FILENO) < 0) {
    close(fds[0]);
    close(fds[1]);
    return;
  }
  close(fds[1]);
  read_end_ = fds[0];
  thread_ = std::thread([this] { Pump(); });
}

void StderrFilter::Stop() {
  if (read_end_ < 0) return;
  std::fflush(stderr);
  dup2(original_, STDERR_FILENO);  // closes the pipe's last write end: the pump sees EOF
  thread_.join();
  close(read_end_);
  close(original_);
  read_end_ = -1;
}

void StderrFilter::Pump() {
  std::string pending;
  char buffer[65536];
  for (;;) {
    const ssize_t n = read(read_end_, buffer, sizeof(buffer));
    if (n <= 0) break;
    pending.append(buffer, static_cast<std::size_t>(n));
    std::size_t start = 0, end;
    while ((end = pending.find('\n', start)) != std::string::npos) {
      Forward(pending.data() + start, end + 1 - start);
      start = end + 1;
    }
    pending.erase(0, start);
  }
  if (!pending.empty()) Forward(pending.data(), pending.size());
}

void StderrFilter::Forward(const char* line, std::size_t size) {
  static const char kSpam[] = "Schema error: Trying to register schema";
  if (size >= sizeof(kSpam) - 1 && std::memcmp(line, kSpam, sizeof(kSpam) - 1) == 0) return;
  while (size > 0) {
    const ssize_t n = write(original_, line, size);
    if (n <= 0) return;
    line += n;
    size -= static_cast<std::size_t>(n);
  }
}

// ---- Sessions and tensors --------------------------------------------------------------------

Ort::SessionOptions SingleThreadOptions() {
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(1);
  options.SetInterOpNumThreads(1);
  options.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  return options;
}

std::size_t ElementSize(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64:
      return 8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32:
      return 4;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16:
      return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return 1;
    default:
      return 0;
  }
}

std::string FormatDims(const std::vector<std::int64_t>& dims) {
  std::string text = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) text += (i ? "," : "") + std::to_string(dims[i]);
  return text + "]";
}

namespace {

// Splits "a,b,c" at the commas and parses each item with `parse` (which returns false to reject
// it); false for an empty list, an empty item or a rejected one.
template <typename T, typename Parse>
bool ParseList(const std::string& text, Parse parse, std::vector<T>* items) {
  items->clear();
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    errno = 0;
    T value;
    if (item.empty() || !parse(item.c_str(), &end, &value) || errno != 0 || *end != '\0') {
      return false;
    }
    items->push_back(value);
    start = comma + 1;
  }
  return !items->empty();
}

}  // namespace

bool ParseShape(const std::string& text, std::vector<std::int64_t>* dims) {
  return ParseList(
      text,
      [](const char* item, char** end, std::int64_t* dim) {
        *dim = std::strtoll(item, end, 10);
        return *dim >= 0;
      },
      dims);
}

bool ParseValues(const std::string& text, std::vector<double>* values) {
  return ParseList(
      text,
      [](const char* item, char** end, double* value) {
        *value = std::strtod(item, end);
        return std::isfinite(*value);
      },
      values);
}

std::size_t Tensor::Elements() const {
  std::size_t count = 1;
  for (const std::int64_t dim : dims) count *= static_cast<std::size_t>(dim);
  return count;
}

bool Describe(const std::string& role, const std::string& name, const Ort::TypeInfo& type_info,
              const std::map<std::string, std::vector<std::int64_t>>& bound, Tensor* tensor,
              bool* dynamic, std::string* error) {
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) {
    *error = role + " '" + name + "' is not a tensor";
    return false;
  }
  // `type_info` must outlive this view of it.
  const auto info = type_info.GetTensorTypeAndShapeInfo();
  tensor->name = name;
  tensor->type = info.GetElementType();
  tensor->dims = info.GetShape();
  if (ElementSize(tensor->type) == 0) {
    *error = role + " '" + name + "' has an element type these tools do not handle";
    return false;
  }
  const auto it = bound.find(name);
  if (it != bound.end()) {
    if (it->second.size() != tensor->dims.size()) {
      *error = "--input_shape for '" + name + "' has rank " + std::to_string(it->second.size()) +
               ", the model's input has rank " + std::to_string(tensor->dims.size());
      return false;
    }
    for (std::size_t d = 0; d < tensor->dims.size(); ++d) {
      if (tensor->dims[d] >= 0 && tensor->dims[d] != it->second[d]) {
        *error = "--input_shape for '" + name + "' is " + FormatDims(it->second) +
                 ", but the model fixes dimension " + std::to_string(d) + " to " +
                 std::to_string(tensor->dims[d]);
        return false;
      }
    }
    tensor->dims = it->second;
  }
  *dynamic = false;
  for (const std::int64_t dim : tensor->dims) *dynamic |= dim < 0;
  return true;
}

namespace {

template <typename T>
void StoreAll(const std::vector<double>& values, unsigned char* data) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    const T value = static_cast<T>(values[i]);
    std::memcpy(data + i * sizeof(T), &value, sizeof(T));
  }
}

// Writes `values` as `type` (float16 is not offered: nothing binds one).
bool StoreValues(ONNXTensorElementDataType type, const std::vector<double>& values,
                 unsigned char* data) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: StoreAll<float>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: StoreAll<double>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: StoreAll<bool>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: StoreAll<std::int8_t>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: StoreAll<std::uint8_t>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: StoreAll<std::int16_t>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: StoreAll<std::uint16_t>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: StoreAll<std::int32_t>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32: StoreAll<std::uint32_t>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: StoreAll<std::int64_t>(values, data); return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64: StoreAll<std::uint64_t>(values, data); return true;
    default: return false;
  }
}

// Gives a fixed input's one dynamic dimension from the number of values, then checks the count.
bool FitValues(const std::vector<double>& fixed, Tensor* input, std::string* error) {
  const auto dynamic = std::count_if(input->dims.begin(), input->dims.end(),
                                     [](std::int64_t d) { return d < 0; });
  if (dynamic == 1) {
    std::int64_t known = 1;
    for (const std::int64_t d : input->dims) known *= d < 0 ? 1 : d;
    if (known > 0 && fixed.size() % static_cast<std::size_t>(known) == 0) {
      for (std::int64_t& d : input->dims) {
        if (d < 0) d = static_cast<std::int64_t>(fixed.size()) / known;
      }
    }
  }
  if (std::any_of(input->dims.begin(), input->dims.end(), [](std::int64_t d) { return d < 0; }) ||
      input->Elements() != fixed.size()) {
    *error = "--input_value gives input '" + input->name + "' " + std::to_string(fixed.size()) +
             " values, which do not fit its shape " + FormatDims(input->dims);
    return false;
  }
  return true;
}

}  // namespace

bool MakeInputs(Ort::Session& session,
                const std::map<std::string, std::vector<std::int64_t>>& bound,
                const std::map<std::string, std::vector<double>>& fixed, std::uint64_t seed,
                std::vector<Tensor>* inputs, std::vector<Ort::Value>* values,
                std::string* error) {
  Ort::AllocatorWithDefaultOptions allocator;
  const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  inputs->assign(session.GetInputCount(), {});
  values->clear();
  for (std::size_t i = 0; i < inputs->size(); ++i) {
    Tensor& input = (*inputs)[i];
    const std::string name = session.GetInputNameAllocated(i, allocator).get();
    const Ort::TypeInfo type_info = session.GetInputTypeInfo(i);
    bool dynamic;
    if (!Describe("input", name, type_info, bound, &input, &dynamic, error)) return false;
    const auto fixed_values = fixed.find(name);
    if (fixed_values != fixed.end()) {
      if (!FitValues(fixed_values->second, &input, error)) return false;
      input.data.resize(std::max<std::size_t>(1, input.Bytes()));
      if (!StoreValues(input.type, fixed_values->second, input.data.data())) {
        *error = "--input_value: input '" + name + "' has an element type that takes no values";
        return false;
      }
      values->push_back(Ort::Value::CreateTensor(memory, input.data.data(), input.Bytes(),
                                                 input.dims.data(), input.dims.size(),
                                                 input.type));
      continue;
    }
    if (dynamic) {
      *error = "input '" + name + "' has dynamic dimensions " + FormatDims(input.dims) +
               "; bind them with --input_shape=" + name + "=D0,D1,...";
      return false;
    }
    // Every type ElementSize knows but strings has a harness fill; FillRandom draws from the
    // same streams as <model>_benchmark, so both runtimes see the same data.
    pure_model_harness::TensorInfo info = {};
    info.dtype = static_cast<pure_model_harness::DType>(input.type);
    info.elements = input.Elements();
    input.data.resize(std::max<std::size_t>(1, input.Bytes()));
    pure_model_harness::FillRandom(
        info, pure_model_harness::InputSeed(seed, static_cast<int>(i)), input.data.data());
    values->push_back(Ort::Value::CreateTensor(memory, input.data.data(), input.Bytes(),
                                               input.dims.data(), input.dims.size(), input.type));
  }
  auto is_input = [inputs](const std::string& name) {
    return std::any_of(inputs->begin(), inputs->end(),
                       [&](const Tensor& t) { return t.name == name; });
  };
  for (const auto& binding : bound) {
    if (!is_input(binding.first)) {
      *error = "--input_shape names '" + binding.first + "', which is not an input of the model";
      return false;
    }
  }
  for (const auto& binding : fixed) {
    if (!is_input(binding.first)) {
      *error = "--input_value names '" + binding.first + "', which is not an input of the model";
      return false;
    }
  }
  return true;
}

int CatchErrors(const char* program, int (*main)(int, char**), int argc, char** argv) {
  try {
    return main(argc, argv);
  } catch (const Ort::Exception& e) {
    std::fprintf(stderr, "%s: error: onnxruntime: %s\n", program, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
  }
  return 1;
}

}  // namespace pure_model_ort
