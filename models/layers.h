// Layers and constants that several definitions of the zoo share.
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

// A convolution without bias (batch norm follows it in the ResNets), padded to keep the side at
// stride 1.
inline torch::nn::Conv2d conv_no_bias(int64_t in, int64_t out, int64_t kernel_size,
                                      int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel_size)
                               .stride(stride)
                               .padding(kernel_size / 2)
                               .bias(false));
}

// x[:, :, ::stride, ::stride]: the pixels a strided 1x1 convolution reads. The ResNets' strided
// shortcuts subsample, then convolve at stride 1: the same maths and parameters, but not oneDNN
// 3.7's channels-last backward of a strided 1x1 convolution, which writes out of bounds for narrow
// layers (4 -> 8 channels; oneDNN#6035, the oneDNN of Debian 13's LibTorch 2.6), crashing or
// corrupting the process.
inline torch::Tensor subsample(const torch::Tensor& x, int64_t stride) {
  if (stride == 1) return x;
  return x.slice(/*dim=*/2, 0, c10::nullopt, stride).slice(/*dim=*/3, 0, c10::nullopt, stride);
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
