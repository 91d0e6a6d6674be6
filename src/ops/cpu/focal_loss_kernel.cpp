// CPU kernels of the focal loss. Rows (or elements) run in parallel through at::parallel_for
// (parallel_rows below); the softmax passes over the C logits of a row (max, sum of exp,
// gradient) are vectorised.
// The per-row maths is focal_math.h, the same the CUDA kernels run.
//
// Why not at::vec::Vectorized: a TU outside LibTorch's build gets its DEFAULT (scalar-emulated)
// variant, whose exp() is a loop of std::exp, and a packaged LibTorch such as Debian's ships no
// sleef.h to build the AVX2 one. Measured on 4096x1000 float, forward + backward ran 4x slower
// than with our lanes and 2x slower than LibTorch's own cross-entropy. So the lanes are
// GCC/Clang vector extensions (src/common/float_lanes.h) with a polynomial exp (< 2 ulp from
// -87 to 88), compiled once per instruction set (baseline, AVX2, AVX-512) and chosen at run time
// from the CPU's features; other compilers and double run one lane with libm.
#include <ATen/Config.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>

#include "src/common/cpu_features.h"
#include "src/common/float_lanes.h"
#include "src/ops/focal_loss_impl.h"
#include "src/ops/focal_math.h"

#if defined(TORCHFOCAL_CPU_LANES) && defined(TORCHFOCAL_X86_TARGETS)
#define TORCHFOCAL_CPU_X86 1
#endif

namespace torchfocal::ops::detail {
namespace {

// A softmax row's work is a few exp per element: parallelise from about 8k elements.
constexpr int64_t kGrainElements = 8192;
// Under this many classes a row is shorter than two AVX-512 vectors: AVX2's 8 lanes do better.
constexpr int64_t kAvx512MinClasses = 32;

int64_t grain_rows(int64_t classes) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(classes, 1));
}

// at::parallel_for(0, n, grain, f). Against an OpenMP LibTorch, at::parallel_for is inline
// `#pragma omp parallel` code: compiled here without -fopenmp it runs serially. Then this goes
// through TensorIterator::for_each, whose loop is LibTorch's own compiled parallel_for, over a
// 1-byte-per-row placeholder whose element offsets are the row indices. (Not compiling with
// -fopenmp instead, on purpose: PyTorch wheels ship their own libgomp, and a second OpenMP
// runtime in the process would bring a second thread pool.)
template <class F>
void parallel_rows(int64_t n, int64_t grain, const F& f) {
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
  if (n > grain && at::get_num_threads() > 1 && !at::in_parallel_region()) {
    const torch::Tensor rows = torch::empty({n}, torch::kByte);
    at::TensorIterator iter = at::TensorIteratorConfig()
                                  .add_output(rows)
                                  .set_check_mem_overlap(false)
                                  .check_all_same_dtype(false)
                                  .resize_outputs(false)
                                  .declare_static_shape(rows.sizes())
                                  .build();
    const char* base = static_cast<const char*>(rows.data_ptr());
    iter.for_each(
        [&](char** data, const int64_t* strides, int64_t size0, int64_t size1) {
          // Contiguous bytes: rows data[0] - base onwards (size1 is 1 for one dimension).
          for (int64_t k = 0; k < size1; ++k) {
            const int64_t begin = data[0] + k * strides[1] - base;
            f(begin, begin + size0);
          }
        },
        grain);
    return;
  }
#endif
  at::parallel_for(0, n, grain, f);
}

// ---------------------------------------------------------------------------------------------
// Lanes: the few vector operations the softmax passes need.

