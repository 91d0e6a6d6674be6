#include "models/mlp.h"

namespace torchfocal::models {

namespace {
constexpr int64_t kInputFeatures = 28 * 28;  // a flattened 28x28 single-channel image
constexpr int64_t kHidden = 256;             // d2l's num_hiddens
}  // namespace

torch::nn::Sequential make_mlp(const ModelOptions& options) {
  namespace nn = torch::nn;
  return nn::Sequential(nn::Flatten(), nn::Linear(kInputFeatures, kHidden), nn::ReLU(),
                        nn::Linear(kHidden, options.num_classes));
}

}  // namespace torchfocal::models
