#include "models/single_channel_conv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "models/layers.h"
#include "src/common/cpu_features.h"
#include "src/common/float_lanes.h"
#include "src/common/torch_compat.h"

#ifdef TORCHFOCAL_X86_TARGETS
#include <immintrin.h>
#endif

namespace torchfocal::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kLanes = 8;        // floats in an AVX2 vector
constexpr int kBlockRows = 4;        // output rows a forward block keeps in registers together
constexpr int kBlockVectors = 2;     // and vectors of each of them
constexpr int64_t kGradImages = 16;  // images per partial weight gradient: a fixed split, so the
                                     // sum's order, and its bits, do not depend on the threads

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The sizes of one call. A "run" is one output row of all channels: wo × c values (channels-last).
struct Geometry {
  int64_t h, w, k, pad, c;
  int64_t ho, wo;
  int64_t run;       // wo × c
  int64_t run_pad;   // rounded up to whole vectors
  int64_t rep_row;   // one row of the repeated input: (w + 2 pad) × c values and a vector's slack
  int64_t rep_rows;  // padded input rows, and zero rows under a last partial block of rows

  // `lanes`: floats in the vectors of the forward kernel that runs (the gradients' are AVX2's).
  Geometry(int64_t h_, int64_t w_, int64_t k_, int64_t pad_, int64_t c_, int64_t lanes = kLanes)
      : h(h_), w(w_), k(k_), pad(pad_), c(c_) {
    ho = h + 2 * pad - k + 1;
    wo = w + 2 * pad - k + 1;
    run = wo * c;
    run_pad = round_up(run, kBlockVectors * lanes);
    // whole vectors of `lanes`, and a vector past a block's last tap (AVX-512's aligned reads)
    rep_row = round_up((w + 2 * pad) * c + (kBlockVectors + 1) * lanes, lanes);
    rep_rows = round_up(ho, kBlockRows) + k - 1;
  }
};

// A zeroed buffer for the repeated input, its start on a 64-byte boundary (AVX-512's aligned
// reads).
class AlignedRows {
 public:
  explicit AlignedRows(const Geometry& g) : store_(g.rep_rows * g.rep_row + 16, 0.0f) {}
  float* data() {
    const auto at = reinterpret_cast<std::uintptr_t>(store_.data());
    return store_.data() + (64 - at % 64) % 64 / sizeof(float);
  }

 private:
  std::vector<float> store_;
};

#ifdef TORCHFOCAL_X86_TARGETS

typedef float Vec __attribute__((vector_size(32)));
typedef float VecUnaligned __attribute__((vector_size(32), aligned(4)));

TORCHFOCAL_AVX2_FMA inline Vec load(const float* p) {
  return *reinterpret_cast<const VecUnaligned*>(p);
}
TORCHFOCAL_AVX2_FMA inline void store(float* p, Vec v) { *reinterpret_cast<VecUnaligned*>(p) = v; }

// rep[r][q] = the zero-padded image at row r, column q / c: every input value repeated c times,
// so that tap (kh, kw) of output run i is the run-long span rep[i + kh][kw · c ...]. Writes the
// image's own values only: the buffer starts zeroed, and its padding stays zero from image to
// image. For C = 6 four values make three vectors, by permutes, where a scalar loop spent as long
// as a third of the forward pass.
template <int C>
TORCHFOCAL_AVX2_FMA void repeat_input(const float* x, const Geometry& g, float* rep) {
  typedef int Lanes __attribute__((vector_size(32)));
  const int64_t c = C > 0 ? C : g.c;
  for (int64_t i = 0; i < g.h; ++i) {
    const float* xi = x + i * g.w;
    float* row = rep + (i + g.pad) * g.rep_row + g.pad * c;
    int64_t j = 0;
    if constexpr (C == 6) {
      for (; j + kLanes <= g.w; j += 4) {  // a whole vector read, four values used
        const Vec v = load(xi + j);
        store(row + j * 6, __builtin_shuffle(v, Lanes{0, 0, 0, 0, 0, 0, 1, 1}));
        store(row + j * 6 + 8, __builtin_shuffle(v, Lanes{1, 1, 1, 1, 2, 2, 2, 2}));
        store(row + j * 6 + 16, __builtin_shuffle(v, Lanes{2, 2, 3, 3, 3, 3, 3, 3}));
      }
    }
    for (; j < g.w; ++j) {
      for (int64_t k = 0; k < c; ++k) row[j * c + k] = xi[j];
    }
  }
}

