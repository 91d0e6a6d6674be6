// The sync-free train step on the CPU: the flat optimizer against torch::optim and a float64
// reference, and a trainer with the device step against the host loop (losses, weights, the
// non-finite-loss policies, interruption, training state). The CUDA graph that captures this step
// is exercised by test/gpu/ and scripts/gpu-check.sh where a GPU exists.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "src/train/flat_optimizer.h"
#include "src/train/optimizer_state.h"
#include "src/train/trainer.h"
#include "test/native/helpers.h"

namespace tf = torchfocal;

namespace {

// Parameters of three shapes, one a conv weight in channels-last (the CPU's training layout).
std::vector<torch::Tensor> random_params(uint64_t seed) {
  torch::manual_seed(seed);
  auto conv = torch::randn({4, 3, 3, 3}).contiguous(torch::MemoryFormat::ChannelsLast);
  return {conv.requires_grad_(), torch::randn({7, 5}).requires_grad_(),
          torch::randn({5}).requires_grad_()};
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params)
    out.push_back(p.detach().clone(torch::MemoryFormat::Preserve).requires_grad_());
  return out;
}

void set_grads(std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].grad().defined()) {
      params[i].mutable_grad().copy_(grads[i]);  // the flat optimizer's views: write in place
    } else {
      params[i].mutable_grad() = grads[i].clone();
    }
  }
}

// Adam in float64 with composed ops, the formulas of Kingma & Ba with PyTorch's ε placement.
struct ReferenceAdam {
  double lr, b1, b2, eps, wd;
  std::vector<torch::Tensor> p, m, v;
  int64_t t = 0;
  void step(const std::vector<torch::Tensor>& grads) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      auto g = grads[i].to(torch::kFloat64) + wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
      p[i] = p[i] - lr / c1 * m[i] / (v[i].sqrt() / std::sqrt(c2) + eps);
    }
  }
};

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

torch::Tensor flag(float value) { return torch::full({}, value); }

}  // namespace

TEST(FlatOptimizer, AdamMatchesTorchAndAFloat64Reference) {
  auto mine = random_params(1);
  auto theirs = copies(mine);
  const auto options = torch::optim::AdamOptions(0.01).weight_decay(0.05);
  torch::optim::Adam torch_adam(theirs, options);
  torch::optim::Adam holder(mine, options);
  tf::train::FlatOptimizer flat(holder);
  ReferenceAdam ref{0.01, 0.9, 0.999, 1e-8, 0.05, {}, {}, {}};
  for (const auto& p : theirs) {
    ref.p.push_back(p.detach().to(torch::kFloat64));
    ref.m.push_back(torch::zeros_like(ref.p.back()));
    ref.v.push_back(torch::zeros_like(ref.p.back()));
  }
  // The parameters became views into one buffer, values and memory format unchanged.
  EXPECT_TRUE(mine[0].is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_EQ(max_diff(mine[0], theirs[0]), 0.0);

  torch::manual_seed(2);
  for (int step = 0; step < 6; ++step) {
    std::vector<torch::Tensor> grads;
    for (const auto& p : mine) grads.push_back(torch::randn(p.sizes()) * (step + 1));
    if (step == 3) {
      // A skipped step (take = 0) with poisoned gradients changes nothing, not even the count.
      auto poisoned = grads;
      poisoned[1] = grads[1].clone();
      poisoned[1][0][0] = NAN;
      const auto before = mine[1].detach().clone();
      set_grads(mine, poisoned);
      flat.step(flag(0));
      EXPECT_TRUE(torch::equal(mine[1].detach(), before));
    }
    set_grads(mine, grads);
    set_grads(theirs, grads);
    flat.step(flag(1));
    torch_adam.step();
    ref.step(grads);
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    EXPECT_LT(max_diff(mine[i], theirs[i]), 1e-6) << "parameter " << i;
    EXPECT_LT(max_diff(mine[i], ref.p[i]), 1e-5) << "parameter " << i;
  }
  // store() writes torch::optim's state: step count and moments equal to torch's own.
  flat.store();
  const auto* s = tf::train::adam_state(holder, mine[1]);
  const auto* t = tf::train::adam_state(torch_adam, theirs[1]);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->step(), 6);
  EXPECT_EQ(t->step(), 6);
  EXPECT_LT(max_diff(s->exp_avg(), t->exp_avg()), 1e-6);
  EXPECT_LT(max_diff(s->exp_avg_sq(), t->exp_avg_sq()), 1e-5);
}

