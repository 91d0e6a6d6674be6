// The per-element update of the flat optimizers (src/train/flat_optimizer.h), shared by the CPU
// loop and the CUDA kernel so that the CPU tests exercise the formulas the GPU runs. No LibTorch
// header: nvcc compiles this without Torch. The formulas and their order of operations are
// torch::optim's (adam.cpp, sgd.cpp without momentum), so the two agree to float rounding.
#pragma once

#include <math.h>

#include <cstdint>

#include "src/common/host_device.h"

namespace torchfocal::train::math {

// Adam's per-element constants, in float as torch::optim hands its double options to float
// kernels (lr enters through AdamStepScalars).
struct AdamConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
};

// What one step's count t (>= 1) makes of the constants: the bias corrections 1 - β^t, computed
// in double as torch::optim does on the host, then used as float.
struct AdamStepScalars {
  float step_size;              // lr / (1 - β1^t)
  float bias_correction2_sqrt;  // sqrt(1 - β2^t)
};

HOST_DEVICE_INLINE AdamStepScalars adam_step_scalars(double beta1, double beta2, double lr,
                                                     int64_t step) {
  const double t = static_cast<double>(step);
  return {static_cast<float>(lr / (1.0 - ::pow(beta1, t))),
          static_cast<float>(::sqrt(1.0 - ::pow(beta2, t)))};
}

// One parameter element: m, v are its moments, g its gradient.
HOST_DEVICE_INLINE void adam_update(float& p, float g, float& m, float& v, const AdamConstants& c,
                                    const AdamStepScalars& s) {
  if (c.weight_decay != 0.0f) g = g + c.weight_decay * p;  // L2 penalty folded into g
  m = m * c.beta1 + c.one_minus_beta1 * g;                 // first moment
  v = v * c.beta2 + c.one_minus_beta2 * (g * g);           // second moment
  const float denom = ::sqrtf(v) / s.bias_correction2_sqrt + c.eps;
  p = p + (-s.step_size) * (m / denom);
}

// Plain SGD (no momentum, no weight decay: the options the trainer uses).
HOST_DEVICE_INLINE void sgd_update(float& p, float g, float lr) { p = p + (-lr) * g; }

}  // namespace torchfocal::train::math
