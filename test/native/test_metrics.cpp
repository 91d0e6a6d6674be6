#include <gtest/gtest.h>
#include <torch/torch.h>

#include "src/metrics/metrics.h"

using torchfocal::metrics::compute_metrics;
using torchfocal::metrics::confusion_matrix;

TEST(Metrics, HandComputedConfusion) {
  // rows = true class, columns = predicted class
  auto cm = torch::tensor({3, 1, 0, 0, 2, 2, 1, 0, 1}, torch::kInt64).view({3, 3});
  auto m = compute_metrics(cm);
  EXPECT_EQ(m.total, 10);
  EXPECT_DOUBLE_EQ(m.accuracy, 6.0 / 10);
  EXPECT_DOUBLE_EQ(m.per_class[0].recall, 3.0 / 4);
  EXPECT_DOUBLE_EQ(m.per_class[0].precision, 3.0 / 4);
  EXPECT_DOUBLE_EQ(m.per_class[1].recall, 2.0 / 4);
  EXPECT_DOUBLE_EQ(m.per_class[1].precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.per_class[2].recall, 1.0 / 2);
  EXPECT_DOUBLE_EQ(m.per_class[2].precision, 1.0 / 3);
  EXPECT_NEAR(m.per_class[1].f1, 2 * (2.0 / 3) * 0.5 / (2.0 / 3 + 0.5), 1e-12);
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, (0.75 + 0.5 + 0.5) / 3);
  EXPECT_EQ(m.confusion[1][2], 2);
}

TEST(Metrics, ZeroSupportAndZeroPredictionsGiveNoNaN) {
  // class 2 never occurs and is never predicted; class 1 occurs but is never predicted
  auto cm = torch::tensor({5, 0, 0, 3, 0, 0, 0, 0, 0}, torch::kInt64).view({3, 3});
  auto m = compute_metrics(cm);
  for (const auto& k : m.per_class) {
    EXPECT_FALSE(std::isnan(k.recall) || std::isnan(k.precision) || std::isnan(k.f1));
  }
  EXPECT_DOUBLE_EQ(m.per_class[1].precision, 0.0);
  EXPECT_DOUBLE_EQ(m.per_class[2].recall, 0.0);
  // class 2 has no support: left out of the means
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, (1.0 + 0.0) / 2);
}

TEST(Metrics, ConfusionMatrixCountsPairs) {
  auto target = torch::tensor({0, 1, 1, 2, 2, 2}, torch::kInt64);
  auto predicted = torch::tensor({0, 1, 2, 2, 2, 0}, torch::kInt64);
  auto cm = confusion_matrix(target, predicted, 3);
  auto expected = torch::tensor({1, 0, 0, 0, 1, 1, 1, 0, 2}, torch::kInt64).view({3, 3});
  EXPECT_TRUE(torch::equal(cm, expected));
}

TEST(Metrics, TopKAccuracyMatchesTorchTopk) {
  // Random logits have no ties, so torch::topk (not used by the metric) is an exact reference.
  torch::manual_seed(3);
  const int64_t n = 500, c = 12;
  auto logits = torch::randn({n, c});
  auto target = torch::randint(c, {n}, torch::kInt64);
  auto ranks = torchfocal::metrics::rank_counts(logits, target);
  auto cm = confusion_matrix(target, logits.argmax(1), c);
  auto m = compute_metrics(cm, ranks);
  ASSERT_EQ(m.top_k_accuracy.size(), static_cast<size_t>(c));
  for (int64_t k = 1; k <= c; ++k) {
    auto top = std::get<1>(logits.topk(k, /*dim=*/1));
    const double hits = top.eq(target.unsqueeze(1)).any(1).sum().item<int64_t>();
    EXPECT_DOUBLE_EQ(m.top_k_accuracy[k - 1], hits / n) << "k = " << k;
  }
  EXPECT_DOUBLE_EQ(m.top_k_accuracy[0], m.accuracy);
  EXPECT_DOUBLE_EQ(m.top_k_accuracy[c - 1], 1.0);
}

TEST(Metrics, TrueClassRankBreaksTiesLikeArgmax) {
  // argmax takes the first of equal logits, so a tie ahead of the true class ranks it lower.
  auto logits = torch::tensor({1.0f, 2.0f, 2.0f, 0.0f,  //
                               5.0f, 5.0f, 5.0f, 5.0f,  //
                               0.0f, 1.0f, 3.0f, 2.0f})
                    .view({3, 4});
  auto target = torch::tensor({2, 0, 3}, torch::kInt64);
  auto rank = torchfocal::metrics::true_class_rank(logits, target);
  EXPECT_TRUE(torch::equal(rank, torch::tensor({1, 0, 1}, torch::kInt64)));
  auto m = compute_metrics(confusion_matrix(target, logits.argmax(1), 4),
                           torchfocal::metrics::rank_counts(logits, target));
  EXPECT_DOUBLE_EQ(m.top_k_accuracy[0], m.accuracy);  // 1 of 3
  EXPECT_DOUBLE_EQ(m.top_k_accuracy[1], 1.0);
}

TEST(Metrics, TopKAccuracyAbsentWithoutRanks) {
  auto m = compute_metrics(torch::eye(3, torch::kInt64));
  EXPECT_TRUE(m.top_k_accuracy.empty());
}
