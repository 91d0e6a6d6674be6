#include "models/batch_norm_relu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "src/common/cpu_features.h"
#include "src/common/float_lanes.h"

namespace torchfocal::models {
// Named: the unity build joins this file's anonymous namespace with its neighbours'.
namespace fused_bn_relu {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The four passes, each over a block of rows (positions) of C channel values.
enum class Pass {
  kMoments,   // partial = Σ x, Σ x² per channel, in float64
  kApply,     // out = max(x · k0 + k1 [+ r], 0)
  kGradSums,  // gz = g where y > 0, else 0 (into gres, if set); partial = Σ gz, Σ gz · (x - mean)
  kGradInput,  // out = k0 · gz + k1 · (x - mean) + k2, gz from gres or again from g and y
};

struct Args {
  const float* x = nullptr;
  const float* r = nullptr;  // the residual added before the ReLU, or null
  const float* y = nullptr;  // the forward's output: ReLU passes the gradient where it is > 0
  const float* g = nullptr;  // the output's gradient
  float* out = nullptr;
  float* gres = nullptr;  // gz: the residual's gradient, or null
  const float *k0 = nullptr, *k1 = nullptr, *k2 = nullptr, *mean = nullptr;
  double* partial = nullptr;  // 2 C values a block
  int64_t c = 0;
};

#ifdef TORCHFOCAL_CPU_LANES
template <int H>
struct DoubleVector {
  typedef double D __attribute__((vector_size(H * 8)));
};

// Channels [c0, c0 + G) of rows [begin, end), in whole vectors of W floats; the sums in float64
// vectors of W / 2 (each float vector widened in halves). Written with explicit vectors: GCC leaves
// the scalar loops below scalar for the masked gradient (a select feeding float64 sums), 3x slower
// than LibTorch's kernels.
template <int W, int64_t G>
TORCHFOCAL_ALWAYS_INLINE void run_lanes(Pass pass, const Args& a, int64_t begin, int64_t end,
                                        int64_t c0, double* s, double* q) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  using D = typename DoubleVector<W / 2>::D;
  constexpr int64_t J = G / W;
  const int64_t C = a.c;  // the row stride
  const V zero = L::splat(0.0f);
  V k0[J] = {}, k1[J] = {}, k2[J] = {}, mean[J] = {};
  for (int64_t j = 0; j < J; ++j) {
    if (a.k0 != nullptr) k0[j] = L::load(a.k0 + c0 + j * W);
    if (a.k1 != nullptr) k1[j] = L::load(a.k1 + c0 + j * W);
    if (a.k2 != nullptr) k2[j] = L::load(a.k2 + c0 + j * W);
    if (a.mean != nullptr) mean[j] = L::load(a.mean + c0 + j * W);
  }
  D sum[2 * J] = {}, sq[2 * J] = {};
  switch (pass) {
    case Pass::kMoments:
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t j = 0; j < J; ++j) {
          // x² in float64: E[x²] - mean² loses what float32 squares would round away.
          const auto h = L::halves(L::load(a.x + i * C + c0 + j * W));
          const D lo = __builtin_convertvector(h.lo, D), hi = __builtin_convertvector(h.hi, D);
          sum[2 * j] += lo;
          sum[2 * j + 1] += hi;
          sq[2 * j] += lo * lo;
          sq[2 * j + 1] += hi * hi;
        }
      }
      break;
    case Pass::kApply:
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t j = 0; j < J; ++j) {
          const int64_t at = i * C + c0 + j * W;
          V v = L::load(a.x + at) * k0[j] + k1[j];
          if (a.r != nullptr) v += L::load(a.r + at);
          L::store(a.out + at, v < 0.0f ? zero : v);  // NaN passes, as torch::relu lets it
        }
      }
      break;
    case Pass::kGradSums:
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t j = 0; j < J; ++j) {
          const int64_t at = i * C + c0 + j * W;
          const V g = L::load(a.g + at);
          const V gz = L::load(a.y + at) <= 0.0f ? zero : g;  // threshold_backward's test
          if (a.gres != nullptr) L::store(a.gres + at, gz);
          // Lambdas lose the target attribute (GCC): the widening is written out.
          const auto hg = L::halves(gz), hp = L::halves(gz * (L::load(a.x + at) - mean[j]));
          sum[2 * j] += __builtin_convertvector(hg.lo, D);
          sum[2 * j + 1] += __builtin_convertvector(hg.hi, D);
          sq[2 * j] += __builtin_convertvector(hp.lo, D);
          sq[2 * j + 1] += __builtin_convertvector(hp.hi, D);
        }
      }
      break;
    case Pass::kGradInput:
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t j = 0; j < J; ++j) {
          const int64_t at = i * C + c0 + j * W;
          V gz;
          if (a.gres != nullptr) {
            gz = L::load(a.gres + at);
          } else {
            const V g = L::load(a.g + at);
            gz = L::load(a.y + at) <= 0.0f ? zero : g;
          }
          L::store(a.out + at, k0[j] * gz + k1[j] * (L::load(a.x + at) - mean[j]) + k2[j]);
        }
      }
      break;
  }
  if (s != nullptr) {
    for (int64_t j = 0; j < 2 * J; ++j) {
      std::memcpy(s + c0 + j * (W / 2), &sum[j], sizeof(D));
      std::memcpy(q + c0 + j * (W / 2), &sq[j], sizeof(D));
    }
  }
}
#endif

