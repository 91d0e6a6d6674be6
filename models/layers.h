// Layers and constants that several definitions of the zoo share.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "src/common/torch_compat.h"

namespace torchfocal::models {

// d2l's classifier head of AlexNet and VGG: two hidden fully connected layers, each followed
// by dropout.
constexpr int64_t kClassifierHidden = 4096;  // width of each hidden layer
constexpr double kClassifierDropout = 0.5;   // drop probability after each hidden layer

inline torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel_size, int64_t stride = 1,
                                int64_t padding = 0) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel_size).stride(stride).padding(padding));
}

// A convolution without bias (batch norm follows it in the ResNets), padded to keep the side at
// stride 1.
inline torch::nn::Conv2d conv_no_bias(int64_t in, int64_t out, int64_t kernel_size,
                                      int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel_size)
                               .stride(stride)
                               .padding(kernel_size / 2)
                               .bias(false));
}

namespace detail {
struct SymmetricPadding {
  std::optional<int64_t> operator()(const torch::ExpandingArray<2>& p) const {
    if ((*p)[0] != (*p)[1]) return std::nullopt;
    return (*p)[0];
  }
  std::optional<int64_t> operator()(torch::enumtype::kValid) const { return 0; }
  std::optional<int64_t> operator()(torch::enumtype::kSame) const { return std::nullopt; }
};

struct ZeroPadding {
  bool operator()(torch::enumtype::kZeros) const { return true; }
  template <typename Other>
  bool operator()(Other) const {
    return false;
  }
};
}  // namespace detail

// A Conv2d's padding when it is the same number on every side ("valid": 0; "same": none). Options:
// Conv2dOptions, or the module's own (detail::ConvNdOptions<2>).
template <typename Options>
std::optional<int64_t> symmetric_padding(const Options& o) {
  return compat::visit_option(detail::SymmetricPadding{}, o.padding());
}

// Whether a Conv2d pads with zeros (not reflection, replication or circular padding).
template <typename Options>
bool zero_padding(const Options& o) {
  return compat::visit_option(detail::ZeroPadding{}, o.padding_mode());
}

// x[:, :, ::stride, ::stride]: the pixels a strided 1x1 convolution reads. The ResNets' strided
// shortcuts subsample, then convolve at stride 1: the same maths and parameters, but not oneDNN
// 3.7's channels-last backward of a strided 1x1 convolution, which writes out of bounds for narrow
// layers (4 -> 8 channels; oneDNN#6035, the oneDNN of Debian 13's LibTorch 2.6), crashing or
// corrupting the process.
inline torch::Tensor subsample(const torch::Tensor& x, int64_t stride) {
  if (stride == 1) return x;
  return x.slice(/*dim=*/2, 0, c10::nullopt, stride).slice(/*dim=*/3, 0, c10::nullopt, stride);
}

// Side of a convolution's or pooling's output (floor mode), as PyTorch computes it; throws when
// the input is too small for the window, so a too-small --input-size is an error, not a crash.
inline int64_t output_side(int64_t side, int64_t kernel_size, int64_t stride = 1,
                           int64_t padding = 0) {
  const int64_t out = (side + 2 * padding - kernel_size) / stride + 1;
  if (side + 2 * padding < kernel_size || out < 1) {
    throw std::invalid_argument("input size too small: a " + std::to_string(side) +
                                "-pixel side reaches a " + std::to_string(kernel_size) +
                                "-pixel window");
  }
  return out;
}

}  // namespace torchfocal::models
