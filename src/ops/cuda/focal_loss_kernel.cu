// CUDA kernels of the focal loss. Softmax mode: a warp per row up to kWarpRowMaxClasses
// classes, a block per row (shared-memory reductions) beyond; probs mode: a thread per row;
// sigmoid mode: elementwise, grid-stride. float, double, __half and __nv_bfloat16 inputs,
// accumulated in float (double for double). The per-row maths is ../focal_math.h, the same
// functions the CPU kernels call. No LibTorch header here.
#include <cuda_runtime.h>
#include <math.h>

#include <algorithm>
#include <cstdint>

#include "src/ops/cuda/focal_loss_kernel.h"
#include "src/ops/focal_math.h"

namespace torchfocal::ops::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kThreads = 256;          // warp-per-row, per-row and elementwise kernels
constexpr int kBlockRowThreads = 512;  // block-per-row kernels
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

unsigned grid_for(int64_t work, int64_t per_block) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(std::min<int64_t>(kMaxBlocks, std::max<int64_t>(1, blocks)));
}

// ---- Loads and stores in the accumulate type --------------------------------------------------

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

template <typename T>
__device__ __forceinline__ T weight(const T* alpha, int64_t c) {
  return alpha != nullptr ? alpha[c] : T(1);
}

// ---- Reductions over the threads that share a row --------------------------------------------

