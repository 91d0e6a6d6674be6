// LeNet's fused sigmoid + 2x2 average pooling (forward and backward) against the composed
// LibTorch ops in float64 on fresh random inputs: values and input gradients, both memory
// formats, odd sizes, float32 and bfloat16, gradcheck.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>
#include <string>

#include "models/sigmoid_avg_pool.h"
#include "test/native/helpers.h"

namespace {

using torchfocal::models::sigmoid_avg_pool2x2;

torch::Tensor composed(const torch::Tensor& x) {
  return torch::avg_pool2d(torch::sigmoid(x), /*kernel_size=*/{2, 2}, /*stride=*/{2, 2});
}

using torchfocal::testing::ValueGrad;

ValueGrad run(const std::function<torch::Tensor(const torch::Tensor&)>& f, const torch::Tensor& x,
              const torch::Tensor& upstream) {
  auto input = x.detach().clone(torch::MemoryFormat::Preserve).requires_grad_();
  auto y = f(input);
  (y * upstream).sum().backward();
  return {y.detach(), input.grad()};
}

}  // namespace

TEST(SigmoidAvgPool, MatchesTheComposedOpsInFloat64) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  torch::manual_seed(seed);
  for (const auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{
             {3, 6, 28, 28}, {2, 16, 10, 10}, {2, 5, 7, 9}, {2, 6, 9, 7}, {1, 1, 2, 3}}) {
      const auto x = (torch::randn(shape, torch::kDouble) * 3).contiguous(format);
      const auto y_shape = std::vector<int64_t>{shape[0], shape[1], shape[2] / 2, shape[3] / 2};
      const auto upstream = torch::randn(y_shape, torch::kDouble);
      const auto got = run(sigmoid_avg_pool2x2, x, upstream);
      const auto want = run(composed, x, upstream);
      EXPECT_TRUE(torch::allclose(got.value, want.value, 1e-12, 1e-14));
      EXPECT_TRUE(torch::allclose(got.grad, want.grad, 1e-12, 1e-14))
          << "max diff " << (got.grad - want.grad).abs().max().item<double>();
      // An odd last row or column gets no gradient, as in AvgPool2d(2).
      if (shape[3] % 2) EXPECT_EQ(got.grad.select(3, shape[3] - 1).abs().max().item<double>(), 0);
    }
  }
  // float32 in the training layout: within float rounding of the float64 result.
  const auto x = torch::randn({4, 6, 28, 28}).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto upstream = torch::randn({4, 6, 14, 14});
  const auto got = run(sigmoid_avg_pool2x2, x, upstream);
  const auto want = run(composed, x.to(torch::kDouble), upstream.to(torch::kDouble));
  EXPECT_TRUE(torch::allclose(got.value.to(torch::kDouble), want.value, 1e-6, 1e-7));
  EXPECT_TRUE(got.value.is_contiguous(torch::MemoryFormat::ChannelsLast));  // the layout kept
  EXPECT_TRUE(torch::allclose(got.grad.to(torch::kDouble), want.grad, 1e-5, 1e-7));
  // bfloat16 (autocast on the CPU) takes the composed backward: within bfloat16 rounding.
  const auto low = run(sigmoid_avg_pool2x2, x.to(torch::kBFloat16), upstream.to(torch::kBFloat16));
  EXPECT_EQ(low.grad.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(low.grad.to(torch::kDouble), want.grad, 2e-2, 2e-3));
}

TEST(SigmoidAvgPool, ForwardWithoutGradientIsTheSameForward) {
  // Evaluation keeps no sigmoid for a backward: the same values, bit for bit, in both layouts,
  // float32 and float64, odd sizes included.
  torch::manual_seed(21);
  for (const auto dtype : {torch::kFloat, torch::kDouble}) {
    for (const auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
      for (const auto& shape : std::vector<std::vector<int64_t>>{{3, 6, 28, 28}, {2, 6, 9, 7}}) {
        const auto x = (torch::randn(shape, dtype) * 3).contiguous(format);
        const auto with_graph = sigmoid_avg_pool2x2(x.clone().requires_grad_()).detach();
        torch::Tensor without;
        {
          torch::NoGradGuard no_grad;
          without = sigmoid_avg_pool2x2(x);
        }
        EXPECT_TRUE(torch::equal(without, with_graph));
        EXPECT_FALSE(without.requires_grad());
      }
    }
  }
}

TEST(SigmoidAvgPool, Gradcheck) {
  torch::manual_seed(3);
  auto x = torch::randn({2, 3, 6, 5}, torch::kDouble).requires_grad_();
  // central differences against the fused backward
  const double eps = 1e-6;
  const auto upstream = torch::randn({2, 3, 3, 2}, torch::kDouble);
  (sigmoid_avg_pool2x2(x) * upstream).sum().backward();
  const auto analytic = x.grad().clone();
  auto flat = x.detach().clone().view(-1);
  auto numeric = torch::zeros_like(flat);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double v = flat[i].item<double>();
    flat[i] = v + eps;
    const double up = (composed(flat.view(x.sizes())) * upstream).sum().item<double>();
    flat[i] = v - eps;
    const double down = (composed(flat.view(x.sizes())) * upstream).sum().item<double>();
    flat[i] = v;
    numeric[i] = (up - down) / (2 * eps);
  }
  EXPECT_TRUE(torch::allclose(analytic.view(-1), numeric, 1e-6, 1e-8));
}

TEST(SigmoidAvgPool, RejectsInputsItCannotPool) {
  EXPECT_THROW(sigmoid_avg_pool2x2(torch::randn({3, 4, 4})), c10::Error);
  EXPECT_THROW(sigmoid_avg_pool2x2(torch::randn({1, 1, 1, 4})), c10::Error);
}
