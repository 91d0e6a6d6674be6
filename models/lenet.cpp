#include "models/lenet.h"

namespace torchfocal::models {

torch::nn::Sequential make_lenet(const ModelOptions& options) {
  namespace nn = torch::nn;
  // 16 channels of 5x5 remain after the second pooling of a 28x28 input
  constexpr int64_t kFlatFeatures = 16 * 5 * 5;
  return nn::Sequential(
      // padding 2 keeps 28x28, as the original LeNet saw 32x32 inputs
      nn::Conv2d(
          nn::Conv2dOptions(/*in_channels=*/1, /*out_channels=*/6, /*kernel_size=*/5).padding(2)),
      nn::Sigmoid(), nn::AvgPool2d(nn::AvgPool2dOptions(/*kernel_size=*/2).stride(2)),
      nn::Conv2d(nn::Conv2dOptions(/*in_channels=*/6, /*out_channels=*/16, /*kernel_size=*/5)),
      nn::Sigmoid(), nn::AvgPool2d(nn::AvgPool2dOptions(/*kernel_size=*/2).stride(2)),
      nn::Flatten(), nn::Linear(kFlatFeatures, 120), nn::Sigmoid(), nn::Linear(120, 84),
      nn::Sigmoid(), nn::Linear(84, options.num_classes));
}

}  // namespace torchfocal::models
