// The network zoo: every architecture of the original experiment, built by name.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace torchfocal::models {

struct ModelOptions {
  int64_t num_classes = 10;
  // VGG and the ResNets: conv channel widths are divided by this (d2l's `ratio` for VGG).
  int64_t width_divisor = 1;
  // Channels of the input images: 1 (grey) or 3 (RGB); the first layer is built for them.
  int64_t in_channels = 1;
  // Side of the square input; 0 means the network's own (ModelInfo::input_size). The networks
  // with a fixed-size head (mlp, lenet, alexnet, vgg) size it from this.
  int64_t input_size = 0;
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
// parameter names equal those PyTorch gives the same definition: Dive into Deep Learning's
// (`0.weight`, `1.0.conv1.weight`, ...), the CIFAR papers' code for resnet32
// (`layer1.0.conv1.weight`, `linear.weight`), torchvision's for resnet18/34/50
// (`layer2.0.downsample.0.weight`, `fc.weight`), so state dicts are interchangeable by name.
// Input: [N, in_channels, input_size, input_size] float; output: [N, num_classes] logits.
// Throws std::invalid_argument for an unknown name (as model_info does), num_classes < 2,
// in_channels < 1, an input_size the network's layers shrink to nothing, width_divisor < 1, or, for
// vgg, resnet and resnet18/34/50, a width_divisor that does not divide 64 (their narrowest width),
// for resnet32 one that is not 1, 2, 4 or 8; the other networks ignore it.
torch::nn::Sequential make_model(const std::string& name, const ModelOptions& options);

}  // namespace torchfocal::models
