// The Winograd 3×3 convolution against LibTorch's convolution in float64 on fresh random inputs:
// output, input and weight gradients, at ResNet widths, odd sides, uneven tile blocks and several
// weight-gradient chunks; the same bits whatever the thread count; and conv2d_forward choosing it
// only where it applies.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "models/layers.h"
#include "models/winograd_conv.h"
#include "src/common/cpu_features.h"
#include "test/native/helpers.h"

namespace tfm = torchfocal::models;

namespace {

const auto kChannelsLast = torch::MemoryFormat::ChannelsLast;

// Vector width of the kernels on this CPU (as winograd_conv_applies reads it), or 0.
int64_t lanes() {
  if (torchfocal::cpu_has_avx512()) return 16;
  if (torchfocal::cpu_has_avx2_fma() &&
      torchfocal::aten_cpu_capability() != torchfocal::CpuCap::kDefault) {
    return 8;
  }
  return 0;
}

struct Grads {
  torch::Tensor y, dx, dw;
};

// tile: 2 or 4 for F(2×2, 3×3) or F(4×4, 3×3), 0 for LibTorch's convolution.
Grads run(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& g, int tile) {
  auto xv = x.clone().requires_grad_(true);
  auto wv = w.clone().requires_grad_(true);
  const auto y = tile != 0 ? tfm::winograd_conv3x3(xv, wv, tile) : torch::conv2d(xv, wv, {}, 1, 1);
  y.backward(g);
  return {y.detach(), xv.grad(), wv.grad()};
}

double max_error(const torch::Tensor& a, const torch::Tensor& reference) {
  return (a.to(torch::kFloat64) - reference).abs().max().item<double>();
}

}  // namespace

// N, C → K, H × W: ResNet-32's three stages, a widening conv, odd and non-square sides (partial
// tiles) and counts of tiles that leave a short last block.
TEST(WinogradConv, MatchesLibTorchFloat64) {
  torch::manual_seed(5);
  if (lanes() == 0) {  // a CPU without AVX2: refused, never run
    const auto x = torch::randn({1, 8, 4, 4}).contiguous(kChannelsLast);
    EXPECT_THROW(tfm::winograd_conv3x3(x, torch::randn({8, 8, 3, 3})), std::invalid_argument);
    return;
  }
  const int64_t v = lanes();
  const std::vector<std::array<int64_t, 5>> cases = {
      {3, 16, 16, 32, 32}, {5, 32, 32, 16, 16}, {7, 64, 64, 8, 8},   {2, 16, 32, 9, 13},
      {3, v, v, 7, 5},     {1, 2 * v, v, 1, 3}, {4, v, 3 * v, 6, 2}, {9, 32, 64, 24, 22},
  };
  for (const auto& [n, c, k, h, w] : cases) {
    const auto x = torch::randn({n, c, h, w}).contiguous(kChannelsLast);
    const auto weight = (torch::randn({k, c, 3, 3}) / std::sqrt(9.0 * c)).contiguous(kChannelsLast);
    const auto g = torch::randn({n, k, h, w});
    const auto ref =
        run(x.to(torch::kFloat64), weight.to(torch::kFloat64), g.to(torch::kFloat64), 0);
    const auto lib = run(x, weight, g, 0);
    // Float32 error bars: LibTorch's own float32 convolution against float64, times 4 for
    // F(2×2, 3×3) (at most 1.9× here, 2.5× for the weight gradient); for F(4×4, 3×3), whose
    // transforms' larger coefficients (up to 8, and 1/24) round more, twice the worst seen on
    // these cases (12× for outputs and input gradients, 20× for the weight gradient).
    const std::vector<std::array<double, 3>> tiles = {{2, 4, 4}, {4, 24, 40}};
    for (const auto& [tile_size, factor, dw_factor] : tiles) {
      const int tile = static_cast<int>(tile_size);
      SCOPED_TRACE(testing::Message()
                   << "F(" << tile << ") " << n << "x" << c << "->" << k << " " << h << "x" << w);
      const auto ours = run(x, weight, g, tile);
      EXPECT_LT(max_error(ours.y, ref.y), factor * max_error(lib.y, ref.y) + 1e-6);
      EXPECT_LT(max_error(ours.dx, ref.dx), factor * max_error(lib.dx, ref.dx) + 1e-6);
      EXPECT_LT(max_error(ours.dw, ref.dw), dw_factor * max_error(lib.dw, ref.dw) + 1e-5);
      EXPECT_TRUE(ours.y.is_contiguous(kChannelsLast));
      EXPECT_TRUE(ours.dx.is_contiguous(kChannelsLast));
      // A wrong transform is off by O(1), not by float32 rounding.
      EXPECT_LT(max_error(ours.y, ref.y), 1e-3);
    }
  }
}

