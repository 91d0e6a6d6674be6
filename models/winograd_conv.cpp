#include "models/winograd_conv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "models/layers.h"
#include "src/common/cpu_features.h"
#include "src/common/float_lanes.h"
#include "src/common/torch_compat.h"

#ifdef TORCHFOCAL_X86_TARGETS
#include <immintrin.h>
#endif

namespace torchfocal::models {
// Named: the unity build joins this file's anonymous namespace with its neighbours'.
namespace winograd {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Tiles (2×2 outputs each) transformed and multiplied together: their 16 transformed inputs and
// outputs, 16 · kTiles · (C + K) floats, stay in the core's L1 and L2 caches.
constexpr int64_t kTiles = 16;
// Fewer output positions than this keep LibTorch's kernels (and no parallel region).
constexpr int64_t kMinPositions = 4096;

// The channel counts where these kernels beat oneDNN's on this project's CPU (bench/NOTES.md
// §31): at 16 the transforms' memory traffic outweighs the products they save (a ResNet-32 epoch
// no faster; 1.1× oneDNN's time with the input out of cache); from 128 the products' operands
// (16 · kTiles · C floats) leave the L2 cache (128: 1.0×; 256: 2.8×).
bool channels_fit(int64_t channels) { return channels >= 32 && channels <= 64; }

// Floats a vector on this CPU for these kernels, or 0 where they do not run.
int lanes() {
  if (cpu_has_avx512()) return 16;
  if (cpu_has_avx2_fma() && aten_cpu_capability() != CpuCap::kDefault) return 8;
  return 0;
}

// U[4a + b][i][o] = (G g Gᵀ)[a][b] for each 3×3 filter g from input channel i to output channel o:
// the weights in the Winograd domain, [16, in, out]. For the input gradient, each filter flipped
// in both axes and the channels swapped: the convolution of the output's gradient with those is
// the input's gradient.
torch::Tensor transform_weights(const torch::Tensor& weight, bool input_gradient) {
  const auto w = weight.detach().to(torch::kFloat32).contiguous();  // [K, C, 3, 3]
  const int64_t K = w.size(0), C = w.size(1);
  const int64_t in = input_gradient ? K : C, out = input_gradient ? C : K;
  auto U = torch::empty({16, in, out}, w.options());
  const float* wp = w.data_ptr<float>();
  float* up = U.data_ptr<float>();
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t c = 0; c < C; ++c) {
      float g[3][3];
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
          g[i][j] = input_gradient ? wp[(k * C + c) * 9 + (2 - i) * 3 + (2 - j)]
                                   : wp[(k * C + c) * 9 + i * 3 + j];
        }
      }
      // G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]: t = G g, then t Gᵀ.
      float t[4][3];
      for (int j = 0; j < 3; ++j) {
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      const int64_t i_ch = input_gradient ? k : c, o_ch = input_gradient ? c : k;
      for (int a = 0; a < 4; ++a) {
        const float u[4] = {t[a][0], 0.5f * (t[a][0] + t[a][1] + t[a][2]),
                            0.5f * (t[a][0] - t[a][1] + t[a][2]), t[a][2]};
        for (int b = 0; b < 4; ++b) up[((4 * a + b) * in + i_ch) * out + o_ch] = u[b];
      }
    }
  }
  return U;
}

// A thread's transformed tiles, on a cache line's boundary: the products' vector loads and stores
// then never span two lines (unaligned, a 64-channel convolution took 1.1× as long).
class Buffer {
 public:
  explicit Buffer(int64_t floats) : storage_(floats + 16) {}
  float* data() {
    const auto at = reinterpret_cast<std::uintptr_t>(storage_.data());
    return reinterpret_cast<float*>((at + 63) & ~std::uintptr_t{63});
  }

 private:
  std::vector<float> storage_;
};

struct Geometry {
  const float* x = nullptr;   // [N, H, W, C]
  const float* u = nullptr;   // [16, C, K]
  float* y = nullptr;         // [N, H, W, K]
  const float* dy = nullptr;  // [N, H, W, K]: the output's gradient, for the weight gradient
  int64_t n = 0, h = 0, w = 0, c = 0, k = 0;
  int64_t tile_rows = 0, tile_cols = 0;  // ⌈H / 2⌉, ⌈W / 2⌉
};

