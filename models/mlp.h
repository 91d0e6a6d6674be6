// Multilayer perceptron (Dive into Deep Learning, 4.3): one hidden layer of 256 units.
#pragma once

#include <torch/torch.h>

#include "models/registry.h"

namespace torchfocal::models {

// Input [N, 1, 28, 28]; names 1.weight, 1.bias, 3.weight, 3.bias.
torch::nn::Sequential make_mlp(const ModelOptions& options);

}  // namespace torchfocal::models
