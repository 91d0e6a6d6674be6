// The loss family against plain composed-op references in float64, on fresh random inputs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <random>
#include <string>

#include "src/losses/loss.h"

namespace tl = torchfocal::losses;

namespace {

struct Batch {
  torch::Tensor logits, target;
};

Batch random_batch(int64_t n, int64_t c) {
  const auto seed = std::random_device{}();
  torch::manual_seed(seed);
  return {torch::randn({n, c}, torch::kFloat64) * 3, torch::randint(0, c, {n}, torch::kInt64)};
}

double run(const tl::LossConfig& config, const std::vector<int64_t>& counts, const Batch& b) {
  return tl::make_loss(config, counts, torch::kCPU)->forward(b.logits, b.target).item<double>();
}

// mean over rows of -w_y log softmax(z)_y
double weighted_ce(const torch::Tensor& z, const torch::Tensor& y, const std::vector<double>& w) {
  auto nll = -torch::log_softmax(z, 1).gather(1, y.unsqueeze(1)).squeeze(1);
  if (!w.empty()) nll = nll * torch::tensor(w, torch::kFloat64).index_select(0, y);
  return nll.mean().item<double>();
}

const std::vector<int64_t> kCounts{5000, 2000, 500, 50, 5};

// Σ_i Σ_c q_ic w_c (1 - p_ic)^γ (-log p_ic) / Σ_i w_{y_i}, q the smoothed target distribution:
// PyTorch's CrossEntropyLoss(weight=w, label_smoothing=ε) at γ = 0 (its smoothing term is
// -Σ_c w_c log p_c ε / C, over the same denominator), focal's analogue otherwise.
torch::Tensor weight_normalised(const torch::Tensor& z, const torch::Tensor& y,
                                const std::vector<double>& w, double gamma, double eps) {
  const auto logp = torch::log_softmax(z, 1);
  const double c = static_cast<double>(z.size(1));
  const auto q = torch::full_like(logp, eps / c).scatter_(1, y.unsqueeze(1), 1 - eps + eps / c);
  const auto wt = torch::tensor(w, torch::kFloat64);
  const auto rows = -(q * wt * (1 - logp.exp()).pow(gamma) * logp).sum(1);
  return rows.sum() / wt.index_select(0, y).sum();
}

}  // namespace

TEST(Losses, CrossEntropyAndWeights) {
  auto b = random_batch(64, 5);
  tl::LossConfig ce;
  EXPECT_NEAR(run(ce, kCounts, b), weighted_ce(b.logits, b.target, {}), 1e-10);
  ce.alpha = {1, 2, 3, 4, 5};
  EXPECT_NEAR(run(ce, kCounts, b), weighted_ce(b.logits, b.target, ce.alpha), 1e-10);
}

TEST(Losses, LabelSmoothingMatchesTheSmoothedTargetDistribution) {
  auto b = random_batch(32, 5);
  tl::LossConfig ce;
  ce.label_smoothing = 0.1;
  auto q = torch::full({32, 5}, 0.1 / 5, torch::kFloat64)
               .scatter_(1, b.target.unsqueeze(1), 0.9 + 0.1 / 5);
  double ref = (-(q * torch::log_softmax(b.logits, 1)).sum(1)).mean().item<double>();
  EXPECT_NEAR(run(ce, kCounts, b), ref, 1e-10);
}

TEST(Losses, FocalWithAlphaMatchesTheOriginalComposition) {
  auto b = random_batch(48, 5);
  tl::LossConfig focal;
  focal.name = "focal";
  focal.alpha = {1, 1, 1, 100, 1};
  auto p = torch::softmax(b.logits, 1).gather(1, b.target.unsqueeze(1)).squeeze(1);
  auto a = torch::tensor(focal.alpha, torch::kFloat64).index_select(0, b.target);
  double ref = (-a * (1 - p).pow(2) * p.log()).mean().item<double>();
  EXPECT_NEAR(run(focal, kCounts, b), ref, 1e-9 * std::abs(ref));
}

TEST(Losses, ClassBalancedWeightsFollowTheEffectiveNumber) {
  const double beta = 0.999;
  auto w = tl::class_balanced_weights(kCounts, beta);
  double sum = 0;
  std::vector<double> raw;
  for (auto n : kCounts) raw.push_back((1 - beta) / (1 - std::pow(beta, n)));
  for (double r : raw) sum += r;
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], raw[i] * 5 / sum, 1e-12);
  auto b = random_batch(40, 5);
  tl::LossConfig cb;
  cb.name = "cb-ce";
  cb.beta = beta;
  EXPECT_NEAR(run(cb, kCounts, b), weighted_ce(b.logits, b.target, w), 1e-10);
}

TEST(Losses, InverseFrequencyAlphaHasMeanOne) {
  auto w = tl::inverse_frequency_weights(kCounts);
  double mean = 0;
  for (double x : w) mean += x / w.size();
  EXPECT_NEAR(mean, 1.0, 1e-12);
  EXPECT_NEAR(w[4] / w[0], 1000.0, 1e-9);
}

