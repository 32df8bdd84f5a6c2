// Classifies a synthetic 32x32 image with the example CNN: the model is plain code, linked in.
#include <cstddef>
#include <cstdio>

// Built twice: as :classify, and with PURE_MODEL_OBFUSCATED as :classify_obfuscated, over the
// same model with masked weights.
#ifdef PURE_MODEL_OBFUSCATED
#include "examples/cnn/cnn_obfuscated.h"
#else
#include "examples/cnn/cnn.h"
#endif

namespace {

#ifdef PURE_MODEL_OBFUSCATED
using Model = examples::cnn::CnnObfuscated;
#else
using Model = examples::cnn::Cnn;
#endif

// The model is a few kilobytes of state: static storage keeps it off the stack.
Model model;
float image[Model::kImageElements];
float logits[Model::kLogitsElements];
float stem_nhwc[Model::kStemNhwcElements];

}  // namespace

int main() {
  // A diagonal gradient, so the result is the same on every machine and architecture.
  for (std::size_t i = 0; i < Model::kImageElements; ++i) {
    const std::size_t pixel = i % (32 * 32);
    image[i] = static_cast<float>(pixel / 32 + pixel % 32) / 62.0f - 0.5f;
  }
  model.Run(image, logits, stem_nhwc);
  std::size_t best = 0;
  for (std::size_t i = 1; i < Model::kLogitsElements; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  std::printf("class %zu (logit %.4f); arena %zu bytes, weights %zu bytes\n", best, logits[best],
              Model::kArenaBytes, Model::kWeightBytes);
  return 0;
}