// One image forward: out [ho][run] (channels-last) from its repeated input. `taps` [K·K][run_pad]
// holds tap t's weight of channel q % c at lane q; `bias_run` [run_pad] the bias the same way. A
// block of 4 output rows × 2 vectors keeps 8 sums in registers through the K·K taps: enough
// independent multiply-adds to cover their latency, and each tap's 2 weight vectors serve 4 rows.
// W floats a vector: inlined into one function per instruction set, below.
template <int W, int K, int C>
TORCHFOCAL_ALWAYS_INLINE void forward_image(const float* rep, const float* taps,
                                            const float* bias_run, const Geometry& g, float* out) {
  using L = FloatLanes<W>;
  using V = typename L::V;
  constexpr int R = kBlockRows, Q = kBlockVectors;
  const int64_t c = C > 0 ? C : g.c;
  for (int64_t i0 = 0; i0 < g.ho; i0 += R) {
    for (int64_t q = 0; q < g.run_pad; q += Q * W) {
      V a[R][Q];
      for (int v = 0; v < Q; ++v) {
        const V b = L::load(bias_run + q + v * W);
        for (int r = 0; r < R; ++r) a[r][v] = b;
      }
      for (int kh = 0; kh < K; ++kh) {
        const float* x[R];  // the block's rows: a tap is a fixed offset from each
        for (int r = 0; r < R; ++r) x[r] = rep + (i0 + kh + r) * g.rep_row + q;
        const float* t = taps + kh * K * g.run_pad + q;
#pragma GCC unroll 5
        for (int kw = 0; kw < K; ++kw) {
          V wv[Q];
          for (int v = 0; v < Q; ++v) wv[v] = L::load(t + kw * g.run_pad + v * W);
          for (int r = 0; r < R; ++r) {
            for (int v = 0; v < Q; ++v) a[r][v] += L::load(x[r] + kw * c + v * W) * wv[v];
          }
        }
      }
      for (int r = 0; r < R && i0 + r < g.ho; ++r) {
        for (int v = 0; v < Q; ++v) {
          const int64_t at = q + v * W;
          const int64_t valid = std::min<int64_t>(W, g.run - at);
          float* o = out + (i0 + r) * g.run + at;
          if (valid == W) {
            L::store(o, a[r][v]);
          } else if (valid > 0) {
            L::store_partial(o, a[r][v], valid);
          }
        }
      }
    }
  }
}

template <int K, int C>
TORCHFOCAL_AVX2_FMA void forward_image_avx2(const float* rep, const float* taps,
                                            const float* bias_run, const Geometry& g, float* out) {
  forward_image<8, K, C>(rep, taps, bias_run, g, out);
}

// The 16 floats from float `Shift` on of the aligned vectors a[0], a[1], ...: a[i] itself, or
// one valignd of two neighbours.
template <int Shift>
TORCHFOCAL_AVX512 TORCHFOCAL_ALWAYS_INLINE __m512 span16(const __m512i* a) {
  constexpr int i = Shift / 16, s = Shift % 16;
  if constexpr (s == 0) {
    return _mm512_castsi512_ps(a[i]);
  } else {
    return _mm512_castsi512_ps(_mm512_alignr_epi32(a[i + 1], a[i], s));
  }
}

// acc[v] += the span at Offset + 16 v × w[v], for each vector v of a block's row.
template <int Offset, int... V>
TORCHFOCAL_AVX512 TORCHFOCAL_ALWAYS_INLINE void tap16(const __m512i* a, const __m512* w,
                                                      __m512* acc,
                                                      std::integer_sequence<int, V...>) {
  ((acc[V] = _mm512_fmadd_ps(span16<Offset + V * 16>(a), w[V], acc[V])), ...);
}

// All K taps of one kernel row: tap kw's span starts kw · C floats in.
template <int C, int Q, int... KW>
TORCHFOCAL_AVX512 TORCHFOCAL_ALWAYS_INLINE void taps16(const __m512i* a, const __m512 (*w)[Q],
                                                       __m512* acc,
                                                       std::integer_sequence<int, KW...>) {
  (tap16<KW * C>(a, w[KW], acc, std::make_integer_sequence<int, Q>()), ...);
}