// One lane: double, and compilers without vector extensions.
template <typename T>
struct ScalarLanes {
  using Scalar = T;
  using V = T;
  static constexpr int kWidth = 1;
  static TORCHFOCAL_ALWAYS_INLINE V load(const T* p) { return *p; }
  static TORCHFOCAL_ALWAYS_INLINE V load_partial(const T* p, int64_t, T) { return *p; }
  static TORCHFOCAL_ALWAYS_INLINE void store(T* p, V v) { *p = v; }
  static TORCHFOCAL_ALWAYS_INLINE void store_partial(T* p, V v, int64_t) { *p = v; }
  static TORCHFOCAL_ALWAYS_INLINE V splat(T x) { return x; }
  static TORCHFOCAL_ALWAYS_INLINE V max(V a, V b) { return a > b ? a : b; }
  // a where x >= y, else b (ties with the row max: x <= max always).
  static TORCHFOCAL_ALWAYS_INLINE V where_at_least(V x, V y, V a, V b) { return x >= y ? a : b; }
  static TORCHFOCAL_ALWAYS_INLINE V exp(V x) { return math::exp(x); }
  static TORCHFOCAL_ALWAYS_INLINE V log_sum(V excess) { return math::row_log_sum(T(1), excess); }
  static TORCHFOCAL_ALWAYS_INLINE V one_minus_exp(V x) {
    return x > T(-0.25) ? -math::expm1(x) : T(1) - math::exp(x);
  }
  static TORCHFOCAL_ALWAYS_INLINE T sum_all(V v) { return v; }
  static TORCHFOCAL_ALWAYS_INLINE T max_all(V v) { return v; }
  static TORCHFOCAL_ALWAYS_INLINE V lanes_from(int64_t skip) { return skip > 0 ? T(0) : T(1); }
};

// ---------------------------------------------------------------------------------------------
// Softmax rows.

template <typename T>
struct SoftmaxRows {
  const T* x;
  const int64_t* target;
  const T* alpha;  // nullptr: all ones
  int64_t classes;
  T gamma;
  T smoothing;
  int64_t ignore_index;
  T* loss;  // forward: per row
  // Per row (max, log Σ exp(x - max)): written by forward, read by backward.
  T* stats;
  const T* saved_stats;
  const T* grad_loss;
  int64_t grad_stride;  // 0: one value for every row
  T scale;
  T* grad;
};

template <typename T>
TORCHFOCAL_ALWAYS_INLINE T weight(const T* alpha, int64_t c) {
  return alpha != nullptr ? alpha[c] : T(1);
}

// Rows go through the vector passes and the per-row scalar maths (log, exp, pow: libm calls on
// one dependency chain) in blocks: the scalar steps of a block's rows are independent, so they
// overlap in the CPU instead of waiting on each other (2x on short rows).
constexpr int64_t kRowBlock = 16;

// The sums that give a row's log Σ_j exp(x_j - max) (focal_math.h row_log_sum): a max pass, then
// a pass summing exp(x_j - max) apart from the terms equal to the max (x_j >= max), which are
// counted.
template <typename T>
struct RowSums {
  T max;
  T ties;
  T rest;
};

template <class L>
TORCHFOCAL_ALWAYS_INLINE RowSums<typename L::Scalar> row_sums(const typename L::Scalar* x,
                                                              int64_t c) {
  using T = typename L::Scalar;
  using V = typename L::V;
  constexpr int W = L::kWidth;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  // A row of at least W values ends with its last W (overlapping the previous vector) instead of
  // a partial load, which is slow to assemble lane by lane.
  const bool overlap = c >= W;
  V vmax = L::splat(neg_inf);
  int64_t j = 0;
  for (; j + W <= c; j += W) vmax = L::max(vmax, L::load(x + j));
  if (j < c) {
    vmax = L::max(vmax, overlap ? L::load(x + c - W) : L::load_partial(x + j, c - j, neg_inf));
  }
  const T m = L::max_all(vmax);
  const V vm = L::splat(m);
  const V zero = L::splat(T(0));
  const V one = L::splat(T(1));
  // Two partial sums: independent additions, and shorter chains for long rows.
  V rest0 = zero, rest1 = zero, ties = zero;
  for (j = 0; j + 2 * W <= c; j += 2 * W) {
    const V v0 = L::load(x + j);
    const V v1 = L::load(x + j + W);
    rest0 += L::where_at_least(v0, vm, zero, L::exp(v0 - vm));
    rest1 += L::where_at_least(v1, vm, zero, L::exp(v1 - vm));
    ties += L::where_at_least(v0, vm, one, zero) + L::where_at_least(v1, vm, one, zero);
  }
  for (; j + W <= c; j += W) {
    const V v = L::load(x + j);
    rest0 += L::where_at_least(v, vm, zero, L::exp(v - vm));
    ties += L::where_at_least(v, vm, one, zero);
  }
  if (j < c && overlap) {
    const V v = L::load(x + c - W);
    const V fresh = L::lanes_from(W - (c - j));  // the lanes not summed yet
    rest1 += fresh * L::where_at_least(v, vm, zero, L::exp(v - vm));
    ties += fresh * L::where_at_least(v, vm, one, zero);
  } else if (j < c) {
    const V v = L::load_partial(x + j, c - j, neg_inf);  // exp(-inf) = 0, never a tie
    rest0 += L::where_at_least(v, vm, zero, L::exp(v - vm));
    ties += L::where_at_least(v, vm, one, zero);
  }
  return {m, L::sum_all(ties), L::sum_all(rest0 + rest1)};
}

