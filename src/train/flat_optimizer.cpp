#include "src/train/flat_optimizer.h"

#include <ATen/Parallel.h>

#include <stdexcept>

#include "src/common/cpu_features.h"
#include "src/train/optimizer_state.h"

#ifdef TORCHFOCAL_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "src/train/cuda/flat_optimizer_kernel.h"
#endif

namespace torchfocal::train {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per CPU task: large enough to beat the overhead

// Adam over elements [begin, end). Its square root and two divisions are most of the cost. The
// constants come by value and the arrays as restrict so that the compiler may hoist the weight
// decay's branches and vectorise: through references a store to p could change them.
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline void
adam_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
           int64_t begin, int64_t end, math::AdamConstants c, math::AdamStepScalars s) {
  for (int64_t i = begin; i < end; ++i) math::adam_update(p[i], g[i], m[i], v[i], c, s);
}

#ifdef TORCHFOCAL_X86_TARGETS
// The same loop 8 wide, where the baseline x86-64 build has 4. Not "fma": contracted
// multiply-adds would round unlike torch::optim; square roots and divisions are exact at either
// width, so the results are the same bits.
__attribute__((target("avx2"))) void adam_range_avx2(float* p, const float* g, float* m, float* v,
                                                     int64_t begin, int64_t end,
                                                     math::AdamConstants c,
                                                     math::AdamStepScalars s) {
  adam_range(p, g, m, v, begin, end, c, s);
}
#endif

}  // namespace

torch::Tensor flat_view(const torch::Tensor& flat, const torch::Tensor& like, int64_t offset) {
  return flat.as_strided(like.sizes(), like.strides(), offset);
}

torch::Tensor flat_gradients(const std::vector<torch::Tensor>& params, int64_t tail) {
  if (params.empty()) throw std::invalid_argument("flat gradients: no parameters");
  int64_t total = 0;
  for (const auto& p : params) {
    if (p.scalar_type() != params.front().scalar_type() || p.device() != params.front().device()) {
      throw std::invalid_argument("flat gradients: parameters of one dtype on one device needed");
    }
    total += p.numel();
  }
  auto flat = torch::zeros({total + tail}, params.front().options());
  int64_t offset = 0;
  for (const auto& p : params) {
    // with the parameter's strides (channels-last conv weights): the layout autograd expects
    p.mutable_grad() = flat_view(flat, p, offset);
    offset += p.numel();
  }
  return flat;
}

