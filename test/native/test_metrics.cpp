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