// The one-hot focal term of kRowBlock rows at once from their log p_t (focal_math.h
// softmax_term and focal_term, lane for lane), for γ in {0, 1, 2}: f = -(1 - p)^γ log p into
// `loss`, p f'(p) into `grad`, 1 - p into `omp`. Other γ need pow: the caller takes the scalar
// path then.
template <class L>
TORCHFOCAL_ALWAYS_INLINE void onehot_terms(const typename L::Scalar* log_pt,
                                           typename L::Scalar gamma, typename L::Scalar* loss,
                                           typename L::Scalar* grad, typename L::Scalar* omp) {
  using T = typename L::Scalar;
  using V = typename L::V;
  static_assert(kRowBlock % L::kWidth == 0, "row blocks hold whole vectors");
  for (int64_t k = 0; k < kRowBlock; k += L::kWidth) {
    const V lp = L::load(log_pt + k);
    const V p = L::exp(lp);
    const V q = L::one_minus_exp(lp);
    const V w = gamma == T(2) ? q * q : gamma == T(1) ? q : L::splat(T(1));
    const V zero = L::splat(T(0));
    const V r = q > zero ? (p > zero ? p * lp / q : zero) : L::splat(T(-1));
    L::store(loss + k, -(w * lp));
    L::store(grad + k, w * (r * gamma - T(1)));
    L::store(omp + k, q);
  }
}

template <typename T>
bool simple_gamma(T gamma) {
  return gamma == T(0) || gamma == T(1) || gamma == T(2);
}

template <class L>
TORCHFOCAL_ALWAYS_INLINE void softmax_forward_rows(const SoftmaxRows<typename L::Scalar>& a,
                                                   int64_t begin, int64_t end) {
  using T = typename L::Scalar;
  const int64_t c = a.classes;
  RowSums<T> sums[kRowBlock];
  for (int64_t first = begin; first < end; first += kRowBlock) {
    const int64_t last = std::min(end, first + kRowBlock);
    // The vector passes.
    for (int64_t i = first; i < last; ++i) {
      if (a.target[i] != a.ignore_index) sums[i - first] = row_sums<L>(a.x + i * c, c);
    }
    if (a.smoothing == T(0) && simple_gamma(a.gamma)) {
      // The per-row maths of the block, lanes across rows (padding rows: excess 0, log p -1).
      alignas(64) T excess[kRowBlock], log_sum[kRowBlock], log_pt[kRowBlock];
      alignas(64) T loss[kRowBlock], grad[kRowBlock], omp[kRowBlock];
      for (int64_t k = 0; k < kRowBlock; ++k) {
        const int64_t i = first + k;
        const bool used = i < last && a.target[i] != a.ignore_index;
        excess[k] = used ? (sums[k].ties - T(1)) + sums[k].rest : T(0);
      }
      for (int64_t k = 0; k < kRowBlock; k += L::kWidth) {
        L::store(log_sum + k, L::log_sum(L::load(excess + k)));
      }
      for (int64_t k = 0; k < kRowBlock; ++k) {
        const int64_t i = first + k;
        const bool used = i < last && a.target[i] != a.ignore_index;
        log_pt[k] =
            used ? math::log_softmax(a.x[i * c + a.target[i]], sums[k].max, log_sum[k]) : T(-1);
      }
      onehot_terms<L>(log_pt, a.gamma, loss, grad, omp);
      for (int64_t i = first; i < last; ++i) {
        T* stats = a.stats + 2 * i;
        const int64_t t = a.target[i];
        if (t == a.ignore_index) {
          a.loss[i] = stats[0] = stats[1] = T(0);
          continue;
        }
        stats[0] = sums[i - first].max;
        stats[1] = log_sum[i - first];
        a.loss[i] = weight(a.alpha, t) * loss[i - first];
      }
      continue;
    }
    // The per-row maths.
    for (int64_t i = first; i < last; ++i) {
      T* stats = a.stats + 2 * i;
      const int64_t t = a.target[i];
      if (t == a.ignore_index) {
        a.loss[i] = stats[0] = stats[1] = T(0);
        continue;
      }
      const T* x = a.x + i * c;
      const RowSums<T>& r = sums[i - first];
      const T m = r.max;
      const T log_sum = math::row_log_sum(r.ties, r.rest);
      stats[0] = m;
      stats[1] = log_sum;
      if (a.smoothing == T(0)) {
        const T log_pt = math::log_softmax(x[t], m, log_sum);
        a.loss[i] = weight(a.alpha, t) * math::softmax_term(log_pt, a.gamma).loss;
        continue;
      }
      // FL = Σ_c q_c α_c f(p_c): every class contributes (summed in double: C may be 1e5).
      double total = 0.0;
      for (int64_t k = 0; k < c; ++k) {
        const T q = math::smoothed_target(k == t, a.smoothing, c) * weight(a.alpha, k);
        total += q * math::softmax_term(math::log_softmax(x[k], m, log_sum), a.gamma).loss;
      }
      a.loss[i] = static_cast<T>(total);
    }
  }
}

