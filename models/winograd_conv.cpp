#include "models/winograd_conv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/layers.h"
#include "models/winograd_transforms.h"
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

// Tiles transformed and multiplied together: their N² transformed inputs and outputs,
// N² · kTiles · (C + K) floats, stay in the core's L2 cache.
constexpr int64_t kTiles = 16;
// Fewer output positions than this keep LibTorch's kernels (and no parallel region).
constexpr int64_t kMinPositions = 4096;

// The channel counts where these kernels beat oneDNN's on this project's CPU (bench/NOTES.md
// §33): from 128 the weight gradient's sums (N² · C · K floats a chunk) outgrow the L2 cache, and
// a convolution's forward and gradients take 1.09× oneDNN's time (256: 1.11×).
bool channels_fit(int64_t channels) { return channels >= 16 && channels <= 64; }

// Floats a vector on this CPU for these kernels, or 0 where they do not run.
int lanes() {
  if (cpu_has_avx512()) return 16;
  if (cpu_has_avx2_fma() && aten_cpu_capability() != CpuCap::kDefault) return 8;
  return 0;
}

// G ⊗ G, [N², 9]: (G g Gᵀ)[a][b] = Σ_ij G[a][i] G[b][j] g[i][j], so that the filter transform of
// all the channel pairs is one matrix product with their 9 taps, and the weight gradient's
// Gᵀ Ŵ G one product with its transpose.
template <int M>
torch::Tensor filter_transform() {
  constexpr int N = Transform<M>::kIn;
  // Built once (in double, then rounded); the tensor wraps it without a copy and never writes.
  static const auto table = [] {
    const auto& G = Transform<M>::kG;
    std::array<float, N * N * 9> t{};
    for (int p = 0; p < N * N; ++p) {
      for (int q = 0; q < 9; ++q) {
        t[p * 9 + q] = static_cast<float>(static_cast<double>(G[p / N][q / 3]) *
                                          static_cast<double>(G[p % N][q % 3]));
      }
    }
    return t;
  }();
  return torch::from_blob(const_cast<float*>(table.data()), {N * N, 9}, torch::kFloat32);
}

// U[N a + b][i][o] = (G g Gᵀ)[a][b] for each 3×3 filter g from input channel i to output channel o:
// the weights in the Winograd domain, [N², in, out]. For the input gradient, each filter flipped
// in both axes and the channels swapped: the convolution of the output's gradient with those is
// the input's gradient.
template <int M>
torch::Tensor transform_weights(const torch::Tensor& weight, bool input_gradient) {
  constexpr int N = Transform<M>::kIn;
  auto w = weight.detach().to(torch::kFloat32);  // [K, C, 3, 3]
  if (input_gradient) w = w.flip({2, 3});
  const int64_t K = w.size(0), C = w.size(1);
  const auto u = torch::mm(filter_transform<M>(), w.reshape({K * C, 9}).t()).view({N * N, K, C});
  return input_gradient ? u.contiguous() : u.transpose(1, 2).contiguous();
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
  const float* u = nullptr;   // [N², C, K]
  float* y = nullptr;         // [N, H, W, K]
  const float* dy = nullptr;  // [N, H, W, K]: the output's gradient, for the weight gradient
  int64_t n = 0, h = 0, w = 0, c = 0, k = 0;
  int64_t tile_rows = 0, tile_cols = 0;  // ⌈H / M⌉, ⌈W / M⌉
};

Geometry geometry(const torch::Tensor& x, int64_t k, int m) {
  Geometry g;
  g.n = x.size(0);
  g.c = x.size(1);
  g.h = x.size(2);
  g.w = x.size(3);
  g.k = k;
  g.tile_rows = (g.h + m - 1) / m;
  g.tile_cols = (g.w + m - 1) / m;
  return g;
}

