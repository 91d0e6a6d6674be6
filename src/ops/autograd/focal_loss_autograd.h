// The focal loss as a C++ autograd node: backward runs the fused analytic-gradient kernel, so
// it needs no Python and no op-by-op replay of a composed graph.
#pragma once

#include <torch/torch.h>

#include "src/ops/focal_loss.h"
#include "src/ops/focal_loss_impl.h"

namespace torchfocal::ops {

// FocalLossFunction::apply(input, args, reduction), with `args` from detail::check_args.
// `input` is the tensor the gradient flows to (args.input is it, or its contiguous copy).
// Saves input, target, α and two numbers per row (max and log Σ exp, softmax mode): no [N, C]
// temporary outlives forward.
// Target and α get no gradient.
class FocalLossFunction : public torch::autograd::Function<FocalLossFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const detail::KernelArgs& args, Reduction reduction);
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

}  // namespace torchfocal::ops