FlatOptimizer::FlatOptimizer(torch::optim::Optimizer& optimizer) : optimizer_(optimizer) {
  if (optimizer.param_groups().size() != 1) {
    throw std::invalid_argument("flat optimizer: one parameter group expected");
  }
  auto& group = optimizer.param_groups()[0];
  params_ = group.params();
  double lr = 0;
  if (params_.empty()) throw std::invalid_argument("flat optimizer: no parameters");
  // Adam and AdamW: the same options but for the meaning of weight decay.
  const auto adam_like = [&](const auto& o, bool decoupled) {
    if (o.amsgrad()) throw std::invalid_argument("flat optimizer: amsgrad is not supported");
    adam_ = true;
    lr = o.lr();
    beta1_ = std::get<0>(o.betas());
    beta2_ = std::get<1>(o.betas());
    decoupled_decay_ = decoupled ? o.weight_decay() : 0.0;
    constants_ = {static_cast<float>(beta1_),
                  static_cast<float>(beta2_),
                  static_cast<float>(1 - beta1_),
                  static_cast<float>(1 - beta2_),
                  static_cast<float>(o.eps()),
                  static_cast<float>(o.weight_decay()),
                  decoupled};
  };
  if (auto* adam = dynamic_cast<torch::optim::AdamOptions*>(&group.options())) {
    adam_like(*adam, false);
  } else if (auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&group.options())) {
    adam_like(*adamw, true);
  } else if (auto* sgd = dynamic_cast<torch::optim::SGDOptions*>(&group.options())) {
    if (sgd->dampening() != 0) {
      throw std::invalid_argument("flat optimizer: SGD with dampening is not supported");
    }
    if (sgd->nesterov() && sgd->momentum() == 0) {
      throw std::invalid_argument("flat optimizer: Nesterov momentum needs a momentum");
    }
    lr = sgd->lr();
    sgd_ = {static_cast<float>(sgd->momentum()), static_cast<float>(sgd->weight_decay()),
            sgd->nesterov()};
  } else {
    throw std::invalid_argument("flat optimizer: only Adam, AdamW and SGD are supported");
  }
  for (const auto& p : params_) {
    if (p.scalar_type() != torch::kFloat32) {
      throw std::invalid_argument("flat optimizer: parameters must be float32");
    }
  }
  torch::NoGradGuard no_grad;
  grads_ = flat_gradients(params_);
  const int64_t total = grads_.numel();
  const auto options = grads_.options();
  params_flat_ = torch::empty({total}, options);
  int64_t offset = 0;
  for (auto& p : params_) {
    auto view = flat_view(params_flat_, p, offset);
    view.copy_(p);
    p.set_data(view);  // same TensorImpl: the optimizer's state keys stay valid
    offset += p.numel();
  }
  if (adam_) {
    exp_avg_ = torch::zeros({total}, options);
    exp_avg_sq_ = torch::zeros({total}, options);
  } else if (sgd_.momentum != 0.0f) {
    momentum_buffer_ = torch::zeros({total}, options);
  }
  step_ = torch::zeros({}, options.dtype(torch::kInt64));
  lr_ = torch::full({1}, lr, options.dtype(torch::kFloat64));
  load();
}

void FlatOptimizer::step(const torch::Tensor& take, const torch::Tensor& lr) {
  torch::NoGradGuard no_grad;
  const auto& rate = lr.defined() ? lr : lr_;
  if (rate.scalar_type() != torch::kFloat64 || rate.numel() != 1 ||
      rate.device() != params_flat_.device()) {
    throw std::invalid_argument("flat optimizer: lr must be one float64 on the parameters' device");
  }
  step_.add_(take.to(torch::kInt64));
#ifdef TORCHFOCAL_WITH_CUDA
  if (params_flat_.is_cuda()) {
    const int64_t n = params_flat_.numel();
    const c10::cuda::CUDAGuard guard(params_flat_.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    const auto flag = take.to(torch::kFloat32).contiguous();
    if (adam_) {
      C10_CUDA_CHECK(cuda::launch_adam(
          params_flat_.data_ptr<float>(), grads_.data_ptr<float>(), exp_avg_.data_ptr<float>(),
          exp_avg_sq_.data_ptr<float>(), n, constants_, beta1_, beta2_, decoupled_decay_,
          rate.data_ptr<double>(), step_.data_ptr<int64_t>(), flag.data_ptr<float>(), stream));
    } else {
      C10_CUDA_CHECK(cuda::launch_sgd(
          params_flat_.data_ptr<float>(), grads_.data_ptr<float>(),
          momentum_buffer_.defined() ? momentum_buffer_.data_ptr<float>() : nullptr, n, sgd_,
          rate.data_ptr<double>(), flag.data_ptr<float>(), stream));
    }
    return;
  }
#endif
  if (!params_flat_.is_cpu()) {
    throw std::invalid_argument("flat optimizer: parameters on " + params_flat_.device().str() +
                                " but torchfocal was built without CUDA");
  }
  if (take.item<float>() == 0.0f) return;  // on the CPU a read costs nothing
  update_on_cpu(rate.item<double>());
}

void FlatOptimizer::step(double lr) {
  if (!params_flat_.is_cpu()) {
    throw std::invalid_argument("flat optimizer: a step at a host rate runs on the CPU only");
  }
  torch::NoGradGuard no_grad;
  step_.add_(1);
  update_on_cpu(lr);
}

void FlatOptimizer::update_on_cpu(double lr) {
  const int64_t n = params_flat_.numel();
  float* p = params_flat_.data_ptr<float>();
  const float* g = grads_.data_ptr<float>();
  if (adam_) {
    float* m = exp_avg_.data_ptr<float>();
    float* v = exp_avg_sq_.data_ptr<float>();
    const auto s =
        math::adam_step_scalars(beta1_, beta2_, lr, step_.item<int64_t>(), decoupled_decay_);
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
#ifdef TORCHFOCAL_X86_TARGETS
      if (cpu_has_avx2()) return adam_range_avx2(p, g, m, v, begin, end, constants_, s);
#endif
      adam_range(p, g, m, v, begin, end, constants_, s);
    });
  } else if (momentum_buffer_.defined() || sgd_.weight_decay != 0.0f) {
    const auto rate = static_cast<float>(lr);
    float* buf = momentum_buffer_.defined() ? momentum_buffer_.data_ptr<float>() : nullptr;
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      float unused = 0;
      for (int64_t i = begin; i < end; ++i)
        math::sgd_update(p[i], g[i], buf != nullptr ? buf[i] : unused, sgd_, rate);
    });
  } else {
    const auto rate = static_cast<float>(lr);
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) math::sgd_update(p[i], g[i], rate);
    });
  }
}

