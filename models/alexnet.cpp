#include "models/alexnet.h"

#include "models/layers.h"

namespace torchfocal::models {

namespace {

torch::nn::MaxPool2d max_pool() {
  // overlapping pooling: 3x3 windows every 2 pixels
  return torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(/*kernel_size=*/3).stride(2));
}
}  // namespace

torch::nn::Sequential make_alexnet(const ModelOptions& options) {
  namespace nn = torch::nn;
  // 256 channels of 5x5 after the third pooling of a 224x224 input
  int64_t side = output_side(options.input_size, 11, 4, 1);    // the first convolution
  for (int i = 0; i < 3; ++i) side = output_side(side, 3, 2);  // the poolings; convs keep sides
  const int64_t flat_features = 256 * side * side;
  return nn::Sequential(
      // a large 11x11 window with stride 4 to shrink the image quickly
      conv2d(/*in=*/options.in_channels, /*out=*/96, /*kernel_size=*/11, /*stride=*/4,
             /*padding=*/1),
      nn::ReLU(), max_pool(),
      conv2d(/*in=*/96, /*out=*/256, /*kernel_size=*/5, /*stride=*/1, /*padding=*/2), nn::ReLU(),
      max_pool(),
      // three 3x3 convolutions; padding 1 keeps height and width
      conv2d(/*in=*/256, /*out=*/384, /*kernel_size=*/3, /*stride=*/1, /*padding=*/1), nn::ReLU(),
      conv2d(/*in=*/384, /*out=*/384, /*kernel_size=*/3, /*stride=*/1, /*padding=*/1), nn::ReLU(),
      conv2d(/*in=*/384, /*out=*/256, /*kernel_size=*/3, /*stride=*/1, /*padding=*/1), nn::ReLU(),
      max_pool(), nn::Flatten(),
      // dropout against the overfitting the large dense layers invite
      nn::Linear(flat_features, kClassifierHidden), nn::ReLU(), nn::Dropout(kClassifierDropout),
      nn::Linear(kClassifierHidden, kClassifierHidden), nn::ReLU(), nn::Dropout(kClassifierDropout),
      nn::Linear(kClassifierHidden, options.num_classes));
}

}  // namespace torchfocal::models
