#include "src/train/optimizers.h"

#include <cmath>
#include <stdexcept>

namespace torchfocal::train {

double default_weight_decay(const std::string& name) { return name == "adamw" ? 0.01 : 0.0; }

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& o,
                                                        const std::vector<torch::Tensor>& params) {
  if (o.name != "adam" && o.name != "adamw" && o.name != "sgd") {
    throw std::invalid_argument("unknown optimizer '" + o.name + "' (known: adam, adamw, sgd)");
  }
  if (!std::isfinite(o.lr) || o.lr <= 0) throw std::invalid_argument("lr must be a number > 0");
  if (!std::isfinite(o.momentum) || o.momentum < 0) {
    throw std::invalid_argument("momentum must be a number >= 0");
  }
  if (o.momentum != 0 && o.name != "sgd") {
    throw std::invalid_argument("momentum applies to the sgd optimizer only");
  }
  if (o.nesterov && (o.name != "sgd" || o.momentum <= 0)) {
    throw std::invalid_argument("nesterov needs the sgd optimizer with a momentum > 0");
  }
  const double wd = o.weight_decay.value_or(default_weight_decay(o.name));
  if (!std::isfinite(wd) || wd < 0) {
    throw std::invalid_argument("weight_decay must be a number >= 0");
  }
  if (o.name == "adam") {
    return std::make_unique<torch::optim::Adam>(params,
                                                torch::optim::AdamOptions(o.lr).weight_decay(wd));
  }
  if (o.name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(params,
                                                 torch::optim::AdamWOptions(o.lr).weight_decay(wd));
  }
  return std::make_unique<torch::optim::SGD>(
      params,
      torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(wd));
}

void clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads, norms;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    grads.push_back(p.grad());
    norms.push_back(p.grad().norm(2));
  }
  if (grads.empty()) return;
  // torch::nn::utils::clip_grad_norm_'s expressions, less its final .item().
  const auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2);
  const auto coefficient = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) g.mul_(coefficient);
}

}  // namespace torchfocal::train