void FlatOptimizer::clip_grad_norm(double max_norm) {
  torch::NoGradGuard no_grad;
  // clip_grad_norm_'s expressions: the coefficient as a float32 tensor, clamped, multiplied in.
  const auto norm = grads_.norm(2);
  const auto coefficient = (max_norm / (norm + 1e-6)).clamp_max(1.0);
  grads_.mul_(coefficient);
}

void FlatOptimizer::store() const {
  if (!adam_ && !momentum_buffer_.defined()) return;  // plain SGD has no state
  const int64_t steps = step_.item<int64_t>();
  if (steps == 0) {
    optimizer_.state().clear();
    return;
  }
  int64_t offset = 0;
  for (const auto& p : params_) {
    const auto slice = [&](const torch::Tensor& flat) {
      return flat_view(flat, p, offset).clone(torch::MemoryFormat::Preserve);
    };
    if (adam_) {
      set_adam_moments(optimizer_, p, {steps, slice(exp_avg_), slice(exp_avg_sq_)});
    } else {
      set_momentum_buffer(optimizer_, p, slice(momentum_buffer_));
    }
    offset += p.numel();
  }
}

void FlatOptimizer::load() {
  torch::NoGradGuard no_grad;
  if (!adam_) {
    // SGD: the buffers where the state has them, zero elsewhere (which the first step then fills
    // exactly as torch::optim's clone of d_p does). The count only says whether any step ran.
    int64_t stepped = 0;
    if (momentum_buffer_.defined()) {
      momentum_buffer_.zero_();
      int64_t offset = 0;
      for (const auto& p : params_) {
        const auto buffer = momentum_buffer(optimizer_, p);
        if (buffer.defined()) {
          flat_view(momentum_buffer_, p, offset).copy_(buffer);
          stepped = 1;
        }
        offset += p.numel();
      }
    }
    step_.fill_(stepped);
    return;
  }
  // In place: a captured CUDA graph keeps reading these buffers.
  exp_avg_.zero_();
  exp_avg_sq_.zero_();
  int64_t steps = -1;
  int64_t offset = 0;
  for (const auto& p : params_) {
    const auto state = adam_moments(optimizer_, p);
    if (steps >= 0 && state.step != steps) {
      throw std::invalid_argument(
          "flat optimizer: the parameters' Adam states have different step counts");
    }
    steps = state.step;
    if (state.exp_avg.defined()) {
      flat_view(exp_avg_, p, offset).copy_(state.exp_avg);
      flat_view(exp_avg_sq_, p, offset).copy_(state.exp_avg_sq);
    }
    offset += p.numel();
  }
  step_.fill_(steps);
}

}  // namespace torchfocal::train