template <class L>
TORCHFOCAL_ALWAYS_INLINE void softmax_backward_rows(const SoftmaxRows<typename L::Scalar>& a,
                                                    int64_t begin, int64_t end) {
  using T = typename L::Scalar;
  using V = typename L::V;
  constexpr int W = L::kWidth;
  const int64_t c = a.classes;
  alignas(64) T gts[kRowBlock], omps[kRowBlock];
  for (int64_t first = begin; first < end; first += kRowBlock) {
    const int64_t last = std::min(end, first + kRowBlock);
    // The per-row maths of one-hot rows: g_t (scaled) and 1 - p_t.
    if (a.smoothing == T(0) && simple_gamma(a.gamma)) {
      alignas(64) T log_pt[kRowBlock], loss[kRowBlock], grad[kRowBlock];
      for (int64_t k = 0; k < kRowBlock; ++k) {
        const int64_t i = first + k;
        const bool used = i < last && a.target[i] != a.ignore_index;
        log_pt[k] = used ? math::log_softmax(a.x[i * c + a.target[i]], a.saved_stats[2 * i],
                                             a.saved_stats[2 * i + 1])
                         : T(-1);
      }
      onehot_terms<L>(log_pt, a.gamma, loss, grad, omps);
      for (int64_t i = first; i < last; ++i) {
        const int64_t t = a.target[i];
        if (t == a.ignore_index) continue;
        const T scale = a.grad_loss[i * a.grad_stride] * a.scale;
        gts[i - first] = scale * weight(a.alpha, t) * grad[i - first];
      }
    } else if (a.smoothing == T(0)) {
      for (int64_t i = first; i < last; ++i) {
        const int64_t t = a.target[i];
        if (t == a.ignore_index) continue;
        const T log_pt =
            math::log_softmax(a.x[i * c + t], a.saved_stats[2 * i], a.saved_stats[2 * i + 1]);
        const math::SoftmaxProb<T> pt = math::softmax_prob(log_pt);
        const T scale = a.grad_loss[i * a.grad_stride] * a.scale;
        gts[i - first] = scale * weight(a.alpha, t) *
                         math::focal_term(pt.p, pt.one_minus_p, log_pt, a.gamma).grad;
        omps[i - first] = pt.one_minus_p;
      }
    }
    for (int64_t i = first; i < last; ++i) {
      T* g = a.grad + i * c;
      const int64_t t = a.target[i];
      if (t == a.ignore_index) {
        std::fill(g, g + c, T(0));
        continue;
      }
      const T* x = a.x + i * c;
      const T m = a.saved_stats[2 * i], log_sum = a.saved_stats[2 * i + 1];
      int64_t j = 0;
      if (a.smoothing == T(0)) {
        // One-hot: -g_t p_j everywhere, then g_t (1 - p_t) at the target.
        const T gt = gts[i - first];
        for (; j + W <= c; j += W) {
          const V p = L::exp(math::log_softmax(L::load(x + j), m, log_sum));
          L::store(g + j, math::onehot_grad_other(p, gt));
        }
        if (j < c && c >= W) {
          // The row's last W values, overlapping: the same values rewritten.
          const V p = L::exp(math::log_softmax(L::load(x + c - W), m, log_sum));
          L::store(g + c - W, math::onehot_grad_other(p, gt));
        } else if (j < c) {
          const V p = L::exp(math::log_softmax(L::load_partial(x + j, c - j, T(0)), m, log_sum));
          L::store_partial(g + j, math::onehot_grad_other(p, gt), c - j);
        }
        g[t] = math::onehot_grad_target(gt, omps[i - first]);
        continue;
      }
      // Smoothed: g_c of every class into the row and their sum, then g_j - p_j Σ_c g_c.
      const T scale = a.grad_loss[i * a.grad_stride] * a.scale;
      double total = 0.0;
      for (int64_t k = 0; k < c; ++k) {
        const T q = math::smoothed_target(k == t, a.smoothing, c) * weight(a.alpha, k);
        g[k] = scale * q * math::softmax_term(math::log_softmax(x[k], m, log_sum), a.gamma).grad;
        total += g[k];
      }
      const T gsum = static_cast<T>(total);
      for (; j + W <= c; j += W) {
        const V p = L::exp(math::log_softmax(L::load(x + j), m, log_sum));
        L::store(g + j, math::smoothed_grad(L::load(g + j), p, gsum));
      }
      if (j < c) {
        const V p = L::exp(math::log_softmax(L::load_partial(x + j, c - j, T(0)), m, log_sum));
        const V gj = L::load_partial(g + j, c - j, T(0));
        L::store_partial(g + j, math::smoothed_grad(gj, p, gsum), c - j);
      }
    }
  }
}