TEST(FlatOptimizer, SgdMatchesTorch) {
  auto mine = random_params(3);
  auto theirs = copies(mine);
  torch::optim::SGD torch_sgd(theirs, torch::optim::SGDOptions(0.5));
  torch::optim::SGD holder(mine, torch::optim::SGDOptions(0.5));
  tf::train::FlatOptimizer flat(holder);
  for (int step = 0; step < 3; ++step) {
    std::vector<torch::Tensor> grads;
    for (const auto& p : mine) grads.push_back(torch::randn(p.sizes()));
    set_grads(mine, grads);
    set_grads(theirs, grads);
    flat.step(flag(1));
    torch_sgd.step();
  }
  for (size_t i = 0; i < mine.size(); ++i) EXPECT_LT(max_diff(mine[i], theirs[i]), 1e-6);
}

TEST(FlatOptimizer, RefusesWhatItCannotRun) {
  auto params = random_params(4);
  torch::optim::SGD dampened(params, torch::optim::SGDOptions(0.1).momentum(0.9).dampening(0.5));
  EXPECT_THROW(tf::train::FlatOptimizer{dampened}, std::invalid_argument);
  auto doubles = std::vector<torch::Tensor>{torch::randn({3}, torch::kFloat64).requires_grad_()};
  torch::optim::Adam adam(doubles, torch::optim::AdamOptions(0.1));
  EXPECT_THROW(tf::train::FlatOptimizer{adam}, std::invalid_argument);
}

namespace {

using torchfocal::testing::halves;

tf::train::TrainConfig config(const std::string& device_step) {
  tf::train::TrainConfig c;
  c.model = "lenet";
  c.num_classes = 2;
  c.batch_size = 24;  // 200 images: 8 full batches and a partial one of 8
  c.optimizer = "adam";
  c.lr = 0.003;
  c.seed = 11;
  c.threads = 1;
  c.device = "cpu";
  c.device_step = device_step;
  c.progress_every = 1;
  return c;
}

double max_weight_diff(const tf::train::Trainer& a, const tf::train::Trainer& b) {
  const auto x = a.state_dict(), y = b.state_dict();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, max_diff(x[i].second, y[i].second));
  return worst;
}

}  // namespace

TEST(DeviceStep, TrainsLikeTheHostLoop) {
  auto [x, y] = halves(200, 1);
  tf::train::Trainer host(config("off")), device(config("on"));
  EXPECT_FALSE(host.uses_device_step());
  EXPECT_TRUE(device.uses_device_step());
  EXPECT_FALSE(device.uses_cuda_graph());  // graphs are CUDA's
  for (auto* t : {&host, &device}) t->set_train_data(x, y);
  std::vector<tf::train::Progress> reports;
  for (int epoch = 0; epoch < 8; ++epoch) {
    const auto a = host.train_epoch({}, nullptr, false);
    const auto b = device.train_epoch([&](const auto& p) { reports.push_back(p); }, nullptr, false);
    EXPECT_EQ(a.steps, 9);
    EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::abs(a.loss)) << "epoch " << epoch;
    EXPECT_NEAR(a.train_acc, b.train_acc, 1.0 / 200) << "epoch " << epoch;
    EXPECT_EQ(b.skipped_steps, 0);
  }
  EXPECT_LT(max_weight_diff(host, device), 1e-4);
  // Both crossed from chance (epochs 0-3) to learned: the comparison is not one of noise.
  EXPECT_GT(host.train_epoch().train_acc, 0.9);
  // Progress ends each epoch on its last step with the epoch's mean loss.
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().step, 9);
  EXPECT_EQ(reports.back().steps, 9);
  EXPECT_TRUE(std::isfinite(reports.back().loss));
}

