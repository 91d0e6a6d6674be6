// The optimizers the trainer builds, as torch::optim defines them: Adam (weight decay as an L2
// term added to the gradient), AdamW (decoupled weight decay: p ← p·(1 − lr·wd) before the
// update) and SGD (momentum, Nesterov, L2 weight decay; dampening 0). The host loop steps them
// directly; the device step runs the same maths over their options (flat_optimizer.h).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace torchfocal::train {

struct OptimizerOptions {
  std::string name = "adam";  // adam | adamw | sgd
  double lr = 0.001;
  double momentum = 0;    // sgd only
  bool nesterov = false;  // sgd with momentum > 0 only, as torch.optim.SGD requires
  // unset: the optimizer's default, torch.optim's: 0.01 for adamw, 0 for adam and sgd
  std::optional<double> weight_decay;
};

// torch.optim's default weight decay of `name` (0.01 for AdamW, 0 otherwise).
double default_weight_decay(const std::string& name);

// Checks the options (std::invalid_argument naming the one that is wrong) and builds the
// optimizer over `params` in one parameter group, Adam's and AdamW's betas and eps at torch's
// defaults (0.9, 0.999, 1e-8).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& options,
                                                        const std::vector<torch::Tensor>& params);

// torch::nn::utils::clip_grad_norm_(params, max_norm) without its read of the norm: the total L2
// norm of the gradients, computed and applied on their device (coefficient max_norm/(norm+1e-6)
// clamped to 1). Parameters without a gradient are left out, as torch does.
void clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace torchfocal::train
