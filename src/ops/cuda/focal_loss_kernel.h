// CUDA launchers of the focal-loss kernels: raw pointers, sizes and a stream, no LibTorch (the
// .cu is also compiled on its own, without Torch's include directories). The torch-side
// dispatch is focal_loss_cuda.cpp; the maths is ../focal_math.h, shared with the CPU kernels.
//
// scalar_t is float, double, __half or __nv_bfloat16; acc_type<scalar_t> (float, or double for
// double) is the type of every accumulation, of α, of the per-row outputs and of grad_loss.
// Every launcher returns the launch's cudaError_t (cudaGetLastError after the launch).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace torchfocal::ops::cuda {

template <typename scalar_t>
struct AccumulateType {
  using type = float;
};
template <>
struct AccumulateType<double> {
  using type = double;
};
template <typename scalar_t>
using acc_type = typename AccumulateType<scalar_t>::type;

// The scalar options of one call.
struct FocalParams {
  double gamma = 2.0;
  double label_smoothing = 0.0;  // softmax only
  int64_t ignore_index = -100;   // softmax/probs
  double sigmoid_alpha = 0.25;   // sigmoid only; < 0 disables the weighting
};

// Up to this many classes a warp handles a row; beyond, a block does (shared-memory
// reductions).
constexpr int64_t kWarpRowMaxClasses = 1024;

// Softmax mode, input [rows, classes] contiguous, target [rows] int64 (ignore_index allowed,
// others checked in range by the caller), alpha [classes] or nullptr. Writes loss [rows] and
// stats [rows, 2] = (max, log Σ exp(x - max)) per row, 0 on ignored rows.
template <typename scalar_t>
cudaError_t launch_softmax_forward(const scalar_t* input, const int64_t* target,
                                   const acc_type<scalar_t>* alpha, int64_t rows, int64_t classes,
                                   const FocalParams& params, acc_type<scalar_t>* loss,
                                   acc_type<scalar_t>* stats, cudaStream_t stream);

// d Σ_i (grad_scale · grad_loss[i · grad_stride] · loss_i) / d input, into grad_input [rows,
// classes]; grad_stride 0 broadcasts one value.
template <typename scalar_t>
cudaError_t launch_softmax_backward(const scalar_t* input, const int64_t* target,
                                    const acc_type<scalar_t>* alpha,
                                    const acc_type<scalar_t>* stats,
                                    const acc_type<scalar_t>* grad_loss, int64_t grad_stride,
                                    double grad_scale, int64_t rows, int64_t classes,
                                    const FocalParams& params, scalar_t* grad_input,
                                    cudaStream_t stream);

// Probs mode: input holds probabilities; only the target column enters the loss.
template <typename scalar_t>
cudaError_t launch_probs_forward(const scalar_t* input, const int64_t* target,
                                 const acc_type<scalar_t>* alpha, int64_t rows, int64_t classes,
                                 const FocalParams& params, acc_type<scalar_t>* loss,
                                 cudaStream_t stream);
template <typename scalar_t>
cudaError_t launch_probs_backward(const scalar_t* input, const int64_t* target,
                                  const acc_type<scalar_t>* alpha,
                                  const acc_type<scalar_t>* grad_loss, int64_t grad_stride,
                                  double grad_scale, int64_t rows, int64_t classes,
                                  const FocalParams& params, scalar_t* grad_input,
                                  cudaStream_t stream);

// Sigmoid mode, elementwise over n values; target holds floats in [0, 1] of the input's type.
template <typename scalar_t>
cudaError_t launch_sigmoid_forward(const scalar_t* input, const scalar_t* target, int64_t n,
                                   const FocalParams& params, acc_type<scalar_t>* loss,
                                   cudaStream_t stream);
template <typename scalar_t>
cudaError_t launch_sigmoid_backward(const scalar_t* input, const scalar_t* target,
                                    const acc_type<scalar_t>* grad_loss, int64_t grad_stride,
                                    double grad_scale, int64_t n, const FocalParams& params,
                                    scalar_t* grad_input, cudaStream_t stream);

}  // namespace torchfocal::ops::cuda
