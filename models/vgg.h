// VGG-11 (Dive into Deep Learning, 7.2), channel widths divisible by `width_divisor`.
#pragma once

#include <torch/torch.h>

#include "models/registry.h"
#include "models/sequential_block.h"

namespace torchfocal::models {

// One VGG block: num_convs x [3x3 Conv2d (padding 1), ReLU], then a 2x2 max pool that halves
// height and width. Nests inside a Sequential as PyTorch's nn.Sequential does.
SequentialBlock vgg_block(int64_t num_convs, int64_t in_channels, int64_t out_channels);

// Input [N, 1, 224, 224]; blocks at 0..4 (0.0.weight ... 4.3.weight), linear at 6, 9, 12.
// Throws std::invalid_argument unless options.width_divisor divides 64, the narrowest width.
torch::nn::Sequential make_vgg(const ModelOptions& options);

}  // namespace torchfocal::models
