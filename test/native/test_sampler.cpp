// The epoch samplers: what each draws, and that a seed fixes the draw.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "src/data/sampler.h"

namespace {

using torchfocal::data::epoch_indices;
using torchfocal::data::parse_sampler;
using torchfocal::data::Sampler;

// Labels with counts 6000, 600, 60 and 0 (a class with no image), shuffled.
torch::Tensor long_tail_labels() {
  auto labels =
      torch::cat({torch::full({6000}, 0, torch::kInt64), torch::full({600}, 1, torch::kInt64),
                  torch::full({60}, 2, torch::kInt64)});
  return labels.index_select(0, torch::randperm(labels.size(0), torch::kInt64));
}

torch::Tensor drawn_class_shares(Sampler sampler, const torch::Tensor& labels, uint64_t seed) {
  auto idx = epoch_indices(sampler, labels, 4, at::detail::createCPUGenerator(seed));
  EXPECT_EQ(idx.size(0), labels.size(0));
  return torch::bincount(labels.index_select(0, idx), {}, 4).to(torch::kFloat64) / idx.size(0);
}

TEST(Sampler, InstanceIsAPermutation) {
  auto labels = long_tail_labels();
  auto idx = epoch_indices(Sampler::kInstance, labels, 4, at::detail::createCPUGenerator(3));
  EXPECT_TRUE(torch::equal(std::get<0>(idx.sort()), torch::arange(labels.size(0))));
  EXPECT_FALSE(torch::equal(idx, torch::arange(labels.size(0))));
}

TEST(Sampler, ClassBalancedDrawsEveryPresentClassEqually) {
  auto shares = drawn_class_shares(Sampler::kClassBalanced, long_tail_labels(), 1);
  // 6660 draws, 1/3 each: binomial sd ≈ 0.0058, so 0.03 is over 5 sd.
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(shares[c].item<double>(), 1.0 / 3, 0.03) << c;
  EXPECT_EQ(shares[3].item<double>(), 0.0);
}

TEST(Sampler, SqrtDrawsClassesInProportionToTheSquareRootOfTheirCounts) {
  auto shares = drawn_class_shares(Sampler::kSqrt, long_tail_labels(), 2);
  const double s[3] = {std::sqrt(6000.0), std::sqrt(600.0), std::sqrt(60.0)};
  const double total = s[0] + s[1] + s[2];
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(shares[c].item<double>(), s[c] / total, 0.03) << c;
}

TEST(Sampler, TheSeedFixesTheDraw) {
  auto labels = long_tail_labels();
  for (auto sampler : {Sampler::kInstance, Sampler::kClassBalanced, Sampler::kSqrt}) {
    auto a = epoch_indices(sampler, labels, 4, at::detail::createCPUGenerator(7));
    auto b = epoch_indices(sampler, labels, 4, at::detail::createCPUGenerator(7));
    auto c = epoch_indices(sampler, labels, 4, at::detail::createCPUGenerator(8));
    EXPECT_TRUE(torch::equal(a, b));
    EXPECT_FALSE(torch::equal(a, c));
  }
}

TEST(Sampler, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_sampler("class-balanced"), Sampler::kClassBalanced);
  EXPECT_EQ(parse_sampler("sqrt"), Sampler::kSqrt);
  EXPECT_EQ(parse_sampler("instance"), Sampler::kInstance);
  EXPECT_THROW(parse_sampler("balanced"), std::invalid_argument);
}

}  // namespace
