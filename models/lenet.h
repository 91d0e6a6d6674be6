// LeNet-5 (Dive into Deep Learning, 6.6): sigmoid activations and average pooling.
#pragma once

#include <torch/torch.h>

#include "models/registry.h"

namespace torchfocal::models {

// Input [N, 1, 28, 28]; parameters at indices 0, 3, 7, 9, 11.
torch::nn::Sequential make_lenet(const ModelOptions& options);

}  // namespace torchfocal::models
