// The fused focal-loss op: one pass forward, one pass backward, analytic gradient.
//
//   softmax mode:  FL = -Σ_c q_c α_c (1 - p_c)^γ log p_c, p = softmax(logits), q = the target
//                  distribution (one-hot, or label-smoothed: (1 - ε) one-hot + ε / C). With
//                  ε = 0 this is the usual -α_t (1 - p_t)^γ log p_t.
//   probs mode:    the same with p given directly (the original experiment's with_logits=False),
//                  clamped to [1e-8, 1] as the original does; no smoothing.
//   sigmoid mode:  FL = -α t (1 - p)^γ log p - (1 - α)(1 - t) p^γ log(1 - p), p = sigmoid(x),
//                  elementwise, float targets in [0, 1]; α < 0 disables the weighting.
//                  Equal to torchvision.ops.sigmoid_focal_loss for binary targets.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace torchfocal::ops {

enum class FocalMode { kSoftmax, kProbs, kSigmoid };
enum class Reduction { kNone, kMean, kSum };

struct FocalOptions {
  FocalMode mode = FocalMode::kSoftmax;
  double gamma = 2.0;  // any real >= 0
  // softmax/probs: per-class weights [C] (undefined = all 1). Same dtype as the input or float.
  torch::Tensor alpha;
  // sigmoid: the scalar α of the binary form; < 0 disables weighting.
  double sigmoid_alpha = 0.25;
  int64_t ignore_index = -100;  // softmax/probs rows with this target contribute nothing
  // softmax/probs: the caller guarantees every target is a class index (none out of range, none
  // equal to ignore_index), so the range check and its read-back to the host are skipped and a
  // mean divides by N. What lets a CUDA graph capture the op (the trainer's labels were checked
  // once, when the dataset was made).
  bool targets_checked = false;
  double label_smoothing = 0.0;  // softmax only, in [0, 1)
  // kMean: softmax/probs divide by the count of non-ignored rows (0 rows -> loss 0, grad 0);
  // sigmoid divides by the element count.
  Reduction reduction = Reduction::kMean;
};

// Differentiable with respect to `input` through a torch::autograd::Function.
// softmax/probs: input [N, C] floating (float, double; half/bfloat16 on CUDA), target [N] int64.
// sigmoid: input any shape, target same shape and floating dtype.
// Throws std::invalid_argument naming the argument on bad shapes, dtypes, devices, NaN γ,
// α of the wrong length, target values out of range.
torch::Tensor focal_loss(const torch::Tensor& input, const torch::Tensor& target,
                         const FocalOptions& options);

// The raw kernels, without autograd (tests and benchmarks): loss per row/element, and the
// gradient of sum(weight ⊙ loss) with respect to `input` for a per-row/per-element
// `grad_loss` (a scalar tensor broadcasts).
torch::Tensor focal_loss_forward(const torch::Tensor& input, const torch::Tensor& target,
                                 const FocalOptions& options);
torch::Tensor focal_loss_backward(const torch::Tensor& grad_loss, const torch::Tensor& input,
                                  const torch::Tensor& target, const FocalOptions& options);

Reduction parse_reduction(const std::string& name);  // "none" | "mean" | "sum"
FocalMode parse_mode(const std::string& name);       // "softmax" | "probs" | "sigmoid"

}  // namespace torchfocal::ops