// Rows [begin, end) of block `block`, W floats a vector, in groups of G channels (0: the scalar
// loops, for C not a multiple of 16).
template <int W, int64_t G>
TORCHFOCAL_ALWAYS_INLINE void run_block(Pass pass, const Args& a, int64_t begin, int64_t end,
                                        int64_t block) {
  const int64_t C = a.c;
  double* __restrict s = a.partial != nullptr ? a.partial + block * 2 * C : nullptr;
  double* __restrict q = s != nullptr ? s + C : nullptr;
#ifdef TORCHFOCAL_CPU_LANES
  if constexpr (G != 0 && G % W == 0) {
    for (int64_t c0 = 0; c0 < C; c0 += G) run_lanes<W, G>(pass, a, begin, end, c0, s, q);
    return;
  }
#endif
  switch (pass) {
    case Pass::kMoments:
      std::fill(s, s + 2 * C, 0.0);
      for (int64_t i = begin; i < end; ++i) {
        const float* __restrict x = a.x + i * C;
        for (int64_t c = 0; c < C; ++c) {
          const double v = x[c];
          s[c] += v;
          q[c] += v * v;
        }
      }
      break;
    case Pass::kApply:
      for (int64_t k = begin * C; k < end * C; ++k) {
        const float v = a.x[k] * a.k0[k % C] + a.k1[k % C] + (a.r != nullptr ? a.r[k] : 0.0f);
        a.out[k] = v < 0.0f ? 0.0f : v;  // NaN passes, as torch::relu lets it
      }
      break;
    case Pass::kGradSums:
      std::fill(s, s + 2 * C, 0.0);
      for (int64_t i = begin; i < end; ++i) {
        const float* __restrict x = a.x + i * C;
        const float* __restrict y = a.y + i * C;
        const float* __restrict g = a.g + i * C;
        for (int64_t c = 0; c < C; ++c) {
          const float gz = y[c] <= 0.0f ? 0.0f : g[c];  // threshold_backward's test
          if (a.gres != nullptr) a.gres[i * C + c] = gz;
          s[c] += gz;
          q[c] += static_cast<double>(gz) * (x[c] - a.mean[c]);
        }
      }
      break;
    case Pass::kGradInput:
      for (int64_t k = begin * C; k < end * C; ++k) {
        const float gz = a.gres != nullptr ? a.gres[k] : a.y[k] <= 0.0f ? 0.0f : a.g[k];
        a.out[k] = a.k0[k % C] * gz + a.k1[k % C] * (a.x[k] - a.mean[k % C]) + a.k2[k % C];
      }
      break;
  }
}

using BlockFn = void (*)(Pass, const Args&, int64_t, int64_t, int64_t);

// One function per instruction set (GCC's target attribute is per function).
template <int64_t G>
void block_base(Pass pass, const Args& a, int64_t begin, int64_t end, int64_t block) {
  run_block<4, G>(pass, a, begin, end, block);
}
#ifdef TORCHFOCAL_X86_TARGETS
template <int64_t G>
TORCHFOCAL_AVX2_FMA void block_avx2(Pass pass, const Args& a, int64_t begin, int64_t end,
                                    int64_t block) {
  run_block<8, G>(pass, a, begin, end, block);
}
template <int64_t G>
TORCHFOCAL_AVX512 void block_avx512(Pass pass, const Args& a, int64_t begin, int64_t end,
                                    int64_t block) {
  run_block<16, G>(pass, a, begin, end, block);
}
#endif

