// The interface between a generated model and the generic run/benchmark/test harnesses.
//
// The generated `<name>_descriptor.cc` defines pure_model_harness::Model(); the harness mains
// use only this header, so one harness binary source serves every model. The model library
// itself never includes this file: names of inputs and outputs stay out of what users ship.
#ifndef RULES_PURE_MODEL_TOOLS_HARNESS_MODEL_DESCRIPTOR_H_
#define RULES_PURE_MODEL_TOOLS_HARNESS_MODEL_DESCRIPTOR_H_

#include <cstddef>
#include <cstdint>

namespace pure_model_harness {

// Element types, numbered as ONNX's TensorProto.DataType so that tools agree on them.
enum class DType : int {
  kFloat32 = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUint32 = 12,
  kUint64 = 13,
  // Storage types (runtime/include/pure_model/narrow_floats.h), one element a byte or two.
  kBFloat16 = 16,
  kFloat8E4M3FN = 17,
  kFloat8E4M3FNUZ = 18,
  kFloat8E5M2 = 19,
  kFloat8E5M2FNUZ = 20,
  kUint4 = 21,
  kInt4 = 22,
  kFloat4E2M1 = 23,
  kUint2 = 25,
  kInt2 = 26,
};

struct TensorInfo {
  const char* name;  // the ONNX name, as written in the model
  DType dtype;
  int rank;
  const std::int64_t* dims;  // `rank` entries, all bound at generation time
  std::size_t elements;
  std::size_t bytes;
};

struct ModelDescriptor {
  const char* model_name;  // the generated C++ class name
  int num_inputs;
  const TensorInfo* inputs;
  int num_outputs;
  const TensorInfo* outputs;
  std::size_t arena_bytes;
  std::size_t weight_bytes;
  // A model instance owns its arena; the harness keeps one per thread of work.
  void* (*create)();
  void (*destroy)(void* instance);
  // inputs[i] points at inputs[i].bytes of data, outputs[i] at outputs[i].bytes of space.
  void (*run)(void* instance, const void* const* inputs, void* const* outputs);

  // Per-step timing, only in the descriptor of a model generated with --profile_steps (the
  // `<name>_profile` tool); a descriptor without it leaves these zero and null, so a descriptor
  // written before they existed stays valid.
  int num_steps = 0;
  // "N: node name (Op)" for each step of Run(), in order: the ONNX node names.
  const char* const* step_names = nullptr;
  // Writes `num_steps` values: the nanoseconds each step has taken, summed over every run of
  // `instance` since it was created.
  void (*step_times)(const void* instance, double* ns_out) = nullptr;
};

// Defined by the generated descriptor source of exactly one model.
const ModelDescriptor& Model();

}  // namespace pure_model_harness

#endif  // RULES_PURE_MODEL_TOOLS_HARNESS_MODEL_DESCRIPTOR_H_