// Each output comes from its own tile, and the weight gradient's chunks (8 here for F(2×2, 3×3),
// of 150 tiles, and 2 for F(4×4, 3×3), of 180) are set by the size alone and added in order: one
// thread or two give the same bits.
TEST(WinogradConv, ThreadCountDoesNotChangeResults) {
  if (lanes() == 0) return;  // never run there: the test above checks that
  torch::manual_seed(9);
  const auto x = torch::randn({40, 32, 12, 10}).contiguous(kChannelsLast);
  const auto w = torch::randn({32, 32, 3, 3});
  const auto g = torch::randn({40, 32, 12, 10});
  for (const int tile : {2, 4}) {
    SCOPED_TRACE(tile);
    const auto one = torchfocal::testing::with_threads(1, [&] { return run(x, w, g, tile); });
    const auto two = torchfocal::testing::with_threads(2, [&] { return run(x, w, g, tile); });
    EXPECT_TRUE(torch::equal(one.y, two.y));
    EXPECT_TRUE(torch::equal(one.dx, two.dx));
    EXPECT_TRUE(torch::equal(one.dw, two.dw));
  }
}

// conv2d_forward: Winograd for the 3×3 stride-1 padding-1 convolutions of 16–64 channels of
// channels-last float32 activations, LibTorch's convolution for everything else; equal results.
TEST(WinogradConv, ConvForwardChoosesWhereItApplies) {
  torch::manual_seed(2);
  auto conv = tfm::conv_no_bias(32, 64, 3);
  const auto x = torch::randn({64, 32, 8, 8}).contiguous(kChannelsLast);
  EXPECT_EQ(tfm::winograd_conv_applies(*conv, x), lanes() > 0);
  EXPECT_FALSE(tfm::winograd_conv_applies(*conv, x.contiguous()));                // NCHW
  EXPECT_FALSE(tfm::winograd_conv_applies(*conv, x.to(torch::kFloat64)));         // float64
  EXPECT_FALSE(tfm::winograd_conv_applies(*conv, x.slice(0, 0, 4)));              // 256 positions
  EXPECT_FALSE(tfm::winograd_conv_applies(*tfm::conv_no_bias(32, 32, 3, 2), x));  // stride 2
  EXPECT_FALSE(tfm::winograd_conv_applies(*tfm::conv_no_bias(32, 32, 1), x));     // 1×1
  EXPECT_FALSE(tfm::winograd_conv_applies(*tfm::conv2d(32, 32, 3, 1, 1), x));     // bias
  EXPECT_FALSE(tfm::winograd_conv_applies(*tfm::conv_no_bias(32, 128, 3), x));    // 128 out
  const auto sixteen = torch::randn({64, 16, 8, 8}).contiguous(kChannelsLast);
  EXPECT_EQ(tfm::winograd_conv_applies(*tfm::conv_no_bias(16, 32, 3), sixteen), lanes() > 0);
  const auto eight = torch::randn({64, 8, 8, 8}).contiguous(kChannelsLast);
  EXPECT_FALSE(tfm::winograd_conv_applies(*tfm::conv_no_bias(8, 32, 3), eight));  // 8 in
  EXPECT_FALSE(tfm::winograd_conv_applies(*tfm::conv_no_bias(3, 32, 3),
                                          torch::randn({64, 3, 8, 8}).contiguous(kChannelsLast)));
  const auto ours = tfm::conv2d_forward(*conv, x);
  const auto lib = conv->forward(x);
  EXPECT_TRUE(torch::allclose(ours, lib, 1e-4, 1e-4));
  // Through the fallback: the same module on NCHW input.
  EXPECT_TRUE(torch::allclose(tfm::conv2d_forward(*conv, x.contiguous()), lib, 1e-4, 1e-4));
}

// The output tile with fewer products for the image's sides (ties to F(2×2, 3×3), which rounds
// less): F(4×4, 3×3) from 3 × 3 on, but for sides of 5 and 6, where its tiles are mostly padding.
TEST(WinogradConv, OutputTileFollowsTheSides) {
  EXPECT_EQ(tfm::winograd_output_tile(32, 32), 4);
  EXPECT_EQ(tfm::winograd_output_tile(8, 8), 4);
  EXPECT_EQ(tfm::winograd_output_tile(7, 7), 4);
  EXPECT_EQ(tfm::winograd_output_tile(6, 6), 2);  // 4 tiles of 36 against 9 of 16
  EXPECT_EQ(tfm::winograd_output_tile(5, 5), 2);
  EXPECT_EQ(tfm::winograd_output_tile(2, 2), 2);
  EXPECT_EQ(tfm::winograd_output_tile(1, 64), 2);  // one row: 16 tiles of 36 against 32 of 16
  EXPECT_THROW(tfm::winograd_conv3x3(torch::randn({1, 16, 4, 4}).contiguous(kChannelsLast),
                                     torch::randn({16, 16, 3, 3}), 3),
               std::invalid_argument);
}
