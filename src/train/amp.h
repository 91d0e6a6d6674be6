// Mixed precision: autocast around the forward pass, and a dynamic loss scaler for fp16.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace torchfocal::train {

enum class Amp { kOff, kBf16, kFp16 };

Amp parse_amp(const std::string& name);  // "off" | "bf16" | "fp16"

// Autocast on `device` while in scope (nothing for Amp::kOff). The layers run in the low
// precision where LibTorch's autocast lists say it is safe; the loss is computed after the scope,
// in float32.
class AutocastScope {
 public:
  AutocastScope(Amp amp, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
};

// fp16 gradients underflow without it: the loss is multiplied by a scale before backward; the
// gradients are divided by it and checked on the device; a step with a non-finite gradient is
// skipped and the scale halved, and after `growth_interval` good steps it doubles (PyTorch's
// GradScaler policy). CUDA only: LibTorch's fused unscale/update kernels are CUDA kernels.
class LossScaler {
 public:
  explicit LossScaler(const torch::Device& device, double initial_scale = 65536.0,
                      int64_t growth_interval = 2000);

  torch::Tensor scale(const torch::Tensor& loss) const { return loss * scale_; }
  // Unscales the gradients in place; true when all are finite (reads one value: a sync).
  bool unscale(const std::vector<torch::Tensor>& params);
  // The same without the read: returns the device flag, 1 when a gradient is not finite.
  const torch::Tensor& unscale_on_device(const std::vector<torch::Tensor>& grads);
  // After each step, whether or not it was skipped.
  void update();
  // update() where `apply` (a 0-dim bool tensor on the device) is true; as if not called where
  // false, as the host loop skips it after a non-finite loss. No host read.
  void update_where(const torch::Tensor& apply);
  double current_scale() const { return scale_.item<double>(); }

 private:
  torch::Tensor scale_, growth_tracker_, found_inf_;
  int64_t growth_interval_;
};

}  // namespace torchfocal::train