#ifdef TORCHFOCAL_X86_TARGETS
// m[t][k0, k0 + KB·16) = Σ_c v[t][c] · u[c][k0, …) for the tiles [t0, t0 + TB) of one of the
// N × N positions: TB × KB accumulators, each product a broadcast of v and a multiply-add. Written
// in intrinsics: GCC 12 builds a uniform vector of the extension types lane by lane here, and keeps
// FloatLanes::splat's addition to zero.
template <int KB, int TB, int FixedC>
TORCHFOCAL_AVX512 void multiply16(const float* v, const float* u, float* m, int64_t channels,
                                  int64_t K, int64_t t0, int64_t k0) {
  const int64_t C = FixedC > 0 ? FixedC : channels;
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
template <int KB, int TB, int FixedC>
TORCHFOCAL_AVX2_FMA void multiply8(const float* v, const float* u, float* m, int64_t channels,
                                   int64_t K, int64_t t0, int64_t k0) {
  const int64_t C = FixedC > 0 ? FixedC : channels;
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
// input channels [c0, c0 + CB) of one of the N × N positions, over T tiles: CB × KB accumulators
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

template <int W, int KB, int TB, int FixedC>
TORCHFOCAL_ALWAYS_INLINE void multiply(const float* v, const float* u, float* m, int64_t C,
                                       int64_t K, int64_t t0, int64_t k0) {
  if constexpr (W == 16) {
    multiply16<KB, TB, FixedC>(v, u, m, C, K, t0, k0);
  } else {
    multiply8<KB, TB, FixedC>(v, u, m, C, K, t0, k0);
  }
}

// All tiles [t0, t0 + T) of one position: KB vectors of output channels at a time, TB tiles.
template <int W, int KB, int TB, int FixedC>
TORCHFOCAL_ALWAYS_INLINE void multiply_all(const float* v, const float* u, float* m, int64_t C,
                                           int64_t K, int64_t T) {
  for (int64_t k0 = 0; k0 < K; k0 += KB * W) {
    int64_t t = 0;
    for (; t + TB <= T; t += TB) multiply<W, KB, TB, FixedC>(v, u, m, C, K, t, k0);
    for (; t < T; ++t) multiply<W, KB, 1, FixedC>(v, u, m, C, K, t, k0);
  }
}

// The same with the input channels a constant where they are ResNet's: the TB rows of v then lie
// at fixed offsets from one register (at a run-time count, the 16 row addresses outnumber the
// general registers, and their reloads made the products at 16 channels take twice as long).
template <int W, int KB, int TB>
TORCHFOCAL_ALWAYS_INLINE void multiply_position(const float* v, const float* u, float* m, int64_t C,
                                                int64_t K, int64_t T) {
  switch (C) {
    case 16:
      multiply_all<W, KB, TB, 16>(v, u, m, C, K, T);
      break;
    case 32:
      multiply_all<W, KB, TB, 32>(v, u, m, C, K, T);
      break;
    case 64:
      multiply_all<W, KB, TB, 64>(v, u, m, C, K, T);
      break;
    default:
      multiply_all<W, KB, TB, 0>(v, u, m, C, K, T);
  }
}

// Where a tile is: its image and the top left of its M × M outputs. Tiles are numbered image by
// image, row by row, and a block steps through its own: one division a block, none a tile.
struct Tile {
  int64_t n = 0, row = 0, col = 0;
};

template <int M>
TORCHFOCAL_ALWAYS_INLINE Tile tile_at(const Geometry& g, int64_t id) {
  const int64_t per_image = g.tile_rows * g.tile_cols, in_image = id % per_image;
  return {id / per_image, M * (in_image / g.tile_cols), M * (in_image % g.tile_cols)};
}

template <int M>
TORCHFOCAL_ALWAYS_INLINE void advance(const Geometry& g, Tile& t) {
  t.col += M;
  if (t.col >= g.w) {
    t.col = 0;
    t.row += M;
    if (t.row >= g.h) {
      t.row = 0;
      ++t.n;
    }
  }
}

// The addresses of a tile's N × N input pixels, `zeros` for those outside the image (padding).
template <int M>
TORCHFOCAL_ALWAYS_INLINE void pixels(const Geometry& g, const Tile& tile, const float* zeros,
                                     const float* (&at)[M + 2][M + 2]) {
  constexpr int N = M + 2;
  const int64_t row = tile.row - 1, col = tile.col - 1;
  const float* image = g.x + tile.n * g.h * g.w * g.c;
  if (row >= 0 && row + N <= g.h && col >= 0 && col + N <= g.w) {
    for (int i = 0; i < N; ++i) {
      for (int j = 0; j < N; ++j) at[i][j] = image + ((row + i) * g.w + col + j) * g.c;
    }
    return;
  }
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j < N; ++j) {
      const int64_t yy = row + i, xx = col + j;
      at[i][j] = yy >= 0 && yy < g.h && xx >= 0 && xx < g.w ? image + (yy * g.w + xx) * g.c : zeros;
    }
  }
}