struct Sum {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

template <typename T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    v = op(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

// A row handled by one warp: every lane gets the result.
struct WarpGroup {
  __device__ __forceinline__ int lane() const { return threadIdx.x % kWarpSize; }
  __device__ __forceinline__ int size() const { return kWarpSize; }
  template <typename T>
  __device__ __forceinline__ T sum(T v) const {
    return warp_reduce(v, Sum{});
  }
  template <typename T>
  __device__ __forceinline__ T max(T v) const {
    return warp_reduce(v, Max{});
  }
};

// A row handled by one block: warp shuffles, then the warps' results through shared memory;
// every thread gets the result.
template <typename T>
struct BlockGroup {
  T* shared;  // kWarpSize values
  __device__ __forceinline__ int lane() const { return threadIdx.x; }
  __device__ __forceinline__ int size() const { return blockDim.x; }
  template <class Op>
  __device__ __forceinline__ T reduce(T v, Op op, T identity) const {
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    v = warp_reduce(v, op);
    __syncthreads();  // the previous reduction's result has been read
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int warps = (blockDim.x + kWarpSize - 1) / kWarpSize;
    if (warp == 0) {
      v = warp_reduce(lane < warps ? shared[lane] : identity, op);
      if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    return shared[0];
  }
  __device__ __forceinline__ T sum(T v) const { return reduce(v, Sum{}, T(0)); }
  __device__ __forceinline__ T max(T v) const { return reduce(v, Max{}, T(-INFINITY)); }
};

// ---- Softmax mode -----------------------------------------------------------------------------

template <typename scalar_t>
struct SoftmaxArgs {
  using acc_t = acc_type<scalar_t>;
  const scalar_t* input;
  const int64_t* target;
  const acc_t* alpha;  // nullptr: all ones
  int64_t rows;
  int64_t classes;
  acc_t gamma;
  acc_t smoothing;
  int64_t ignore_index;
  acc_t* loss;               // forward
  acc_t* stats;              // forward: (max, log Σ exp(x - max)) per row
  const acc_t* saved_stats;  // backward
  const acc_t* grad_loss;    // backward
  int64_t grad_stride;
  acc_t grad_scale;
  scalar_t* grad;
};

template <typename scalar_t, class Group>
__device__ void softmax_forward_row(const SoftmaxArgs<scalar_t>& a, int64_t row,
                                    const Group& group) {
  using acc_t = acc_type<scalar_t>;
  const int64_t c = a.classes;
  const int64_t t = a.target[row];
  acc_t* stats = a.stats + 2 * row;
  if (t == a.ignore_index) {  // uniform over the group: no thread waits in a reduction
    if (group.lane() == 0) a.loss[row] = stats[0] = stats[1] = acc_t(0);
    return;
  }
  const scalar_t* x = a.input + row * c;
  // Row max, then Σ exp(x_j - max) apart from the maxima themselves, which are counted
  // (math::row_log_sum keeps log Σ exact as p_max -> 1).
  acc_t m = acc_t(-INFINITY);
  for (int64_t j = group.lane(); j < c; j += group.size()) m = Max{}(m, to_acc(x[j]));
  m = group.max(m);
  acc_t rest = 0, ties = 0;
  for (int64_t j = group.lane(); j < c; j += group.size()) {
    const acc_t v = to_acc(x[j]);
    if (v >= m) {
      ties += acc_t(1);
    } else {
      rest += math::exp(v - m);
    }
  }
  rest = group.sum(rest);
  ties = group.sum(ties);
  const acc_t log_sum = math::row_log_sum(ties, rest);
  acc_t loss;
  if (a.smoothing == acc_t(0)) {
    // -α_t (1 - p_t)^γ log p_t: one class, computed by every thread (no broadcast needed).
    const acc_t log_pt = math::log_softmax(to_acc(x[t]), m, log_sum);
    loss = weight(a.alpha, t) * math::softmax_term(log_pt, a.gamma).loss;
  } else {
    // -Σ_c q_c α_c (1 - p_c)^γ log p_c over the whole row.
    acc_t part = 0;
    for (int64_t j = group.lane(); j < c; j += group.size()) {
      const acc_t q = math::smoothed_target(j == t, a.smoothing, c) * weight(a.alpha, j);
      part += q * math::softmax_term(math::log_softmax(to_acc(x[j]), m, log_sum), a.gamma).loss;
    }
    loss = group.sum(part);
  }
  if (group.lane() == 0) {
    a.loss[row] = loss;
    stats[0] = m;
    stats[1] = log_sum;
  }
}

template <typename scalar_t, class Group>
__device__ void softmax_backward_row(const SoftmaxArgs<scalar_t>& a, int64_t row,
                                     const Group& group) {
  using acc_t = acc_type<scalar_t>;
  const int64_t c = a.classes;
  const int64_t t = a.target[row];
  scalar_t* out = a.grad + row * c;
  if (t == a.ignore_index) {
    for (int64_t j = group.lane(); j < c; j += group.size()) store(out + j, acc_t(0));
    return;
  }
  const scalar_t* x = a.input + row * c;
  const acc_t m = a.saved_stats[2 * row];
  const acc_t log_sum = a.saved_stats[2 * row + 1];
  const acc_t scale = a.grad_loss[row * a.grad_stride] * a.grad_scale;
  if (a.smoothing == acc_t(0)) {
    // g_t = α_t p_t f'(p_t); the gradient is g_t (1 - p_t) at t and -g_t p_j elsewhere.
    const acc_t log_pt = math::log_softmax(to_acc(x[t]), m, log_sum);
    const math::SoftmaxProb<acc_t> pt = math::softmax_prob(log_pt);
    const acc_t gt =
        scale * weight(a.alpha, t) * math::focal_term(pt.p, pt.one_minus_p, log_pt, a.gamma).grad;
    for (int64_t j = group.lane(); j < c; j += group.size()) {
      const acc_t p = math::exp(math::log_softmax(to_acc(x[j]), m, log_sum));
      store(out + j,
            j == t ? math::onehot_grad_target(gt, pt.one_minus_p) : math::onehot_grad_other(p, gt));
    }
    return;
  }
  // Smoothed: g_j - p_j Σ_c g_c, g_c = q_c α_c p_c f'(p_c).
  acc_t part = 0;
  for (int64_t j = group.lane(); j < c; j += group.size()) {
    const acc_t q = math::smoothed_target(j == t, a.smoothing, c) * weight(a.alpha, j);
    part += q * math::softmax_term(math::log_softmax(to_acc(x[j]), m, log_sum), a.gamma).grad;
  }
  const acc_t g_sum = scale * group.sum(part);
  for (int64_t j = group.lane(); j < c; j += group.size()) {
    const acc_t log_p = math::log_softmax(to_acc(x[j]), m, log_sum);
    const acc_t q = math::smoothed_target(j == t, a.smoothing, c) * weight(a.alpha, j);
    const acc_t g = scale * q * math::softmax_term(log_p, a.gamma).grad;
    store(out + j, math::smoothed_grad(g, math::exp(log_p), g_sum));
  }
}

template <bool kBackward, typename scalar_t, typename Group>
__device__ void softmax_row(const SoftmaxArgs<scalar_t>& a, int64_t row, const Group& group) {
  if constexpr (kBackward) {
    softmax_backward_row(a, row, group);
  } else {
    softmax_forward_row(a, row, group);
  }
}

// Grid-stride over rows: warp w of block b takes rows b * warps + w, then every
// gridDim.x * warps. A whole warp (or block) shares each row, so reductions see every thread.
template <bool kBackward, typename scalar_t>
__global__ void softmax_warp_kernel(const SoftmaxArgs<scalar_t> a) {
  const int64_t warps = blockDim.x / kWarpSize;
  for (int64_t row = blockIdx.x * warps + threadIdx.x / kWarpSize; row < a.rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    softmax_row<kBackward>(a, row, WarpGroup{});
  }
}

template <bool kBackward, typename scalar_t>
__global__ void softmax_block_kernel(const SoftmaxArgs<scalar_t> a) {
  __shared__ acc_type<scalar_t> shared[kWarpSize];
  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    softmax_row<kBackward>(a, row, BlockGroup<acc_type<scalar_t>>{shared});
  }
}

// Rows of at most kWarpRowMaxClasses go a warp each; longer rows a block each.
template <bool kBackward, typename scalar_t>
cudaError_t launch_softmax(const SoftmaxArgs<scalar_t>& a, cudaStream_t stream) {
  if (a.rows == 0) return cudaSuccess;
  if (a.classes <= kWarpRowMaxClasses) {
    softmax_warp_kernel<kBackward>
        <<<grid_for(a.rows, kThreads / kWarpSize), kThreads, 0, stream>>>(a);
  } else {
    softmax_block_kernel<kBackward><<<grid_for(a.rows, 1), kBlockRowThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

// ---- Probs mode: a thread per row -------------------------------------------------------------

template <typename scalar_t>
__global__ void probs_forward_kernel(const SoftmaxArgs<scalar_t> a) {
  using acc_t = acc_type<scalar_t>;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < a.rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = a.target[row];
    a.loss[row] = t == a.ignore_index
                      ? acc_t(0)
                      : weight(a.alpha, t) *
                            math::probs_term(to_acc(a.input[row * a.classes + t]), a.gamma).loss;
  }
}

// Writes the target column only: the launcher zeroes grad first.
template <typename scalar_t>
__global__ void probs_backward_kernel(const SoftmaxArgs<scalar_t> a) {
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < a.rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = a.target[row];
    if (t == a.ignore_index) continue;
    const int64_t k = row * a.classes + t;
    store(a.grad + k, a.grad_loss[row * a.grad_stride] * a.grad_scale * weight(a.alpha, t) *
                          math::probs_term(to_acc(a.input[k]), a.gamma).grad);
  }
}

// ---- Sigmoid mode: elementwise ----------------------------------------------------------------

template <typename scalar_t>
struct SigmoidArgs {
  using acc_t = acc_type<scalar_t>;
  const scalar_t* input;
  const scalar_t* target;
  int64_t n;
  acc_t w_pos;  // α, or 1 when disabled
  acc_t w_neg;  // 1 - α, or 1 when disabled
  acc_t gamma;
  acc_t* loss;
  const acc_t* grad_loss;
  int64_t grad_stride;
  acc_t grad_scale;
  scalar_t* grad;
};

template <typename scalar_t>
SigmoidArgs<scalar_t> sigmoid_args(const scalar_t* input, const scalar_t* target, int64_t n,
                                   const FocalParams& params) {
  using acc_t = acc_type<scalar_t>;
  SigmoidArgs<scalar_t> a{};
  a.input = input;
  a.target = target;
  a.n = n;
  const acc_t alpha = static_cast<acc_t>(params.sigmoid_alpha);
  a.w_pos = math::sigmoid_weight_pos(alpha);
  a.w_neg = math::sigmoid_weight_neg(alpha);
  a.gamma = static_cast<acc_t>(params.gamma);
  return a;
}

template <typename scalar_t>
__global__ void sigmoid_forward_kernel(const SigmoidArgs<scalar_t> a) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < a.n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    a.loss[k] =
        math::sigmoid_focal(to_acc(a.input[k]), to_acc(a.target[k]), a.w_pos, a.w_neg, a.gamma)
            .loss;
  }
}

