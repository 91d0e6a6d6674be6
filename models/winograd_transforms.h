// The matrices of Winograd's minimal filtering F(M×M, 3×3) (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016), for M = 2 (interpolation points 0, ±1, ∞) and M = 4
// (0, ±1, ±2, ∞): a tile of M × M outputs from N × N = (M + 2)² inputs is
// Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A. Each matrix is applied to one row or column of N (or M) values,
// written out so that no product by 0 or 1 is left to the compiler (it may not drop x · 0 for
// floats): `input` is Bᵀ, `output` Aᵀ, `gradient` A (the output gradient's transform in the weight
// gradient, the transpose of the output transform), and kG the filter transform G, used on scalars.
// The values are anything with + - and a product by a float: a float or a GCC vector of floats.
#pragma once

#include "src/common/float_lanes.h"

namespace torchfocal::models::winograd {

template <int M>
struct Transform;

template <>
struct Transform<2> {
  static constexpr int kIn = 4;
  static constexpr float kG[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};

  // Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
  template <class V>
  static TORCHFOCAL_ALWAYS_INLINE void input(const V (&d)[4], V (&r)[4]) {
    r[0] = d[0] - d[2];
    r[1] = d[1] + d[2];
    r[2] = d[2] - d[1];
    r[3] = d[1] - d[3];
  }
  // Aᵀ = [1 1 1 0; 0 1 -1 -1]
  template <class V>
  static TORCHFOCAL_ALWAYS_INLINE void output(const V (&m)[4], V (&o)[2]) {
    o[0] = m[0] + m[1] + m[2];
    o[1] = m[1] - m[2] - m[3];
  }
  // A = [1 0; 1 1; 1 -1; 0 -1]
  template <class V>
  static TORCHFOCAL_ALWAYS_INLINE void gradient(const V (&y)[2], V (&s)[4]) {
    s[0] = y[0];
    s[1] = y[0] + y[1];
    s[2] = y[0] - y[1];
    s[3] = -y[1];
  }
};

template <>
struct Transform<4> {
  static constexpr int kIn = 6;
  static constexpr float kG[6][3] = {
      {0.25f, 0, 0},
      {-1.0f / 6, -1.0f / 6, -1.0f / 6},
      {-1.0f / 6, 1.0f / 6, -1.0f / 6},
      {1.0f / 24, 1.0f / 12, 1.0f / 6},
      {1.0f / 24, -1.0f / 12, 1.0f / 6},
      {0, 0, 1},
  };

  // Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
  //       0 4 0 -5 0 1]
  template <class V>
  static TORCHFOCAL_ALWAYS_INLINE void input(const V (&d)[6], V (&r)[6]) {
    const V a = d[4] - d[2], b = d[3] - d[1];
    r[0] = d[0] * 4.0f - d[2] * 5.0f + d[4];
    r[1] = (d[3] + d[4]) - (d[1] + d[2]) * 4.0f;
    r[2] = (d[4] - d[3]) + (d[1] - d[2]) * 4.0f;
    r[3] = a + b * 2.0f;
    r[4] = a - b * 2.0f;
    r[5] = d[1] * 4.0f - d[3] * 5.0f + d[5];
  }
  // Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
  template <class V>
  static TORCHFOCAL_ALWAYS_INLINE void output(const V (&m)[6], V (&o)[4]) {
    const V p = m[1] + m[2], q = m[1] - m[2], s = m[3] + m[4], t = m[3] - m[4];
    o[0] = m[0] + p + s;
    o[1] = q + t * 2.0f;
    o[2] = p + s * 4.0f;
    o[3] = q + t * 8.0f + m[5];
  }
  // A = Aᵀ's transpose: [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1]
  template <class V>
  static TORCHFOCAL_ALWAYS_INLINE void gradient(const V (&y)[4], V (&s)[6]) {
    const V even = y[0] + y[2], odd = y[1] + y[3];
    const V even4 = y[0] + y[2] * 4.0f, odd4 = y[1] * 2.0f + y[3] * 8.0f;
    s[0] = y[0];
    s[1] = even + odd;
    s[2] = even - odd;
    s[3] = even4 + odd4;
    s[4] = even4 - odd4;
    s[5] = y[3];
  }
};

}  // namespace torchfocal::models::winograd
