#include "models/sigmoid_avg_pool.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "src/common/cpu_features.h"
#include "src/common/float_lanes.h"

namespace torchfocal::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kGrain = 1;  // one image per task at least: each is thousands of elements

// dx = s (1 - s) · g at every input position under an output, with g = dy / 4; 0 elsewhere.
// NCHW-contiguous: each plane row h takes the pooled row h / 2, each column w the column w / 2.
template <typename T>
void backward_nchw(const T* s, const T* dy, T* dx, int64_t planes, int64_t h, int64_t w, int64_t oh,
                   int64_t ow) {
  at::parallel_for(0, planes, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      for (int64_t i = 0; i < h; ++i) {
        const T* si = s + (p * h + i) * w;
        T* di = dx + (p * h + i) * w;
        if (i / 2 >= oh) {
          for (int64_t j = 0; j < w; ++j) di[j] = 0;
          continue;
        }
        const T* gi = dy + (p * oh + i / 2) * ow;
        for (int64_t j = 0; j < 2 * ow; ++j) di[j] = si[j] * (1 - si[j]) * (gi[j / 2] * T(0.25));
        for (int64_t j = 2 * ow; j < w; ++j) di[j] = 0;
      }
    }
  });
}

// Calls f with the channel count as a compile-time constant for NCHW planes (1) and LeNet's 6
// and 16 channels (0:
// any other, read at run time). The per-position loops over a few interleaved channels then
// unroll into whole vectors instead of a scalar loop whose overhead dominated them (perf: half of
// the pooling pass in one scalar store).
template <typename F>
void with_channels(int64_t c, const F& f) {
  if (c == 1) {
    f(std::integral_constant<int64_t, 1>());  // NCHW planes
  } else if (c == 6) {
    f(std::integral_constant<int64_t, 6>());
  } else if (c == 16) {
    f(std::integral_constant<int64_t, 16>());
  } else {
    f(std::integral_constant<int64_t, 0>());
  }
}

// Channels-last: a position (i, j) holds C contiguous values; they take the C values of the
// pooled position (i / 2, j / 2). Each pooled row's g = dy / 4 is first spread to the width of
// the two input rows under it, so that both rows run as one flat loop of whole vectors (a loop
// per position over C = 6 values vectorised badly: 6% of a LeNet step). `Fixed` is C known at
// compile time, or 0.
template <int64_t Fixed, typename T>
void backward_nhwc(const T* s, const T* dy, T* dx, int64_t n, int64_t c_any, int64_t h, int64_t w,
                   int64_t oh, int64_t ow) {
  const int64_t c = Fixed > 0 ? Fixed : c_any;
  const int64_t row = w * c, span = 2 * ow * c;  // a row; the part of it under pooled positions
  at::parallel_for(0, n * oh, kGrain * oh, [&](int64_t begin, int64_t end) {
    std::vector<T> spread(span);
    for (int64_t pooled_row = begin; pooled_row < end; ++pooled_row) {
      const int64_t b = pooled_row / oh, i = pooled_row % oh;
      const T* gi = dy + pooled_row * ow * c;
      for (int64_t j = 0; j < ow; ++j) {
        for (int64_t k = 0; k < c; ++k) {
          spread[2 * j * c + k] = spread[(2 * j + 1) * c + k] = gi[j * c + k] * T(0.25);
        }
      }
      for (int64_t r = b * h + 2 * i; r < b * h + 2 * i + 2; ++r) {
        const T* si = s + r * row;
        T* di = dx + r * row;
        for (int64_t k = 0; k < span; ++k) di[k] = si[k] * (1 - si[k]) * spread[k];
        for (int64_t k = span; k < row; ++k) di[k] = 0;  // an odd last column
      }
      // An odd last row lies under no pooled position.
      if (i == oh - 1 && h % 2 == 1)
        std::fill(dx + (b * h + h - 1) * row, dx + (b + 1) * h * row, T(0));
    }
  });
}

// One pooled row: y = the 2x2 average of input rows s0 and s1, `pair` a scratch of two rows' width.
// LibTorch's channels-last pooling runs LeNet's C = 6 channels in scalar tails of 8-wide vectors,
// at 0.33 ms per step for the first layer; this adds the two rows once and then neighbouring
// positions. A row holds `ow` pooled positions' `cc` interleaved values: one image of C channels
// in channels-last (cc = C), or one channel of one image in NCHW (cc = 1).
template <int64_t Fixed, typename T>
TORCHFOCAL_ALWAYS_INLINE void pool_row(const T* s0, const T* s1, T* yi, T* pair, int64_t cc_any,
                                       int64_t ow) {
  const int64_t cc = Fixed > 0 ? Fixed : cc_any;
  for (int64_t k = 0; k < 2 * ow * cc; ++k) pair[k] = s0[k] + s1[k];
  for (int64_t j = 0; j < ow; ++j) {
    for (int64_t k = 0; k < cc; ++k) {
      yi[j * cc + k] = (pair[2 * j * cc + k] + pair[(2 * j + 1) * cc + k]) * T(0.25);
    }
  }
}

