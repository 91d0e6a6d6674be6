// 3×3 convolutions of stride 1 and padding 1 (all but a few of a ResNet's) by Winograd's
// F(2×2, 3×3) on the CPU: each 2×2 block of outputs from a 4×4 block of inputs with 16
// multiplications a channel pair instead of 36, the input and output transforms done in vector
// registers beside the products, on channels-last float32 activations. Used for 32 to 64 channels,
// where oneDNN's direct kernels (LibTorch's otherwise) take 1.05–1.4× as long; a ResNet-32 epoch
// takes 0.9× the time (bench/NOTES.md §31). The input gradient is the same convolution with each
// filter flipped and its channels swapped; the weight gradient stays LibTorch's.
#pragma once

#include <torch/torch.h>

namespace torchfocal::models {

// Where the Winograd kernels run: a CPU float32 [N, C, H, W] channels-last input of a convolution
// with a 3×3 kernel, stride 1, padding 1, dilation 1, one group and no bias, 32 to 64 input and
// output channels, multiples of the CPU's vector width (16 with AVX-512, 8 with AVX2), LibTorch's
// kernels not capped to the baseline (ATEN_CPU_CAPABILITY=default), no CPU autocast, and at least
// 4,096 output positions (a single image keeps LibTorch's kernels: the one-image predict path
// opens no parallel region).
bool winograd_conv_applies(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

// conv(x): by Winograd where winograd_conv_applies, else conv.forward(x).
torch::Tensor conv2d_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

// The convolution itself, differentiable with respect to x and weight ([K, C, 3, 3]), for any
// channel counts that are multiples of the vector width (the tests use it beyond 32–64); the
// caller has checked the other conditions of winograd_conv_applies. Throws where the CPU has
// neither AVX2 nor AVX-512.
torch::Tensor winograd_conv3x3(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace torchfocal::models