template <typename scalar_t>
__global__ void sigmoid_backward_kernel(const SigmoidArgs<scalar_t> a) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < a.n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const auto r =
        math::sigmoid_focal(to_acc(a.input[k]), to_acc(a.target[k]), a.w_pos, a.w_neg, a.gamma);
    store(a.grad + k, a.grad_loss[k * a.grad_stride] * a.grad_scale * r.grad);
  }
}

template <typename scalar_t>
SoftmaxArgs<scalar_t> softmax_args(const scalar_t* input, const int64_t* target,
                                   const acc_type<scalar_t>* alpha, int64_t rows, int64_t classes,
                                   const FocalParams& params) {
  using acc_t = acc_type<scalar_t>;
  SoftmaxArgs<scalar_t> a{};
  a.input = input;
  a.target = target;
  a.alpha = alpha;
  a.rows = rows;
  a.classes = classes;
  a.gamma = static_cast<acc_t>(params.gamma);
  a.smoothing = static_cast<acc_t>(params.label_smoothing);
  a.ignore_index = params.ignore_index;
  return a;
}

}  // namespace

// ---- Launchers --------------------------------------------------------------------------------

template <typename scalar_t>
cudaError_t launch_softmax_forward(const scalar_t* input, const int64_t* target,
                                   const acc_type<scalar_t>* alpha, int64_t rows, int64_t classes,
                                   const FocalParams& params, acc_type<scalar_t>* loss,
                                   acc_type<scalar_t>* stats, cudaStream_t stream) {
  SoftmaxArgs<scalar_t> a = softmax_args(input, target, alpha, rows, classes, params);
  a.loss = loss;
  a.stats = stats;
  return launch_softmax</*kBackward=*/false>(a, stream);
}

