// Adam, AdamW or SGD (with momentum, Nesterov and weight decay) over one flat buffer that holds
// every parameter (each parameter a view into it, in its own strides) and one that holds every
// gradient: one kernel per step instead of a dozen per parameter, and a step that reads nothing
// back to the host. The step count lives on the device and a device flag says whether to take the
// step (it is 0 after a non-finite loss or gradient), as may the step's rate, so the whole train
// step can be captured in a CUDA graph.
//
// It is built from the trainer's torch::optim optimizer, which supplies the hyper-parameters and
// stays the format of checkpoints: store() writes the moments and step count (or SGD's momentum
// buffers) there, load() reads them back (optimizer_state.h saves and checks that format).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "src/train/optimizer_math.h"

namespace torchfocal::train {

// A view of `flat` from `offset` with the sizes and strides of `like` (a dense tensor in any
// memory format): the layout autograd and the optimizers expect.
torch::Tensor flat_view(const torch::Tensor& flat, const torch::Tensor& like, int64_t offset);

// One zeroed buffer of every parameter's gradient, in the parameters' order, followed by `tail`
// spare values; each parameter's gradient becomes a view into it (backward accumulates there in
// place). The parameters must share one dtype and device (std::invalid_argument otherwise).
torch::Tensor flat_gradients(const std::vector<torch::Tensor>& params, int64_t tail = 0);

class FlatOptimizer {
 public:
  // Adam or AdamW without amsgrad, or SGD without dampening, one parameter group of float32
  // parameters on one device. Moves the parameters into the flat buffer (their values unchanged).
  explicit FlatOptimizer(torch::optim::Optimizer& optimizer);

  const torch::Tensor& gradients() const { return grads_; }
  void zero_grad() { grads_.zero_(); }
  // torch::nn::utils::clip_grad_norm_ on the flat gradients, on the device with no host read:
  // scaled by min(1, max_norm / (‖g‖₂ + 1e-6)), the norm taken over the whole buffer at once
  // (torch takes it of the parameters' norms: equal up to float rounding). Before step().
  void clip_grad_norm(double max_norm);
  // One step where `take` (a 0-dim float32 tensor on the parameters' device) is 1; none where 0.
  // `lr`, a one-element float64 tensor there, overrides the optimizer's rate (a schedule's).
  void step(const torch::Tensor& take, const torch::Tensor& lr = {});
  // The host loop's step on the CPU: always taken, at `lr`.
  void step(double lr);

  // The step count and moments into the torch::optim optimizer's state (reads the count: a
  // device sync), and back (after that state was loaded from a checkpoint).
  void store() const;
  void load();

 private:
  void update_on_cpu(double lr);  // the parameters' update, the step count already advanced

  torch::optim::Optimizer& optimizer_;
  std::vector<torch::Tensor> params_;
  bool adam_ = false;
  double beta1_ = 0, beta2_ = 0;
  double decoupled_decay_ = 0;  // AdamW's weight decay (0 for Adam, whose decay is L2)
  math::AdamConstants constants_{};
  math::SgdConstants sgd_{};
  torch::Tensor params_flat_, grads_, exp_avg_, exp_avg_sq_;
  torch::Tensor momentum_buffer_;  // SGD with momentum
  torch::Tensor step_;             // int64 [], the steps taken
  torch::Tensor lr_;               // float64 [1], the rate when step() is given none
};

}  // namespace torchfocal::train
