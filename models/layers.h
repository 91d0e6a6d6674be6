// Layers and constants that several d2l definitions of the zoo share.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace torchfocal::models {

// d2l's classifier head of AlexNet and VGG: two hidden fully connected layers, each followed
// by dropout.
constexpr int64_t kClassifierHidden = 4096;  // width of each hidden layer
constexpr double kClassifierDropout = 0.5;   // drop probability after each hidden layer

inline torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel_size, int64_t stride = 1,
                                int64_t padding = 0) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel_size).stride(stride).padding(padding));
}

// Side of a convolution's or pooling's output (floor mode), as PyTorch computes it; throws when
// the input is too small for the window, so a too-small --input-size is an error, not a crash.
inline int64_t output_side(int64_t side, int64_t kernel_size, int64_t stride = 1,
                           int64_t padding = 0) {
  const int64_t out = (side + 2 * padding - kernel_size) / stride + 1;
  if (side + 2 * padding < kernel_size || out < 1) {
    throw std::invalid_argument("input size too small: a " + std::to_string(side) +
                                "-pixel side reaches a " + std::to_string(kernel_size) +
                                "-pixel window");
  }
  return out;
}

}  // namespace torchfocal::models