// The input transform V = Bᵀ d B of each N × N input block d of tiles [first, first + T) into
// v[N²][T][C]: along the columns, then the rows.
template <int W, int M>
TORCHFOCAL_ALWAYS_INLINE void input_transform(const Geometry& g, int64_t first, int64_t T, float* v,
                                              const float* zeros) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  constexpr int N = M + 2;
  const int64_t C = g.c;
  Tile tile = tile_at<M>(g, first), ahead = tile;
  advance<M>(g, ahead);
  advance<M>(g, ahead);
  for (int64_t t = 0; t < T; ++t, advance<M>(g, tile), advance<M>(g, ahead)) {
    const float* at[N][N];
    pixels<M>(g, tile, zeros, at);
    // The columns that tile t + 2 reads first (those tile t + 1 does not), into the cache while
    // this one computes: the activations come from memory, and the loads' misses were a third of
    // this function's time.
    if (ahead.n < g.n) {
      const float* next[N][N];
      pixels<M>(g, ahead, zeros, next);
      for (int i = 0; i < N; ++i) {
        for (int j = N - M; j < N; ++j) {
          for (int64_t c = 0; c < C; c += 16) __builtin_prefetch(next[i][j] + c);
        }
      }
    }
    for (int64_t c = 0; c < C; c += W) {
      V e[N][N];  // Bᵀ d
      for (int j = 0; j < N; ++j) {
        V d[N], r[N];
        for (int i = 0; i < N; ++i) d[i] = L::load(at[i][j] + c);
        Transform<M>::input(d, r);
        for (int i = 0; i < N; ++i) e[i][j] = r[i];
      }
      float* out = v + t * C + c;
      const int64_t stride = T * C;  // from one position to the next
      for (int i = 0; i < N; ++i) {
        V r[N];
        Transform<M>::input(e[i], r);
        for (int j = 0; j < N; ++j) L::store(out + (N * i + j) * stride, r[j]);
      }
    }
  }
}

// Tiles [first, first + T): the input transform into v[N²][T][C], the products into
// m[N²][T][K], the output transform Aᵀ M A into each M × M block of y.
template <int W, int M>
TORCHFOCAL_ALWAYS_INLINE void tiles(const Geometry& g, int64_t first, int64_t T, float* v, float* m,
                                    const float* zeros) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  constexpr int N = M + 2;
  const int64_t C = g.c, K = g.k;
  input_transform<W, M>(g, first, T, v, zeros);
  for (int xi = 0; xi < N * N; ++xi) {
    const float* vx = v + xi * T * C;
    const float* ux = g.u + xi * C * K;
    float* mx = m + xi * T * K;
    // Accumulators: 16 of the 32 AVX-512 registers, 8 of AVX2's 16.
    if (K % (2 * W) == 0) {
      multiply_position<W, 2, W == 16 ? 8 : 4>(vx, ux, mx, C, K, T);
    } else {
      multiply_position<W, 1, W == 16 ? 16 : 8>(vx, ux, mx, C, K, T);
    }
  }
  Tile tile = tile_at<M>(g, first);
  for (int64_t t = 0; t < T; ++t, advance<M>(g, tile)) {
    float* image = g.y + tile.n * g.h * g.w * K;
    const int64_t rows = std::min<int64_t>(M, g.h - tile.row);
    const int64_t cols = std::min<int64_t>(M, g.w - tile.col);
    for (int64_t k = 0; k < K; k += W) {
      V r[M][N];  // Aᵀ M
      for (int j = 0; j < N; ++j) {
        V a[N], o[M];
        for (int i = 0; i < N; ++i) a[i] = L::load(m + ((N * i + j) * T + t) * K + k);
        Transform<M>::output(a, o);
        for (int i = 0; i < M; ++i) r[i][j] = o[i];
      }
      for (int64_t i = 0; i < rows; ++i) {
        V o[M];
        Transform<M>::output(r[i], o);
        float* at = image + ((tile.row + i) * g.w + tile.col) * K + k;
        for (int64_t j = 0; j < cols; ++j) L::store(at + j * K, o[j]);
      }
    }
  }
}

