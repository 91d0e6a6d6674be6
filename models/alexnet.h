// AlexNet (Dive into Deep Learning, 7.1), single-channel input.
#pragma once

#include <torch/torch.h>

#include "models/registry.h"

namespace torchfocal::models {

// Input [N, 1, 224, 224]; conv layers at 0, 3, 6, 8, 10, linear layers at 14, 17, 20.
torch::nn::Sequential make_alexnet(const ModelOptions& options);

}  // namespace torchfocal::models
