// The optimizers against torch.optim's own figures: 20 steps of Adam with L2 weight decay, AdamW,
// SGD with momentum, SGD Nesterov with weight decay, and clipping by the total gradient norm,
// from test/fixtures/optim_reference.h (generated once by optim_reference.py with python3-torch,
// in float64 from float32 inputs, and again in float32). Each runs through torch::optim (float64
// and float32: distributed ranks step it) and the flat optimizer (float32, CPU loop: the maths the
// CUDA kernel shares) as the device step and as the CPU host loop drive it, held to 1e-6 of
// torch.optim's float32 steps value by value. Then
// the trainer: every optimizer, with clipping and warm-up, resumes bitwise from its training state,
// in the host loop and the device step; the checkpoint entries are the documented ones; bad
// combinations are refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "src/train/flat_optimizer.h"
#include "src/train/optimizer_state.h"
#include "src/train/optimizers.h"
#include "src/train/trainer.h"
#include "test/fixtures/optim_reference.h"
#include "test/native/helpers.h"

namespace tf = torchfocal;
using tf::fixtures::kOptimCases;
using tf::fixtures::kOptimSteps;
using tf::fixtures::kOptimValues;
using tf::fixtures::OptimCase;

namespace {

// The fixture's two parameters, in `dtype`, as leaves that take gradients.
std::vector<torch::Tensor> initial_params(torch::ScalarType dtype) {
  const auto all = torch::from_blob(const_cast<float*>(tf::fixtures::kOptimInitial), {kOptimValues},
                                    torch::kFloat32)
                       .to(dtype);
  return {all.slice(0, 0, 12).reshape({3, 4}).clone().requires_grad_(),
          all.slice(0, 12).clone().requires_grad_()};
}

// Step t's gradients into the parameters' gradients (in place: the flat optimizer's are views).
void set_grads(std::vector<torch::Tensor>& params, int t) {
  torch::NoGradGuard no_grad;
  const auto all = torch::from_blob(const_cast<float*>(tf::fixtures::kOptimGrads[t]),
                                    {kOptimValues}, torch::kFloat32);
  int64_t offset = 0;
  for (auto& p : params) {
    const auto g = all.slice(0, offset, offset + p.numel()).reshape(p.sizes()).to(p.dtype());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(g);
    } else {
      p.mutable_grad() = g.clone();
    }
    offset += p.numel();
  }
}

tf::train::OptimizerOptions options_of(const OptimCase& c) {
  tf::train::OptimizerOptions o;
  o.name = c.optimizer;
  o.lr = c.lr;
  o.momentum = c.momentum;
  o.nesterov = c.nesterov;
  o.weight_decay = c.weight_decay;
  return o;
}

// How far the parameters after step t are from torch.optim's, the worst over the steps so far:
// `relative`, max|mine - torch| / max|torch| (float32's rounding relative to the parameters'
// scale); `elementwise`, max |mine - torch| / |torch| (large where a value came back near 0 from
// a larger one, since float32 kept that value only to its own ulps).
// `as_float32`: max |mine - torch float32| / |torch float32|, value by value, against the same
// steps run by torch.optim in float32 (its own rounding: what a float32 implementation can match).
struct Errors {
  double relative = 0, elementwise = 0, as_float32 = 0;
  torch::Tensor last;  // the parameters after the last step, flattened
  void add(const std::vector<torch::Tensor>& params, const OptimCase& c, int t) {
    last = torch::cat({params[0].detach().flatten(), params[1].detach().flatten()});
    const auto mine = last.to(torch::kFloat64);
    const auto theirs =
        torch::from_blob(const_cast<double*>(c.params[t]), {kOptimValues}, torch::kFloat64);
    const auto diff = (mine - theirs).abs();
    relative = std::max(relative, (diff.max() / theirs.abs().max()).item<double>());
    elementwise = std::max(elementwise, (diff / theirs.abs()).max().item<double>());
    const auto theirs32 =
        torch::from_blob(const_cast<float*>(c.params32[t]), {kOptimValues}, torch::kFloat32)
            .to(torch::kFloat64);
    as_float32 =
        std::max(as_float32, ((mine - theirs32).abs() / theirs32.abs()).max().item<double>());
  }
};