// The output gradient's transform A δ Aᵀ of each M × M block δ of dy (zeros outside the image) of
// tiles [first, first + T) into m[N²][T][K]: the transpose of the forward's output transform.
template <int W, int M>
TORCHFOCAL_ALWAYS_INLINE void gradient_transform(const Geometry& g, int64_t first, int64_t T,
                                                 float* m, const float* zeros) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  constexpr int N = M + 2;
  const int64_t K = g.k;
  Tile tile = tile_at<M>(g, first), ahead = tile;
  advance<M>(g, ahead);
  advance<M>(g, ahead);
  for (int64_t t = 0; t < T; ++t, advance<M>(g, tile), advance<M>(g, ahead)) {
    const float* image = g.dy + tile.n * g.h * g.w * K;
    const float* at[M][M];
    for (int i = 0; i < M; ++i) {
      for (int j = 0; j < M; ++j) {
        const bool inside = tile.row + i < g.h && tile.col + j < g.w;
        at[i][j] = inside ? image + ((tile.row + i) * g.w + tile.col + j) * K : zeros;
      }
    }
    // Tile t + 2's gradients into the cache meanwhile: they come from memory, and their loads'
    // misses were most of this function's time.
    if (ahead.n < g.n) {
      const float* next = g.dy + ((ahead.n * g.h + ahead.row) * g.w + ahead.col) * K;
      for (int i = 0; i < M && ahead.row + i < g.h; ++i) {
        for (int64_t k = 0; k < M * K; k += 16) __builtin_prefetch(next + i * g.w * K + k);
      }
    }
    for (int64_t k = 0; k < K; k += W) {
      V s[N][M];  // A δ
      for (int j = 0; j < M; ++j) {
        V d[M], r[N];
        for (int i = 0; i < M; ++i) d[i] = L::load(at[i][j] + k);
        Transform<M>::gradient(d, r);
        for (int i = 0; i < N; ++i) s[i][j] = r[i];
      }
      float* out = m + t * K + k;
      const int64_t stride = T * K;
      for (int i = 0; i < N; ++i) {
        V r[N];
        Transform<M>::gradient(s[i], r);
        for (int j = 0; j < N; ++j) L::store(out + (N * i + j) * stride, r[j]);
      }
    }
  }
}

