// The per-element update of the flat optimizers (src/train/flat_optimizer.h), shared by the CPU
// loop and the CUDA kernel so that the CPU tests exercise the formulas the GPU runs. No LibTorch
// header: nvcc compiles this without Torch. The formulas and their order of operations are
// torch::optim's 1.13 (adam.cpp, adamw.cpp, sgd.cpp; the same as torch.optim's single-tensor
// Python code), so the two agree to float rounding.
#pragma once

#include <math.h>

#include <cstdint>

#include "src/common/host_device.h"

namespace torchfocal::train::math {

// Adam's and AdamW's per-element constants, in float as torch::optim hands its double options to
// float kernels (lr enters through AdamStepScalars).
struct AdamConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
  // AdamW: weight decay multiplies the parameter by (1 - lr·wd) before the moments (decoupled);
  // Adam: it adds wd·p to the gradient (L2).
  bool decoupled;
};

// What one step's count t (>= 1) and rate make of the constants: the bias corrections 1 - β^t,
// computed in double as torch::optim does on the host, then used as float.
struct AdamStepScalars {
  float step_size;              // lr / (1 - β1^t)
  float bias_correction2_sqrt;  // sqrt(1 - β2^t)
  float decay;                  // AdamW: 1 - lr·wd (1 otherwise)
};

HOST_DEVICE_INLINE AdamStepScalars adam_step_scalars(double beta1, double beta2, double lr,
                                                     int64_t step, double decoupled_decay = 0) {
  const double t = static_cast<double>(step);
  return {static_cast<float>(lr / (1.0 - ::pow(beta1, t))),
          static_cast<float>(::sqrt(1.0 - ::pow(beta2, t))),
          static_cast<float>(1.0 - lr * decoupled_decay)};
}

// One parameter element: m, v are its moments, g its gradient.
HOST_DEVICE_INLINE void adam_update(float& p, float g, float& m, float& v, const AdamConstants& c,
                                    const AdamStepScalars& s) {
  if (c.weight_decay != 0.0f) {
    if (c.decoupled) {
      p = p * s.decay;  // AdamW: p.mul_(1 - lr * wd), before everything else
    } else {
      g = g + c.weight_decay * p;  // Adam: L2 penalty folded into g
    }
  }
  m = m * c.beta1 + c.one_minus_beta1 * g;        // first moment
  v = v * c.beta2 + c.one_minus_beta2 * (g * g);  // second moment
  const float denom = ::sqrtf(v) / s.bias_correction2_sqrt + c.eps;
  p = p + (-s.step_size) * (m / denom);
}

// SGD's per-element constants (dampening 0, as the trainer builds it).
struct SgdConstants {
  float momentum, weight_decay;
  bool nesterov;
};

// One parameter element; `buf` its momentum buffer (unused without momentum). The buffer starts at
// zero: torch::optim's first step sets it to a clone of d_p, which 0·μ + d_p equals exactly.
HOST_DEVICE_INLINE void sgd_update(float& p, float g, float& buf, const SgdConstants& c, float lr) {
  // ATen's add(b, alpha) is one fused multiply-add per element (Vectorized::fmadd), hence fmaf:
  // the same rounding as torch.optim's float32 steps, on the CPU and in the CUDA kernel alike.
  float d = g;
  if (c.weight_decay != 0.0f) d = ::fmaf(c.weight_decay, p, d);  // d_p.add(p, wd)
  if (c.momentum != 0.0f) {
    buf = buf * c.momentum + d;                         // buf.mul_(μ).add_(d_p, 1 - dampening)
    d = c.nesterov ? ::fmaf(c.momentum, buf, d) : buf;  // d_p.add(buf, μ) or buf
  }
  p = ::fmaf(-lr, d, p);
}

// Plain SGD (no momentum, no weight decay): p.add_(g, -lr), one fused multiply-add as ATen's, so
// that the CPU host loop (which steps this) and torch::optim (distributed ranks) agree bit for bit.
HOST_DEVICE_INLINE void sgd_update(float& p, float g, float lr) { p = ::fmaf(-lr, g, p); }

}  // namespace torchfocal::train::math
