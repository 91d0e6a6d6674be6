// models::BatchNorm2d against torch::nn::BatchNorm2d (float64), alone and synchronised across
// two simulated ranks (two threads whose "all-reduce" adds their tensors).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "models/batch_norm.h"

namespace tfm = torchfocal::models;

namespace {

// A two-party sum: each caller blocks until both have contributed, then both get the total.
class TwoRankSum {
 public:
  void operator()(torch::Tensor& t) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t round = round_;
    if (waiting_.defined()) {
      total_ = waiting_ + t;
      waiting_ = torch::Tensor();
      ++round_;
      cv_.notify_all();
    } else {
      waiting_ = t.clone();
      cv_.wait(lock, [&] { return round_ != round; });
    }
    t.copy_(total_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  torch::Tensor waiting_, total_;
  int64_t round_ = 0;
};

struct Pass {
  torch::Tensor out, dx, dweight, dbias, running_mean, running_var;
};

Pass run(tfm::BatchNorm2d& bn, const torch::Tensor& x, const torch::Tensor& dy) {
  auto input = x.clone().requires_grad_(true);
  auto out = bn(input);
  out.backward(dy);
  return {out.detach(),
          input.grad(),
          bn->weight.grad().clone(),
          bn->bias.grad().clone(),
          bn->running_mean.clone(),
          bn->running_var.clone()};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  EXPECT_TRUE(torch::allclose(a, b, 1e-9, 1e-9))
      << what << ": max |diff| " << (a - b).abs().max().item<double>();
}

}  // namespace

TEST(BatchNorm2d, MatchesTorchBatchNormInTrainingAndEval) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto x = torch::randn({6, 3, 5, 4}, opts) * 3 + 1;
  auto dy = torch::randn({6, 3, 5, 4}, opts);
  tfm::BatchNorm2d ours(3);
  torch::nn::BatchNorm2d theirs(3);
  ours->to(torch::kFloat64);
  theirs->to(torch::kFloat64);
  const auto a = run(ours, x, dy);
  auto input = x.clone().requires_grad_(true);
  auto out = theirs(input);
  out.backward(dy);
  expect_close(a.out, out.detach(), "output");
  expect_close(a.dx, input.grad(), "input gradient");
  expect_close(a.dweight, theirs->weight.grad(), "weight gradient");
  expect_close(a.running_var, theirs->running_var, "running variance");
  EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(), 1);
  ours->eval();
  theirs->eval();
  expect_close(ours(x), theirs(x), "eval output");
}

// Two ranks holding halves of a batch, synchronised, compute what one BatchNorm2d computes on
// the whole batch: the same outputs and input gradients per half, weight and bias gradients
// that sum to the whole batch's, and the same running statistics.
TEST(BatchNorm2d, SynchronisedHalvesEqualTheWholeBatch) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto x = torch::randn({8, 3, 5, 4}, opts) * 2 - 1;
  auto dy = torch::randn({8, 3, 5, 4}, opts);
  tfm::BatchNorm2d whole(3);
  whole->to(torch::kFloat64);
  const auto w = run(whole, x, dy);

  TwoRankSum sum;
  tfm::BatchNorm2d rank0(3), rank1(3);
  Pass p0, p1;
  for (auto* bn : {&rank0, &rank1}) {
    (*bn)->to(torch::kFloat64);
    (*bn)->set_cross_rank_sum([&sum](torch::Tensor& t) { sum(t); });
  }
  std::thread other([&] { p1 = run(rank1, x.slice(0, 4, 8), dy.slice(0, 4, 8)); });
  p0 = run(rank0, x.slice(0, 0, 4), dy.slice(0, 0, 4));
  other.join();

  expect_close(torch::cat({p0.out, p1.out}), w.out, "output");
  expect_close(torch::cat({p0.dx, p1.dx}), w.dx, "input gradient");
  expect_close(p0.dweight + p1.dweight, w.dweight, "weight gradient");
  expect_close(p0.dbias + p1.dbias, w.dbias, "bias gradient");
  expect_close(p0.running_mean, w.running_mean, "running mean");
  expect_close(p1.running_var, w.running_var, "running variance");
}