// torch::optim as the host loop steps it: clip, the step's rate, step.
Errors run_host(const OptimCase& c, torch::ScalarType dtype) {
  auto params = initial_params(dtype);
  auto optimizer = tf::train::make_optimizer(options_of(c), params);
  Errors errors;
  for (int t = 0; t < kOptimSteps; ++t) {
    set_grads(params, t);
    if (c.clip_grad_norm > 0) tf::train::clip_grad_norm(params, c.clip_grad_norm);
    optimizer->param_groups()[0].options().set_lr(c.rates[t]);
    optimizer->step();
    errors.add(params, c, t);
  }
  return errors;
}

// The flat optimizer as the device step drives it (clip on the device, the rate as a tensor), or
// as the CPU host loop does (`host_rate`: the host's clip, the rate as a number).
Errors run_flat(const OptimCase& c, bool host_rate) {
  auto params = initial_params(torch::kFloat32);
  auto holder = tf::train::make_optimizer(options_of(c), params);
  tf::train::FlatOptimizer flat(*holder);
  const auto take = torch::ones({});
  Errors errors;
  for (int t = 0; t < kOptimSteps; ++t) {
    set_grads(params, t);
    if (host_rate) {
      if (c.clip_grad_norm > 0) tf::train::clip_grad_norm(params, c.clip_grad_norm);
      flat.step(c.rates[t]);
    } else {
      if (c.clip_grad_norm > 0) flat.clip_grad_norm(c.clip_grad_norm);
      flat.step(take, torch::full({1}, c.rates[t], torch::kFloat64));
    }
    errors.add(params, c, t);
  }
  return errors;
}

}  // namespace

TEST(Optimizers, StepByStepLikeTorchOptim) {
  for (const auto& c : kOptimCases) {
    const auto host64 = run_host(c, torch::kFloat64);
    const auto host32 = run_host(c, torch::kFloat32);
    const auto flat = run_flat(c, /*host_rate=*/false);
    const auto flat_host = run_flat(c, /*host_rate=*/true);
    std::printf(
        "[ figures  ] %-20s worst of 20 steps, relative (elementwise) to float64 torch.optim: "
        "host float64 %.1e (%.1e), host float32 %.1e (%.1e), device step float32 %.1e (%.1e); "
        "elementwise to float32 torch.optim: host %.1e, device step %.1e\n",
        c.name, host64.relative, host64.elementwise, host32.relative, host32.elementwise,
        flat.relative, flat.elementwise, host32.as_float32, flat.as_float32);
    // float64: torch.optim's own arithmetic; float32: its rounding, nothing more, value by value.
    EXPECT_LT(host64.elementwise, 1e-12) << c.name;
    EXPECT_LT(host32.relative, 1e-6) << c.name;
    EXPECT_LT(flat.relative, 1e-6) << c.name;
    EXPECT_LT(host32.as_float32, 1e-6) << c.name;
    EXPECT_LT(flat.as_float32, 1e-6) << c.name;
    EXPECT_LT(flat_host.relative, 1e-6) << c.name;
    EXPECT_LT(flat_host.as_float32, 1e-6) << c.name;
    // Without clipping the two ways run the same update on the same numbers: the same bits.
    if (c.clip_grad_norm == 0) EXPECT_TRUE(torch::equal(flat.last, flat_host.last)) << c.name;
  }
}

