// The conformance runner's generic main: runs one generated model of a batch on raw input files.
//
//   <batch program> UNIT DIR
//
// UNIT picks a model from the batch's table (conformance::kUnits, written by run_conformance.py
// next to the models); DIR holds input_<i>.bin, the raw bytes of input i in the order of the
// model's descriptor. The program writes DIR/output_<i>.bin with the raw bytes of each output and
// DIR/signature.txt with one line per input and output, as the descriptor declares them:
// "input|output <ONNX dtype number> <rank> <dims...>".
//
// Exit status: 0 done, 2 usage, 3 an input file does not match the descriptor. A crash of the
// model shows as a signal.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/harness/model_descriptor.h"

namespace conformance {
using Descriptor = const pure_model_harness::ModelDescriptor& (*)();
extern const Descriptor kUnits[];
extern const int kNumUnits;
}  // namespace conformance

namespace {

bool ReadFile(const std::string& path, std::vector<unsigned char>* data) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  data->clear();
  unsigned char buffer[1 << 16];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) data->insert(data->end(), buffer, buffer + n);
  const bool ok = std::ferror(f) == 0;
  std::fclose(f);
  return ok;
}

bool WriteFile(const std::string& path, const void* data, std::size_t bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(data, 1, bytes, f) == bytes;
  return std::fclose(f) == 0 && ok;
}

void Describe(const char* kind, const pure_model_harness::TensorInfo& info, std::string* listing) {
  *listing += std::string(kind) + " " + std::to_string(static_cast<int>(info.dtype)) + " " + std::to_string(info.rank);
  for (int d = 0; d < info.rank; ++d) *listing += " " + std::to_string(info.dims[d]);
  *listing += "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s UNIT DIR\n", argv[0]);
    return 2;
  }
  const int unit = std::atoi(argv[1]);
  if (unit < 0 || unit >= conformance::kNumUnits) {
    std::fprintf(stderr, "unit %d is not in this batch (0..%d)\n", unit, conformance::kNumUnits - 1);
    return 2;
  }
  const std::string dir = argv[2];
  const pure_model_harness::ModelDescriptor& model = conformance::kUnits[unit]();

  // Buffers are at least one byte, so that empty tensors still get distinct valid pointers.
  std::vector<std::vector<unsigned char>> inputs(model.num_inputs);
  std::vector<const void*> input_ptrs(model.num_inputs);
  for (int i = 0; i < model.num_inputs; ++i) {
    const std::string path = dir + "/input_" + std::to_string(i) + ".bin";
    if (!ReadFile(path, &inputs[i])) {
      std::fprintf(stderr, "cannot read %s\n", path.c_str());
      return 3;
    }
    if (inputs[i].size() != model.inputs[i].bytes) {
      std::fprintf(stderr, "input %d ('%s'): the file has %zu bytes, the model expects %zu\n", i,
                   model.inputs[i].name, inputs[i].size(), model.inputs[i].bytes);
      return 3;
    }
    inputs[i].resize(inputs[i].size() + 1);
    input_ptrs[i] = inputs[i].data();
  }
  std::vector<std::vector<unsigned char>> outputs(model.num_outputs);
  std::vector<void*> output_ptrs(model.num_outputs);
  for (int i = 0; i < model.num_outputs; ++i) {
    outputs[i].assign(model.outputs[i].bytes + 1, 0);
    output_ptrs[i] = outputs[i].data();
  }

  void* instance = model.create();
  model.run(instance, input_ptrs.data(), output_ptrs.data());
  model.destroy(instance);

  for (int i = 0; i < model.num_outputs; ++i) {
    const std::string path = dir + "/output_" + std::to_string(i) + ".bin";
    if (!WriteFile(path, output_ptrs[i], model.outputs[i].bytes)) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 3;
    }
  }
  std::string listing;
  for (int i = 0; i < model.num_inputs; ++i) Describe("input", model.inputs[i], &listing);
  for (int i = 0; i < model.num_outputs; ++i) Describe("output", model.outputs[i], &listing);
  if (!WriteFile(dir + "/signature.txt", listing.data(), listing.size())) {
    std::fprintf(stderr, "cannot write %s/signature.txt\n", dir.c_str());
    return 3;
  }
  return 0;
}