// y pooled from s, plane by plane: a plane holds `h` rows of `w` positions of `cc` values.
template <int64_t Fixed, typename T>
void pool_planes(const T* s, T* y, int64_t planes, int64_t cc, int64_t h, int64_t w, int64_t oh,
                 int64_t ow) {
  const int64_t row = w * cc;
  at::parallel_for(0, planes, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<T> pair(2 * ow * cc);
    for (int64_t p = begin; p < end; ++p) {
      for (int64_t i = 0; i < oh; ++i) {
        const T* s0 = s + (p * h + 2 * i) * row;
        pool_row<Fixed>(s0, s0 + row, y + (p * oh + i) * ow * cc, pair.data(), cc, ow);
      }
    }
  });
}

#ifdef TORCHFOCAL_X86_TARGETS
// to = sigmoid(from) = 1 / (1 + e^-x), LibTorch's formula, by FloatLanes' exp (< 2 ulp), W floats
// a vector. Inlined into the callers below, which choose the instruction set.
template <int W>
TORCHFOCAL_ALWAYS_INLINE void sigmoid_lanes(const float* from, float* to, int64_t count) {
  using L = FloatLanes<W>;
  int64_t k = 0;
  for (; k + L::kWidth <= count; k += L::kWidth) {
    L::store(to + k, 1.0f / (1.0f + L::exp(-L::load(from + k))));
  }
  if (k < count) {
    const auto x = L::load_partial(from + k, count - k, 0.0f);
    L::store_partial(to + k, 1.0f / (1.0f + L::exp(-x)), count - k);
  }
}

// Planes of `h` rows of `w` positions of `cc` values: x, its sigmoid s (or null), pooled y.
struct PoolPlanes {
  const float* x;
  float *s, *y;
  int64_t cc, h, w, oh, ow;
};

// s = sigmoid(x) and its pooled y, two input rows at a time, pooled while they are in the cache:
// instead of a LibTorch sigmoid pass through Sleef (12% of an evaluation) and a pooling pass.
// Without `s` (nothing to keep for a backward) the two rows go through `rows` [2 w cc] instead.

template <int W, int64_t Fixed>
TORCHFOCAL_ALWAYS_INLINE void sigmoid_pool_planes(const PoolPlanes& a, int64_t begin, int64_t end,
                                                  float* pair, float* rows) {
  const int64_t row = a.w * a.cc;
  for (int64_t p = begin; p < end; ++p) {
    const float* xp = a.x + p * a.h * row;
    for (int64_t i = 0; i < a.oh; ++i) {
      float* si = a.s != nullptr ? a.s + (p * a.h + 2 * i) * row : rows;
      sigmoid_lanes<W>(xp + 2 * i * row, si, 2 * row);
      pool_row<Fixed>(si, si + row, a.y + (p * a.oh + i) * a.ow * a.cc, pair, a.cc, a.ow);
    }
    if (a.s != nullptr && a.h % 2 == 1) {
      sigmoid_lanes<W>(xp + (a.h - 1) * row, a.s + (p * a.h + a.h - 1) * row, row);  // backward's
    }
  }
}

// The two instruction sets (GCC's target attribute is per function, so one function each).
template <int64_t Fixed>
TORCHFOCAL_AVX2_FMA void sigmoid_pool_planes_avx2(const PoolPlanes& a, int64_t begin, int64_t end,
                                                  float* pair, float* rows) {
  sigmoid_pool_planes<8, Fixed>(a, begin, end, pair, rows);
}
template <int64_t Fixed>
TORCHFOCAL_AVX512 void sigmoid_pool_planes_avx512(const PoolPlanes& a, int64_t begin, int64_t end,
                                                  float* pair, float* rows) {
  sigmoid_pool_planes<16, Fixed>(a, begin, end, pair, rows);
}
#endif

