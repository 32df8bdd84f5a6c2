// ONNX Runtime, set up the way this repository compares against it: the pieces shared by the
// benchmark harness (//tools/bench:ort_benchmark) and the reference tool (:ort_reference).
#ifndef RULES_PURE_MODEL_TOOLS_ONNXRUNTIME_ORT_UTIL_H_
#define RULES_PURE_MODEL_TOOLS_ONNXRUNTIME_ORT_UTIL_H_

#include <onnxruntime/onnxruntime_cxx_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace pure_model_ort {

// Debian's libonnxruntime shares the system's libonnx, and creating a session prints thousands of
// "Schema error: Trying to register schema ... already registered" lines on stderr. They are
// harmless. While an instance is alive (or until Stop()), this process's stderr goes through a
// pipe and a thread that drops those lines and passes everything else on.
class StderrFilter {
 public:
  StderrFilter();
  ~StderrFilter() { Stop(); }
  StderrFilter(const StderrFilter&) = delete;
  StderrFilter& operator=(const StderrFilter&) = delete;

  // Restores stderr and waits until everything written so far has been passed on.
  void Stop();

 private:
  void Pump();
  void Forward(const char* line, std::size_t size);

  int original_ = -1;
  int read_end_ = -1;
  std::thread thread_;
};

// One intra-op and one inter-op thread, sequential execution, all graph optimisations: ONNX
// Runtime as a single-threaded deployment would run it.
Ort::SessionOptions SingleThreadOptions();

// Bytes per element, or 0 for a type these tools do not handle (strings, maps, float8, ...).
// ONNX Runtime numbers element types as ONNX does, and so does pure_model_harness::DType.
std::size_t ElementSize(ONNXTensorElementDataType type);

// "[1,3,224,224]".
std::string FormatDims(const std::vector<std::int64_t>& dims);

// "1,3,224,224" -> {1, 3, 224, 224}; false unless every entry is an integer >= 0.
bool ParseShape(const std::string& text, std::vector<std::int64_t>* dims);

// One input or output: its name, type, shape and (if allocated here) its buffer.
struct Tensor {
  std::string name;
  ONNXTensorElementDataType type;
  std::vector<std::int64_t> dims;
  std::vector<unsigned char> data;

  std::size_t Elements() const;
  std::size_t Bytes() const { return Elements() * ElementSize(type); }
};

// Reads a tensor's name, type and shape from the session, binding its dynamic dimensions from
// `bound` (input name -> dims). Returns false (with `error`) for non-tensors, unsupported types
// and bindings that contradict the model; sets `dynamic` when a dimension is still unknown.
bool Describe(const std::string& role, const std::string& name, const Ort::TypeInfo& type_info,
              const std::map<std::string, std::vector<std::int64_t>>& bound, Tensor* tensor,
              bool* dynamic, std::string* error);

// "16000" or "0.5,1,2" -> the numbers; false unless each entry is a finite number.
bool ParseValues(const std::string& text, std::vector<double>* values);

// Describes every input of `session` with `bound` applied, fills each with the pseudo-random
// data <model>_benchmark and <model>_test use for `seed` (the harness's FillRandom, one stream
// per input), and wraps the buffers as ONNX Runtime values. An input named in `fixed` gets those
// values instead (converted to its element type; what the generator's input_values bind at
// generation time); they also give a single dynamic dimension. Fails for an input left dynamic,
// an element type without a random fill, values that do not fit, or a name that is no input.
bool MakeInputs(Ort::Session& session,
                const std::map<std::string, std::vector<std::int64_t>>& bound,
                const std::map<std::string, std::vector<double>>& fixed, std::uint64_t seed,
                std::vector<Tensor>* inputs, std::vector<Ort::Value>* values,
                std::string* error);

// Runs `main`, turning an exception (ONNX Runtime reports errors as Ort::Exception) into
// "<program>: error: ..." on stderr and exit status 1.
int CatchErrors(const char* program, int (*main)(int, char**), int argc, char** argv);

}  // namespace pure_model_ort

#endif  // RULES_PURE_MODEL_TOOLS_ONNXRUNTIME_ORT_UTIL_H_
