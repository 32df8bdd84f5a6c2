// ort_reference: seeded random inputs for a model and the outputs ONNX Runtime computes from
// them, in the layout <model>_test reads (pure_model_testdata with reference = "onnxruntime"):
//
//   ort_reference --model=m.onnx --input_shape=x=1,3,48,192 [--input_value=sr=16000]
//                 --seed=0 --out_dir=DIR
//
// writes DIR/inputs/<input>.npy and DIR/expected/<output>.npy (names through the harness's
// TensorFileName). An input bound with --input_value (as pure_model_library's input_values binds
// it at generation time) gets those values and no file: the generated model does not take it. The inputs are the harness's FillRandom streams, the ones <model>_benchmark
// and tools/bench's ONNX Runtime harness use, so a test and a benchmark see the same data.
// ONNX Runtime runs as the benchmark runs it: one thread, sequential, all graph optimisations.
#include <onnxruntime/onnxruntime_cxx_api.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tools/harness/harness_util.h"
#include "tools/harness/npy.h"
#include "tools/onnxruntime/ort_util.h"

namespace {

const char kProgram[] = "ort_reference";

const char kUsage[] =
    "Usage: ort_reference --model=FILE.onnx --out_dir=DIR [--seed=S]\n"
    "                     [--input_shape=NAME=D0,D1,...]... [--input_value=NAME=V0,V1,...]...\n"
    "\n"
    "Runs the model once with ONNX Runtime on the harness's pseudo-random inputs for seed S\n"
    "(default 0) and writes DIR/inputs/<input>.npy and DIR/expected/<output>.npy.\n"
    "--input_shape binds an input's dynamic dimensions; --input_value gives an input fixed\n"
    "values, and it gets no file.\n";

// Writes the tensors as DIR/<sub>/<name>.npy, except those named in `skip`. ONNX Runtime numbers
// element types as ONNX does, and so does pure_model_harness::DType.
bool WriteTensors(const std::string& dir, const char* sub, const std::vector<std::string>& names,
                  const std::vector<Ort::Value>& values,
                  const std::map<std::string, std::vector<double>>& skip, std::string* error) {
  const std::string sub_dir = pure_model_harness::ResolvePath(dir, sub);
  if (!pure_model_harness::MakeDirectories(sub_dir, error)) return false;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (skip.count(names[i]) != 0) continue;
    const Ort::TensorTypeAndShapeInfo info = values[i].GetTensorTypeAndShapeInfo();
    const std::vector<std::int64_t> dims = info.GetShape();
    const auto dtype = static_cast<pure_model_harness::DType>(info.GetElementType());
    const std::size_t bytes =
        info.GetElementCount() * pure_model_ort::ElementSize(info.GetElementType());
    if (bytes == 0 && info.GetElementCount() != 0) {
      *error = std::string(sub) + " '" + names[i] + "' has an element type these tools do not handle";
      return false;
    }
    const std::string path = pure_model_harness::ResolvePath(
        sub_dir, pure_model_harness::TensorFileName(names[i].c_str()));
    if (!pure_model_harness::WriteNpy(path, dtype, dims.data(), static_cast<int>(dims.size()),
                                      values[i].GetTensorRawData(), bytes, error)) {
      return false;
    }
  }
  return true;
}

// Parses NAME=LIST flags (--input_shape, --input_value) into `out`.
template <typename T>
bool ParseBindings(const std::vector<std::string>& flags, const char* flag, const char* list,
                   bool (*parse)(const std::string&, std::vector<T>*),
                   std::map<std::string, std::vector<T>>* out, std::string* error) {
  for (const std::string& text : flags) {
    const std::size_t split = text.find('=');
    std::vector<T> items;
    if (split == std::string::npos || split == 0 || !parse(text.substr(split + 1), &items)) {
      *error = std::string("--") + flag + ": expected NAME=" + list + ", got '" + text + "'";
      return false;
    }
    (*out)[text.substr(0, split)] = items;
  }
  return true;
}

int Main(int argc, char** argv) {
  using pure_model_harness::Fail;
  std::string model, out_dir, error;
  std::vector<std::string> shape_flags, value_flags;
  std::int64_t seed = 0;
  bool help = false;
  pure_model_harness::FlagParser flags;
  flags.AddString("model", &model);
  flags.AddString("out_dir", &out_dir);
  flags.AddRepeated("input_shape", &shape_flags);
  flags.AddRepeated("input_value", &value_flags);
  flags.AddInt("seed", 0, &seed);
  flags.AddSwitch("help", &help);
  if (!flags.Parse(argc, argv, &error)) return Fail(kProgram, error + "\n\n" + kUsage);
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (model.empty() || out_dir.empty()) {
    return Fail(kProgram, std::string("--model and --out_dir are required\n\n") + kUsage);
  }
  std::map<std::string, std::vector<std::int64_t>> input_shapes;
  std::map<std::string, std::vector<double>> input_values;
  if (!ParseBindings(shape_flags, "input_shape", "D0,D1,...", pure_model_ort::ParseShape,
                     &input_shapes, &error) ||
      !ParseBindings(value_flags, "input_value", "V0,V1,...", pure_model_ort::ParseValues,
                     &input_values, &error)) {
    return Fail(kProgram, error);
  }

  pure_model_ort::StderrFilter filter;
  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, kProgram);
  Ort::Session session(env, model.c_str(), pure_model_ort::SingleThreadOptions());
  filter.Stop();

  std::vector<pure_model_ort::Tensor> inputs;
  std::vector<Ort::Value> input_tensors;
  if (!pure_model_ort::MakeInputs(session, input_shapes, input_values,
                                  static_cast<std::uint64_t>(seed), &inputs, &input_tensors,
                                  &error)) {
    return Fail(kProgram, model + ": " + error);
  }
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<std::string> input_names, output_names;
  for (const pure_model_ort::Tensor& input : inputs) input_names.push_back(input.name);
  for (std::size_t i = 0; i < session.GetOutputCount(); ++i) {
    output_names.push_back(session.GetOutputNameAllocated(i, allocator).get());
  }
  std::vector<const char*> input_pointers, output_pointers;
  for (const std::string& name : input_names) input_pointers.push_back(name.c_str());
  for (const std::string& name : output_names) output_pointers.push_back(name.c_str());
  const std::vector<Ort::Value> outputs =
      session.Run(Ort::RunOptions(), input_pointers.data(), input_tensors.data(),
                  input_tensors.size(), output_pointers.data(), output_pointers.size());

  if (!WriteTensors(out_dir, "inputs", input_names, input_tensors, input_values, &error) ||
      !WriteTensors(out_dir, "expected", output_names, outputs, {}, &error)) {
    return Fail(kProgram, error);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pure_model_ort::CatchErrors(kProgram, Main, argc, argv); }
