// Layers and constants that several d2l definitions of the zoo share.
#pragma once

#include <torch/torch.h>

#include <cstdint>

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

}  // namespace torchfocal::models