TEST(Optimizers, PlainSgdStepsLikeTorchOptimBitForBit) {
  // One process steps the flat optimizer, distributed ranks torch::optim: runs compared across
  // the two (--nproc 2 against one process) must not differ by the optimizer's rounding.
  torch::manual_seed(31);
  std::vector<torch::Tensor> mine = {torch::randn({37, 5}).requires_grad_(),
                                     torch::randn({11}).requires_grad_()};
  std::vector<torch::Tensor> theirs;
  for (const auto& p : mine) theirs.push_back(p.detach().clone().requires_grad_());
  tf::train::OptimizerOptions o;
  o.name = "sgd";
  o.lr = 0.05;
  auto holder = tf::train::make_optimizer(o, mine);
  auto reference = tf::train::make_optimizer(o, theirs);
  tf::train::FlatOptimizer flat(*holder);
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < mine.size(); ++i) {
      const auto g = torch::randn(mine[i].sizes());
      torch::NoGradGuard no_grad;
      mine[i].mutable_grad().copy_(g);
      theirs[i].mutable_grad() = g.clone();
    }
    flat.step(0.05);
    reference->step();
  }
  for (size_t i = 0; i < mine.size(); ++i) EXPECT_TRUE(torch::equal(mine[i], theirs[i])) << i;
}

TEST(Optimizers, ClippingIsTorchsClipGradNorm) {
  for (const double max_norm : {0.5, 100.0}) {  // clipped, and left alone
    auto a = initial_params(torch::kFloat32), b = initial_params(torch::kFloat32);
    set_grads(a, 5);
    set_grads(b, 5);
    tf::train::clip_grad_norm(a, max_norm);
    torch::nn::utils::clip_grad_norm_(b, max_norm);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].grad(), b[i].grad()));
    const double norm =
        torch::stack({a[0].grad().norm(), a[1].grad().norm()}).norm().item<double>();
    if (max_norm < 1) EXPECT_NEAR(norm, max_norm, 1e-6);
  }
}

TEST(Optimizers, RefusesWhatTorchOptimRefuses) {
  auto params = initial_params(torch::kFloat32);
  const auto refused = [&](tf::train::OptimizerOptions o, const std::string& message) {
    try {
      tf::train::make_optimizer(o, params);
      ADD_FAILURE() << "no throw: " << message;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(e.what(), message);
    }
  };
  tf::train::OptimizerOptions o;
  o.name = "rmsprop";
  refused(o, "unknown optimizer 'rmsprop' (known: adam, adamw, sgd)");
  o = {};
  o.momentum = 0.9;
  refused(o, "momentum applies to the sgd optimizer only");
  o = {};
  o.name = "sgd";
  o.nesterov = true;
  refused(o, "nesterov needs the sgd optimizer with a momentum > 0");
  o.momentum = 0.9;
  o.weight_decay = -1;
  refused(o, "weight_decay must be a number >= 0");
  // AdamW's default decay is torch.optim's 0.01; Adam's and SGD's 0.
  o = {};
  o.name = "adamw";
  auto adamw = tf::train::make_optimizer(o, params);
  EXPECT_EQ(
      static_cast<torch::optim::AdamWOptions&>(adamw->param_groups()[0].options()).weight_decay(),
      0.01);
  // The flat optimizer refuses what it does not run.
  auto dampened =
      torch::optim::SGD(params, torch::optim::SGDOptions(0.1).momentum(0.9).dampening(0.1));
  EXPECT_THROW(tf::train::FlatOptimizer{dampened}, std::invalid_argument);
}

// --- the trainer: resume, checkpoint entries, refusals ------------------------------------------

namespace {

using torchfocal::testing::halves;

struct Setup {
  std::string optimizer;
  double momentum = 0;
  bool nesterov = false;
  std::optional<double> weight_decay;
  double clip = 0;
  int64_t warmup = 0;
};

tf::train::TrainConfig config(const Setup& s, const std::string& device_step) {
  tf::train::TrainConfig c;
  c.model = "lenet";
  c.num_classes = 2;
  c.batch_size = 25;  // 100 images: 4 steps per epoch
  c.optimizer = s.optimizer;
  c.lr = s.optimizer == "sgd" ? 0.05 : 0.003;
  c.momentum = s.momentum;
  c.nesterov = s.nesterov;
  c.weight_decay = s.weight_decay;
  c.clip_grad_norm = s.clip;
  c.warmup_epochs = s.warmup;
  if (s.warmup > 0) {
    c.lr_schedule = "cosine";
    c.schedule_epochs = 4;
  }
  c.seed = 5;
  c.threads = 1;
  c.device = "cpu";
  c.device_step = device_step;
  return c;
}

const std::vector<Setup> kSetups = {
    {"adam", 0, false, 0.05, 0, 0},   {"adamw", 0, false, {}, 0, 0},
    {"adamw", 0, false, 0.1, 0.5, 1}, {"sgd", 0.9, false, {}, 0, 0},
    {"sgd", 0.9, true, 0.01, 0.5, 1},
};

std::string describe(const Setup& s, const std::string& mode) {
  return s.optimizer + " momentum " + std::to_string(s.momentum) + (s.nesterov ? " nesterov" : "") +
         " clip " + std::to_string(s.clip) + " warmup " + std::to_string(s.warmup) +
         " device_step " + mode;
}

}  // namespace