// The softmax passes, one pair of functions per instruction set.
template <typename T>
struct SoftmaxKernels {
  using Fn = void (*)(const SoftmaxRows<T>&, int64_t, int64_t);
  Fn forward;
  Fn backward;
};

template <typename T>
void forward_scalar(const SoftmaxRows<T>& a, int64_t b, int64_t e) {
  softmax_forward_rows<ScalarLanes<T>>(a, b, e);
}
template <typename T>
void backward_scalar(const SoftmaxRows<T>& a, int64_t b, int64_t e) {
  softmax_backward_rows<ScalarLanes<T>>(a, b, e);
}
#ifdef TORCHFOCAL_CPU_LANES
void forward_baseline(const SoftmaxRows<float>& a, int64_t b, int64_t e) {
  softmax_forward_rows<FloatLanes<4>>(a, b, e);
}
void backward_baseline(const SoftmaxRows<float>& a, int64_t b, int64_t e) {
  softmax_backward_rows<FloatLanes<4>>(a, b, e);
}
#endif
#ifdef TORCHFOCAL_CPU_X86
TORCHFOCAL_AVX2_FMA void forward_avx2(const SoftmaxRows<float>& a, int64_t b, int64_t e) {
  softmax_forward_rows<FloatLanes<8>>(a, b, e);
}
TORCHFOCAL_AVX2_FMA void backward_avx2(const SoftmaxRows<float>& a, int64_t b, int64_t e) {
  softmax_backward_rows<FloatLanes<8>>(a, b, e);
}
TORCHFOCAL_AVX512 void forward_avx512(const SoftmaxRows<float>& a, int64_t b, int64_t e) {
  softmax_forward_rows<FloatLanes<16>>(a, b, e);
}
TORCHFOCAL_AVX512 void backward_avx512(const SoftmaxRows<float>& a, int64_t b, int64_t e) {
  softmax_backward_rows<FloatLanes<16>>(a, b, e);
}
#endif

