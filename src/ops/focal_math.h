// The per-row / per-element maths of the focal loss, shared by the CPU kernels and the CUDA
// kernels (mmcv common/box_iou_rotated_utils.hpp style): the CPU tests exercise the formulas
// the GPU runs. No LibTorch header here: this file is compiled by nvcc without Torch.
//
// Notation: p = probability of a class, log p its log, γ = gamma, α the class weight,
// q the target distribution (one-hot, or label-smoothed).
//   f(p)    = -(1 - p)^γ log p                       the focal term of one class
//   p f'(p) = (1 - p)^γ (γ r - 1),  r = p log p / (1 - p)
// With softmax probabilities the gradient of FL = Σ_c q_c α_c f(p_c) with respect to logit j is
//   g_j - p_j Σ_c g_c,   g_c = q_c α_c p_c f'(p_c)
// (one-hot target t: g_t (1 - p_t) at j = t and -g_t p_j elsewhere).
#pragma once

#include <math.h>

#include <cstdint>

#include "src/common/host_device.h"

namespace torchfocal::ops::math {

// Float and double overloads of the few libm functions used, callable on host and device.
HOST_DEVICE_INLINE float exp(float x) { return ::expf(x); }
HOST_DEVICE_INLINE double exp(double x) { return ::exp(x); }
HOST_DEVICE_INLINE float expm1(float x) { return ::expm1f(x); }
HOST_DEVICE_INLINE double expm1(double x) { return ::expm1(x); }
HOST_DEVICE_INLINE float log(float x) { return ::logf(x); }
HOST_DEVICE_INLINE double log(double x) { return ::log(x); }
HOST_DEVICE_INLINE float log1p(float x) { return ::log1pf(x); }
HOST_DEVICE_INLINE double log1p(double x) { return ::log1p(x); }
HOST_DEVICE_INLINE float pow(float x, float y) { return ::powf(x, y); }
HOST_DEVICE_INLINE double pow(double x, double y) { return ::pow(x, y); }
HOST_DEVICE_INLINE float abs(float x) { return ::fabsf(x); }
HOST_DEVICE_INLINE double abs(double x) { return ::fabs(x); }

// base^γ for base in [0, 1], with the common γ = 0, 1, 2 done without pow. pow(0, 0) = 1, so
// γ = 0 gives the plain cross-entropy even where p = 1.
template <typename T>
HOST_DEVICE_INLINE T focal_pow(T base, T gamma) {
  if (gamma == T(2)) return base * base;
  if (gamma == T(1)) return base;
  if (gamma == T(0)) return T(1);
  return math::pow(base, gamma);
}

// Softmax row statistics. With m = max_j x_j, Σ_j exp(x_j - m) = ties + rest, where ties counts
// the j with x_j = m and rest sums the others: log Σ_j exp(x_j - m) = log1p((ties - 1) + rest)
// keeps its digits as p_max -> 1, where log of the rounded sum would give 0.
template <typename T>
HOST_DEVICE_INLINE T row_log_sum(T ties, T rest) {
  const T excess = (ties - T(1)) + rest;
  // log1p where it matters; from 1 on, log(1 + excess) is as exact and cheaper.
  return excess < T(1) ? math::log1p(excess) : math::log(T(1) + excess);
}

// log p_j = (x_j - m) - log Σ exp(x - m), without forming logsumexp = m + log Σ (whose rounding
// to the magnitude of m would swamp log p_j near 0). V may be a vector type.
template <typename V, typename T>
HOST_DEVICE_INLINE V log_softmax(const V& x, T max, T log_sum) {
  return (x - max) - log_sum;
}

// The focal term of one class and its derivative, both as functions of the class's logit
// through p: `loss` = f(p), `grad` = p f'(p).
template <typename T>
struct FocalTerm {
  T loss;
  T grad;
};

// From p, 1 - p and log p given separately, so that each can come from its most exact source.
template <typename T>
HOST_DEVICE_INLINE FocalTerm<T> focal_term(T p, T one_minus_p, T log_p, T gamma) {
  // (1 - p)^γ: the modulating factor that down-weights well-classified classes.
  const T w = focal_pow(one_minus_p, gamma);
  // r = p log p / (1 - p) lies in [-1, 0]; it tends to -1 as p -> 1 (and is that limit once
  // 1 - p underflows to 0) and to 0 as p -> 0. Writing γ (1 - p)^(γ-1) p log p as γ w r keeps
  // the derivative finite for γ in (0, 1), where (1 - p)^(γ-1) alone would overflow.
  T r = T(-1);
  if (one_minus_p > T(0)) r = p > T(0) ? p * log_p / one_minus_p : T(0);
  FocalTerm<T> term;
  term.loss = -w * log_p;           // -(1 - p)^γ log p
  term.grad = w * (gamma * r - 1);  // γ (1 - p)^(γ-1) p log p - (1 - p)^γ
  return term;
}

// p and 1 - p of a softmax class from its log-probability log p (stable, no +1e-8).
template <typename T>
struct SoftmaxProb {
  T p;
  T one_minus_p;
};

template <typename T>
HOST_DEVICE_INLINE SoftmaxProb<T> softmax_prob(T log_p) {
  SoftmaxProb<T> out;
  out.p = math::exp(log_p);
  // 1 - p = -expm1(log p): exact near p -> 1. Below p = e^-1/4, 1 - p >= 0.22 and the plain
  // subtraction is as exact (and saves an expm1).
  out.one_minus_p = log_p > T(-0.25) ? -math::expm1(log_p) : T(1) - out.p;
  return out;
}

// A softmax class's focal term from its log-probability.
template <typename T>
HOST_DEVICE_INLINE FocalTerm<T> softmax_term(T log_p, T gamma) {
  const SoftmaxProb<T> prob = softmax_prob(log_p);
  return focal_term(prob.p, prob.one_minus_p, log_p, gamma);
}

// The probs mode's clamp, as the original experiment: p = clamp(input, 1e-8, 1).
template <typename T>
HOST_DEVICE_INLINE T probs_clamp_min() {
  return T(1e-8);
}

// Probs mode (input is already p): the loss and d loss / d input. The gradient is zero where
// the clamp is active (input outside [1e-8, 1]), as torch.clamp's is.
template <typename T>
HOST_DEVICE_INLINE FocalTerm<T> probs_term(T input, T gamma) {
  const T lo = probs_clamp_min<T>();
  const bool inside = input >= lo && input <= T(1);
  const T p = input < lo ? lo : (input > T(1) ? T(1) : input);
  FocalTerm<T> term = focal_term(p, T(1) - p, math::log(p), gamma);
  term.grad = inside ? term.grad / p : T(0);  // f'(p) = (p f'(p)) / p, with p >= 1e-8
  return term;
}

// Label smoothing: q_c = (1 - ε) [c == t] + ε / C, applied before α and p are formed.
template <typename T>
HOST_DEVICE_INLINE T smoothed_target(bool is_target, T smoothing, int64_t classes) {
  return (is_target ? T(1) - smoothing : T(0)) + smoothing / static_cast<T>(classes);
}

// One-hot gradient with respect to logit j, for g = g_t times the incoming gradient:
// g (1 - p_t) at the target (1 - p_t from expm1, no cancellation) ...
template <typename T>
HOST_DEVICE_INLINE T onehot_grad_target(T g, T one_minus_p_t) {
  return g * one_minus_p_t;
}
// ... and -g p_j elsewhere. V may be a vector type (the CPU kernels pass SIMD lanes).
template <typename V, typename T>
HOST_DEVICE_INLINE V onehot_grad_other(const V& p_j, T g) {
  return p_j * (-g);
}
// Smoothed gradient with respect to logit j: g_j - p_j Σ_c g_c.
template <typename V, typename T>
HOST_DEVICE_INLINE V smoothed_grad(const V& g_j, const V& p_j, T g_sum) {
  return g_j - p_j * g_sum;
}

// Sigmoid (binary / multi-label) focal loss of one element and d loss / d x.
template <typename T>
struct SigmoidFocal {
  T loss;
  T grad;
};

// The binary weights: α for the positive term and 1 - α for the negative one; α < 0 disables
// the weighting (both 1), as torchvision.ops.sigmoid_focal_loss.
template <typename T>
HOST_DEVICE_INLINE T sigmoid_weight_pos(T alpha) {
  return alpha < T(0) ? T(1) : alpha;
}
template <typename T>
HOST_DEVICE_INLINE T sigmoid_weight_neg(T alpha) {
  return alpha < T(0) ? T(1) : T(1) - alpha;
}

// FL = -w+ t (1 - p)^γ log p - w- (1 - t) p^γ log(1 - p), p = sigmoid(x), t in [0, 1].
template <typename T>
HOST_DEVICE_INLINE SigmoidFocal<T> sigmoid_focal(T x, T t, T w_pos, T w_neg, T gamma) {
  // e = exp(-|x|) in (0, 1] and l = log1p(e): softplus(±x) without overflow for any finite x.
  const T e = math::exp(-math::abs(x));
  const T l = math::log1p(e);
  const bool pos = x >= T(0);
  const T log_p = pos ? -l : x - l;     // log p = -softplus(-x)
  const T log_1mp = pos ? -x - l : -l;  // log(1 - p) = -softplus(x)
  const T inv = T(1) / (T(1) + e);
  const T p = pos ? inv : e * inv;    // sigmoid(x)
  const T q = pos ? e * inv : inv;    // 1 - sigmoid(x), without cancellation
  const T q_g = focal_pow(q, gamma);  // (1 - p)^γ: modulates the positive term
  const T p_g = focal_pow(p, gamma);  // p^γ: modulates the negative term
  const T a = w_pos * t;              // weight of the positive term
  const T b = w_neg * (T(1) - t);     // weight of the negative term
  SigmoidFocal<T> out;
  out.loss = -a * q_g * log_p - b * p_g * log_1mp;
  // d/dx [-(1 - p)^γ log p]     = (1 - p)^γ (γ p log p - (1 - p))
  // d/dx [-p^γ log(1 - p)]      = p^γ (p - γ (1 - p) log(1 - p))      (dp/dx = p (1 - p))
  out.grad = a * q_g * (gamma * p * log_p - q) + b * p_g * (p - gamma * q * log_1mp);
  return out;
}

}  // namespace torchfocal::ops::math
