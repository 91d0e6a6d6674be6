#include "models/batch_norm.h"

#include "models/batch_norm_relu.h"

namespace torchfocal::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Per-channel sums over (N, H, W) as [C] tensors.
torch::Tensor channel_sum(const torch::Tensor& t) { return t.sum({0, 2, 3}); }
torch::Tensor per_channel(const torch::Tensor& t) { return t.view({1, -1, 1, 1}); }
torch::ScalarType compute_type(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// The synchronised batch norm of one step, as PyTorch's SyncBatchNorm computes it: the forward
// sums (count, Σx, Σx²) over ranks; the backward sums (Σdy, Σdy·x̂) over ranks. Weight and bias
// gradients stay local: the data-parallel gradient average combines them like any other.
struct SyncBatchNormFunction : torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               BatchNorm2dImpl* module, const CrossRankSum* sum, double eps) {
    // Statistics in float32 at least (reduced-precision activations under autocast).
    const auto xf = x.to(compute_type(x));
    auto stats =
        torch::cat({channel_sum(xf), channel_sum(xf * xf),
                    torch::full({1}, static_cast<double>(x.numel() / x.size(1)), xf.options())});
    (*sum)(stats);
    const int64_t c = x.size(1);
    const auto count = stats[2 * c];
    const auto mean = stats.slice(0, 0, c) / count;
    const auto var = (stats.slice(0, c, 2 * c) / count - mean * mean).clamp_min(0);
    const auto invstd = (var + eps).rsqrt();
    {
      // Running statistics as torch's batch norm keeps them: momentum, unbiased variance.
      torch::NoGradGuard no_grad;
      const double momentum = BatchNorm2dImpl::kMomentum;
      const double n = count.item<double>();
      module->running_mean.mul_(1 - momentum).add_(mean, momentum);
      module->running_var.mul_(1 - momentum).add_(var * (n / std::max(n - 1, 1.0)), momentum);
      module->num_batches_tracked.add_(1);
    }
    const auto xhat = (xf - per_channel(mean)) * per_channel(invstd);
    ctx->save_for_backward({xhat, weight, invstd, count});
    ctx->saved_data["sum"] = reinterpret_cast<int64_t>(sum);
    return (xhat * per_channel(weight) + per_channel(bias)).to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& xhat = saved[0];
    const auto& weight = saved[1];
    const auto& invstd = saved[2];
    const auto& count = saved[3];
    const auto* sum = reinterpret_cast<const CrossRankSum*>(ctx->saved_data["sum"].toInt());
    const auto dy = grads[0].to(xhat.scalar_type());
    const auto grad_bias = channel_sum(dy);
    const auto grad_weight = channel_sum(dy * xhat);
    auto global = torch::cat({grad_bias, grad_weight});
    (*sum)(global);
    const int64_t c = xhat.size(1);
    const auto mean_dy = global.slice(0, 0, c) / count;
    const auto mean_dy_xhat = global.slice(0, c, 2 * c) / count;
    const auto dx = per_channel(weight * invstd) *
                    (dy - per_channel(mean_dy) - xhat * per_channel(mean_dy_xhat));
    return {dx.to(grads[0].scalar_type()),
            grad_weight,
            grad_bias,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

BatchNorm2dImpl::BatchNorm2dImpl(int64_t features) : num_features(features) { reset(); }

void BatchNorm2dImpl::reset() {
  weight = register_parameter("weight", torch::ones({num_features}));
  bias = register_parameter("bias", torch::zeros({num_features}));
  running_mean = register_buffer("running_mean", torch::zeros({num_features}));
  running_var = register_buffer("running_var", torch::ones({num_features}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kInt64));
}

void BatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "BatchNorm2d(" << num_features << ", eps=" << kEps << ", momentum=" << kMomentum
         << ", sync=" << (sum_ ? "true" : "false") << ")";
}

torch::Tensor BatchNorm2dImpl::forward(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "BatchNorm2d: expected a 4-d input, got ", input.dim(), "-d");
  if (is_training()) {
    if (sum_) return SyncBatchNormFunction::apply(input, weight, bias, this, &sum_, kEps);
    num_batches_tracked.add_(1);  // a buffer: no gradient
  }
  return torch::batch_norm(input, weight, bias, running_mean, running_var, is_training(), kMomentum,
                           kEps, /*cudnn_enabled=*/true);
}

torch::Tensor BatchNorm2dImpl::forward_relu(const torch::Tensor& input,
                                            const torch::Tensor& residual) {
  if (!sum_ && batch_norm_relu_applies(input, residual)) {
    if (is_training()) {
      num_batches_tracked.add_(1);
      return batch_norm_relu_train(input, residual, weight, bias, running_mean, running_var,
                                   kMomentum, kEps);
    }
    if (!torch::GradMode::is_enabled()) {
      return batch_norm_relu_infer(input, residual, weight, bias, running_mean, running_var, kEps);
    }
  }
  const auto y = forward(input);
  return torch::relu(residual.defined() ? y + residual : y);
}

}  // namespace torchfocal::models
