// 3×3 convolutions of stride 1 and padding 1 (all but a few of a ResNet's) by Winograd's minimal
// filtering on the CPU, on channels-last float32 activations: F(4×4, 3×3) computes each 4×4 block
// of outputs from a 6×6 block of inputs with 36 multiplications a channel pair instead of 144
// (F(2×2, 3×3), 16 instead of 36, where the image is too small for 4×4 tiles). The transforms run
// in vector registers beside the products. The input gradient is the same convolution with each
// filter flipped and its channels swapped; the weight gradient is the transposed algorithm,
// Gᵀ (Σ_tiles V ⊙ A δ Aᵀ) G. Used for 16 to 64 channels, where a convolution's forward and both
// gradients take 0.63–0.83× the time of oneDNN's direct kernels (LibTorch's otherwise) on this
// project's CPU (bench/NOTES.md §31, §33). The price: float32 rounding errors up to 12× (outputs,
// input gradients) and 20× (weight gradients) those of a direct convolution.
#pragma once

#include <torch/torch.h>

namespace torchfocal::models {

// Where the Winograd kernels run: a CPU float32 [N, C, H, W] channels-last input of a convolution
// with a 3×3 kernel, stride 1, padding 1, dilation 1, one group and no bias, 16 to 64 input and
// output channels, multiples of the CPU's vector width (16 with AVX-512, 8 with AVX2), LibTorch's
// kernels not capped to the baseline (ATEN_CPU_CAPABILITY=default), no CPU autocast, and at least
// 4,096 output positions (a single image keeps LibTorch's kernels: the one-image predict path
// opens no parallel region).
bool winograd_conv_applies(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

// conv(x): by Winograd where winograd_conv_applies, else conv.forward(x).
torch::Tensor conv2d_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

// The convolution itself, differentiable with respect to x and weight ([K, C, 3, 3]), for any
// channel counts that are multiples of the vector width (the tests use it beyond 16–64); the
// caller has checked the other conditions of winograd_conv_applies. `output_tile` 2 or 4 picks
// F(2×2, 3×3) or F(4×4, 3×3), 0 winograd_output_tile's choice. Throws where the CPU has neither
// AVX2 nor AVX-512.
torch::Tensor winograd_conv3x3(const torch::Tensor& x, const torch::Tensor& weight,
                               int output_tile = 0);

// The output tile, 4 or 2, that takes fewer products for an image of these sides:
// F(4×4, 3×3) takes 36 a tile of 16 outputs and F(2×2, 3×3) 16 a tile of 4, and a partial tile
// costs a whole one. Ties go to F(2×2, 3×3), which rounds less.
int winograd_output_tile(int64_t height, int64_t width);

}  // namespace torchfocal::models