#ifdef TORCHFOCAL_X86_TARGETS
// m[t][k0, k0 + KB·16) = Σ_c v[t][c] · u[c][k0, …) for the tiles [t0, t0 + TB) of one of the 16
// positions: TB × KB accumulators, each product a broadcast of v and a multiply-add. Written in
// intrinsics: GCC 12 builds a uniform vector of the extension types lane by lane here, and keeps
// FloatLanes::splat's addition to zero.
template <int KB, int TB>
TORCHFOCAL_AVX512 void multiply16(const float* v, const float* u, float* m, int64_t C, int64_t K,
                                  int64_t t0, int64_t k0) {
  __m512 acc[TB][KB];
  for (int t = 0; t < TB; ++t) {
    for (int j = 0; j < KB; ++j) acc[t][j] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < C; ++c) {
    __m512 weights[KB];
    for (int j = 0; j < KB; ++j) weights[j] = _mm512_loadu_ps(u + c * K + k0 + j * 16);
    for (int t = 0; t < TB; ++t) {
      const __m512 value = _mm512_set1_ps(v[(t0 + t) * C + c]);
      for (int j = 0; j < KB; ++j) acc[t][j] = _mm512_fmadd_ps(value, weights[j], acc[t][j]);
    }
  }
  for (int t = 0; t < TB; ++t) {
    for (int j = 0; j < KB; ++j) _mm512_storeu_ps(m + (t0 + t) * K + k0 + j * 16, acc[t][j]);
  }
}

// The same at 8 lanes (AVX2).
template <int KB, int TB>
TORCHFOCAL_AVX2_FMA void multiply8(const float* v, const float* u, float* m, int64_t C, int64_t K,
                                   int64_t t0, int64_t k0) {
  __m256 acc[TB][KB];
  for (int t = 0; t < TB; ++t) {
    for (int j = 0; j < KB; ++j) acc[t][j] = _mm256_setzero_ps();
  }
  for (int64_t c = 0; c < C; ++c) {
    __m256 weights[KB];
    for (int j = 0; j < KB; ++j) weights[j] = _mm256_loadu_ps(u + c * K + k0 + j * 8);
    for (int t = 0; t < TB; ++t) {
      const __m256 value = _mm256_set1_ps(v[(t0 + t) * C + c]);
      for (int j = 0; j < KB; ++j) acc[t][j] = _mm256_fmadd_ps(value, weights[j], acc[t][j]);
    }
  }
  for (int t = 0; t < TB; ++t) {
    for (int j = 0; j < KB; ++j) _mm256_storeu_ps(m + (t0 + t) * K + k0 + j * 8, acc[t][j]);
  }
}

// The weight gradient's products: w[c][k0, k0 + KB·16) += Σ_t v[t][c] · m[t][k0, …) for the
// input channels [c0, c0 + CB) of one of the 16 positions, over T tiles: CB × KB accumulators
// loaded once, the sum over the tiles in registers.
template <int CB, int KB>
TORCHFOCAL_AVX512 void accumulate16(const float* v, const float* m, float* w, int64_t C, int64_t K,
                                    int64_t T, int64_t c0, int64_t k0) {
  __m512 acc[CB][KB];
  for (int i = 0; i < CB; ++i) {
    for (int j = 0; j < KB; ++j) acc[i][j] = _mm512_loadu_ps(w + (c0 + i) * K + k0 + j * 16);
  }
  for (int64_t t = 0; t < T; ++t) {
    __m512 grads[KB];
    for (int j = 0; j < KB; ++j) grads[j] = _mm512_loadu_ps(m + t * K + k0 + j * 16);
    for (int i = 0; i < CB; ++i) {
      const __m512 value = _mm512_set1_ps(v[t * C + c0 + i]);
      for (int j = 0; j < KB; ++j) acc[i][j] = _mm512_fmadd_ps(value, grads[j], acc[i][j]);
    }
  }
  for (int i = 0; i < CB; ++i) {
    for (int j = 0; j < KB; ++j) _mm512_storeu_ps(w + (c0 + i) * K + k0 + j * 16, acc[i][j]);
  }
}

