// W floats in a GCC/Clang vector, and the few operations on them that the CPU kernels need (the
// focal loss's softmax passes, the fused sigmoid of models/sigmoid_avg_pool.cpp): load and store,
// max, sums across lanes, and a polynomial exp and log (< 2 ulp). Compiled once per instruction
// set by the functions that use them (the baseline's SSE2 or NEON at W = 4, AVX2 at 8 and AVX-512
// at 16 inside functions compiled for those targets) and chosen at run time from the CPU's
// features. Why not at::vec::Vectorized: a translation unit outside LibTorch's build gets its
// scalar-emulated variant, whose exp() is a loop of std::exp (src/ops/cpu/focal_loss_kernel.cpp).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
// AVX vectors passed between inlined helpers: GCC notes an ABI change that cannot matter here (no
// function with such a signature crosses a library boundary).
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__GNUC__)
#define TORCHFOCAL_CPU_LANES 1
#define TORCHFOCAL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define TORCHFOCAL_ALWAYS_INLINE inline
#endif

namespace torchfocal {

#ifdef TORCHFOCAL_CPU_LANES
template <int W>
struct FloatVector {
  typedef float V __attribute__((vector_size(W * 4)));
  typedef int32_t Bits __attribute__((vector_size(W * 4)));
};

// W floats in a GCC/Clang vector: the baseline's SSE2 (x86-64) or NEON (AArch64) registers at
// W = 4, AVX2 at 8 and AVX-512 at 16 inside functions compiled for those targets.
//
// Every select is a compare written inside its ternary: GCC 12 turns an AVX-512 select on a
// mask held in a variable into lane-by-lane scalar code (vucomiss/setcc), 5x slower.
template <int W>
struct FloatLanes {
  using Scalar = float;
  // Named through FloatVector so that they stay dependent types until W is known.
  using V = typename FloatVector<W>::V;
  using Bits = typename FloatVector<W>::Bits;
  static constexpr int kWidth = W;

  static TORCHFOCAL_ALWAYS_INLINE V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  // The first n < W values, the rest `fill`.
  static TORCHFOCAL_ALWAYS_INLINE V load_partial(const float* p, int64_t n, float fill) {
    V v = splat(fill);
    for (int64_t k = 0; k < n; ++k) v[k] = p[k];
    return v;
  }
  static TORCHFOCAL_ALWAYS_INLINE void store(float* p, const V& v) {
    std::memcpy(p, &v, sizeof(V));
  }
  static TORCHFOCAL_ALWAYS_INLINE void store_partial(float* p, const V& v, int64_t n) {
    for (int64_t k = 0; k < n; ++k) p[k] = v[k];
  }
  static TORCHFOCAL_ALWAYS_INLINE V splat(float x) { return V{} + x; }
  static TORCHFOCAL_ALWAYS_INLINE V max(const V& a, const V& b) { return a > b ? a : b; }
  // a where x >= y, else b (ties with the row max: x <= max always).
  static TORCHFOCAL_ALWAYS_INLINE V where_at_least(const V& x, const V& y, const V& a, const V& b) {
    return x >= y ? a : b;
  }
  // 1 in the lanes from `skip` on, 0 below: the new part of a vector that overlaps the last.
  static TORCHFOCAL_ALWAYS_INLINE V lanes_from(int64_t skip) {
    V index;
    for (int k = 0; k < W; ++k) index[k] = static_cast<float>(k);
    return index >= static_cast<float>(skip) ? splat(1.0f) : splat(0.0f);
  }
  // Horizontal sum and max by halving in registers: a lane-by-lane loop goes through the stack
  // and one long chain of additions (a quarter of a 10-class row's time).
  static TORCHFOCAL_ALWAYS_INLINE float sum_all(const V& v) {
    if constexpr (W == 4) {
      return (v[0] + v[1]) + (v[2] + v[3]);
    } else {
      const auto [lo, hi] = halves(v);
      return FloatLanes<W / 2>::sum_all(lo + hi);
    }
  }
  static TORCHFOCAL_ALWAYS_INLINE float max_all(const V& v) {
    if constexpr (W == 4) {
      const float a = v[0] > v[1] ? v[0] : v[1];
      const float b = v[2] > v[3] ? v[2] : v[3];
      return a > b ? a : b;
    } else {
      const auto [lo, hi] = halves(v);
      return FloatLanes<W / 2>::max_all(lo > hi ? lo : hi);
    }
  }
  template <int H = W / 2>
  static TORCHFOCAL_ALWAYS_INLINE auto halves(const V& v) {
    struct Halves {
      typename FloatVector<H>::V lo, hi;
    } out;
    std::memcpy(&out.lo, &v, sizeof(out.lo));
    std::memcpy(&out.hi, reinterpret_cast<const char*>(&v) + sizeof(out.lo), sizeof(out.hi));
    return out;
  }

