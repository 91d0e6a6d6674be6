#include "models/vgg.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/layers.h"

namespace torchfocal::models {

namespace {
// d2l's conv_arch for VGG-11: (number of convolutions, output channels) per block.
constexpr std::pair<int64_t, int64_t> kConvArch[] = {
    {1, 64}, {1, 128}, {2, 256}, {2, 512}, {2, 512}};
constexpr int64_t kFirstBlockWidth = 64;  // the first block's width: width_divisor must divide it
}  // namespace

SequentialBlock vgg_block(int64_t num_convs, int64_t in_channels, int64_t out_channels) {
  namespace nn = torch::nn;
  SequentialBlock block;
  for (int64_t i = 0; i < num_convs; ++i) {
    block->push_back(
        nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, /*kernel_size=*/3).padding(1)));
    block->push_back(nn::ReLU());
    in_channels = out_channels;
  }
  block->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(/*kernel_size=*/2).stride(2)));
  return block;
}

torch::nn::Sequential make_vgg(const ModelOptions& options) {
  namespace nn = torch::nn;
  const int64_t divisor = options.width_divisor;
  // Every width is a multiple of 64, so dividing 64 keeps all of them whole (no rounding).
  if (divisor < 1 || kFirstBlockWidth % divisor != 0) {
    throw std::invalid_argument("width_divisor must be one of 1, 2, 4, 8, 16, 32, 64 (it divides " +
                                std::to_string(kFirstBlockWidth) +
                                ", VGG's narrowest channel width), got " + std::to_string(divisor));
  }
  nn::Sequential net;
  int64_t in_channels = options.in_channels;
  int64_t side = options.input_size;  // 224 halved by each block's pooling: 7
  for (const auto& [num_convs, width] : kConvArch) {
    const int64_t out_channels = width / divisor;
    net->push_back(vgg_block(num_convs, in_channels, out_channels));
    in_channels = out_channels;
    side = output_side(side, 2, 2);
  }
  net->push_back(nn::Flatten());
  net->push_back(nn::Linear(in_channels * side * side, kClassifierHidden));
  net->push_back(nn::ReLU());
  net->push_back(nn::Dropout(kClassifierDropout));
  net->push_back(nn::Linear(kClassifierHidden, kClassifierHidden));
  net->push_back(nn::ReLU());
  net->push_back(nn::Dropout(kClassifierDropout));
  net->push_back(nn::Linear(kClassifierHidden, options.num_classes));
  return net;
}

}  // namespace torchfocal::models