// The same at 8 lanes (AVX2).
template <int CB, int KB>
TORCHFOCAL_AVX2_FMA void accumulate8(const float* v, const float* m, float* w, int64_t C, int64_t K,
                                     int64_t T, int64_t c0, int64_t k0) {
  __m256 acc[CB][KB];
  for (int i = 0; i < CB; ++i) {
    for (int j = 0; j < KB; ++j) acc[i][j] = _mm256_loadu_ps(w + (c0 + i) * K + k0 + j * 8);
  }
  for (int64_t t = 0; t < T; ++t) {
    __m256 grads[KB];
    for (int j = 0; j < KB; ++j) grads[j] = _mm256_loadu_ps(m + t * K + k0 + j * 8);
    for (int i = 0; i < CB; ++i) {
      const __m256 value = _mm256_set1_ps(v[t * C + c0 + i]);
      for (int j = 0; j < KB; ++j) acc[i][j] = _mm256_fmadd_ps(value, grads[j], acc[i][j]);
    }
  }
  for (int i = 0; i < CB; ++i) {
    for (int j = 0; j < KB; ++j) _mm256_storeu_ps(w + (c0 + i) * K + k0 + j * 8, acc[i][j]);
  }
}

// All of one position's w[C][K] over T tiles, CB input channels and KB vectors of output
// channels at a time.
template <int W, int CB, int KB>
TORCHFOCAL_ALWAYS_INLINE void accumulate_all(const float* v, const float* m, float* w, int64_t C,
                                             int64_t K, int64_t T) {
  for (int64_t c0 = 0; c0 < C; c0 += CB) {
    for (int64_t k0 = 0; k0 < K; k0 += KB * W) {
      if constexpr (W == 16) {
        accumulate16<CB, KB>(v, m, w, C, K, T, c0, k0);
      } else {
        accumulate8<CB, KB>(v, m, w, C, K, T, c0, k0);
      }
    }
  }
}

template <int W, int KB, int TB>
TORCHFOCAL_ALWAYS_INLINE void multiply(const float* v, const float* u, float* m, int64_t C,
                                       int64_t K, int64_t t0, int64_t k0) {
  if constexpr (W == 16) {
    multiply16<KB, TB>(v, u, m, C, K, t0, k0);
  } else {
    multiply8<KB, TB>(v, u, m, C, K, t0, k0);
  }
}

// All tiles [t0, t0 + T) of one position: KB vectors of output channels at a time, TB tiles.
template <int W, int KB, int TB>
TORCHFOCAL_ALWAYS_INLINE void multiply_all(const float* v, const float* u, float* m, int64_t C,
                                           int64_t K, int64_t T) {
  for (int64_t k0 = 0; k0 < K; k0 += KB * W) {
    int64_t t = 0;
    for (; t + TB <= T; t += TB) multiply<W, KB, TB>(v, u, m, C, K, t, k0);
    for (; t < T; ++t) multiply<W, KB, 1>(v, u, m, C, K, t, k0);
  }
}

// Where a tile is: its image and the top left of its 2×2 outputs. Tiles are numbered image by
// image, row by row, and a block steps through its own: one division a block, none a tile.
struct Tile {
  int64_t n = 0, row = 0, col = 0;
};

TORCHFOCAL_ALWAYS_INLINE Tile tile_at(const Geometry& g, int64_t id) {
  const int64_t per_image = g.tile_rows * g.tile_cols, in_image = id % per_image;
  return {id / per_image, 2 * (in_image / g.tile_cols), 2 * (in_image % g.tile_cols)};
}

TORCHFOCAL_ALWAYS_INLINE void advance(const Geometry& g, Tile& t) {
  t.col += 2;
  if (t.col >= g.w) {
    t.col = 0;
    t.row += 2;
    if (t.row >= g.h) {
      t.row = 0;
      ++t.n;
    }
  }
}

// The addresses of a tile's 4×4 input pixels, `zeros` for those outside the image (padding).
TORCHFOCAL_ALWAYS_INLINE void pixels(const Geometry& g, const Tile& tile, const float* zeros,
                                     const float* (&at)[4][4]) {
  const int64_t row = tile.row - 1, col = tile.col - 1;
  const float* image = g.x + tile.n * g.h * g.w * g.c;
  if (row >= 0 && row + 3 < g.h && col >= 0 && col + 3 < g.w) {
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) at[i][j] = image + ((row + i) * g.w + col + j) * g.c;
    }
    return;
  }
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      const int64_t yy = row + i, xx = col + j;
      at[i][j] = yy >= 0 && yy < g.h && xx >= 0 && xx < g.w ? image + (yy * g.w + xx) * g.c : zeros;
    }
  }
}