TEST(DeviceStep, NonFiniteLossStopsAtTheSameStepWithTheSameWeights) {
  auto [x, y] = halves(200, 2);
  auto diverging = [](const std::string& mode, const std::string& on_nan) {
    auto c = config(mode);
    c.model = "mlp";
    c.optimizer = "sgd";
    c.lr = 1e20;  // the first step's weights make the second step's loss NaN
    c.on_nan = on_nan;
    return c;
  };
  tf::train::Trainer host(diverging("off", "stop")), device(diverging("on", "stop"));
  std::string host_error, device_error;
  for (auto* t : {&host, &device}) t->set_train_data(x, y);
  try {
    host.train_epoch();
  } catch (const tf::train::NonFiniteLoss& e) {
    host_error = e.what();
  }
  try {
    device.train_epoch();
  } catch (const tf::train::NonFiniteLoss& e) {
    device_error = e.what();
  }
  ASSERT_FALSE(host_error.empty());
  EXPECT_EQ(device_error, host_error);
  EXPECT_NE(host_error.find("at epoch 0, step "), std::string::npos) << host_error;
  EXPECT_EQ(device.epochs_done(), 0);
  // "weights left as after the step before": the steps after the bad one changed nothing.
  const auto a = host.state_dict(), b = device.state_dict();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i].second, b[i].second, 1e-5, 1e-3)) << a[i].first;
  }

  tf::train::Trainer host_skip(diverging("off", "skip")), device_skip(diverging("on", "skip"));
  for (auto* t : {&host_skip, &device_skip}) t->set_train_data(x, y);
  const auto r = host_skip.train_epoch(), s = device_skip.train_epoch();
  EXPECT_GT(r.skipped_steps, 0);
  EXPECT_EQ(s.skipped_steps, r.skipped_steps);
}

TEST(DeviceStep, InterruptedAndResumedLikeTheUninterruptedRun) {
  auto [x, y] = halves(200, 3);
  tf::train::Trainer straight(config("on"));
  straight.set_train_data(x, y);
  const auto expected = straight.train_epoch({}, nullptr, false).loss;

  tf::train::Trainer first(config("on"));
  first.set_train_data(x, y);
  std::atomic<bool> cancel{false};
  EXPECT_THROW(first.train_epoch([&](const auto& p) { cancel = p.step >= 3; }, &cancel, false),
               tf::train::Cancelled);
  const auto partial = first.partial_epoch();
  EXPECT_EQ(partial.epoch, 0);
  EXPECT_GT(partial.step, 0);
  EXPECT_LT(partial.step, 9);
  // Weights and training state into a new trainer, which finishes the epoch.
  const auto weights = first.state_dict();
  const auto state = first.train_state();
  tf::train::Trainer second(config("on"));
  second.set_train_data(x, y);
  second.load_state_dict(weights);
  second.load_train_state(state);
  second.set_partial_epoch(partial);
  EXPECT_NEAR(second.train_epoch({}, nullptr, false).loss, expected, 1e-6 * expected);
  EXPECT_LT(max_weight_diff(straight, second), 1e-6);

  // The host loop's training state continues in a device-step trainer and the other way round.
  tf::train::Trainer host(config("off"));
  host.set_train_data(x, y);
  host.train_epoch({}, nullptr, false);
  tf::train::Trainer device(config("on"));
  device.set_train_data(x, y);
  device.load_state_dict(host.state_dict());
  device.load_train_state(host.train_state());
  device.set_epochs_done(1);
  EXPECT_NEAR(device.train_epoch({}, nullptr, false).loss,
              host.train_epoch({}, nullptr, false).loss, 1e-5);
  EXPECT_LT(max_weight_diff(host, device), 1e-4);
}

