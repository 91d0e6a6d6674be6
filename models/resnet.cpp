#include "models/resnet.h"

#include "models/layers.h"
#include "models/winograd_conv.h"

namespace torchfocal::models {

namespace nn = torch::nn;

namespace {
constexpr int64_t kResidualsPerBlock = 2;  // 4 blocks x 2 residuals x 2 convs + 2 = 18 layers
constexpr int64_t kStemWidth = 64;         // b1's and b2's width: width_divisor must divide it
}  // namespace

ResidualImpl::ResidualImpl(int64_t input_channels, int64_t num_channels, bool use_1x1conv,
                           int64_t strides) {
  // registration order fixes the parameter order, so it follows d2l's attribute order
  conv1 = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(input_channels, num_channels, /*kernel_size=*/3)
                              .padding(1)
                              .stride(strides)));
  conv2 = register_module(
      "conv2",
      nn::Conv2d(nn::Conv2dOptions(num_channels, num_channels, /*kernel_size=*/3).padding(1)));
  if (use_1x1conv) {
    // The strided 1x1 shortcut runs as a subsampling, then a 1x1 convolution of stride 1 (a
    // oneDNN guard: subsample() in layers.h).
    conv3 = register_module(
        "conv3", nn::Conv2d(nn::Conv2dOptions(input_channels, num_channels, /*kernel_size=*/1)));
    shortcut_stride = strides;
  }
  bn1 = register_module("bn1", BatchNorm2d(num_channels));
  bn2 = register_module("bn2", BatchNorm2d(num_channels));
}

torch::Tensor ResidualImpl::forward(torch::Tensor x) {
  const auto y = conv2d_forward(*conv2, bn1->forward_relu(conv2d_forward(*conv1, x)));
  if (conv3) x = conv3(subsample(x, shortcut_stride));
  return bn2->forward_relu(y, x);
}

SequentialBlock resnet_block(int64_t input_channels, int64_t num_channels, int64_t num_residuals,
                             bool first_block) {
  SequentialBlock block;
  for (int64_t i = 0; i < num_residuals; ++i) {
    if (i == 0 && !first_block) {
      block->push_back(Residual(input_channels, num_channels, /*use_1x1conv=*/true,
                                /*strides=*/2));
    } else {
      block->push_back(Residual(num_channels, num_channels));
    }
  }
  return block;
}

torch::nn::Sequential make_resnet(const ModelOptions& options) {
  const int64_t d = options.width_divisor;
  if (d < 1 || kStemWidth % d != 0) {
    throw std::invalid_argument("width_divisor must be one of 1, 2, 4, 8, 16, 32, 64 (it divides " +
                                std::to_string(kStemWidth) +
                                ", ResNet's narrowest channel width), got " + std::to_string(d));
  }
  SequentialBlock b1(nn::Conv2d(nn::Conv2dOptions(/*in_channels=*/options.in_channels,
                                                  /*out_channels=*/64 / d, /*kernel_size=*/7)
                                    .stride(2)
                                    .padding(3)),
                     BatchNorm2d(64 / d), nn::ReLU(),
                     nn::MaxPool2d(nn::MaxPool2dOptions(/*kernel_size=*/3).stride(2).padding(1)));
  // b1 already reduced height and width 4x, so b2 keeps them and its 64 channels
  auto b2 = resnet_block(64 / d, 64 / d, kResidualsPerBlock, /*first_block=*/true);
  auto b3 = resnet_block(64 / d, 128 / d, kResidualsPerBlock);
  auto b4 = resnet_block(128 / d, 256 / d, kResidualsPerBlock);
  auto b5 = resnet_block(256 / d, 512 / d, kResidualsPerBlock);
  // b5's channels after global average pooling feed the classifier
  return nn::Sequential(b1, b2, b3, b4, b5,
                        nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})), nn::Flatten(),
                        nn::Linear(512 / d, options.num_classes));
}

}  // namespace torchfocal::models