// The input transform V = Bᵀ d B of each 4×4 input block d of tiles [first, first + T) (numbered
// image by image, row by row; `zeros`, C of them, outside the image) into v[16][T][C].
template <int W>
TORCHFOCAL_ALWAYS_INLINE void input_transform(const Geometry& g, int64_t first, int64_t T, float* v,
                                              const float* zeros) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  const int64_t C = g.c;
  Tile tile = tile_at(g, first), ahead = tile;
  advance(g, ahead);
  advance(g, ahead);
  for (int64_t t = 0; t < T; ++t, advance(g, tile), advance(g, ahead)) {
    // The 16 pixels' addresses, the zero row for those outside the image: chosen without
    // branches, so that d stays in registers.
    const float* at[4][4];
    pixels(g, tile, zeros, at);
    // The columns that tile t + 2 reads first, into the cache while this one computes: the
    // activations come from memory, and the loads' misses were a third of this function's time.
    if (ahead.n < g.n) {
      const float* next[4][4];
      pixels(g, ahead, zeros, next);
      for (int i = 0; i < 4; ++i) {
        for (int64_t c = 0; c < C; c += 16) {
          __builtin_prefetch(next[i][2] + c);
          __builtin_prefetch(next[i][3] + c);
        }
      }
    }
    for (int64_t c = 0; c < C; c += W) {
      V d[4][4];
      for (int i = 0; i < 4; ++i) {
        for (int j = 0; j < 4; ++j) d[i][j] = L::load(at[i][j] + c);
      }
      V e[4][4];  // Bᵀ d, Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
      for (int j = 0; j < 4; ++j) {
        e[0][j] = d[0][j] - d[2][j];
        e[1][j] = d[1][j] + d[2][j];
        e[2][j] = d[2][j] - d[1][j];
        e[3][j] = d[1][j] - d[3][j];
      }
      float* out = v + t * C + c;
      const int64_t stride = T * C;  // from one position to the next
      for (int i = 0; i < 4; ++i) {
        L::store(out + (4 * i + 0) * stride, e[i][0] - e[i][2]);
        L::store(out + (4 * i + 1) * stride, e[i][1] + e[i][2]);
        L::store(out + (4 * i + 2) * stride, e[i][2] - e[i][1]);
        L::store(out + (4 * i + 3) * stride, e[i][1] - e[i][3]);
      }
    }
  }
}

// Tiles [first, first + T): the input transform into v[16][T][C], the products into m[16][T][K],
// the output transform Aᵀ M A into each 2×2 block of y.
template <int W>
TORCHFOCAL_ALWAYS_INLINE void tiles(const Geometry& g, int64_t first, int64_t T, float* v, float* m,
                                    const float* zeros) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  const int64_t C = g.c, K = g.k;
  input_transform<W>(g, first, T, v, zeros);
  for (int xi = 0; xi < 16; ++xi) {
    const float* vx = v + xi * T * C;
    const float* ux = g.u + xi * C * K;
    float* mx = m + xi * T * K;
    // Accumulators: 16 of the 32 AVX-512 registers, 8 of AVX2's 16.
    if (K % (2 * W) == 0) {
      multiply_all<W, 2, W == 16 ? 8 : 4>(vx, ux, mx, C, K, T);
    } else {
      multiply_all<W, 1, W == 16 ? 16 : 8>(vx, ux, mx, C, K, T);
    }
  }
  Tile tile = tile_at(g, first);
  for (int64_t t = 0; t < T; ++t, advance(g, tile)) {
    const int64_t row = tile.row, col = tile.col;
    float* image = g.y + tile.n * g.h * g.w * K;
    for (int64_t k = 0; k < K; k += W) {
      V a[4][4];
      for (int i = 0; i < 4; ++i) {
        for (int j = 0; j < 4; ++j) a[i][j] = L::load(m + ((4 * i + j) * T + t) * K + k);
      }
      V r[2][4];  // Aᵀ M, Aᵀ = [1 1 1 0; 0 1 -1 -1]
      for (int j = 0; j < 4; ++j) {
        r[0][j] = a[0][j] + a[1][j] + a[2][j];
        r[1][j] = a[1][j] - a[2][j] - a[3][j];
      }
      for (int i = 0; i < 2 && row + i < g.h; ++i) {
        float* at = image + ((row + i) * g.w + col) * K + k;
        L::store(at, r[i][0] + r[i][1] + r[i][2]);
        if (col + 1 < g.w) L::store(at + K, r[i][1] - r[i][2] - r[i][3]);
      }
    }
  }
}

