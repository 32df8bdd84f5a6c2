// Links two models as plain libraries and runs both.
#include <cstdio>

#include "examples/mlp/mlp.h"
#include "models/scorer.h"

namespace {

models::Scorer scorer;
examples::mlp::Mlp mlp;

}  // namespace

int main() {
  static float signal[models::Scorer::kSignalElements];
  for (std::size_t i = 0; i < models::Scorer::kSignalElements; ++i) signal[i] = (i % 7) * 0.1f - 0.3f;
  float score[models::Scorer::kScoreElements];
  scorer.Run(signal, score);

  static float features[examples::mlp::Mlp::kFeaturesElements];
  for (std::size_t i = 0; i < examples::mlp::Mlp::kFeaturesElements; ++i) features[i] = (i % 5) * 0.2f - 0.4f;
  float probabilities[examples::mlp::Mlp::kProbabilitiesElements];
  mlp.Run(features, probabilities);

  std::printf("scores %.4f %.4f %.4f; mlp p[0] %.4f\n", score[0], score[1], score[2], probabilities[0]);
  return 0;
}
