// ResNet-32 for 32x32 images as the CIFAR long-tail papers define it (He et al. 2016, 4.2; the
// network of LDAM-DRW's and its predecessors' code): a 3x3 stem of 16, three stages of five basic
// blocks at 16, 32 and 64 channels, parameter-free "option A" shortcuts, global average pooling
// and a linear head; 0.46 M parameters. Single-channel input until datasets carry channels.
#pragma once

#include <torch/torch.h>

#include "models/batch_norm.h"
#include "models/registry.h"

namespace torchfocal::models {

// Two 3x3 convolutions without bias, each with batch norm; the shortcut is the identity, or
// where the block halves the size and doubles the channels, a subsampling whose new channels are
// zeros (option A: no parameters). Children as in that code: conv1, bn1, conv2, bn2.
struct BasicBlockAImpl : torch::nn::Module {
  BasicBlockAImpl(int64_t in_planes, int64_t planes, int64_t stride);

  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  int64_t stride = 1;
  int64_t pad_channels = 0;  // zero channels added on each side of the shortcut
};
TORCH_MODULE(BasicBlockA);

// Input [N, 1, 32, 32]; children conv1, bn1, relu, layer1..layer3, avgpool, flatten, linear, so
// that the state_dict names are that code's (`layer2.0.conv1.weight`, `linear.weight`). Its
// initialisation too: Kaiming-normal convolution and linear weights. width_divisor divides the
// widths: one of 1, 2, 4, 8 (option A pads a quarter of a stage's width on each side).
torch::nn::Sequential make_resnet32(const ModelOptions& options);

}  // namespace torchfocal::models