// The output gradient's transform A δ Aᵀ of each 2×2 block δ of dy (zeros outside the image) of
// tiles [first, first + T) into m[16][T][K]: the transpose of the forward's output transform.
template <int W>
TORCHFOCAL_ALWAYS_INLINE void gradient_transform(const Geometry& g, int64_t first, int64_t T,
                                                 float* m, const float* zeros) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  const int64_t K = g.k;
  Tile tile = tile_at(g, first), ahead = tile;
  advance(g, ahead);
  advance(g, ahead);
  for (int64_t t = 0; t < T; ++t, advance(g, tile), advance(g, ahead)) {
    const int64_t row = tile.row, col = tile.col;
    const float* at = g.dy + ((tile.n * g.h + row) * g.w + col) * K;
    const bool down = row + 1 < g.h, right = col + 1 < g.w;
    const float* rows[2][2] = {
        {at, right ? at + K : zeros},
        {down ? at + g.w * K : zeros, down && right ? at + (g.w + 1) * K : zeros}};
    // Tile t + 2's gradients into the cache meanwhile: they come from memory, and their loads'
    // misses were most of this function's time.
    if (ahead.n < g.n) {
      const float* next = g.dy + ((ahead.n * g.h + ahead.row) * g.w + ahead.col) * K;
      for (int64_t k = 0; k < 2 * K; k += 16) {
        __builtin_prefetch(next + k);
        if (ahead.row + 1 < g.h) __builtin_prefetch(next + g.w * K + k);
      }
    }
    for (int64_t k = 0; k < K; k += W) {
      V d[2][2];
      for (int i = 0; i < 2; ++i) {
        for (int j = 0; j < 2; ++j) d[i][j] = L::load(rows[i][j] + k);
      }
      V s[4][2];  // A δ, A = [1 0; 1 1; 1 -1; 0 -1]
      for (int j = 0; j < 2; ++j) {
        s[0][j] = d[0][j];
        s[1][j] = d[0][j] + d[1][j];
        s[2][j] = d[0][j] - d[1][j];
        s[3][j] = -d[1][j];
      }
      float* out = m + t * K + k;
      const int64_t stride = T * K;
      for (int i = 0; i < 4; ++i) {
        L::store(out + (4 * i + 0) * stride, s[i][0]);
        L::store(out + (4 * i + 1) * stride, s[i][0] + s[i][1]);
        L::store(out + (4 * i + 2) * stride, s[i][0] - s[i][1]);
        L::store(out + (4 * i + 3) * stride, -s[i][1]);
      }
    }
  }
}

// Tiles [first, first + T) of the weight gradient: both transforms, then the Winograd-domain
// gradient w[16][C][K] += Σ_t v[t][c] · m[t][k] at each position.
template <int W>
TORCHFOCAL_ALWAYS_INLINE void weight_tiles(const Geometry& g, int64_t first, int64_t T, float* v,
                                           float* m, float* w, const float* zeros) {
  const int64_t C = g.c, K = g.k;
  input_transform<W>(g, first, T, v, zeros);
  gradient_transform<W>(g, first, T, m, zeros);
  for (int p = 0; p < 16; ++p) {
    const float* vp = v + p * T * C;
    const float* mp = m + p * T * K;
    float* wp = w + p * C * K;
    // Accumulators: 16 of the 32 AVX-512 registers, 8 of AVX2's 16.
    if constexpr (W == 16) {
      if (K % 64 == 0) {
        accumulate_all<W, 4, 4>(vp, mp, wp, C, K, T);
      } else if (K % 32 == 0) {
        accumulate_all<W, 8, 2>(vp, mp, wp, C, K, T);
      } else {
        accumulate_all<W, 16, 1>(vp, mp, wp, C, K, T);
      }
    } else {
      if (K % 16 == 0) {
        accumulate_all<W, 4, 2>(vp, mp, wp, C, K, T);
      } else {
        accumulate_all<W, 8, 1>(vp, mp, wp, C, K, T);
      }
    }
  }
}

TORCHFOCAL_AVX2_FMA void weight_tiles_avx2(const Geometry& g, int64_t first, int64_t T, float* v,
                                           float* m, float* w, const float* zeros) {
  weight_tiles<8>(g, first, T, v, m, w, zeros);
}