// The widest instruction set this CPU runs, capped as LibTorch caps its own kernels by the
// ATEN_CPU_CAPABILITY variable (default | avx2 | avx512); read once.
CpuIsa detected_isa() {
  static const CpuIsa isa = [] {
    CpuIsa best = cpu_isa_available(CpuIsa::kBaseline) ? CpuIsa::kBaseline : CpuIsa::kScalar;
    if (cpu_isa_available(CpuIsa::kAvx512)) {
      best = CpuIsa::kAvx512;
    } else if (cpu_isa_available(CpuIsa::kAvx2)) {
      best = CpuIsa::kAvx2;
    }
    const CpuCap cap = aten_cpu_capability();
    if (cap == CpuCap::kDefault && best != CpuIsa::kScalar) best = CpuIsa::kBaseline;
    if (cap == CpuCap::kAvx2 && best == CpuIsa::kAvx512) best = CpuIsa::kAvx2;
    return best;
  }();
  return isa;
}

SoftmaxKernels<double> softmax_kernels(CpuIsa, int64_t, double) {
  return {forward_scalar<double>, backward_scalar<double>};
}

SoftmaxKernels<float> softmax_kernels(CpuIsa isa, int64_t classes, float) {
  if (isa == CpuIsa::kAuto) {
    isa = detected_isa();
    if (isa == CpuIsa::kAvx512 && classes < kAvx512MinClasses) isa = CpuIsa::kAvx2;
  }
  switch (isa) {
#ifdef TORCHFOCAL_CPU_X86
    case CpuIsa::kAvx512:
      return {forward_avx512, backward_avx512};
    case CpuIsa::kAvx2:
      return {forward_avx2, backward_avx2};
#endif
#ifdef TORCHFOCAL_CPU_LANES
    case CpuIsa::kBaseline:
      return {forward_baseline, backward_baseline};
#endif
    default:
      return {forward_scalar<float>, backward_scalar<float>};
  }
}

template <typename T>
SoftmaxRows<T> softmax_rows(const KernelArgs& args) {
  SoftmaxRows<T> a{};
  a.x = args.input.data_ptr<T>();
  a.target = args.target.data_ptr<int64_t>();
  a.alpha = args.alpha.defined() ? args.alpha.data_ptr<T>() : nullptr;
  a.classes = args.classes();
  a.gamma = static_cast<T>(args.gamma);
  a.smoothing = static_cast<T>(args.label_smoothing);
  a.ignore_index = args.ignore_index;
  return a;
}

// ---------------------------------------------------------------------------------------------
// Probs rows and sigmoid elements: a few scalars each, no pass over C.

template <typename T>
void probs_forward(const KernelArgs& args, T* loss) {
  const SoftmaxRows<T> a = softmax_rows<T>(args);
  parallel_rows(args.rows(), grain_rows(1), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = a.target[i];
      loss[i] = t == a.ignore_index
                    ? T(0)
                    : weight(a.alpha, t) * math::probs_term(a.x[i * a.classes + t], a.gamma).loss;
    }
  });
}

template <typename T>
void probs_backward(const KernelArgs& args, const T* grad_loss, int64_t grad_stride, T scale,
                    T* grad) {
  const SoftmaxRows<T> a = softmax_rows<T>(args);
  const int64_t c = a.classes;
  parallel_rows(args.rows(), grain_rows(c), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T* g = grad + i * c;
      std::fill(g, g + c, T(0));  // only p_t enters the loss
      const int64_t t = a.target[i];
      if (t == a.ignore_index) continue;
      g[t] = grad_loss[i * grad_stride] * scale * weight(a.alpha, t) *
             math::probs_term(a.x[i * c + t], a.gamma).grad;
    }
  });
}

template <typename T>
struct SigmoidArgs {
  const T* x;
  const T* target;
  T w_pos;
  T w_neg;
  T gamma;
};

template <typename T>
SigmoidArgs<T> sigmoid_args(const KernelArgs& args) {
  const T alpha = static_cast<T>(args.sigmoid_alpha);
  return {args.input.data_ptr<T>(), args.target.data_ptr<T>(), math::sigmoid_weight_pos(alpha),
          math::sigmoid_weight_neg(alpha), static_cast<T>(args.gamma)};
}

template <typename T>
void sigmoid_forward(const KernelArgs& args, T* loss) {
  const SigmoidArgs<T> a = sigmoid_args<T>(args);
  parallel_rows(args.rows(), kGrainElements, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      loss[k] = math::sigmoid_focal(a.x[k], a.target[k], a.w_pos, a.w_neg, a.gamma).loss;
    }
  });
}

