// CUDA kernels of the flat optimizers: elementwise, grid-stride, one launch for all parameters
// (they live in one flat buffer). The maths is ../optimizer_math.h. No LibTorch header here.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "src/train/cuda/flat_optimizer_kernel.h"

namespace torchfocal::train::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // grid-stride loops cover the rest

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(
      std::min<int64_t>(kMaxBlocks, std::max<int64_t>(1, (n + kThreads - 1) / kThreads)));
}

__global__ void adam_kernel(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                            int64_t n, math::AdamConstants c, double beta1, double beta2,
                            double decoupled_decay, const double* lr, const int64_t* step,
                            const float* take) {
  if (*take == 0.0f) return;  // a skipped step leaves parameters and moments as they are
  // Every thread derives the step's scalars itself: cheaper than another launch.
  const math::AdamStepScalars s =
      math::adam_step_scalars(beta1, beta2, *lr, *step, decoupled_decay);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float p = param[i], m = exp_avg[i], v = exp_avg_sq[i];
    math::adam_update(p, grad[i], m, v, c, s);
    param[i] = p;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

__global__ void sgd_kernel(float* param, const float* grad, float* momentum_buffer, int64_t n,
                           math::SgdConstants c, const double* lr, const float* take) {
  if (*take == 0.0f) return;
  const auto rate = static_cast<float>(*lr);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float p = param[i];
    float buf = momentum_buffer != nullptr ? momentum_buffer[i] : 0.0f;
    math::sgd_update(p, grad[i], buf, c, rate);
    param[i] = p;
    if (momentum_buffer != nullptr) momentum_buffer[i] = buf;
  }
}

}  // namespace

cudaError_t launch_adam(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                        int64_t n, const math::AdamConstants& constants, double beta1, double beta2,
                        double decoupled_decay, const double* lr, const int64_t* step,
                        const float* take, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(param, grad, exp_avg, exp_avg_sq, n, constants,
                                                    beta1, beta2, decoupled_decay, lr, step, take);
  return cudaGetLastError();
}

cudaError_t launch_sgd(float* param, const float* grad, float* momentum_buffer, int64_t n,
                       const math::SgdConstants& constants, const double* lr, const float* take,
                       cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  sgd_kernel<<<grid_for(n), kThreads, 0, stream>>>(param, grad, momentum_buffer, n, constants, lr,
                                                   take);
  return cudaGetLastError();
}

}  // namespace torchfocal::train::cuda