// AVX-512 forward, C known at compile time. A tap's span starts kw · C floats into the row, mostly
// off a 64-byte boundary, so an unaligned 64-byte load of it straddles two cache lines: the AVX2
// kernel is bound by such loads. Here each row of a block is read once in aligned vectors and
// each tap's span cut from two neighbours by valignd: for LeNet's 5 taps × 2 vectors, 4 aligned
// loads and 8 shifts instead of 10 straddling loads. `rep` is 64-byte aligned, rep_row a multiple
// of 16. Otherwise (C read at run time) the generic kernel.
template <int K, int C>
TORCHFOCAL_AVX512 void forward_image_avx512(const float* rep, const float* taps,
                                            const float* bias_run, const Geometry& g, float* out) {
  if constexpr (C == 0) {
    forward_image<16, K, C>(rep, taps, bias_run, g, out);
  } else {
    constexpr int W = 16, R = kBlockRows, Q = kBlockVectors;
    constexpr int A = Q + (K - 1) * C / W + 1;  // aligned vectors of a row a block reads
    for (int64_t i0 = 0; i0 < g.ho; i0 += R) {
      for (int64_t q = 0; q < g.run_pad; q += Q * W) {
        __m512 acc[R][Q];
        for (int v = 0; v < Q; ++v) {
          const __m512 b = _mm512_loadu_ps(bias_run + q + v * W);
          for (int r = 0; r < R; ++r) acc[r][v] = b;
        }
        for (int kh = 0; kh < K; ++kh) {
          __m512 w[K][Q];  // the kernel row's weights serve the block's R rows
          const float* t = taps + kh * K * g.run_pad + q;
          for (int kw = 0; kw < K; ++kw) {
            for (int v = 0; v < Q; ++v) w[kw][v] = _mm512_loadu_ps(t + kw * g.run_pad + v * W);
          }
          for (int r = 0; r < R; ++r) {
            const float* x = rep + (i0 + kh + r) * g.rep_row + q;
            __m512i a[A];
            for (int j = 0; j < A; ++j) a[j] = _mm512_load_si512(x + j * W);
            taps16<C, Q>(a, w, acc[r], std::make_integer_sequence<int, K>());
          }
        }
        for (int r = 0; r < R && i0 + r < g.ho; ++r) {
          for (int v = 0; v < Q; ++v) {
            const int64_t at = q + v * W;
            const int64_t valid = std::min<int64_t>(W, g.run - at);
            if (valid > 0) {
              const auto mask = static_cast<__mmask16>((1u << valid) - 1);
              _mm512_mask_storeu_ps(out + (i0 + r) * g.run + at, mask, acc[r][v]);
            }
          }
        }
      }
    }
  }
}

// One image's weight and bias gradients, added lane by lane into `sums` [K·K + 1][run_pad]: tap
// (kh, kw) at lane q gathers dy[i][q] · rep[i + kh][kw · c + q] over the output rows i, and the
// last row dy[i][q] alone (the bias). Each dy vector feeds the K taps of one kh, their sums held
// in registers over all rows. dy's rows are `dy_row` apart and readable to whole vectors (zero
// past the run).
template <int K, int C>
TORCHFOCAL_AVX2_FMA void weight_grad_image(const float* rep, const float* dy, int64_t dy_row,
                                           const Geometry& g, float* sums) {
  const int64_t c = C > 0 ? C : g.c;
  for (int64_t q = 0; q < g.run; q += kLanes) {
    Vec bias = {};
    for (int kh = 0; kh < K; ++kh) {
      Vec a[K] = {};
      for (int64_t i = 0; i < g.ho; ++i) {
        const Vec d = load(dy + i * dy_row + q);
        if (kh == 0) bias += d;
        const float* x = rep + (i + kh) * g.rep_row + q;
#pragma GCC unroll 5
        for (int kw = 0; kw < K; ++kw) a[kw] += load(x + kw * c) * d;
      }
      for (int kw = 0; kw < K; ++kw) {
        float* s = sums + (kh * K + kw) * g.run_pad + q;
        store(s, load(s) + a[kw]);
      }
    }
    float* s = sums + K * K * g.run_pad + q;
    store(s, load(s) + bias);
  }
}
#endif