template <typename T>
void sigmoid_backward(const KernelArgs& args, const T* grad_loss, int64_t grad_stride, T scale,
                      T* grad) {
  const SigmoidArgs<T> a = sigmoid_args<T>(args);
  parallel_rows(args.rows(), kGrainElements, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      grad[k] = grad_loss[k * grad_stride] * scale *
                math::sigmoid_focal(a.x[k], a.target[k], a.w_pos, a.w_neg, a.gamma).grad;
    }
  });
}

void check_isa(CpuIsa isa) {
  if (!cpu_isa_available(isa)) {
    throw std::invalid_argument("focal_loss: this CPU cannot run the requested instruction set");
  }
}

}  // namespace

bool cpu_isa_available(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAuto:
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kBaseline:
#ifdef TORCHFOCAL_CPU_LANES
      return true;
#else
      return false;
#endif
    case CpuIsa::kAvx2:
#ifdef TORCHFOCAL_CPU_X86
      return cpu_has_avx2_fma();
#else
      return false;
#endif
    case CpuIsa::kAvx512:
#ifdef TORCHFOCAL_CPU_X86
      return cpu_supports_avx512();
#else
      return false;
#endif
  }
  return false;
}

ForwardOut forward_cpu(const KernelArgs& args, CpuIsa isa) {
  check_isa(isa);
  const torch::Tensor& x = args.input;
  ForwardOut out;
  if (args.mode == FocalMode::kSigmoid) {
    out.loss = torch::empty(x.sizes(), x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "focal_loss_forward_cpu", [&] {
      sigmoid_forward<scalar_t>(args, out.loss.data_ptr<scalar_t>());
    });
    return out;
  }
  const int64_t n = args.rows();
  out.loss = torch::empty({n}, x.options());
  if (args.mode == FocalMode::kProbs) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "focal_loss_forward_cpu", [&] {
      probs_forward<scalar_t>(args, out.loss.data_ptr<scalar_t>());
    });
    return out;
  }
  out.stats = torch::empty({n, 2}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "focal_loss_forward_cpu", [&] {
    SoftmaxRows<scalar_t> a = softmax_rows<scalar_t>(args);
    a.loss = out.loss.data_ptr<scalar_t>();
    a.stats = out.stats.data_ptr<scalar_t>();
    const auto kernels = softmax_kernels(isa, a.classes, scalar_t{});
    parallel_rows(n, grain_rows(a.classes),
                  [&](int64_t begin, int64_t end) { kernels.forward(a, begin, end); });
  });
  return out;
}

torch::Tensor backward_cpu(const KernelArgs& args, const torch::Tensor& stats,
                           const torch::Tensor& grad_loss, double scale, CpuIsa isa) {
  check_isa(isa);
  const torch::Tensor& x = args.input;
  torch::Tensor grad = torch::empty(x.sizes(), x.options());
  const int64_t grad_stride = grad_loss.numel() == 1 ? 0 : 1;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "focal_loss_backward_cpu", [&] {
    const scalar_t* gl = grad_loss.data_ptr<scalar_t>();
    const auto s = static_cast<scalar_t>(scale);
    scalar_t* g = grad.data_ptr<scalar_t>();
    if (args.mode == FocalMode::kSigmoid) {
      sigmoid_backward<scalar_t>(args, gl, grad_stride, s, g);
      return;
    }
    if (args.mode == FocalMode::kProbs) {
      probs_backward<scalar_t>(args, gl, grad_stride, s, g);
      return;
    }
    SoftmaxRows<scalar_t> a = softmax_rows<scalar_t>(args);
    a.saved_stats = stats.data_ptr<scalar_t>();
    a.grad_loss = gl;
    a.grad_stride = grad_stride;
    a.scale = s;
    a.grad = g;
    const auto kernels = softmax_kernels(isa, a.classes, scalar_t{});
    parallel_rows(args.rows(), grain_rows(a.classes),
                  [&](int64_t begin, int64_t end) { kernels.backward(a, begin, end); });
  });
  return grad;
}

}  // namespace torchfocal::ops::detail
