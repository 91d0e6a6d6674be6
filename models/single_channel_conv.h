// A convolution of one-channel images (LeNet's first layer: 1 → 6 channels, 5 × 5, padding 2)
// computed directly on the CPU. One input channel leaves oneDNN's kernels little to vectorise:
// LeNet's first layer costs it 6.3 µs an image forward and 15 µs with the weight gradient (one
// thread), more than the second layer, which has twice the arithmetic. Here one output row of every
// channel (channels-last: W × C contiguous values) is a run of vectors, and each of the K × K taps
// adds the input row, each value repeated C times and shifted by the tap, times the tap's weights
// laid out along that run: 4.8 and 9.6 µs (bench/NOTES.md §25). Forward and the weight and bias
// gradients; an input that wants a gradient, and everything else these kernels do not cover,
// runs LibTorch's convolution.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace torchfocal::models {

// Whether the direct kernels run for this input and weight: float32 on an AVX2 + FMA CPU, x
// [N, 1, H, W] wanting no gradient, weight [C, 1, K, K] with K 3 or 5, no autocast.
bool single_channel_conv_applies(const torch::Tensor& x, const torch::Tensor& weight);

// conv2d(x, weight, bias) at stride 1 with `padding` zeros on every side, for what
// single_channel_conv_applies accepts (std::invalid_argument otherwise). The result is
// channels-last; it is differentiable with respect to weight and bias.
torch::Tensor single_channel_conv2d(const torch::Tensor& x, const torch::Tensor& weight,
                                    const torch::Tensor& bias, int64_t padding);

// nn::Conv2d whose forward takes the direct kernels where they apply (stride 1, no dilation, one
// group, zero padding the same on every side, a bias) and Conv2d's own elsewhere. Parameters,
// options, printing and export are Conv2d's: it is one, to every dynamic_cast.
class SingleChannelConv2dImpl : public torch::nn::Conv2dImpl {
 public:
  using torch::nn::Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(SingleChannelConv2d);

}  // namespace torchfocal::models
