// CUDA launchers of the flat optimizers' update: raw pointers, sizes and a stream, no LibTorch
// (the .cu is also compiled on its own). The maths is ../optimizer_math.h, shared with the CPU.
//
// `take` points to one float on the device: the step is applied where it is 1 and skipped
// where it is 0 (a non-finite loss or gradient), so nothing is read back to the host and the
// launch can sit inside a CUDA graph. `step` points to the step count, already advanced for
// this step (Adam's bias corrections), and `lr` to the step's rate (a schedule's, also read on
// the device). `decoupled_decay`: AdamW's weight decay (0 for Adam). `momentum_buffer`: SGD's,
// nullptr without momentum.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "src/train/optimizer_math.h"

namespace torchfocal::train::cuda {

cudaError_t launch_adam(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                        int64_t n, const math::AdamConstants& constants, double beta1, double beta2,
                        double decoupled_decay, const double* lr, const int64_t* step,
                        const float* take, cudaStream_t stream);

cudaError_t launch_sgd(float* param, const float* grad, float* momentum_buffer, int64_t n,
                       const math::SgdConstants& constants, const double* lr, const float* take,
                       cudaStream_t stream);

}  // namespace torchfocal::train::cuda