template <int64_t G>
BlockFn block_for_cpu() {
#ifdef TORCHFOCAL_X86_TARGETS
  if (cpu_has_avx512()) return block_avx512<G>;
  if (cpu_has_avx2_fma()) return block_avx2<G>;
#endif
  return block_base<G>;
}

// Channel groups of 64, 32 or 16 (every ResNet width) in vectors; other widths by scalar loops.
BlockFn block_fn(int64_t c) {
  if (c % 64 == 0) return block_for_cpu<64>();
  if (c % 32 == 0) return block_for_cpu<32>();
  if (c % 16 == 0) return block_for_cpu<16>();
  return block_for_cpu<0>();
}

// Runs `pass` over m rows in blocks of a size set by C alone, threads taking whole blocks. The
// reductions return their blocks' partial sums added in block order: the same statistics
// whatever the number of threads.
std::vector<double> run(Pass pass, Args a, int64_t m) {
  const int64_t c = a.c;
  const int64_t rows = std::max<int64_t>(16, 8192 / c);  // 32 KiB of floats a block
  const int64_t blocks = (m + rows - 1) / rows;
  const bool reduces = pass == Pass::kMoments || pass == Pass::kGradSums;
  std::vector<double> partial(reduces ? blocks * 2 * c : 0);
  a.partial = partial.data();
  const BlockFn fn = block_fn(c);
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) fn(pass, a, b * rows, std::min(m, (b + 1) * rows), b);
  });
  std::vector<double> total(reduces ? 2 * c : 0, 0.0);
  for (int64_t b = 0; b < (reduces ? blocks : 0); ++b) {
    for (int64_t k = 0; k < 2 * c; ++k) total[k] += partial[b * 2 * c + k];
  }
  return total;
}

torch::Tensor channels_last(const torch::Tensor& t) {
  return t.contiguous(torch::MemoryFormat::ChannelsLast);
}

std::vector<double> as_doubles(const torch::Tensor& t) {
  const auto d = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return {d.data_ptr<double>(), d.data_ptr<double>() + d.numel()};
}

torch::Tensor floats(const std::vector<double>& values) {
  return torch::tensor(std::vector<float>(values.begin(), values.end()), torch::kFloat32);
}

// max(x · scale + shift [+ residual], 0) per channel.
torch::Tensor normalise_relu(const torch::Tensor& x, const torch::Tensor& residual,
                             const std::vector<double>& scale, const std::vector<double>& shift) {
  const auto out = torch::empty_like(x, torch::MemoryFormat::ChannelsLast);
  const auto k0 = floats(scale), k1 = floats(shift);
  const auto r = residual.defined() ? channels_last(residual) : torch::Tensor();
  Args a;
  a.x = x.data_ptr<float>();
  a.r = r.defined() ? r.data_ptr<float>() : nullptr;
  a.out = out.data_ptr<float>();
  a.k0 = k0.data_ptr<float>();
  a.k1 = k1.data_ptr<float>();
  a.c = x.size(1);
  run(Pass::kApply, a, x.numel() / a.c);
  return out;
}

