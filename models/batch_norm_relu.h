// relu(batch_norm(x) [+ residual]), the pair (or, at a residual block's end, the triple) that
// follows nearly every convolution of a ResNet, as two passes forward and two backward over
// channels-last float32 activations on the CPU: the statistics, then the normalised, added and
// clamped output; the gradient's sums, then the input gradient. LibTorch runs a batch norm, an
// add and a ReLU as separate kernels, each a full pass over the largest tensors of the step
// (bench/NOTES.md §28). models::BatchNorm2d chooses these where they apply, LibTorch elsewhere.
#pragma once

#include <torch/torch.h>

namespace torchfocal::models {

// Where the fused kernels run: a CPU float32 [N, C, H, W] input in channels-last layout, and a
// residual (if defined) of its shape and type.
bool batch_norm_relu_applies(const torch::Tensor& x, const torch::Tensor& residual);

// Training mode: normalised with the batch's mean and biased variance; running_mean and
// running_var move by `momentum` (the variance unbiased) as torch::batch_norm moves them.
// Differentiable with respect to x, weight, bias and residual. `residual` may be undefined.
torch::Tensor batch_norm_relu_train(const torch::Tensor& x, const torch::Tensor& residual,
                                    const torch::Tensor& weight, const torch::Tensor& bias,
                                    const torch::Tensor& running_mean,
                                    const torch::Tensor& running_var, double momentum, double eps);

// Evaluation mode, without a graph: normalised with the running statistics.
torch::Tensor batch_norm_relu_infer(const torch::Tensor& x, const torch::Tensor& residual,
                                    const torch::Tensor& weight, const torch::Tensor& bias,
                                    const torch::Tensor& running_mean,
                                    const torch::Tensor& running_var, double eps);

}  // namespace torchfocal::models
