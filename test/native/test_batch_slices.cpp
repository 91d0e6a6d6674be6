#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "models/registry.h"
#include "src/train/batch_slices.h"
#include "src/train/trainer.h"
#include "test/native/helpers.h"

namespace tf = torchfocal;

namespace {

using torchfocal::testing::halves;

// Restores the intra-op thread count a test changed.
struct Threads {
  explicit Threads(int n) : saved(at::get_num_threads()) { at::set_num_threads(n); }
  ~Threads() { at::set_num_threads(saved); }
  int saved;
};

double relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item<double>();
}

tf::train::TrainConfig lenet_config(bool slice_steps) {
  tf::train::TrainConfig c;
  c.model = "lenet";
  c.num_classes = 2;
  c.batch_size = 40;  // 200 images: 5 batches, each two slices of 20 on two threads
  c.optimizer = "adam";
  c.lr = 0.003;
  c.seed = 5;
  c.threads = 2;
  c.device = "cpu";
  c.slice_steps = slice_steps;
  return c;
}

}  // namespace

TEST(BatchSlices, SliceCountFollowsThreadsAndBatch) {
  Threads two(2);
  const torch::Device cpu(torch::kCPU);
  EXPECT_EQ(tf::train::slice_count(cpu, 15), 1);  // a slice would be under 8 images
  EXPECT_EQ(tf::train::slice_count(cpu, 16), 2);
  EXPECT_EQ(tf::train::slice_count(cpu, 128), 2);
  EXPECT_EQ(tf::train::slice_count(torch::Device(torch::kCUDA, 0), 128), 1);
  Threads one(1);
  EXPECT_EQ(tf::train::slice_count(cpu, 128), 1);
}

TEST(BatchSlices, OnlyNetworksWithoutBatchStatisticsOrDropoutTrainInSlices) {
  tf::models::ModelOptions options;
  options.width_divisor = 8;
  EXPECT_TRUE(tf::train::trains_in_slices(*tf::models::make_model("lenet", options)));
  EXPECT_TRUE(tf::train::trains_in_slices(*tf::models::make_model("mlp", options)));
  EXPECT_FALSE(tf::train::trains_in_slices(*tf::models::make_model("resnet", options)));
  EXPECT_FALSE(tf::train::trains_in_slices(*tf::models::make_model("alexnet", options)));
}

// The reference: the whole batch through the same network in float64, one backward. Uneven
// slices (37 rows in 3) on two threads, channels-last, and a gradient already there to add to.
TEST(BatchSlices, ForwardAndGradientsEqualTheWholeBatchInFloat64) {
  Threads two(2);
  torch::manual_seed(3);
  auto model = tf::models::make_model("lenet", {});
  model->to(torch::kFloat64);
  const auto images =
      torch::rand({37, 1, 28, 28}, torch::kFloat64).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto labels = torch::randint(0, 10, {37}, torch::kInt64);
  const auto params = model->parameters();
  const auto earlier = torch::randn_like(params[0]);

  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  params[0].mutable_grad() = earlier.clone();
  const auto whole_logits = model->forward(images);
  torch::nn::functional::cross_entropy(whole_logits, labels).backward();
  std::vector<torch::Tensor> want;
  for (const auto& p : params) want.push_back(p.grad().clone());

  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  params[0].mutable_grad() = earlier.clone();
  tf::train::SlicedForward sliced(37, 3, [&](int64_t begin, int64_t end) {
    EXPECT_TRUE(torch::GradMode::is_enabled());
    return model->forward(images.slice(0, begin, end));
  });
  EXPECT_LT(relative_diff(sliced.logits(), whole_logits.detach()), 1e-13);
  sliced.backward(torch::nn::functional::cross_entropy(sliced.logits(), labels), params);
  for (size_t i = 0; i < params.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(params[i].grad().defined());
    EXPECT_LT(relative_diff(params[i].grad(), want[i]), 1e-12);
  }
}

TEST(BatchSlices, SliceErrorsReachTheCaller) {
  Threads two(2);
  EXPECT_THROW(tf::train::SlicedForward(32, 2,
                                        [](int64_t begin, int64_t) -> torch::Tensor {
                                          if (begin > 0) throw std::runtime_error("slice 1");
                                          return torch::zeros({16, 2});
                                        }),
               std::runtime_error);
}

// LeNet through the transition from chance to learned, sliced steps against whole ones: the same
// losses within float32 noise, and a sliced run reproduces itself exactly.
TEST(BatchSlices, SlicedStepsTrainLikeWholeStepsAndReproduce) {
  auto [x, y] = halves(200, 9);
  tf::train::Trainer whole(lenet_config(false)), sliced(lenet_config(true)),
      again(lenet_config(true));
  EXPECT_FALSE(whole.uses_sliced_steps());
  EXPECT_TRUE(sliced.uses_sliced_steps());
  for (auto* t : {&whole, &sliced, &again}) t->set_train_data(x, y);
  double last_acc = 0;
  for (int epoch = 0; epoch < 8; ++epoch) {
    const auto a = whole.train_epoch({}, nullptr, false);
    const auto b = sliced.train_epoch({}, nullptr, false);
    const auto c = again.train_epoch({}, nullptr, false);
    EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::abs(a.loss)) << "epoch " << epoch;
    EXPECT_EQ(b.loss, c.loss) << "epoch " << epoch;
    last_acc = b.train_acc;
  }
  EXPECT_GT(last_acc, 0.9);  // it learned: the comparison is not one of noise
  const auto wa = whole.state_dict(), wb = sliced.state_dict(), wc = again.state_dict();
  for (size_t i = 0; i < wa.size(); ++i) {
    SCOPED_TRACE(wa[i].first);
    EXPECT_LT((wa[i].second - wb[i].second).abs().max().item<double>(), 1e-4);
    EXPECT_TRUE(torch::equal(wb[i].second, wc[i].second));
  }
}

// Autocast is thread-local: each slice sets it for itself, so bf16 slices train as a bf16 whole.
TEST(BatchSlices, Bf16SlicesTrainLikeTheBf16Whole) {
  auto [x, y] = halves(120, 4);
  auto config = [](bool slice_steps) {
    auto c = lenet_config(slice_steps);
    c.amp = "bf16";
    return c;
  };
  tf::train::Trainer whole(config(false)), sliced(config(true));
  for (auto* t : {&whole, &sliced}) t->set_train_data(x, y);
  for (int epoch = 0; epoch < 3; ++epoch) {
    const auto a = whole.train_epoch({}, nullptr, false);
    const auto b = sliced.train_epoch({}, nullptr, false);
    // bf16 keeps 8 bits of mantissa: the two summation orders differ by its rounding
    EXPECT_NEAR(a.loss, b.loss, 2e-2 * std::abs(a.loss)) << "epoch " << epoch;
  }
}