TEST(DeviceStep, RefusesCombinationsItCannotRun) {
  auto c = config("auto");
  c.cuda_graph = "on";  // on the CPU
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);
  c = config("sometimes");
  EXPECT_THROW(tf::train::Trainer{c}, std::invalid_argument);
  c = config("auto");
  tf::train::Trainer cpu(c);
  EXPECT_FALSE(cpu.uses_device_step());  // auto: the CPU keeps the host loop
}

// On a GPU (scripts/gpu-check.sh): the captured graph, the same step uncaptured and the host loop
// train alike, through warm-ups, capture, replays and the partial last batch, with a schedule
// changing the rate every step, progress read while the queue runs, and two recaptures (class
// weights switching on at epoch 3, a smaller batch from epoch 6); fp16 and bf16 autocast run
// captured too.
TEST(DeviceStep, CudaGraphTrainsLikeTheUncapturedStep) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto [x, y] = halves(200, 4);
  auto on_cuda = [](const std::string& device_step, const std::string& graph) {
    auto c = config(device_step);
    c.device = "cuda";
    c.cuda_graph = graph;
    c.lr_schedule = "onecycle";
    c.schedule_epochs = 8;
    c.loss.alpha = {1, 3};
    c.loss.drw_epoch = 3;
    return c;
  };
  tf::train::Trainer host(on_cuda("off", "off")), eager(on_cuda("on", "off")),
      graph(on_cuda("auto", "auto"));
  int64_t reports = 0;
  const tf::train::ProgressFn count = [&](const tf::train::Progress& p) {
    EXPECT_TRUE(std::isfinite(p.loss));
    ++reports;
  };
  EXPECT_FALSE(host.uses_device_step());
  EXPECT_FALSE(eager.uses_cuda_graph());
  EXPECT_TRUE(graph.uses_cuda_graph());
  for (auto* t : {&host, &eager, &graph}) t->set_train_data(x, y);
  for (int epoch = 0; epoch < 8; ++epoch) {
    if (epoch == 6) {
      for (auto* t : {&host, &eager, &graph}) t->set_batch_sizes(20, 1000);  // 10 full batches
    }
    const auto a = host.train_epoch({}, nullptr, false);
    const auto b = eager.train_epoch(count, nullptr, false);
    const auto c = graph.train_epoch(count, nullptr, false);
    EXPECT_NEAR(b.loss, a.loss, 1e-4 * std::abs(a.loss)) << "epoch " << epoch;
    EXPECT_NEAR(c.loss, b.loss, 1e-5 * std::abs(b.loss)) << "epoch " << epoch;
  }
  EXPECT_GE(reports, 2 * 8);  // at least each epoch's last report, of both
  EXPECT_LT(max_weight_diff(eager, graph), 1e-5);
  EXPECT_LT(max_weight_diff(host, graph), 1e-3);
  EXPECT_GT(graph.train_epoch().train_acc, 0.9);

  for (const std::string amp : {"bf16", "fp16"}) {
    auto c = on_cuda("auto", "on");
    c.amp = amp;
    tf::train::Trainer t(c);
    t.set_train_data(x, y);
    double last = 0;
    for (int epoch = 0; epoch < 12; ++epoch) last = t.train_epoch({}, nullptr, false).loss;
    EXPECT_LT(last, 0.5) << amp;  // past chance (0.69): the captured autocast step learns
  }
}

