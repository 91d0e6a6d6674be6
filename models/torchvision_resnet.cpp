#include "models/torchvision_resnet.h"

#include <array>
#include <string>

#include "models/layers.h"
#include "models/winograd_conv.h"

namespace torchfocal::models {

namespace nn = torch::nn;

namespace {

// torchvision's `planes` of layer1..layer4 (a Bottleneck puts out 4x as many channels).
constexpr std::array<int64_t, 4> kStagePlanes = {64, 128, 256, 512};

// torchvision's downsample, but at stride 1: the block subsamples before it (layers.h).
SequentialBlock projection(int64_t in_planes, int64_t out_planes) {
  return SequentialBlock(conv_no_bias(in_planes, out_planes, /*kernel_size=*/1),
                         BatchNorm2d(out_planes));
}

torch::Tensor shortcut(SequentialBlock& downsample, const torch::Tensor& x, int64_t stride) {
  return downsample ? downsample->forward(subsample(x, stride)) : x;
}

// torchvision's ResNet._make_layer and ResNet.__init__ for one block type; `blocks` per layer.
template <typename Block>
nn::Sequential make_torchvision_resnet(const std::array<int64_t, 4>& blocks,
                                       const ModelOptions& options) {
  const int64_t d = options.width_divisor;
  if (kStagePlanes[0] % d != 0) {
    throw std::invalid_argument("width_divisor must be one of 1, 2, 4, 8, 16, 32, 64 (it divides " +
                                std::to_string(kStagePlanes[0]) +
                                ", ResNet's narrowest channel width), got " + std::to_string(d));
  }
  nn::Sequential net;
  int64_t in = kStagePlanes[0] / d;
  net->push_back("conv1", conv_no_bias(options.in_channels, in, /*kernel_size=*/7, /*stride=*/2));
  net->push_back("bn1", BatchNorm2d(in));
  net->push_back("relu", nn::ReLU());
  net->push_back("maxpool",
                 nn::MaxPool2d(nn::MaxPool2dOptions(/*kernel_size=*/3).stride(2).padding(1)));
  for (size_t stage = 0; stage < blocks.size(); ++stage) {
    const int64_t planes = kStagePlanes[stage] / d;
    SequentialBlock layer;
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      // the first block of layer2..layer4 halves the side
      layer->push_back(Block(in, planes, b == 0 && stage > 0 ? 2 : 1));
      in = planes * Block::ContainedType::kExpansion;
    }
    net->push_back("layer" + std::to_string(stage + 1), layer);
  }
  net->push_back("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
  net->push_back("flatten", nn::Flatten());
  net->push_back("fc", nn::Linear(in, options.num_classes));
  // torchvision: Kaiming-normal convolutions (fan out, ReLU gain); batch norm's 1 and 0 and the
  // head's initialisation are already the defaults.
  for (auto& module : net->modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut, torch::kReLU);
    }
  }
  return net;
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride) : stride(stride) {
  // registration order is torchvision's attribute order, hence its state_dict order
  conv1 = register_module("conv1", conv_no_bias(in_planes, planes, /*kernel_size=*/3, stride));
  bn1 = register_module("bn1", BatchNorm2d(planes));
  conv2 = register_module("conv2", conv_no_bias(planes, planes, /*kernel_size=*/3));
  bn2 = register_module("bn2", BatchNorm2d(planes));
  if (stride != 1 || in_planes != planes * kExpansion) {
    downsample = register_module("downsample", projection(in_planes, planes * kExpansion));
  }
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  const auto out = conv2d_forward(*conv2, bn1->forward_relu(conv2d_forward(*conv1, x)));
  return bn2->forward_relu(out, shortcut(downsample, x, stride));
}

BottleneckImpl::BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride) : stride(stride) {
  conv1 = register_module("conv1", conv_no_bias(in_planes, planes, /*kernel_size=*/1));
  bn1 = register_module("bn1", BatchNorm2d(planes));
  // v1.5: the stride sits on the 3x3 convolution
  conv2 = register_module("conv2", conv_no_bias(planes, planes, /*kernel_size=*/3, stride));
  bn2 = register_module("bn2", BatchNorm2d(planes));
  conv3 = register_module("conv3", conv_no_bias(planes, planes * kExpansion, /*kernel_size=*/1));
  bn3 = register_module("bn3", BatchNorm2d(planes * kExpansion));
  if (stride != 1 || in_planes != planes * kExpansion) {
    downsample = register_module("downsample", projection(in_planes, planes * kExpansion));
  }
}

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  auto out = bn1->forward_relu(conv1(x));
  out = conv3(bn2->forward_relu(conv2d_forward(*conv2, out)));
  return bn3->forward_relu(out, shortcut(downsample, x, stride));
}

torch::nn::Sequential make_resnet18(const ModelOptions& options) {
  return make_torchvision_resnet<BasicBlock>({2, 2, 2, 2}, options);
}

torch::nn::Sequential make_resnet34(const ModelOptions& options) {
  return make_torchvision_resnet<BasicBlock>({3, 4, 6, 3}, options);
}

torch::nn::Sequential make_resnet50(const ModelOptions& options) {
  return make_torchvision_resnet<Bottleneck>({3, 4, 6, 3}, options);
}

}  // namespace torchfocal::models
