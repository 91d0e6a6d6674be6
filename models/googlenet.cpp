#include "models/googlenet.h"

#include "models/layers.h"
#include "models/sequential_block.h"

namespace torchfocal::models {

namespace nn = torch::nn;

namespace {
constexpr int64_t kFeatures = 1024;  // channels b5 leaves after global average pooling

// The 3x3, stride 2 max pool that closes b1..b4 and halves height and width.
nn::MaxPool2d halving_pool() {
  return nn::MaxPool2d(nn::MaxPool2dOptions(/*kernel_size=*/3).stride(2).padding(1));
}
// ModuleHolder's forwarding constructor is a template, which cannot take the braced pairs.
Inception inception(int64_t in_channels, int64_t c1, std::pair<int64_t, int64_t> c2,
                    std::pair<int64_t, int64_t> c3, int64_t c4) {
  return Inception(in_channels, c1, c2, c3, c4);
}
}  // namespace

InceptionImpl::InceptionImpl(int64_t in_channels, int64_t c1, std::pair<int64_t, int64_t> c2,
                             std::pair<int64_t, int64_t> c3, int64_t c4) {
  // registration order fixes the parameter order, so it follows d2l's attribute order
  // path 1: a single 1x1 convolution
  p1_1 = register_module("p1_1", conv2d(in_channels, c1, /*kernel_size=*/1));
  // path 2: 1x1 convolution to reduce channels, then 3x3 convolution
  p2_1 = register_module("p2_1", conv2d(in_channels, c2.first, /*kernel_size=*/1));
  p2_2 = register_module(
      "p2_2", conv2d(c2.first, c2.second, /*kernel_size=*/3, /*stride=*/1, /*padding=*/1));
  // path 3: 1x1 convolution to reduce channels, then 5x5 convolution
  p3_1 = register_module("p3_1", conv2d(in_channels, c3.first, /*kernel_size=*/1));
  p3_2 = register_module(
      "p3_2", conv2d(c3.first, c3.second, /*kernel_size=*/5, /*stride=*/1, /*padding=*/2));
  // path 4: 3x3 max pooling that keeps the size, then 1x1 convolution
  p4_1 = register_module(
      "p4_1", nn::MaxPool2d(nn::MaxPool2dOptions(/*kernel_size=*/3).stride(1).padding(1)));
  p4_2 = register_module("p4_2", conv2d(in_channels, c4, /*kernel_size=*/1));
}

torch::Tensor InceptionImpl::forward(torch::Tensor x) {
  auto p1 = torch::relu(p1_1(x));
  auto p2 = torch::relu(p2_2(torch::relu(p2_1(x))));
  auto p3 = torch::relu(p3_2(torch::relu(p3_1(x))));
  auto p4 = torch::relu(p4_2(p4_1(x)));
  // all paths keep height and width, so they stack along the channel dimension
  return torch::cat({p1, p2, p3, p4}, /*dim=*/1);
}

torch::nn::Sequential make_googlenet(const ModelOptions& options) {
  SequentialBlock b1(conv2d(/*in=*/options.in_channels, /*out=*/64, /*kernel_size=*/7, /*stride=*/2,
                            /*padding=*/3),
                     nn::ReLU(), halving_pool());
  SequentialBlock b2(conv2d(/*in=*/64, /*out=*/64, /*kernel_size=*/1), nn::ReLU(),
                     conv2d(/*in=*/64, /*out=*/192, /*kernel_size=*/3, /*stride=*/1, /*padding=*/1),
                     nn::ReLU(), halving_pool());
  SequentialBlock b3(inception(192, 64, {96, 128}, {16, 32}, 32),
                     inception(256, 128, {128, 192}, {32, 96}, 64), halving_pool());
  SequentialBlock b4(
      inception(480, 192, {96, 208}, {16, 48}, 64), inception(512, 160, {112, 224}, {24, 64}, 64),
      inception(512, 128, {128, 256}, {24, 64}, 64), inception(512, 112, {144, 288}, {32, 64}, 64),
      inception(528, 256, {160, 320}, {32, 128}, 128), halving_pool());
  SequentialBlock b5(inception(832, 256, {160, 320}, {32, 128}, 128),
                     inception(832, 384, {192, 384}, {48, 128}, 128),
                     nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})), nn::Flatten());
  return nn::Sequential(b1, b2, b3, b4, b5, nn::Linear(kFeatures, options.num_classes));
}

}  // namespace torchfocal::models
