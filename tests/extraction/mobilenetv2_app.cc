// A minimal app around the MobileNetV2 library, standing in for what a user ships: the extraction
// suite attacks its stripped binary.
#include <cstddef>
#include <cstdio>

// Built twice: plain, and with PURE_MODEL_OBFUSCATED over the library with masked weights.
#ifdef PURE_MODEL_OBFUSCATED
#include "tools/bench/models/mobilenetv2_obfuscated.h"
#else
#include "tools/bench/models/mobilenetv2.h"
#endif

namespace {

#ifdef PURE_MODEL_OBFUSCATED
using Model = tools::bench::models::Mobilenetv2Obfuscated;
#else
using Model = tools::bench::models::Mobilenetv2;
#endif

Model model;
float pixels[Model::kImageElements];
float scores[Model::kLogitsElements];

}  // namespace

int main() {
  for (std::size_t i = 0; i < Model::kImageElements; ++i) pixels[i] = static_cast<float>(i % 251) / 251.0f;
  model.Run(pixels, scores);
  std::size_t best = 0;
  for (std::size_t i = 1; i < Model::kLogitsElements; ++i) {
    if (scores[i] > scores[best]) best = i;
  }
  std::printf("class %zu\n", best);
  return 0;
}