namespace {

// The MLP (Flatten, Linear, ReLU, Linear) in float64 from a trainer's state_dict: the reference
// the schedule test trains by hand.
struct ReferenceMlp {
  std::vector<torch::Tensor> p;  // 1.weight, 1.bias, 3.weight, 3.bias
  explicit ReferenceMlp(const tf::train::NamedTensors& state) {
    for (const auto& [name, t] : state) p.push_back(t.to(torch::kFloat64));
  }
  // Gradients of the mean cross-entropy of `x` ([B, 784] in [0, 1]) with labels `y`.
  std::vector<torch::Tensor> grads(const torch::Tensor& x, const torch::Tensor& y) const {
    std::vector<torch::Tensor> leaves;
    for (const auto& t : p) leaves.push_back(t.detach().requires_grad_());
    auto h = torch::relu(torch::addmm(leaves[1], x, leaves[0].t()));
    auto logits = torch::addmm(leaves[3], h, leaves[2].t());
    torch::nn::functional::cross_entropy(logits, y).backward();
    std::vector<torch::Tensor> g;
    for (const auto& l : leaves) g.push_back(l.grad());
    return g;
  }
};

}  // namespace

// Both loops apply step k's scheduled rate at step k, across epochs and past the schedule's end:
// held to a hand-trained float64 reference. Every image of the set is the same, so the epoch's
// shuffle leaves each batch's gradient unchanged and the reference needs no order.
TEST(DeviceStep, BothLoopsApplyTheScheduleStepByStep) {
  torch::manual_seed(5);
  const int64_t n = 40, steps_per_epoch = 4, epochs = 3;  // the schedule spans 2 of them
  const auto image = torch::randint(0, 256, {1, 28, 28}, torch::kInt64).to(torch::kUInt8);
  const auto x = image.expand({n, 28, 28}).contiguous();
  const auto y = torch::ones({n}, torch::kInt64);
  const auto x64 = image.reshape({1, 784}).to(torch::kFloat64) / 255;
  const auto y1 = torch::ones({1}, torch::kInt64);
  for (const std::string optimizer : {"sgd", "adam"}) {
    for (const std::string schedule : {"onecycle", "cosine"}) {
      const double lr = optimizer == "sgd" ? 0.05 : 0.01;
      const auto rates =
          tf::train::epoch_learning_rates(tf::train::parse_lr_schedule(schedule), lr, 0,
                                          steps_per_epoch * epochs, steps_per_epoch * 2);
      // The reference, trained with the rates offset by `shift` steps.
      auto reference = [&](const tf::train::NamedTensors& start, int shift) {
        ReferenceMlp mlp(start);
        ReferenceAdam adam{0, 0.9, 0.999, 1e-8, 0, mlp.p, {}, {}};
        for (const auto& t : mlp.p) {
          adam.m.push_back(torch::zeros_like(t));
          adam.v.push_back(torch::zeros_like(t));
        }
        for (size_t k = 0; k < rates.size(); ++k) {
          const double rate = rates[std::min(k + shift, rates.size() - 1)];
          auto g = mlp.grads(x64, y1);
          if (optimizer == "sgd") {
            for (size_t i = 0; i < g.size(); ++i) mlp.p[i] = mlp.p[i] - rate * g[i];
          } else {
            adam.lr = rate;
            adam.p = mlp.p;
            adam.step(g);
            mlp.p = adam.p;
          }
        }
        return mlp.p;
      };
      for (const std::string mode : {"off", "on"}) {
        auto c = config(mode);
        c.model = "mlp";
        c.optimizer = optimizer;
        c.lr = lr;
        c.batch_size = n / steps_per_epoch;
        c.lr_schedule = schedule;
        c.schedule_epochs = 2;
        tf::train::Trainer trainer(c);
        trainer.set_train_data(x, y);
        const auto start = trainer.state_dict();
        for (int e = 0; e < epochs; ++e) trainer.train_epoch({}, nullptr, false);
        const auto expected = reference(start, 0), shifted = reference(start, 1);
        const auto got = trainer.state_dict();
        double err = 0, off_by_one = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          err = std::max(err, max_diff(got[i].second, expected[i]));
          off_by_one = std::max(off_by_one, max_diff(shifted[i], expected[i]));
        }
        const auto what = optimizer + " " + schedule + " device_step " + mode;
        EXPECT_LT(err, 2e-6) << what;
        EXPECT_GT(off_by_one, 20 * 2e-6) << what;  // the comparison can tell a step's rate
      }
    }
  }
}
