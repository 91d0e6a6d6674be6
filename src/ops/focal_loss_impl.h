// Internal declarations of the focal-loss op: the checked arguments that every kernel takes,
// the CPU and CUDA entry points, and the device dispatch that the raw API and the autograd
// function share. Not part of the public interface (that is focal_loss.h).
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "src/ops/focal_loss.h"

namespace torchfocal::ops::detail {

// The type kernels accumulate in: float for float/half/bfloat16 input, double for double.
inline torch::ScalarType accumulate_dtype(torch::ScalarType type) {
  return type == torch::kDouble ? torch::kDouble : torch::kFloat;
}

// Arguments after focal_loss.cpp has checked them (check_args): every tensor contiguous and on
// the input's device, α in the accumulate dtype (float, or double for double input).
struct KernelArgs {
  torch::Tensor input;   // softmax/probs [N, C]; sigmoid any shape
  torch::Tensor target;  // softmax/probs int64 [N]; sigmoid the input's dtype and shape
  torch::Tensor alpha;   // softmax/probs [C] or undefined (all ones); undefined in sigmoid mode
  FocalMode mode = FocalMode::kSoftmax;
  double gamma = 2.0;
  double sigmoid_alpha = 0.25;
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  // What a mean divides by: the non-ignored rows (softmax/probs) or the elements (sigmoid),
  // at least 1 so that an empty batch gives loss 0 and gradient 0.
  double mean_divisor = 1.0;

  int64_t rows() const { return mode == FocalMode::kSigmoid ? input.numel() : input.size(0); }
  int64_t classes() const { return mode == FocalMode::kSigmoid ? 1 : input.size(1); }
};

// Checks everything (std::invalid_argument naming the argument) and prepares KernelArgs. On
// CUDA the target range check reads one pair of numbers back to the host (one sync per call),
// unless FocalOptions::targets_checked says the caller has done it.
KernelArgs check_args(const torch::Tensor& input, const torch::Tensor& target,
                      const FocalOptions& options);

// The kernels' outputs for one forward call.
struct ForwardOut {
  torch::Tensor loss;  // per row [N] (softmax/probs) or per element (sigmoid), accumulate dtype
  // Softmax only, what backward needs of a row: [N, 2] (max, log Σ exp(x - max)) in the
  // accumulate dtype (logsumexp = their sum; kept apart for log p near 0), 0 on ignored rows.
  torch::Tensor stats;
};

// grad_loss: accumulate dtype, one value (broadcast) or one per row/element; every value is
// multiplied by `scale` (1 / mean_divisor for a mean). `stats` may be undefined: then it is
// recomputed. Returns d sum(scale * grad_loss * loss) / d input, in the input's dtype.
ForwardOut forward(const KernelArgs& args);
torch::Tensor backward(const KernelArgs& args, const torch::Tensor& stats,
                       const torch::Tensor& grad_loss, double scale);

// Checks a per-row/per-element (or single-value) incoming gradient and puts it in the
// accumulate dtype, contiguous, as backward() takes it.
torch::Tensor prepare_grad_loss(const torch::Tensor& grad_loss, const KernelArgs& args);

// The reduction of ForwardOut::loss, in the input's dtype.
torch::Tensor reduce(const torch::Tensor& loss, const KernelArgs& args, Reduction reduction);

// CPU kernels (cpu/focal_loss_kernel.cpp). CpuIsa picks the vector width of the float softmax
// passes; kAuto takes the widest the CPU runs, capped by ATEN_CPU_CAPABILITY as LibTorch's own
// kernels are. The others exist for tests.
enum class CpuIsa { kAuto, kScalar, kBaseline, kAvx2, kAvx512 };
bool cpu_isa_available(CpuIsa isa);
ForwardOut forward_cpu(const KernelArgs& args, CpuIsa isa = CpuIsa::kAuto);
torch::Tensor backward_cpu(const KernelArgs& args, const torch::Tensor& stats,
                           const torch::Tensor& grad_loss, double scale,
                           CpuIsa isa = CpuIsa::kAuto);

#ifdef TORCHFOCAL_WITH_CUDA
// CUDA launch wrappers (cuda/focal_loss_cuda.cpp); same contracts as the CPU ones.
ForwardOut forward_cuda(const KernelArgs& args);
torch::Tensor backward_cuda(const KernelArgs& args, const torch::Tensor& stats,
                            const torch::Tensor& grad_loss, double scale);
#endif

}  // namespace torchfocal::ops::detail
