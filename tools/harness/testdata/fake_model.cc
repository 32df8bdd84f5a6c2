// A hand-written stand-in for a generated model descriptor, so that the harness mains can be
// tested without the generator. Input "x" is float32[2,3]; output "y" is 2 * x + 1 and output
// "row_argmax:0" (a name that needs sanitizing) is the int64 index of each row's maximum.
//
// Setting FAKE_MODEL_BUG makes the model misbehave on purpose, to exercise the test harness's
// failure paths: "state" carries state from run to run, "overrun" writes past the end of an
// output, and "skip" leaves an output element unwritten.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tools/harness/model_descriptor.h"

namespace pure_model_harness {
namespace {

constexpr std::int64_t kInputDims[] = {2, 3};
constexpr std::int64_t kArgmaxDims[] = {2};
constexpr float kWeights[] = {2.0f, 1.0f};  // scale, bias

constexpr TensorInfo kInputs[] = {
    {"x", DType::kFloat32, 2, kInputDims, 6, 6 * sizeof(float)},
};
constexpr TensorInfo kOutputs[] = {
    {"y", DType::kFloat32, 2, kInputDims, 6, 6 * sizeof(float)},
    {"row_argmax:0", DType::kInt64, 1, kArgmaxDims, 2, 2 * sizeof(std::int64_t)},
};

struct Instance {
  float scratch[6];  // stands in for a generated model's arena
};

bool HasBug(const char* bug) {
  const char* setting = std::getenv("FAKE_MODEL_BUG");
  return setting != nullptr && std::strcmp(setting, bug) == 0;
}

void* Create() { return new (std::nothrow) Instance(); }

void Destroy(void* instance) { delete static_cast<Instance*>(instance); }

void Run(void* opaque, const void* const* inputs, void* const* outputs) {
  static int runs = 0;
  auto* instance = static_cast<Instance*>(opaque);
  const auto* x = static_cast<const float*>(inputs[0]);
  auto* y = static_cast<float*>(outputs[0]);
  auto* argmax = static_cast<std::int64_t*>(outputs[1]);

  const float drift = HasBug("state") ? static_cast<float>(runs++) : 0.0f;
  for (int i = 0; i < 6; ++i) instance->scratch[i] = kWeights[0] * x[i] + kWeights[1] + drift;
  std::memcpy(y, instance->scratch, HasBug("skip") ? 5 * sizeof(float) : sizeof(instance->scratch));
  for (int row = 0; row < 2; ++row) {
    int best = 0;
    for (int col = 1; col < 3; ++col) {
      if (x[row * 3 + col] > x[row * 3 + best]) best = col;
    }
    argmax[row] = best;
  }
  if (HasBug("overrun")) argmax[2] = -1;
}

}  // namespace

const ModelDescriptor& Model() {
  static const ModelDescriptor descriptor = {
      "fake_model", 1, kInputs, 2, kOutputs, sizeof(Instance), sizeof(kWeights),
      Create,       Destroy, Run,
  };
  return descriptor;
}

}  // namespace pure_model_harness
