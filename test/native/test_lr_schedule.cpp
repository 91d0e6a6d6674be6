// The learning-rate schedules' shapes (the per-step values are held to PyTorch's own schedulers
// by test/schedule.test.ts; the trainer applying them step by step by test_device_step.cpp), and
// the warm-up against PyTorch's SequentialLR (test/fixtures/optim_reference.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "src/train/lr_schedule.h"
#include "test/fixtures/optim_reference.h"

namespace tf = torchfocal;

TEST(LrSchedule, OneCycleRisesOverThirtyPercentThenFallsToItsFloor) {
  const double lr = 0.02;
  const int64_t total = 1000;
  const auto rates =
      tf::train::epoch_learning_rates(tf::train::LrSchedule::kOneCycle, lr, 0, total, total);
  EXPECT_NEAR(rates.front(), lr / 25, 1e-15);
  EXPECT_NEAR(rates.back(), lr / 25 / 1e4, 1e-15);
  const auto peak = std::max_element(rates.begin(), rates.end()) - rates.begin();
  EXPECT_EQ(peak, 299);  // OneCycleLR's first phase ends at step 0.3 * total - 1
  EXPECT_NEAR(rates[peak], lr, 1e-15);
  EXPECT_TRUE(std::is_sorted(rates.begin(), rates.begin() + peak + 1));
  EXPECT_TRUE(std::is_sorted(rates.rbegin(), rates.rend() - peak));
  // Past the end, the last rate; a run resumed mid-way reads the same rates.
  EXPECT_EQ(tf::train::scheduled_lr(tf::train::LrSchedule::kOneCycle, lr, total + 50, total),
            rates.back());
  const auto tail =
      tf::train::epoch_learning_rates(tf::train::LrSchedule::kOneCycle, lr, 600, 10, total);
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), rates.begin() + 600));
}

TEST(LrSchedule, CosineFallsFromTheRateTowardsZero) {
  const auto rates = tf::train::epoch_learning_rates(tf::train::LrSchedule::kCosine, 0.1, 0, 8, 8);
  EXPECT_DOUBLE_EQ(rates.front(), 0.1);
  EXPECT_DOUBLE_EQ(rates[4], 0.05);  // halfway
  EXPECT_TRUE(std::is_sorted(rates.rbegin(), rates.rend()));
  EXPECT_GT(rates.back(), 0);
  EXPECT_EQ(tf::train::scheduled_lr(tf::train::LrSchedule::kCosine, 0.1, 9, 8), rates.back());
}

TEST(LrSchedule, ConstantAndTinySchedulesAndBadNames) {
  EXPECT_EQ(tf::train::scheduled_lr(tf::train::LrSchedule::kConstant, 0.3, 12345, 0), 0.3);
  // One to three steps: OneCycleLR's first phase ends before step 0; every rate stays finite.
  for (int64_t total = 1; total <= 4; ++total) {
    for (double r :
         tf::train::epoch_learning_rates(tf::train::LrSchedule::kOneCycle, 1, 0, total, total)) {
      EXPECT_TRUE(r > 0 && r <= 1) << total;
    }
  }
  EXPECT_THROW(tf::train::scheduled_lr(tf::train::LrSchedule::kCosine, 0.1, 0, 0),
               std::invalid_argument);
  EXPECT_EQ(tf::train::parse_lr_schedule("onecycle"), tf::train::LrSchedule::kOneCycle);
  try {
    tf::train::parse_lr_schedule("step");
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown lr_schedule 'step' (known: constant, onecycle, cosine)");
  }
}

TEST(LrSchedule, WarmupIsLinearLRThenTheScheduleAsPyTorchsSequentialLR) {
  for (const auto& w : tf::fixtures::kWarmupCases) {
    const auto kind = tf::train::parse_lr_schedule(w.schedule);
    const auto all = tf::train::epoch_learning_rates(kind, w.lr, 0, w.total, w.total, w.warmup);
    for (int64_t s = 0; s < w.total; ++s) {
      EXPECT_NEAR(all[s], w.rates[s], 1e-12 * w.rates[s]) << w.schedule << " step " << s;
      EXPECT_EQ(tf::train::scheduled_lr(kind, w.lr, s, w.total, w.warmup), all[s]);
    }
  }
  EXPECT_THROW(tf::train::scheduled_lr(tf::train::LrSchedule::kCosine, 0.1, 0, 10, 10),
               std::invalid_argument);
}
