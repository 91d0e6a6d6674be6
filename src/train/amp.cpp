#include "src/train/amp.h"

#include <ATen/autocast_mode.h>

#include <stdexcept>

#include "src/common/torch_compat.h"

namespace torchfocal::train {

Amp parse_amp(const std::string& name) {
  if (name == "off") return Amp::kOff;
  if (name == "bf16") return Amp::kBf16;
  if (name == "fp16") return Amp::kFp16;
  throw std::invalid_argument("unknown amp mode '" + name + "' (known: off, bf16, fp16)");
}

AutocastScope::AutocastScope(Amp amp, const torch::Device& device) {
  if (amp == Amp::kOff) return;
  cuda_ = device.is_cuda();
  active_ = true;
  at::autocast::increment_nesting();
  compat::set_autocast(cuda_, true, amp == Amp::kFp16 ? at::kHalf : at::kBFloat16);
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // The cast weights are cached while autocast is on; drop them with the scope, as Python's
  // torch.autocast does on leaving its outermost context.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  compat::set_autocast(cuda_, false, cuda_ ? at::kHalf : at::kBFloat16);
}

LossScaler::LossScaler(const torch::Device& device, double initial_scale, int64_t growth_interval)
    : growth_interval_(growth_interval) {
  if (!device.is_cuda()) {
    throw std::invalid_argument("amp fp16 needs a CUDA device (use bf16 on the CPU)");
  }
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  scale_ = torch::full({}, initial_scale, f32);
  growth_tracker_ = torch::zeros({}, f32.dtype(torch::kInt32));
  found_inf_ = torch::zeros({}, f32);
}

bool LossScaler::unscale(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.mutable_grad());
  }
  return unscale_on_device(grads).item<float>() == 0.0f;
}

const torch::Tensor& LossScaler::unscale_on_device(const std::vector<torch::Tensor>& grads) {
  found_inf_.zero_();
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, scale_.reciprocal());
  return found_inf_;
}

void LossScaler::update() {
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, 2.0, 0.5, growth_interval_);
}

void LossScaler::update_where(const torch::Tensor& apply) {
  const auto scale = scale_.clone(), tracker = growth_tracker_.clone();
  update();
  scale_.copy_(torch::where(apply, scale_, scale));
  growth_tracker_.copy_(torch::where(apply, growth_tracker_, tracker));
}

}  // namespace torchfocal::train
