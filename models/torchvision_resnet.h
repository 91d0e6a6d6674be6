// torchvision's ResNets (torchvision.models.resnet18, resnet34, resnet50): its layout, its
// state_dict names (`conv1.weight`, `layer2.0.downsample.0.weight`, `fc.weight`, ...) and its
// initialisation, so that a torchvision state_dict saved as safetensors loads strictly, and ours
// loads into torchvision. ResNet v1.5 as torchvision has it: a Bottleneck strides its 3x3
// convolution, not its first 1x1.
#pragma once

#include <torch/torch.h>

#include "models/batch_norm.h"
#include "models/registry.h"
#include "models/sequential_block.h"

namespace torchfocal::models {

// torchvision's BasicBlock (resnet18, resnet34): 3x3 (strided) and 3x3 convolutions without bias,
// each with batch norm; children conv1, bn1, conv2, bn2 and, where it changes size or width,
// downsample.
struct BasicBlockImpl : torch::nn::Module {
  static constexpr int64_t kExpansion = 1;  // output channels per `planes`

  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride);

  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  // Where the block changes size or width: children `0` (1x1 convolution without bias) and `1`
  // (batch norm), torchvision's strided projection; empty for the identity shortcut. The block
  // subsamples its input by `stride` before it, and its convolution has stride 1 (layers.h).
  SequentialBlock downsample{nullptr};
  int64_t stride = 1;
};
TORCH_MODULE(BasicBlock);

// torchvision's Bottleneck (resnet50): 1x1 down to `planes`, 3x3 (strided), 1x1 up to 4 x planes,
// each without bias and with batch norm; children conv1, bn1, conv2, bn2, conv3, bn3 and, where it
// changes size or width, downsample.
struct BottleneckImpl : torch::nn::Module {
  static constexpr int64_t kExpansion = 4;

  BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride);

  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  SequentialBlock downsample{nullptr};  // as BasicBlock's
  int64_t stride = 1;
};
TORCH_MODULE(Bottleneck);

// Input [N, in_channels, S, S] (224 is torchvision's; any side works: the pool is adaptive);
// children conv1, bn1, relu, maxpool, layer1..layer4 (blocks `layerN.M`), avgpool, flatten, fc.
// Convolutions Kaiming-normal (fan out, ReLU gain), batch norm 1 and 0, the head PyTorch's default
// (torchvision's zero_init_residual=False). width_divisor divides every width and must divide 64.
torch::nn::Sequential make_resnet18(const ModelOptions& options);
torch::nn::Sequential make_resnet34(const ModelOptions& options);
torch::nn::Sequential make_resnet50(const ModelOptions& options);

}  // namespace torchfocal::models