template <typename scalar_t>
cudaError_t launch_softmax_backward(const scalar_t* input, const int64_t* target,
                                    const acc_type<scalar_t>* alpha,
                                    const acc_type<scalar_t>* stats,
                                    const acc_type<scalar_t>* grad_loss, int64_t grad_stride,
                                    double grad_scale, int64_t rows, int64_t classes,
                                    const FocalParams& params, scalar_t* grad_input,
                                    cudaStream_t stream) {
  SoftmaxArgs<scalar_t> a = softmax_args(input, target, alpha, rows, classes, params);
  a.saved_stats = stats;
  a.grad_loss = grad_loss;
  a.grad_stride = grad_stride;
  a.grad_scale = static_cast<acc_type<scalar_t>>(grad_scale);
  a.grad = grad_input;
  return launch_softmax</*kBackward=*/true>(a, stream);
}

template <typename scalar_t>
cudaError_t launch_probs_forward(const scalar_t* input, const int64_t* target,
                                 const acc_type<scalar_t>* alpha, int64_t rows, int64_t classes,
                                 const FocalParams& params, acc_type<scalar_t>* loss,
                                 cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  SoftmaxArgs<scalar_t> a = softmax_args(input, target, alpha, rows, classes, params);
  a.loss = loss;
  probs_forward_kernel<<<grid_for(rows, kThreads), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_probs_backward(const scalar_t* input, const int64_t* target,
                                  const acc_type<scalar_t>* alpha,
                                  const acc_type<scalar_t>* grad_loss, int64_t grad_stride,
                                  double grad_scale, int64_t rows, int64_t classes,
                                  const FocalParams& params, scalar_t* grad_input,
                                  cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  // All-zero bits are 0 in every floating type: only the target column is then written.
  const cudaError_t zeroed = cudaMemsetAsync(
      grad_input, 0, static_cast<size_t>(rows * classes) * sizeof(scalar_t), stream);
  if (zeroed != cudaSuccess) return zeroed;
  SoftmaxArgs<scalar_t> a = softmax_args(input, target, alpha, rows, classes, params);
  a.grad_loss = grad_loss;
  a.grad_stride = grad_stride;
  a.grad_scale = static_cast<acc_type<scalar_t>>(grad_scale);
  a.grad = grad_input;
  probs_backward_kernel<<<grid_for(rows, kThreads), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_sigmoid_forward(const scalar_t* input, const scalar_t* target, int64_t n,
                                   const FocalParams& params, acc_type<scalar_t>* loss,
                                   cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SigmoidArgs<scalar_t> a = sigmoid_args(input, target, n, params);
  a.loss = loss;
  sigmoid_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_sigmoid_backward(const scalar_t* input, const scalar_t* target,
                                    const acc_type<scalar_t>* grad_loss, int64_t grad_stride,
                                    double grad_scale, int64_t n, const FocalParams& params,
                                    scalar_t* grad_input, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SigmoidArgs<scalar_t> a = sigmoid_args(input, target, n, params);
  a.grad_loss = grad_loss;
  a.grad_stride = grad_stride;
  a.grad_scale = static_cast<acc_type<scalar_t>>(grad_scale);
  a.grad = grad_input;
  sigmoid_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

// The four input types.
#define TORCHFOCAL_INSTANTIATE_LAUNCHERS(T)                                                        \
  template cudaError_t launch_softmax_forward<T>(const T*, const int64_t*, const acc_type<T>*,     \
                                                 int64_t, int64_t, const FocalParams&,             \
                                                 acc_type<T>*, acc_type<T>*, cudaStream_t);        \
  template cudaError_t launch_softmax_backward<T>(                                                 \
      const T*, const int64_t*, const acc_type<T>*, const acc_type<T>*, const acc_type<T>*,        \
      int64_t, double, int64_t, int64_t, const FocalParams&, T*, cudaStream_t);                    \
  template cudaError_t launch_probs_forward<T>(const T*, const int64_t*, const acc_type<T>*,       \
                                               int64_t, int64_t, const FocalParams&, acc_type<T>*, \
                                               cudaStream_t);                                      \
  template cudaError_t launch_probs_backward<T>(const T*, const int64_t*, const acc_type<T>*,      \
                                                const acc_type<T>*, int64_t, double, int64_t,      \
                                                int64_t, const FocalParams&, T*, cudaStream_t);    \
  template cudaError_t launch_sigmoid_forward<T>(const T*, const T*, int64_t, const FocalParams&,  \
                                                 acc_type<T>*, cudaStream_t);                      \
  template cudaError_t launch_sigmoid_backward<T>(const T*, const T*, const acc_type<T>*, int64_t, \
                                                  double, int64_t, const FocalParams&, T*,         \
                                                  cudaStream_t);

TORCHFOCAL_INSTANTIATE_LAUNCHERS(float)
TORCHFOCAL_INSTANTIATE_LAUNCHERS(double)
TORCHFOCAL_INSTANTIATE_LAUNCHERS(__half)
TORCHFOCAL_INSTANTIATE_LAUNCHERS(__nv_bfloat16)

#undef TORCHFOCAL_INSTANTIATE_LAUNCHERS

}  // namespace torchfocal::ops::cuda
