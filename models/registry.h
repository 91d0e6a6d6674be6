// The network zoo: every architecture of the original experiment, built by name.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace torchfocal::models {

struct ModelOptions {
  int64_t num_classes = 10;
  // VGG only: conv channel widths are divided by this (Dive into Deep Learning's `ratio`).
  int64_t width_divisor = 1;
};

struct ModelInfo {
  std::string name;
  int64_t input_size;  // square side, in pixels, that the network expects
  std::string description;
};

// All registered networks, in a stable order.
const std::vector<ModelInfo>& model_infos();

// Throws std::invalid_argument naming the known models when `name` is unknown.
const ModelInfo& model_info(const std::string& name);

// Builds a freshly initialised network. Every zoo network is a Sequential whose child and
// parameter names equal those PyTorch gives the same Dive-into-Deep-Learning definition
// (`0.weight`, `1.0.conv1.weight`, ...), so state dicts are interchangeable by name.
// Input: [N, 1, input_size, input_size] float; output: [N, num_classes] logits.
// Throws std::invalid_argument for an unknown name (as model_info does), num_classes < 2,
// width_divisor < 1, or, for vgg and resnet, a width_divisor that does not divide 64 (their
// narrowest width); the other networks ignore width_divisor.
torch::nn::Sequential make_model(const std::string& name, const ModelOptions& options);

}  // namespace torchfocal::models
