// The focal loss and its input gradient in one call, for scripting and checks from TS.
#pragma once

#include <torch/torch.h>

#include <utility>

#include "src/ops/focal_loss.h"

namespace torchfocal::ops {

// (loss, d loss / d input): the reduced loss (per-element for kNone) and the gradient of the
// reduced loss — of its sum for kNone — with respect to `input`, same shape and dtype.
std::pair<torch::Tensor, torch::Tensor> focal_loss_value_and_grad(const torch::Tensor& input,
                                                                  const torch::Tensor& target,
                                                                  const FocalOptions& options);

}  // namespace torchfocal::ops
