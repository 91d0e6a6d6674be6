// The optimizer's per-parameter state as named tensors, so it is saved as safetensors and checked
// like the weights: no archive format trusted, nothing copied before every name, shape and dtype
// has matched the model.
//
// Names: "adam.exp_avg/<param>", "adam.exp_avg_sq/<param>", "adam.step/<param>" (int64, shape
// []); the same three as "adamw.*" for AdamW; "sgd.momentum_buffer/<param>" for SGD with
// momentum (plain SGD has no state); with PyTorch's parameter names. A parameter that has not
// been stepped yet has no entries. Loading expects the prefix of the optimizer being loaded into:
// an "adam.*" state does not load into AdamW (a different optimizer), nor the other way round.
#pragma once

#include <torch/torch.h>

#include "src/train/named_tensors.h"

namespace torchfocal::train {

// Adam, AdamW and SGD are the optimizers the trainer builds; others throw std::invalid_argument.
NamedTensors optimizer_state(const torch::optim::Optimizer& optimizer,
                             const torch::nn::Module& model);

// Replaces the optimizer's state with `state` (entries of other prefixes are the caller's).
// Throws std::invalid_argument, leaving the optimizer untouched, when a name, shape or dtype does
// not match or a parameter's entries are incomplete.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const torch::nn::Module& model,
                          const NamedTensors& state);

// Whether `name` is one of the optimizer's entries (by its prefix).
bool is_optimizer_entry(const std::string& name);

// One parameter's Adam state (nullptr before its first step), and replacing it: how the flat
// optimizer (flat_optimizer.h) hands its moments to and from the format above.
const torch::optim::AdamParamState* adam_state(torch::optim::Optimizer& optimizer,
                                               const torch::Tensor& param);
void set_adam_state(torch::optim::Optimizer& optimizer, const torch::Tensor& param, int64_t step,
                    torch::Tensor exp_avg, torch::Tensor exp_avg_sq);

// The same for Adam or AdamW, whichever `optimizer` is: step 0 and undefined moments before the
// parameter's first step.
struct AdamMoments {
  int64_t step = 0;
  torch::Tensor exp_avg, exp_avg_sq;
};
AdamMoments adam_moments(torch::optim::Optimizer& optimizer, const torch::Tensor& param);
void set_adam_moments(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                      AdamMoments moments);

// SGD's momentum buffer of one parameter (undefined before its first step), and replacing it.
torch::Tensor momentum_buffer(torch::optim::Optimizer& optimizer, const torch::Tensor& param);
void set_momentum_buffer(torch::optim::Optimizer& optimizer, const torch::Tensor& param,
                         torch::Tensor buffer);

}  // namespace torchfocal::train
