// The bucketed, backward-overlapped gradient sum on a one-rank Gloo group (a real c10d process
// group over loopback): the buckets, every one summed once per step, gradients unchanged by a
// sum over one rank, the tail carried along. Two-rank runs are the ava distributed tests'.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "src/dist/collective.h"
#include "src/dist/gradient_sync.h"
#include "src/train/flat_optimizer.h"

namespace td = torchfocal::dist;

TEST(GradientSync, BucketsSumDuringBackwardAndLeaveOneRanksGradientsAlone) {
#ifndef TORCHFOCAL_WITH_GLOO
  GTEST_SKIP() << "built without Gloo";
#endif
  td::DistributedConfig config;
  config.master_port = 20000 + static_cast<int>(std::random_device{}() % 30000);
  config.timeout_s = 20;
  td::Collective collective(config, torch::kCPU);

  torch::manual_seed(5);
  auto net =
      torch::nn::Sequential(torch::nn::Linear(64, 32), torch::nn::Tanh(), torch::nn::Linear(32, 16),
                            torch::nn::Tanh(), torch::nn::Linear(16, 4));
  const auto params = net->parameters();
  auto flat = torchfocal::train::flat_gradients(params, /*tail=*/2);
  const int64_t total = flat.numel() - 2;
  // 256-byte buckets (64 floats), from the last parameter back, each closed once it reaches
  // them: [4x16 weight, 4 bias, tail], [16x32 weight, 16 bias], [32x64 weight, 32 bias].
  td::GradientSync sync(collective, params, flat, /*tail=*/2, /*bucket_bytes=*/256);
  EXPECT_EQ(sync.buckets(), 3);

  const auto x = torch::randn({8, 64});
  const auto step = [&] {
    flat.zero_();
    flat[total].fill_(1.5);  // the tail rides with the first bucket
    sync.arm();
    EXPECT_EQ(sync.started(), 0);
    net->forward(x).pow(2).sum().backward();
    EXPECT_EQ(sync.started(), 3);  // every bucket started by backward itself, none left over
    sync.finish();
  };
  step();
  const auto summed = flat.clone();
  // The plain gradients, without the hooks' sums (not armed): a one-rank sum changes nothing.
  flat.zero_();
  net->forward(x).pow(2).sum().backward();
  EXPECT_TRUE(torch::equal(summed.slice(0, 0, total), flat.slice(0, 0, total)));
  EXPECT_EQ(summed[total].item<float>(), 1.5f);
  EXPECT_GT(summed.abs().sum().item<float>(), 0);
  step();  // armed again: the same buckets start again
  EXPECT_TRUE(torch::equal(flat.slice(0, 0, total), summed.slice(0, 0, total)));
}