// Tiles [first, first + T) of the weight gradient: both transforms, then the Winograd-domain
// gradient w[N²][C][K] += Σ_t v[t][c] · m[t][k] at each position.
template <int W, int M>
TORCHFOCAL_ALWAYS_INLINE void weight_tiles(const Geometry& g, int64_t first, int64_t T, float* v,
                                           float* m, float* w, const float* zeros) {
  constexpr int N = M + 2;
  const int64_t C = g.c, K = g.k;
  input_transform<W, M>(g, first, T, v, zeros);
  gradient_transform<W, M>(g, first, T, m, zeros);
  for (int p = 0; p < N * N; ++p) {
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

template <int M>
TORCHFOCAL_AVX2_FMA void tiles_avx2(const Geometry& g, int64_t first, int64_t T, float* v, float* m,
                                    const float* zeros) {
  tiles<8, M>(g, first, T, v, m, zeros);
}

template <int M>
TORCHFOCAL_AVX512 void tiles_avx512(const Geometry& g, int64_t first, int64_t T, float* v, float* m,
                                    const float* zeros) {
  tiles<16, M>(g, first, T, v, m, zeros);
}

template <int M>
TORCHFOCAL_AVX2_FMA void weight_tiles_avx2(const Geometry& g, int64_t first, int64_t T, float* v,
                                           float* m, float* w, const float* zeros) {
  weight_tiles<8, M>(g, first, T, v, m, w, zeros);
}

template <int M>
TORCHFOCAL_AVX512 void weight_tiles_avx512(const Geometry& g, int64_t first, int64_t T, float* v,
                                           float* m, float* w, const float* zeros) {
  weight_tiles<16, M>(g, first, T, v, m, w, zeros);
}
#endif

// The convolution of channels-last x [N, C, H, W] with weights w [K, C, 3, 3] (or, for the input
// gradient, the flipped and transposed ones: then x is the output's gradient and K the weight's
// C) in tiles of M × M outputs: blocks of kTiles tiles shared out among the threads; every output
// from its own tile, so the result does not depend on the thread count.
template <int M>
torch::Tensor convolve(const torch::Tensor& x, const torch::Tensor& weight, bool input_gradient) {
  constexpr int N = M + 2;
  const auto in = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor u = transform_weights<M>(weight, input_gradient);
  Geometry g = geometry(in, u.size(2), M);
  auto y = torch::empty({g.n, g.k, g.h, g.w},
                        in.options().memory_format(torch::MemoryFormat::ChannelsLast));
  g.x = in.data_ptr<float>();
  g.u = u.data_ptr<float>();
  g.y = y.data_ptr<float>();
  const int64_t tiles = g.n * g.tile_rows * g.tile_cols;
  const int64_t blocks = (tiles + kTiles - 1) / kTiles;
#ifdef TORCHFOCAL_X86_TARGETS
  const auto kernel = lanes() == 16 ? tiles_avx512<M> : tiles_avx2<M>;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    Buffer v(N * N * kTiles * g.c), m(N * N * kTiles * g.k);
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

// The weight gradient's blocks of tiles (their transforms, N² · kWeightTiles · (C + K) floats,
// and the Winograd-domain gradient stay in the core's L2 cache), and its chunks: each chunk's
// tiles summed into a gradient of its own, the chunks' gradients then added in order, so that the
// result does not depend on the thread count. The number of chunks depends on the size only: one
// for every 128 tiles, at most 8 (their sums, 8 · N² · C · K floats, are zeroed and added).
constexpr int64_t kWeightTiles = 16;
constexpr int64_t kChunkTiles = 128;
constexpr int64_t kMaxChunks = 8;

// dL/dg = Gᵀ (Σ_tiles V ⊙ A δ Aᵀ) G for each filter g: the transpose of the forward's map from g
// to the output. x [N, C, H, W] and dy [N, K, H, W] channels-last; returns [K, C, 3, 3].
template <int M>
torch::Tensor weight_gradient(const torch::Tensor& x, const torch::Tensor& dy) {
  constexpr int N = M + 2;
  const auto in = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const auto grad = dy.contiguous(torch::MemoryFormat::ChannelsLast);
  Geometry g = geometry(in, grad.size(1), M);
  g.x = in.data_ptr<float>();
  g.dy = grad.data_ptr<float>();
  const int64_t C = g.c, K = g.k, size = N * N * C * K;
  const int64_t tiles = g.n * g.tile_rows * g.tile_cols;
  const int64_t chunks = std::clamp(tiles / kChunkTiles, int64_t{1}, kMaxChunks);
  const int64_t per_chunk = (tiles + chunks - 1) / chunks;
  auto sums = torch::zeros({chunks, size}, in.options());
#ifdef TORCHFOCAL_X86_TARGETS
  const auto kernel = lanes() == 16 ? weight_tiles_avx512<M> : weight_tiles_avx2<M>;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    Buffer v(N * N * kWeightTiles * C), m(N * N * kWeightTiles * K);
    std::vector<float> zeros(std::max(C, K));
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t last = std::min(tiles, (chunk + 1) * per_chunk);
      for (int64_t first = chunk * per_chunk; first < last; first += kWeightTiles) {
        kernel(g, first, std::min(kWeightTiles, last - first), v.data(), m.data(),
               sums.data_ptr<float>() + chunk * size, zeros.data());
      }
    }
  });
#else
  throw std::logic_error("winograd conv: no vector kernels in this build");
#endif
  // Ŵ: the chunks' sums added in order, element by element; then Gᵀ Ŵ G for each channel pair.
  float* const w = sums.data_ptr<float>();
  at::parallel_for(0, size, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = 1; chunk < chunks; ++chunk) {
      const float* part = w + chunk * size;
      for (int64_t i = begin; i < end; ++i) w[i] += part[i];
    }
  });
  const auto what = sums[0].view({N * N, C, K}).permute({2, 1, 0}).reshape({K * C, N * N});
  const auto dw = torch::mm(what, filter_transform<M>()).view({K, C, 3, 3});
  return dw;
}