struct BatchNormReluFunction : torch::autograd::Function<BatchNormReluFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& residual, const torch::Tensor& weight,
                               const torch::Tensor& bias, const torch::Tensor& running_mean,
                               const torch::Tensor& running_var, double momentum, double eps) {
    const auto x = channels_last(x_in);
    const int64_t c = x.size(1), m = x.numel() / c;
    Args a;
    a.x = x.data_ptr<float>();
    a.c = c;
    const auto sums = run(Pass::kMoments, a, m);
    const auto w = as_doubles(weight), b = as_doubles(bias);
    std::vector<double> mean(c), var(c), invstd(c), scale(c), shift(c);
    for (int64_t k = 0; k < c; ++k) {
      mean[k] = sums[k] / m;
      var[k] = std::max(sums[c + k] / m - mean[k] * mean[k], 0.0);
      invstd[k] = 1.0 / std::sqrt(var[k] + eps);
      scale[k] = w[k] * invstd[k];
      shift[k] = b[k] - mean[k] * scale[k];
    }
    {
      // As torch::batch_norm moves them: momentum, the variance unbiased.
      const auto options = running_mean.options();
      std::vector<double> unbiased(c);
      for (int64_t k = 0; k < c; ++k) unbiased[k] = var[k] * m / std::max<int64_t>(m - 1, 1);
      running_mean.mul_(1 - momentum).add_(floats(mean).to(options), momentum);
      running_var.mul_(1 - momentum).add_(floats(unbiased).to(options), momentum);
    }
    const bool added = residual.numel() != 0;  // empty: none (batch_norm_relu_train)
    const auto out = normalise_relu(x, added ? residual : torch::Tensor(), scale, shift);
    ctx->save_for_backward({x, out, weight, floats(mean), floats(invstd)});
    ctx->saved_data["residual"] = added;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return variable_list(8);
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &y = saved[1], &weight = saved[2], &mean = saved[3],
               &invstd = saved[4];
    const int64_t c = x.size(1), m = x.numel() / c;
    const auto g = channels_last(grads[0].to(torch::kFloat32));
    const auto gres = ctx->saved_data["residual"].toBool() ? torch::empty_like(x) : torch::Tensor();
    Args a;
    a.x = x.data_ptr<float>();
    a.y = y.data_ptr<float>();
    a.g = g.data_ptr<float>();
    a.gres = gres.defined() ? gres.data_ptr<float>() : nullptr;
    a.mean = mean.data_ptr<float>();
    a.c = c;
    const auto sums = run(Pass::kGradSums, a, m);
    // dbias = Σ gz; dweight = Σ gz · x̂ = invstd Σ gz (x - mean);
    // dx = w invstd (gz - dbias / m - x̂ dweight / m).
    const auto w = as_doubles(weight), is = as_doubles(invstd);
    std::vector<double> dweight(c), dbias(c), k0(c), k1(c), k2(c);
    for (int64_t k = 0; k < c; ++k) {
      dbias[k] = sums[k];
      dweight[k] = is[k] * sums[c + k];
      k0[k] = w[k] * is[k];
      k1[k] = -k0[k] * is[k] * dweight[k] / m;
      k2[k] = -k0[k] * dbias[k] / m;
    }
    const auto f0 = floats(k0), f1 = floats(k1), f2 = floats(k2);
    const auto dx = torch::empty_like(x);
    a.out = dx.data_ptr<float>();
    a.k0 = f0.data_ptr<float>();
    a.k1 = f1.data_ptr<float>();
    a.k2 = f2.data_ptr<float>();
    run(Pass::kGradInput, a, m);
    const auto param = weight.options();
    return {dx,
            gres,
            floats(dweight).to(param),
            floats(dbias).to(param),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace fused_bn_relu

bool batch_norm_relu_applies(const torch::Tensor& x, const torch::Tensor& residual) {
  const bool input = x.defined() && x.is_cpu() && x.scalar_type() == torch::kFloat32 &&
                     x.dim() == 4 && x.size(1) > 0 && x.numel() / x.size(1) > 1 &&
                     x.is_contiguous(torch::MemoryFormat::ChannelsLast);
  return input &&
         (!residual.defined() || (residual.is_cpu() && residual.scalar_type() == torch::kFloat32 &&
                                  residual.sizes() == x.sizes()));
}

torch::Tensor batch_norm_relu_train(const torch::Tensor& x, const torch::Tensor& residual,
                                    const torch::Tensor& weight, const torch::Tensor& bias,
                                    const torch::Tensor& running_mean,
                                    const torch::Tensor& running_var, double momentum, double eps) {
  // An empty tensor for none: LibTorch 1.13's Function::apply takes no undefined inputs.
  const auto none = torch::empty({0}, x.options());
  return fused_bn_relu::BatchNormReluFunction::apply(x, residual.defined() ? residual : none,
                                                     weight, bias, running_mean, running_var,
                                                     momentum, eps);
}

torch::Tensor batch_norm_relu_infer(const torch::Tensor& x, const torch::Tensor& residual,
                                    const torch::Tensor& weight, const torch::Tensor& bias,
                                    const torch::Tensor& running_mean,
                                    const torch::Tensor& running_var, double eps) {
  using fused_bn_relu::as_doubles;
  const auto w = as_doubles(weight), b = as_doubles(bias), rm = as_doubles(running_mean),
             rv = as_doubles(running_var);
  const int64_t c = x.size(1);
  std::vector<double> scale(c), shift(c);
  for (int64_t k = 0; k < c; ++k) {
    scale[k] = w[k] / std::sqrt(rv[k] + eps);
    shift[k] = b[k] - rm[k] * scale[k];
  }
  return fused_bn_relu::normalise_relu(fused_bn_relu::channels_last(x), residual, scale, shift);
}

}  // namespace torchfocal::models
