#include "models/resnet32.h"

#include <string>

#include "models/layers.h"
#include "models/sequential_block.h"
#include "models/winograd_conv.h"

namespace torchfocal::models {

namespace nn = torch::nn;

namespace {

constexpr int64_t kBlocksPerStage = 5;  // 3 stages x 5 blocks x 2 convs + stem + head = 32
constexpr int64_t kWidths[] = {16, 32, 64};

}  // namespace

BasicBlockAImpl::BasicBlockAImpl(int64_t in_planes, int64_t planes, int64_t stride)
    : stride(stride) {
  conv1 = register_module("conv1", conv_no_bias(in_planes, planes, /*kernel_size=*/3, stride));
  bn1 = register_module("bn1", BatchNorm2d(planes));
  conv2 = register_module("conv2", conv_no_bias(planes, planes, /*kernel_size=*/3));
  bn2 = register_module("bn2", BatchNorm2d(planes));
  if (stride != 1 || in_planes != planes) pad_channels = planes / 4;
}

torch::Tensor BasicBlockAImpl::forward(torch::Tensor x) {
  const auto y = conv2d_forward(*conv2, bn1->forward_relu(conv2d_forward(*conv1, x)));
  if (stride != 1 || pad_channels != 0) {
    // F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)) of the papers' code
    x = torch::constant_pad_nd(subsample(x, stride), {0, 0, 0, 0, pad_channels, pad_channels});
  }
  return bn2->forward_relu(y, x);
}

torch::nn::Sequential make_resnet32(const ModelOptions& options) {
  const int64_t d = options.width_divisor;
  if (d != 1 && d != 2 && d != 4 && d != 8) {
    throw std::invalid_argument(
        "width_divisor must be one of 1, 2, 4, 8 (option-A shortcuts pad a quarter of each "
        "stage's width), got " +
        std::to_string(d));
  }
  nn::Sequential net;
  net->push_back("conv1", conv_no_bias(options.in_channels, kWidths[0] / d, /*kernel_size=*/3));
  net->push_back("bn1", BatchNorm2d(kWidths[0] / d));
  net->push_back("relu", nn::ReLU());
  int64_t in = kWidths[0] / d;
  for (int64_t stage = 0; stage < 3; ++stage) {
    const int64_t planes = kWidths[stage] / d;
    SequentialBlock layer;
    for (int64_t b = 0; b < kBlocksPerStage; ++b) {
      layer->push_back(BasicBlockA(in, planes, b == 0 && stage > 0 ? 2 : 1));
      in = planes;
    }
    net->push_back("layer" + std::to_string(stage + 1), layer);
  }
  net->push_back("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
  net->push_back("flatten", nn::Flatten());
  net->push_back("linear", nn::Linear(in, options.num_classes));
  // The papers' code initialises every convolution and linear weight Kaiming-normal (fan in,
  // gain sqrt(2)); the linear bias keeps PyTorch's default.
  for (auto& module : net->modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) nn::init::kaiming_normal_(conv->weight);
    if (auto* linear = module->as<nn::Linear>()) nn::init::kaiming_normal_(linear->weight);
  }
  return net;
}

}  // namespace torchfocal::models