TORCHFOCAL_AVX512 void weight_tiles_avx512(const Geometry& g, int64_t first, int64_t T, float* v,
                                           float* m, float* w, const float* zeros) {
  weight_tiles<16>(g, first, T, v, m, w, zeros);
}

TORCHFOCAL_AVX2_FMA void tiles_avx2(const Geometry& g, int64_t first, int64_t T, float* v, float* m,
                                    const float* zeros) {
  tiles<8>(g, first, T, v, m, zeros);
}

TORCHFOCAL_AVX512 void tiles_avx512(const Geometry& g, int64_t first, int64_t T, float* v, float* m,
                                    const float* zeros) {
  tiles<16>(g, first, T, v, m, zeros);
}
#endif

// The convolution of channels-last x [N, C, H, W] with transformed weights u [16, C, K]: blocks of
// kTiles tiles shared out among the threads; every output from its own tile, so the result does
// not depend on the thread count.
torch::Tensor convolve(const torch::Tensor& x, const torch::Tensor& u) {
  if (lanes() == 0) throw std::invalid_argument("winograd conv: this CPU has no AVX2 or AVX-512");
  const auto in = x.contiguous(torch::MemoryFormat::ChannelsLast);
  Geometry g;
  g.n = in.size(0);
  g.c = in.size(1);
  g.h = in.size(2);
  g.w = in.size(3);
  g.k = u.size(2);
  g.tile_rows = (g.h + 1) / 2;
  g.tile_cols = (g.w + 1) / 2;
  auto y = torch::empty({g.n, g.k, g.h, g.w},
                        in.options().memory_format(torch::MemoryFormat::ChannelsLast));
  g.x = in.data_ptr<float>();
  g.u = u.data_ptr<float>();
  g.y = y.data_ptr<float>();
  const int64_t tiles = g.n * g.tile_rows * g.tile_cols;
  const int64_t blocks = (tiles + kTiles - 1) / kTiles;
#ifdef TORCHFOCAL_X86_TARGETS
  const auto kernel = lanes() == 16 ? tiles_avx512 : tiles_avx2;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    Buffer v(16 * kTiles * g.c), m(16 * kTiles * g.k);
    std::vector<float> zeros(g.c);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * kTiles;
      kernel(g, first, std::min(kTiles, tiles - first), v.data(), m.data(), zeros.data());
    }
  });
#else
  (void)blocks;
  throw std::logic_error("winograd conv: no vector kernels in this build");
#endif
  return y;
}

// The weight gradient's blocks of tiles (their transforms, 16 · kWeightTiles · (C + K) floats, and
// the Winograd-domain gradient stay in the core's L2 cache), and its chunks: each chunk's tiles
// summed into a gradient of its own, the chunks' gradients then added in order, so that the
// result does not depend on the thread count. The number of chunks depends on the size only.
constexpr int64_t kWeightTiles = 32;
constexpr int64_t kChunkTiles = 512;
constexpr int64_t kMaxChunks = 16;

// dL/dg = Gᵀ (Σ_tiles V ⊙ A δ Aᵀ) G for each filter g: the transpose of the forward's map from g
// to the output. x [N, C, H, W] and dy [N, K, H, W] channels-last; returns [K, C, 3, 3].
torch::Tensor weight_gradient(const torch::Tensor& x, const torch::Tensor& dy) {
  if (lanes() == 0) throw std::invalid_argument("winograd conv: this CPU has no AVX2 or AVX-512");
  const auto in = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const auto grad = dy.contiguous(torch::MemoryFormat::ChannelsLast);
  Geometry g;
  g.n = in.size(0);
  g.c = in.size(1);
  g.h = in.size(2);
  g.w = in.size(3);
  g.k = grad.size(1);
  g.tile_rows = (g.h + 1) / 2;
  g.tile_cols = (g.w + 1) / 2;
  g.x = in.data_ptr<float>();
  g.dy = grad.data_ptr<float>();
  const int64_t C = g.c, K = g.k, size = 16 * C * K;
  const int64_t tiles = g.n * g.tile_rows * g.tile_cols;
  const int64_t chunks =
      std::clamp((tiles + kChunkTiles - 1) / kChunkTiles, int64_t{1}, kMaxChunks);
  const int64_t per_chunk = (tiles + chunks - 1) / chunks;
  auto sums = torch::zeros({chunks, size}, in.options());
  float* const s = sums.data_ptr<float>();
#ifdef TORCHFOCAL_X86_TARGETS
  const auto kernel = lanes() == 16 ? weight_tiles_avx512 : weight_tiles_avx2;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    Buffer v(16 * kWeightTiles * C), m(16 * kWeightTiles * K);
    std::vector<float> zeros(std::max(C, K));
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t last = std::min(tiles, (chunk + 1) * per_chunk);
      for (int64_t first = chunk * per_chunk; first < last; first += kWeightTiles) {
        kernel(g, first, std::min(kWeightTiles, last - first), v.data(), m.data(), s + chunk * size,
               zeros.data());
      }
    }
  });
