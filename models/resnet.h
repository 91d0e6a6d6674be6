// ResNet-18 (Dive into Deep Learning, 7.6), single-channel 96x96 input, channel widths divided by
// width_divisor (1 = d2l's).
#pragma once

#include <torch/torch.h>

#include "models/batch_norm.h"
#include "models/registry.h"
#include "models/sequential_block.h"

namespace torchfocal::models {

// Two 3x3 convolutions with batch norm plus a shortcut; with use_1x1conv the shortcut is a
// strided 1x1 convolution so that it matches a changed channel count and size. Children in
// PyTorch's order: conv1, conv2, conv3 (only with use_1x1conv), bn1, bn2.
struct ResidualImpl : torch::nn::Module {
  ResidualImpl(int64_t input_channels, int64_t num_channels, bool use_1x1conv = false,
               int64_t strides = 1);

  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Conv2d conv3{nullptr};  // empty unless use_1x1conv
  int64_t shortcut_stride = 1;       // conv3's stride, applied as a subsampling before it
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(Residual);

// d2l's resnet_block: num_residuals Residuals; the first one halves height and width (and
// changes the channel count) unless first_block.
SequentialBlock resnet_block(int64_t input_channels, int64_t num_channels, int64_t num_residuals,
                             bool first_block = false);

// Input [N, 1, 96, 96]; Sequential(b1, b2, b3, b4, b5, AdaptiveAvgPool2d, Flatten, Linear).
// Throws std::invalid_argument unless options.width_divisor divides 64, the narrowest width.
torch::nn::Sequential make_resnet(const ModelOptions& options);

}  // namespace torchfocal::models
