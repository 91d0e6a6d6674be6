// The direct single-channel convolution (models/single_channel_conv.h) against LibTorch's conv2d
// in float64 on fresh random inputs: forward, weight and bias gradients, for LeNet's shape and
// odd ones (runs that end inside a vector, a last block of fewer than four rows, 3 × 3 kernels,
// no padding); its channels-last result; and SingleChannelConv2d falling back to Conv2d's own
// forward, bit for bit, wherever the kernels do not apply.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "models/single_channel_conv.h"
#include "src/common/cpu_features.h"
#include "test/native/helpers.h"

namespace tf = torchfocal;

namespace {

struct Shape {
  int64_t n, c, h, w, k, pad;
};

// max |a - b| / max |b|
double relative(const torch::Tensor& a, const torch::Tensor& b) {
  const auto b64 = b.to(torch::kFloat64);
  return ((a.to(torch::kFloat64) - b64).abs().max() / b64.abs().max()).item<double>();
}

}  // namespace

TEST(SingleChannelConv, MatchesConv2dInFloat64) {
  if (!tf::cpu_has_avx2_fma()) GTEST_SKIP() << "this CPU has no AVX2 + FMA: the kernels never run";
  torch::manual_seed(11);
  for (const auto& s : std::vector<Shape>{{5, 6, 28, 28, 5, 2},
                                          {3, 5, 9, 7, 5, 2},
                                          {2, 4, 6, 11, 5, 0},
                                          {1, 16, 13, 12, 3, 1},
                                          {17, 3, 5, 5, 3, 0},
                                          {2, 7, 3, 4, 5, 2},
                                          {2, 6, 10, 9, 3, 1}}) {
    const auto x = torch::randn({s.n, 1, s.h, s.w});
    auto weight = (torch::randn({s.c, 1, s.k, s.k}) * 0.3).requires_grad_();
    auto bias = torch::randn({s.c}).requires_grad_();
    ASSERT_TRUE(tf::models::single_channel_conv_applies(x, weight));
    const auto y = tf::models::single_channel_conv2d(x, weight, bias, s.pad);
    EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));

    // The reference: composed LibTorch ops in float64 from the same float32 values.
    auto w64 = weight.detach().to(torch::kFloat64).requires_grad_();
    auto b64 = bias.detach().to(torch::kFloat64).requires_grad_();
    const auto want = torch::conv2d(x.to(torch::kFloat64), w64, b64, 1, s.pad);
    ASSERT_EQ(y.sizes(), want.sizes());
    EXPECT_LT(relative(y, want), 1e-6) << s.n << "x" << s.c << "x" << s.h << "x" << s.w;

    const auto upstream = torch::randn(want.sizes(), torch::kFloat64);
    const auto got = torch::autograd::grad({y}, {weight, bias}, {upstream.to(torch::kFloat32)});
    const auto ref = torch::autograd::grad({want}, {w64, b64}, {upstream});
    EXPECT_LT(relative(got[0], ref[0]), 1e-5) << "weight gradient, k " << s.k << " pad " << s.pad;
    EXPECT_LT(relative(got[1], ref[1]), 1e-5) << "bias gradient";
    EXPECT_EQ(got[0].sizes(), weight.sizes());
  }
}

TEST(SingleChannelConv, WeightGradientDoesNotDependOnTheThreads) {
  if (!tf::cpu_has_avx2_fma()) GTEST_SKIP() << "this CPU has no AVX2 + FMA: the kernels never run";
  torch::manual_seed(12);
  const auto x = torch::randn({70, 1, 28, 28});
  auto weight = torch::randn({6, 1, 5, 5}).requires_grad_();
  auto bias = torch::randn({6}).requires_grad_();
  const auto upstream = torch::randn({70, 6, 28, 28});
  const auto gradient = [&] {
    const auto y = tf::models::single_channel_conv2d(x, weight, bias, 2);
    return torch::autograd::grad({y}, {weight}, {upstream})[0];
  };
  const auto one = torchfocal::testing::with_threads(1, gradient);
  const auto two = torchfocal::testing::with_threads(2, gradient);
  EXPECT_TRUE(torch::equal(one, two));
}

TEST(SingleChannelConv, ModuleFallsBackToConv2dWhereTheKernelsDoNotApply) {
  torch::manual_seed(13);
  namespace nn = torch::nn;
  const auto options = nn::Conv2dOptions(1, 6, 5).padding(2);
  tf::models::SingleChannelConv2d direct(options);
  nn::Conv2d plain(options);
  {
    torch::NoGradGuard no_grad;
    plain->weight.copy_(direct->weight);
    plain->bias.copy_(direct->bias);
  }
  // Conv2d to every reader: its state_dict names and its type.
  EXPECT_EQ(direct->named_parameters().keys(), plain->named_parameters().keys());
  EXPECT_NE(dynamic_cast<nn::Conv2dImpl*>(direct.get()), nullptr);

  const auto x = torch::randn({3, 1, 12, 12});
  if (tf::cpu_has_avx2_fma()) EXPECT_LT(relative(direct(x), plain(x)), 1e-6);
  // An input that wants its gradient, float64, three channels: Conv2d's own forward exactly.
  const auto wants_grad = x.clone().requires_grad_();
  EXPECT_TRUE(torch::equal(direct(wants_grad), plain(wants_grad)));
  tf::models::SingleChannelConv2d direct64(options);
  direct64->to(torch::kFloat64);
  EXPECT_FALSE(tf::models::single_channel_conv_applies(x.to(torch::kFloat64), direct64->weight));
  tf::models::SingleChannelConv2d strided(nn::Conv2dOptions(1, 6, 5).stride(2));
  nn::Conv2d strided_plain(nn::Conv2dOptions(1, 6, 5).stride(2));
  {
    torch::NoGradGuard no_grad;
    strided_plain->weight.copy_(strided->weight);
    strided_plain->bias.copy_(strided->bias);
  }
  EXPECT_TRUE(torch::equal(strided(x), strided_plain(x)));
  EXPECT_FALSE(tf::models::single_channel_conv_applies(torch::randn({2, 3, 8, 8}),
                                                       torch::randn({6, 3, 5, 5})));
  EXPECT_FALSE(tf::models::single_channel_conv_applies(torch::randn({2, 1, 8, 8}),
                                                       torch::randn({6, 1, 7, 7})));
  EXPECT_THROW(tf::models::single_channel_conv2d(torch::randn({2, 1, 8, 8}),
                                                 torch::randn({6, 1, 7, 7}), torch::randn({6}), 0),
               std::invalid_argument);
}