torch::Tensor convolve_tiled(int tile, const torch::Tensor& x, const torch::Tensor& weight,
                             bool input_gradient) {
  if (lanes() == 0) throw std::invalid_argument("winograd conv: this CPU has no AVX2 or AVX-512");
  return tile == 4 ? convolve<4>(x, weight, input_gradient)
                   : convolve<2>(x, weight, input_gradient);
}

torch::Tensor weight_gradient_tiled(int tile, const torch::Tensor& x, const torch::Tensor& dy) {
  return tile == 4 ? weight_gradient<4>(x, dy) : weight_gradient<2>(x, dy);
}

struct WinogradConvFunction : torch::autograd::Function<WinogradConvFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, int64_t tile) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["tile"] = tile;
    return convolve_tiled(static_cast<int>(tile), x, weight, /*input_gradient=*/false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const int tile = static_cast<int>(ctx->saved_data["tile"].toInt());
    const auto dy = grads[0].contiguous(torch::MemoryFormat::ChannelsLast);
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = convolve_tiled(tile, dy, weight, /*input_gradient=*/true);
    if (ctx->needs_input_grad(1)) {
      dw = weight_gradient_tiled(tile, x, dy).contiguous(weight.suggest_memory_format());
    }
    return {dx, dw, torch::Tensor()};
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

int winograd_output_tile(int64_t height, int64_t width) {
  const auto tiles = [&](int64_t m) { return ((height + m - 1) / m) * ((width + m - 1) / m); };
  return 36 * tiles(4) < 16 * tiles(2) ? 4 : 2;
}

torch::Tensor winograd_conv3x3(const torch::Tensor& x, const torch::Tensor& weight,
                               int output_tile) {
  if (output_tile != 0 && output_tile != 2 && output_tile != 4) {
    throw std::invalid_argument("winograd conv: the output tile is 2 or 4, not " +
                                std::to_string(output_tile));
  }
  const int tile = output_tile != 0 ? output_tile : winograd_output_tile(x.size(2), x.size(3));
  if (!torch::GradMode::is_enabled() || (!x.requires_grad() && !weight.requires_grad())) {
    return winograd::convolve_tiled(tile, x, weight, /*input_gradient=*/false);
  }
  return winograd::WinogradConvFunction::apply(x, weight, int64_t{tile});
}

torch::Tensor conv2d_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  if (winograd_conv_applies(conv, x)) return winograd_conv3x3(x, conv.weight);
  return conv.forward(x);
}

}  // namespace torchfocal::models