// Calls f with K, and C where it is LeNet's 6 (0: read at run time), as compile-time constants:
// the taps' offsets become constants, and the loops need no registers to hold them.
template <typename F>
void with_sizes(int64_t k, int64_t c, const F& f) {
  const auto with_c = [&](auto kk) {
    if (c == 6) {
      f(kk, std::integral_constant<int, 6>());
    } else {
      f(kk, std::integral_constant<int, 0>());
    }
  };
  if (k == 3) {
    with_c(std::integral_constant<int, 3>());
  } else if (k == 5) {
    with_c(std::integral_constant<int, 5>());
  } else {
    throw std::invalid_argument("single-channel conv: kernel size " + std::to_string(k) +
                                " has no direct kernel");
  }
}

Geometry geometry_of(const torch::Tensor& x, const torch::Tensor& weight, int64_t padding,
                     int64_t lanes = kLanes) {
  return Geometry(x.size(2), x.size(3), weight.size(2), padding, weight.size(0), lanes);
}

// [K·K][run_pad]: at lane q, channel q % c's value of each tap (zero in the slack); then one more
// run of the bias the same way. Plain loops: a few LibTorch ops here cost 3% of an evaluation.
std::vector<float> weight_runs(const torch::Tensor& weight, const torch::Tensor& bias,
                               const Geometry& g) {
  const auto w = weight.contiguous();  // [c][1][k][k]: one input channel, so any layout
  const auto b = bias.contiguous();
  const float* ws = w.data_ptr<float>();
  const float* bs = b.data_ptr<float>();
  const int64_t taps = g.k * g.k;
  std::vector<float> runs((taps + 1) * g.run_pad, 0.0f);
  for (int64_t q = 0; q < g.run; ++q) {
    const int64_t channel = q % g.c;
    for (int64_t t = 0; t < taps; ++t) runs[t * g.run_pad + q] = ws[channel * taps + t];
    runs[taps * g.run_pad + q] = bs[channel];
  }
  return runs;
}

torch::Tensor conv_forward(const torch::Tensor& x_in, const torch::Tensor& weight,
                           const torch::Tensor& bias, int64_t padding) {
  const auto x = x_in.contiguous();  // one channel: channels-last is the same memory
  const bool wide = cpu_has_avx512();
  const Geometry g = geometry_of(x, weight, padding, wide ? 16 : kLanes);
  const int64_t n = x.size(0);
  auto out = torch::empty({n, g.c, g.ho, g.wo},
                          x.options().memory_format(torch::MemoryFormat::ChannelsLast));
  if (n == 0) return out;
  const auto runs = weight_runs(weight, bias, g);
  const float* taps = runs.data();
  const float* bias_run = taps + g.k * g.k * g.run_pad;
  const float* xs = x.data_ptr<float>();
  float* os = out.data_ptr<float>();
#ifdef TORCHFOCAL_X86_TARGETS
  with_sizes(g.k, g.c, [&](auto k, auto c) {
    constexpr int K = decltype(k)::value, C = decltype(c)::value;
    const auto image = wide ? forward_image_avx512<K, C> : forward_image_avx2<K, C>;
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      AlignedRows rep(g);
      for (int64_t b = begin; b < end; ++b) {
        repeat_input<C>(xs + b * g.h * g.w, g, rep.data());
        image(rep.data(), taps, bias_run, g, os + b * g.ho * g.run);
      }
    });
  });
#endif
  return out;
}

// {weight gradient in the weight's layout, bias gradient}
std::pair<torch::Tensor, torch::Tensor> conv_grads(const torch::Tensor& x_in,
                                                   const torch::Tensor& dy_in,
                                                   const torch::Tensor& weight, int64_t padding) {
  const auto x = x_in.contiguous();
  const Geometry g = geometry_of(x, weight, padding);
  const int64_t n = x.size(0);
  // dy's runs, read in place where they are whole vectors (LeNet's 28 × 6), else copied with
  // zero slack to whole vectors.
  auto dy = dy_in.contiguous(torch::MemoryFormat::ChannelsLast);
  int64_t dy_row = g.run;
  if (g.run % kLanes != 0) {
    dy = torch::constant_pad_nd(dy.permute({0, 2, 3, 1}).reshape({n, g.ho, g.run}),
                                {0, g.run_pad - g.run})
             .contiguous();
    dy_row = g.run_pad;
  }
  const int64_t blocks = (n + kGradImages - 1) / kGradImages;
  const int64_t rows = g.k * g.k + 1;  // the taps, then the bias
  std::vector<float> sums(blocks * rows * g.run_pad, 0.0f);
  const float* xs = x.data_ptr<float>();
  const float* ds = dy.data_ptr<float>();
  float* ss = sums.data();
#ifdef TORCHFOCAL_X86_TARGETS
  with_sizes(g.k, g.c, [&](auto k, auto c) {
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> rep(g.rep_rows * g.rep_row);
      for (int64_t block = begin; block < end; ++block) {
        for (int64_t b = block * kGradImages; b < std::min(n, (block + 1) * kGradImages); ++b) {
          repeat_input<decltype(c)::value>(xs + b * g.h * g.w, g, rep.data());
          weight_grad_image<decltype(k)::value, decltype(c)::value>(
              rep.data(), ds + b * g.ho * dy_row, dy_row, g, ss + block * rows * g.run_pad);
        }
      }
    });
  });