#else
  throw std::logic_error("winograd conv: no vector kernels in this build");
#endif
  for (int64_t chunk = 1; chunk < chunks; ++chunk) {
    for (int64_t i = 0; i < size; ++i) s[i] += s[chunk * size + i];
  }
  // Gᵀ Ŵ G for each channel pair, Ŵ[a][b] = s[(4a + b) C K + c K + k]; Gᵀ's rows are
  // [1 ½ ½ 0], [0 ½ -½ 0], [0 ½ ½ 1].
  auto dw = torch::empty({K, C, 3, 3}, in.options());
  float* out = dw.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t k = 0; k < K; ++k) {
      float t[3][4];
      for (int b = 0; b < 4; ++b) {
        const float w0 = s[(0 + b) * C * K + c * K + k], w1 = s[(4 + b) * C * K + c * K + k];
        const float w2 = s[(8 + b) * C * K + c * K + k], w3 = s[(12 + b) * C * K + c * K + k];
        t[0][b] = w0 + 0.5f * (w1 + w2);
        t[1][b] = 0.5f * (w1 - w2);
        t[2][b] = 0.5f * (w1 + w2) + w3;
      }
      float* f = out + (k * C + c) * 9;
      for (int i = 0; i < 3; ++i) {
        f[3 * i + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
        f[3 * i + 1] = 0.5f * (t[i][1] - t[i][2]);
        f[3 * i + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
  }
  return dw;
}

struct WinogradConvFunction : torch::autograd::Function<WinogradConvFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    return convolve(x, transform_weights(weight, /*input_gradient=*/false));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto dy = grads[0].contiguous(torch::MemoryFormat::ChannelsLast);
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = convolve(dy, transform_weights(weight, /*input_gradient=*/true));
    }
    if (ctx->needs_input_grad(1)) {
      dw = weight_gradient(x, dy).contiguous(weight.suggest_memory_format());
    }
    return {dx, dw};
  }
};

}  // namespace winograd

bool winograd_conv_applies(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  const auto& o = conv.options;
  const int w = winograd::lanes();
  const auto& weight = conv.weight;
  return w > 0 && x.defined() && x.layout() == torch::kStrided && x.is_cpu() &&
         x.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
         x.is_contiguous(torch::MemoryFormat::ChannelsLast) && weight.defined() &&
         weight.is_cpu() && weight.scalar_type() == torch::kFloat32 && (*o.kernel_size())[0] == 3 &&
         (*o.kernel_size())[1] == 3 && (*o.stride())[0] == 1 && (*o.stride())[1] == 1 &&
         (*o.dilation())[0] == 1 && (*o.dilation())[1] == 1 && o.groups() == 1 && !o.bias() &&
         !o.transposed() && symmetric_padding(o) == 1 && zero_padding(o) &&
         o.in_channels() % w == 0 && o.out_channels() % w == 0 &&
         winograd::channels_fit(o.in_channels()) && winograd::channels_fit(o.out_channels()) &&
         x.size(1) == o.in_channels() &&
         x.size(0) * x.size(2) * x.size(3) >= winograd::kMinPositions &&
         !compat::cpu_autocast_enabled();
}

torch::Tensor winograd_conv3x3(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!torch::GradMode::is_enabled() || (!x.requires_grad() && !weight.requires_grad())) {
    return winograd::convolve(x, winograd::transform_weights(weight, false));
  }
  return winograd::WinogradConvFunction::apply(x, weight);
}

torch::Tensor conv2d_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  if (winograd_conv_applies(conv, x)) return winograd_conv3x3(x, conv.weight);
  return conv.forward(x);
}

}  // namespace torchfocal::models