  // exp for x <= 88 (the kernels only pass x <= 0), flushed to 0 where the result would be
  // subnormal (x < -87.3). Cephes expf: x = n ln2 + r with |r| <= ln2 / 2, e^r by a degree-6
  // polynomial (< 2 ulp), 2^n built in the exponent bits.
  static TORCHFOCAL_ALWAYS_INLINE V exp(const V& x_in) {
    V x = x_in < -88.5f ? splat(-88.5f) : x_in;
    x = x > 88.0f ? splat(88.0f) : x;
    const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const V n = (x * 1.44269504088896341f + kRound) - kRound;
    // ln2 split in a high part exact for |n| < 2^12 and the rest
    V r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    V p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    // The biased exponent n + 127, clamped at 0: 2^n, or 0 for n <= -127 (the flush).
    Bits biased = __builtin_convertvector(n, Bits) + 127;
    biased = biased > 0 ? biased : Bits{};
    return p * reinterpret_cast<V>(biased << 23);
  }

  // log(1 + e) for e >= 0 finite (a row's excess, focal_math.h row_log_sum): Cephes logf on
  // u = 1 + e (u = m 2^k, m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial, < 2 ulp), with
  // Goldberg's correction log1p(e) = log(u) e / (u - 1), exact where u rounds to 1.
  static TORCHFOCAL_ALWAYS_INLINE V log_sum(const V& e) {
    const V u = e + 1.0f;
    const Bits bits = reinterpret_cast<Bits>(u);
    V k = __builtin_convertvector(((bits >> 23) & 0xff) - 126, V);
    V m = reinterpret_cast<V>((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
    const bool_t small = m < 0.707106781186547524f;
    k = small ? k - 1.0f : k;
    m = small ? m + m - 1.0f : m - 1.0f;
    const V z = m * m;
    V y = m * 7.0376836292e-2f - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += k * -2.12194440e-4f;
    y += z * -0.5f;
    const V log_u = (m + y) + k * 0.693359375f;
    const V d = u - 1.0f;
    return d == 0.0f ? e : log_u * (e / (d == 0.0f ? splat(1.0f) : d));
  }

  // 1 - e^x for x <= 0: -expm1(x) by its Taylor series on (-1/4, 0] (error < 2e-9 relative,
  // and exact digits as x -> 0, where 1 - e^x would cancel), else 1 - e^x.
  static TORCHFOCAL_ALWAYS_INLINE V one_minus_exp(const V& x) {
    V s = x * (1.0f / 5040) + (1.0f / 720);
    s = s * x + (1.0f / 120);
    s = s * x + (1.0f / 24);
    s = s * x + (1.0f / 6);
    s = s * x + 0.5f;
    s = s * x + 1.0f;
    return x > -0.25f ? -(s * x) : 1.0f - exp(x);
  }

 private:
  using bool_t = decltype(V{} < V{});
};
#endif  // TORCHFOCAL_CPU_LANES

}  // namespace torchfocal