// s = sigmoid(x) (kept for backward) and its pooled y. Float32 on an AVX2 or AVX-512 CPU in one
// pass (above), without s unless `keep`; otherwise LibTorch's vectorised sigmoid, then pooling.
std::pair<torch::Tensor, torch::Tensor> fused_forward(const torch::Tensor& x_in, bool keep) {
  const int64_t n = x_in.size(0), c = x_in.size(1), h = x_in.size(2), w = x_in.size(3);
  const int64_t oh = h / 2, ow = w / 2;
  const bool nhwc = x_in.is_contiguous(torch::MemoryFormat::ChannelsLast) && c > 1;
  const auto format = nhwc ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  const auto x = x_in.contiguous(format);
  const int64_t cc = nhwc ? c : 1, planes = nhwc ? n : n * c;
  auto y = torch::empty({n, c, oh, ow}, x.options().memory_format(format));
#ifdef TORCHFOCAL_X86_TARGETS
  if (x.scalar_type() == torch::kFloat && cpu_has_avx2_fma()) {
    torch::Tensor s;
    if (keep) s = torch::empty_like(x, format);
    float* kept = keep ? s.data_ptr<float>() : nullptr;
    const PoolPlanes args{x.data_ptr<float>(), kept, y.data_ptr<float>(), cc, h, w, oh, ow};
    // AVX-512's 16 lanes: 4-6% more evaluation images/s than AVX2's 8 on this VM's Zen 5 (§27).
    const bool wide = cpu_has_avx512();
    with_channels(cc, [&](auto fixed) {
      constexpr int64_t C = decltype(fixed)::value;
      at::parallel_for(0, planes, kGrain, [&](int64_t begin, int64_t end) {
        std::vector<float> pair(2 * ow * cc), rows(keep ? 0 : 2 * w * cc);
        (wide ? sigmoid_pool_planes_avx512<C>
              : sigmoid_pool_planes_avx2<C>)(args, begin, end, pair.data(), rows.data());
      });
    });
    return {s, y};
  }
#endif
  const auto s = torch::sigmoid(x);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "sigmoid_avg_pool2x2_forward", [&] {
    with_channels(cc, [&](auto fixed) {
      pool_planes<decltype(fixed)::value>(s.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), planes,
                                          cc, h, w, oh, ow);
    });
  });
  return {s, y};
}

torch::Tensor fused_backward(const torch::Tensor& s, const torch::Tensor& dy_in) {
  const int64_t n = s.size(0), c = s.size(1), h = s.size(2), w = s.size(3);
  const int64_t oh = h / 2, ow = w / 2;
  const bool nhwc = s.is_contiguous(torch::MemoryFormat::ChannelsLast) && c > 1;
  const auto format = nhwc ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  const auto dy = dy_in.contiguous(format);
  const auto sc = s.contiguous(format);
  auto dx = torch::empty_like(sc, format);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "sigmoid_avg_pool2x2_backward", [&] {
    if (nhwc) {
      with_channels(c, [&](auto fixed) {
        backward_nhwc<decltype(fixed)::value>(sc.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(),
                                              dx.data_ptr<scalar_t>(), n, c, h, w, oh, ow);
      });
    } else {
      backward_nchw(sc.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
                    n * c, h, w, oh, ow);
    }
  });
  return dx;
}

// Where the fused CPU passes run; elsewhere (CUDA, reduced precision) the two LibTorch kernels
// the unfused layers would.
bool fused_on(const torch::Tensor& t) {
  return t.is_cpu() && (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble);
}

struct SigmoidAvgPoolFunction : public torch::autograd::Function<SigmoidAvgPoolFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x) {
    if (fused_on(x)) {
      auto [s, y] = fused_forward(x, /*keep=*/true);
      ctx->save_for_backward({s});
      return y;
    }
    const auto s = torch::sigmoid(x);
    ctx->save_for_backward({s});
    return torch::avg_pool2d(s, /*kernel_size=*/{2, 2}, /*stride=*/{2, 2});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables()[0];
    const auto& dy = grads[0];
    if (fused_on(s) && dy.scalar_type() == s.scalar_type()) return {fused_backward(s, dy)};
    const auto ds = at::avg_pool2d_backward(dy, s, /*kernel_size=*/{2, 2}, /*stride=*/{2, 2},
                                            /*padding=*/{0, 0}, /*ceil_mode=*/false,
                                            /*count_include_pad=*/true, /*divisor_override=*/{});
    return {at::sigmoid_backward(ds, s)};
  }
};

}  // namespace

torch::Tensor sigmoid_avg_pool2x2(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "sigmoid_avg_pool2x2: expected a 4-d input, got ", x.dim(), "-d");
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2,
              "sigmoid_avg_pool2x2: the input is smaller than the 2x2 window");
  // No gradient wanted (evaluation, prediction): no graph, and no sigmoid kept for one.
  if (!(torch::GradMode::is_enabled() && x.requires_grad()) && fused_on(x)) {
    return fused_forward(x, /*keep=*/false).second;
  }
  return SigmoidAvgPoolFunction::apply(x);
}

void SigmoidAvgPool2x2Impl::pretty_print(std::ostream& stream) const {
  stream << "Sigmoid + AvgPool2d(kernel_size=2, stride=2)";
}

}  // namespace torchfocal::models
