// GoogLeNet (Dive into Deep Learning, 7.4), single-channel 96x96 input.
#pragma once

#include <torch/torch.h>

#include <utility>

#include "models/registry.h"

namespace torchfocal::models {

// Four parallel paths concatenated along channels; c1..c4 are each path's output channels
// (c2 and c3: the 1x1 reduction, then the 3x3 / 5x5 convolution). Children in PyTorch's order:
// p1_1, p2_1, p2_2, p3_1, p3_2, p4_1 (max pool, no parameters), p4_2.
struct InceptionImpl : torch::nn::Module {
  InceptionImpl(int64_t in_channels, int64_t c1, std::pair<int64_t, int64_t> c2,
                std::pair<int64_t, int64_t> c3, int64_t c4);

  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d p1_1{nullptr}, p2_1{nullptr}, p2_2{nullptr}, p3_1{nullptr}, p3_2{nullptr};
  torch::nn::MaxPool2d p4_1{nullptr};
  torch::nn::Conv2d p4_2{nullptr};
};
TORCH_MODULE(Inception);

// Input [N, 1, 96, 96]; Sequential(b1, b2, b3, b4, b5, Linear(1024, num_classes)).
torch::nn::Sequential make_googlenet(const ModelOptions& options);

}  // namespace torchfocal::models