#endif
  // Blocks in order, then each channel's lanes (q % c). The weight's memory is [c][k][k] in any
  // layout (one input channel).
  auto weight_grad = torch::zeros_like(weight);
  auto bias_grad = torch::zeros({g.c}, weight.options());
  float* wg = weight_grad.data_ptr<float>();
  float* bg = bias_grad.data_ptr<float>();
  for (int64_t block = 0; block < blocks; ++block) {
    for (int64_t t = 0; t < rows; ++t) {
      const float* lanes = ss + (block * rows + t) * g.run_pad;
      float* into = t + 1 < rows ? wg + t : bg;
      const int64_t step = t + 1 < rows ? rows - 1 : 1;  // channel stride: K·K taps, or 1
      for (int64_t q = 0; q < g.run; ++q) into[(q % g.c) * step] += lanes[q];
    }
  }
  return {weight_grad, bias_grad};
}

struct SingleChannelConvFunction : public torch::autograd::Function<SingleChannelConvFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               int64_t padding) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["padding"] = padding;
    return conv_forward(x, weight, bias, padding);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& dy = grads[0];
    const int64_t padding = ctx->saved_data["padding"].toInt();
    auto [weight_grad, bias_grad] = conv_grads(saved[0], dy, saved[1], padding);
    return {torch::Tensor(), weight_grad, bias_grad, torch::Tensor()};
  }
};

}  // namespace

bool single_channel_conv_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  return cpu_has_avx2_fma() && x.is_cpu() && x.scalar_type() == torch::kFloat32 &&
         weight.is_cpu() && weight.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
         x.size(1) == 1 && weight.dim() == 4 && weight.size(1) == 1 &&
         weight.size(2) == weight.size(3) && (weight.size(2) == 3 || weight.size(2) == 5) &&
         !(x.requires_grad() && torch::GradMode::is_enabled()) && !compat::cpu_autocast_enabled();
}

torch::Tensor single_channel_conv2d(const torch::Tensor& x, const torch::Tensor& weight,
                                    const torch::Tensor& bias, int64_t padding) {
  if (!single_channel_conv_applies(x, weight) || !bias.defined() || bias.dim() != 1 ||
      bias.size(0) != weight.size(0) || bias.scalar_type() != torch::kFloat32 || padding < 0 ||
      x.size(2) + 2 * padding < weight.size(2) || x.size(3) + 2 * padding < weight.size(3)) {
    throw std::invalid_argument(
        "single-channel conv: no direct kernel for this input, weight, bias and padding");
  }
  // No graph to record where no gradient is wanted (evaluation, prediction).
  if (!torch::GradMode::is_enabled() || (!weight.requires_grad() && !bias.requires_grad())) {
    return conv_forward(x, weight, bias, padding);
  }
  return SingleChannelConvFunction::apply(x, weight, bias, padding);
}

torch::Tensor SingleChannelConv2dImpl::forward(const torch::Tensor& x) {
  const auto& o = options;
  const auto padding = symmetric_padding(o);
  const bool plain = (*o.stride())[0] == 1 && (*o.stride())[1] == 1 && (*o.dilation())[0] == 1 &&
                     (*o.dilation())[1] == 1 && o.groups() == 1 && o.bias() && zero_padding(o);
  if (plain && padding && single_channel_conv_applies(x, weight) &&
      x.size(2) + 2 * *padding >= weight.size(2) && x.size(3) + 2 * *padding >= weight.size(3)) {
    return single_channel_conv2d(x, weight, bias, *padding);
  }
  return torch::nn::Conv2dImpl::forward(x);
}

}  // namespace torchfocal::models