TEST(Losses, BalancedSoftmaxAndLogitAdjustAddTheLogPrior) {
  auto b = random_batch(40, 5);
  double total = 0;
  for (auto n : kCounts) total += n;
  std::vector<double> lp;
  for (auto n : kCounts) lp.push_back(std::log(n / total));
  auto prior = torch::tensor(lp, torch::kFloat64);
  tl::LossConfig bs;
  bs.name = "balanced-softmax";
  EXPECT_NEAR(run(bs, kCounts, b), weighted_ce(b.logits + prior, b.target, {}), 1e-6);
  tl::LossConfig la;
  la.name = "logit-adjust";
  la.tau = 0.5;
  EXPECT_NEAR(run(la, kCounts, b), weighted_ce(b.logits + 0.5 * prior, b.target, {}), 1e-6);
}

TEST(Losses, LdamSubtractsAMarginFromTheTargetLogitThenScales) {
  auto b = random_batch(40, 5);
  tl::LossConfig ldam;
  ldam.name = "ldam";
  std::vector<double> m;
  for (auto n : kCounts) m.push_back(std::pow(n, -0.25));
  const double top = m.back();
  for (auto& x : m) x *= 0.5 / top;  // the rarest class gets the largest margin, 0.5
  auto margins = torch::tensor(m, torch::kFloat64).index_select(0, b.target);
  auto z = b.logits.clone();
  z.scatter_add_(1, b.target.unsqueeze(1), -margins.unsqueeze(1));
  EXPECT_NEAR(run(ldam, kCounts, b), weighted_ce(30 * z, b.target, {}), 1e-5);
}

TEST(Losses, DeferredReweightingSwitchesWeightsOnAtItsEpoch) {
  auto b = random_batch(40, 5);
  tl::LossConfig c;
  c.alpha = {1, 2, 3, 4, 5};
  c.drw_epoch = 2;
  auto loss = tl::make_loss(c, kCounts, torch::kCPU);
  loss->set_epoch(1);
  EXPECT_NEAR(loss->forward(b.logits, b.target).item<double>(), weighted_ce(b.logits, b.target, {}),
              1e-10);
  loss->set_epoch(2);
  EXPECT_NEAR(loss->forward(b.logits, b.target).item<double>(),
              weighted_ce(b.logits, b.target, c.alpha), 1e-10);
}

TEST(Losses, AlphaNormalizeWeightsDividesByTheTargetWeightsLikePyTorch) {
  auto b = random_batch(64, 5);
  for (const std::string name : {"ce", "focal"}) {
    for (double eps : {0.0, 0.1}) {
      SCOPED_TRACE(name + ", smoothing " + std::to_string(eps));
      tl::LossConfig c;
      c.name = name;
      c.alpha = {1, 2, 3, 4, 100};
      c.label_smoothing = eps;
      c.alpha_normalize = "weights";
      const double gamma = name == "focal" ? c.gamma : 0.0;
      auto z = b.logits.clone().requires_grad_(true);
      auto ref_z = b.logits.clone().requires_grad_(true);
      auto got = tl::make_loss(c, kCounts, torch::kCPU)->forward(z, b.target);
      auto ref = weight_normalised(ref_z, b.target, c.alpha, gamma, eps);
      EXPECT_NEAR(got.item<double>(), ref.item<double>(), 1e-12 * std::abs(ref.item<double>()));
      got.backward();
      ref.backward();
      EXPECT_LT((z.grad() - ref_z.grad()).abs().max().item<double>(), 1e-12);
      // the default divides the same sum by N
      c.alpha_normalize = "mean";
      const double target_weights =
          torch::tensor(c.alpha, torch::kFloat64).index_select(0, b.target).sum().item<double>();
      EXPECT_NEAR(run(c, kCounts, b), ref.item<double>() * target_weights / 64,
                  1e-12 * target_weights);
    }
  }
  // Without weights "weights" is the mean; a batch whose target weights are all 0 divides by 1.
  tl::LossConfig c;
  c.alpha_normalize = "weights";
  EXPECT_NEAR(run(c, kCounts, b), weighted_ce(b.logits, b.target, {}), 1e-10);
  c.alpha = {0, 0, 0, 0, 0};
  EXPECT_EQ(run(c, kCounts, b), 0.0);
}

TEST(Losses, BadConfigurationsAreRejected) {
  tl::LossConfig c;
  c.name = "hinge";
  EXPECT_THROW(tl::make_loss(c, kCounts, torch::kCPU), std::invalid_argument);
  c = {};
  c.alpha = {1, 2};
  EXPECT_THROW(tl::make_loss(c, kCounts, torch::kCPU), std::invalid_argument);
  c = {};
  c.name = "balanced-softmax";
  c.alpha = {1};
  EXPECT_THROW(tl::make_loss(c, kCounts, torch::kCPU), std::invalid_argument);
  c = {};
  c.drw_epoch = 1;  // ce without weights: nothing to defer
  EXPECT_THROW(tl::make_loss(c, kCounts, torch::kCPU), std::invalid_argument);
  c = {};
  c.name = "focal";
  c.gamma = std::nan("");
  EXPECT_THROW(tl::make_loss(c, kCounts, torch::kCPU), std::invalid_argument);
  c = {};
  c.alpha_normalize = "sum";
  EXPECT_THROW(tl::make_loss(c, kCounts, torch::kCPU), std::invalid_argument);
}
