#include "models/mlp.h"

namespace torchfocal::models {

namespace {
constexpr int64_t kHidden = 256;  // d2l's num_hiddens
}  // namespace

torch::nn::Sequential make_mlp(const ModelOptions& options) {
  namespace nn = torch::nn;
  // the flattened image: 28 x 28 x 1 in the original experiment
  const int64_t input_features = options.in_channels * options.input_size * options.input_size;
  return nn::Sequential(nn::Flatten(), nn::Linear(input_features, kHidden), nn::ReLU(),
                        nn::Linear(kHidden, options.num_classes));
}

}  // namespace torchfocal::models
