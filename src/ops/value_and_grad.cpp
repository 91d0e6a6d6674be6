#include "src/ops/value_and_grad.h"

namespace torchfocal::ops {

std::pair<torch::Tensor, torch::Tensor> focal_loss_value_and_grad(const torch::Tensor& input,
                                                                  const torch::Tensor& target,
                                                                  const FocalOptions& options) {
  // Grad mode is per thread: callers run this on worker threads where it may be off.
  c10::AutoGradMode grad_mode(true);
  auto x = input.detach().requires_grad_(true);
  auto loss = focal_loss(x, target, options);
  auto grad = torch::autograd::grad({loss.sum()}, {x})[0];
  return {loss.detach(), grad};
}

}  // namespace torchfocal::ops