TEST(Optimizers, TrainerResumesEveryOptimizerBitwise) {
  auto [x, y] = halves(100, 7);
  for (const auto& setup : kSetups) {
    for (const std::string mode : {"off", "on"}) {
      const auto what = describe(setup, mode);
      tf::train::Trainer straight(config(setup, mode));
      straight.set_train_data(x, y);
      for (int e = 0; e < 4; ++e) straight.train_epoch({}, nullptr, false);

      tf::train::Trainer first(config(setup, mode));
      first.set_train_data(x, y);
      for (int e = 0; e < 2; ++e) first.train_epoch({}, nullptr, false);
      const auto weights = first.state_dict();
      const auto state = first.train_state();
      // The documented entries: momentum buffers for SGD with momentum, AdamW's own prefix.
      const std::string expected = setup.optimizer == "sgd"     ? "sgd.momentum_buffer/"
                                   : setup.optimizer == "adamw" ? "adamw.exp_avg/"
                                                                : "adam.exp_avg/";
      int64_t entries = 0;
      for (const auto& [name, t] : state) entries += name.rfind(expected, 0) == 0;
      EXPECT_EQ(entries, 10) << what;  // LeNet's 10 parameters

      tf::train::Trainer second(config(setup, mode));
      second.set_train_data(x, y);
      second.load_state_dict(weights);
      second.load_train_state(state);
      second.set_epochs_done(2);
      for (int e = 0; e < 2; ++e) second.train_epoch({}, nullptr, false);

      const auto a = straight.state_dict(), b = second.state_dict();
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << what << ": " << a[i].first;
      }
    }
  }
}

TEST(Optimizers, DeviceStepTrainsLikeTheHostLoop) {
  auto [x, y] = halves(100, 8);
  for (const auto& setup : kSetups) {
    tf::train::Trainer host(config(setup, "off")), device(config(setup, "on"));
    for (auto* t : {&host, &device}) t->set_train_data(x, y);
    for (int e = 0; e < 3; ++e) {
      const auto a = host.train_epoch({}, nullptr, false);
      const auto b = device.train_epoch({}, nullptr, false);
      EXPECT_NEAR(a.loss, b.loss, 1e-4 * std::abs(a.loss)) << describe(setup, "both");
    }
    const auto a = host.state_dict(), b = device.state_dict();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i].second, b[i].second, 1e-3, 1e-5))
          << describe(setup, "both") << ": " << a[i].first;
    }
  }
}

TEST(Optimizers, TrainerRefusesBadCombinations) {
  const auto refused = [](tf::train::TrainConfig c, const std::string& part) {
    try {
      tf::train::Trainer t(c);
      ADD_FAILURE() << "no throw: " << part;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  auto c = config({"adam"}, "off");
  c.momentum = 0.9;
  refused(c, "momentum");
  c = config({"adam"}, "off");
  c.clip_grad_norm = -1;
  refused(c, "clip_grad_norm");
  c = config({"adam"}, "off");
  c.warmup_epochs = 2;
  c.lr_schedule = "onecycle";
  c.schedule_epochs = 5;
  refused(c, "warmup_epochs");
  c.lr_schedule = "cosine";
  c.schedule_epochs = 2;
  refused(c, "warmup_epochs");
}
