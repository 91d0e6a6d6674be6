// The fused focal-loss op against independent float64 references built from composed LibTorch
// ops with autograd, on fresh random inputs every run (the seed is printed on failure), plus
// central-difference gradchecks, edge cases, argument errors and the shared maths directly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/ops/focal_loss.h"
#include "src/ops/focal_loss_impl.h"
#include "src/ops/focal_math.h"
#include "test/native/helpers.h"

namespace {

namespace F = torch::nn::functional;
using torchfocal::ops::FocalMode;
using torchfocal::ops::FocalOptions;
using torchfocal::ops::Reduction;

// Seeds LibTorch's generator from std::random_device and returns the seed for SCOPED_TRACE.
std::string fresh_seed() {
  const uint64_t seed = std::random_device{}();
  torch::manual_seed(seed);
  return "seed " + std::to_string(seed);
}

torch::Tensor f64(const torch::Tensor& t) { return t.detach().to(torch::kDouble); }

// |actual - expected| <= rtol (|expected| + max |expected|): relative to each value and to the
// tensor's scale (gradients and per-row losses hold values that cancel to near zero).
void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, double rtol,
                  const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const torch::Tensor a = f64(actual).cpu();
  const torch::Tensor e = f64(expected).cpu();
  ASSERT_TRUE(torch::isfinite(a).all().item<bool>()) << what << ": non-finite values\n" << a;
  const double scale = e.numel() ? e.abs().max().item<double>() : 0.0;
  const torch::Tensor excess = (a - e).abs() - rtol * (e.abs() + scale);
  const double worst = excess.numel() ? excess.max().item<double>() : -1.0;
  EXPECT_LE(worst, 0.0) << what << ": max |diff| "
                        << ((a - e).abs().numel() ? (a - e).abs().max().item<double>() : 0.0)
                        << " at scale " << scale;
}

double tolerance(torch::ScalarType type) { return type == torch::kDouble ? 1e-10 : 1e-5; }

// ---- References: float64, composed ops, autograd for gradients ----------------------------

// log p_t = -log1p(Σ_{j != t} exp(x_j - x_t)): float64's log_softmax rounds Σ exp(x - max) to
// 1 + ε first and loses the digits of log p_t as p_t -> 1 (and autograd through a max cancels).
torch::Tensor careful_log_pt(const torch::Tensor& x, const torch::Tensor& t) {
  const torch::Tensor others = F::one_hot(t, x.size(1)).logical_not();
  const torch::Tensor xt = x.gather(1, t.unsqueeze(1));
  return -torch::log1p(((x - xt).exp() * others).sum(1));
}

// Softmax mode per row: -Σ_c q_c α_c (1 - p_c)^γ log p_c, zero on ignored rows.
torch::Tensor ref_softmax_rows(const torch::Tensor& x, const torch::Tensor& target,
                               const torch::Tensor& alpha, double gamma, double smoothing,
                               int64_t ignore_index, bool careful = false) {
  const int64_t classes = x.size(1);
  const torch::Tensor valid = target.ne(ignore_index);
  const torch::Tensor t = torch::where(valid, target, torch::zeros_like(target));
  const torch::Tensor log_p = torch::log_softmax(x, 1);
  torch::Tensor a = alpha.defined() ? f64(alpha) : torch::ones({classes}, torch::kDouble);
  torch::Tensor rows;
  if (smoothing == 0) {
    // The original experiment's form: gather p_t, then -α_t (1 - p_t)^γ log p_t.
    // 1 - p_t as -expm1(log p_t): float64's 1 - p_t loses digits as p_t -> 1.
    const torch::Tensor log_pt =
        careful ? careful_log_pt(x, t) : log_p.gather(1, t.unsqueeze(1)).squeeze(1);
    rows = -a.index_select(0, t) * (-torch::expm1(log_pt)).pow(gamma) * log_pt;
  } else {
    const torch::Tensor q =
        (1 - smoothing) * F::one_hot(t, classes).to(torch::kDouble) + smoothing / classes;
    rows = (-q * a.unsqueeze(0) * (-torch::expm1(log_p)).pow(gamma) * log_p).sum(1);
  }
  return rows * valid.to(torch::kDouble);
}

// The original experiment's probs branch: clamp(p_t, 1e-8, 1), then the α/γ form.
torch::Tensor ref_probs_rows(const torch::Tensor& probs, const torch::Tensor& target,
                             const torch::Tensor& alpha, double gamma, int64_t ignore_index) {
  const torch::Tensor valid = target.ne(ignore_index);
  const torch::Tensor t = torch::where(valid, target, torch::zeros_like(target));
  const torch::Tensor pt = probs.gather(1, t.unsqueeze(1)).squeeze(1).clamp(1e-8, 1.0);
  torch::Tensor at = alpha.defined() ? f64(alpha).index_select(0, t) : torch::ones_like(pt);
  return -at * (1 - pt).pow(gamma) * pt.log() * valid.to(torch::kDouble);
}

// torchvision.ops.sigmoid_focal_loss, reduction none (binary targets).
torch::Tensor ref_torchvision(const torch::Tensor& x, const torch::Tensor& t, double alpha,
                              double gamma) {
  const torch::Tensor p = torch::sigmoid(x);
  const torch::Tensor ce = F::binary_cross_entropy_with_logits(
      x, t, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  const torch::Tensor p_t = p * t + (1 - p) * (1 - t);
  torch::Tensor loss = ce * (1 - p_t).pow(gamma);
  if (alpha >= 0) loss = (alpha * t + (1 - alpha) * (1 - t)) * loss;
  return loss;
}

// The sigmoid formula (soft targets): -α t (1-p)^γ log p - (1-α)(1-t) p^γ log(1-p).
torch::Tensor ref_sigmoid_soft(const torch::Tensor& x, const torch::Tensor& t, double alpha,
                               double gamma) {
  const double wp = alpha < 0 ? 1.0 : alpha;
  const double wn = alpha < 0 ? 1.0 : 1.0 - alpha;
  const torch::Tensor p = torch::sigmoid(x);
  return -wp * t * (1 - p).pow(gamma) * F::logsigmoid(x) -
         wn * (1 - t) * p.pow(gamma) * F::logsigmoid(-x);
}

torch::Tensor reduce_ref(const torch::Tensor& rows, Reduction reduction, double divisor) {
  if (reduction == Reduction::kNone) return rows;
  if (reduction == Reduction::kSum) return rows.sum();
  return rows.sum() / divisor;
}

// Value and gradient of the op through autograd, with a fixed random upstream gradient for
// reduction none (so the per-row scaling is exercised).
using torchfocal::testing::ValueGrad;
using torchfocal::testing::with_threads;

ValueGrad run_op(const torch::Tensor& input, const torch::Tensor& target,
                 const FocalOptions& options, const torch::Tensor& upstream) {
  torch::Tensor x = input.detach().clone().requires_grad_(true);
  torch::Tensor value = torchfocal::ops::focal_loss(x, target, options);
  value.backward(options.reduction == Reduction::kNone ? upstream.to(value.dtype())
                                                       : torch::Tensor());
  return {value.detach(), x.grad()};
}

// The same through a composed reference `fn` (float64).
ValueGrad run_ref(const torch::Tensor& input,
                  const std::function<torch::Tensor(const torch::Tensor&)>& fn, Reduction reduction,
                  double divisor, const torch::Tensor& upstream) {
  torch::Tensor x = f64(input).requires_grad_(true);
  torch::Tensor value = reduce_ref(fn(x), reduction, divisor);
  value.backward(reduction == Reduction::kNone ? f64(upstream) : torch::Tensor());
  return {value.detach(), x.grad()};
}

double valid_rows(const torch::Tensor& target, int64_t ignore_index) {
  return std::max(1.0, target.ne(ignore_index).sum().item<double>());
}

const std::vector<Reduction> kReductions = {Reduction::kMean, Reduction::kSum, Reduction::kNone};

// Central differences of a scalar function of x (float64), as torch.autograd.gradcheck.
torch::Tensor numeric_grad(const std::function<double(const torch::Tensor&)>& f,
                           const torch::Tensor& x, double eps = 1e-6) {
  torch::Tensor g = torch::zeros_like(x);
  torch::Tensor xf = x.clone().flatten();
  auto ga = g.flatten();
  for (int64_t i = 0; i < xf.numel(); ++i) {
    const double v = xf[i].item<double>();
    xf[i] = v + eps;
    const double up = f(xf.view(x.sizes()));
    xf[i] = v - eps;
    const double down = f(xf.view(x.sizes()));
    xf[i] = v;
    ga[i] = (up - down) / (2 * eps);
  }
  return g;
}

// gradcheck: analytic gradient of sum(w ⊙ loss) against central differences, gradcheck's
// default tolerances (atol 1e-5, rtol 1e-3).
void gradcheck(const torch::Tensor& x, const torch::Tensor& target, const FocalOptions& options,
               const std::string& what) {
  SCOPED_TRACE(what);
  const torch::Tensor w =
      torch::rand(options.mode == FocalMode::kSigmoid ? x.sizes() : torch::IntArrayRef{x.size(0)},
                  torch::kDouble);
  FocalOptions none = options;
  none.reduction = Reduction::kNone;
  auto f = [&](const torch::Tensor& xi) {
    return (torchfocal::ops::focal_loss_forward(xi, target, none) * w).sum().item<double>();
  };
  const torch::Tensor numeric = numeric_grad(f, x);
  const torch::Tensor analytic = run_op(x, target, none, w).grad;
  EXPECT_TRUE(torch::allclose(analytic, numeric, /*rtol=*/1e-3, /*atol=*/1e-5))
      << "analytic\n"
      << analytic << "\nnumeric\n"
      << numeric;
  // Through each reduction too.
  for (Reduction reduction : {Reduction::kMean, Reduction::kSum}) {
    FocalOptions reduced = options;
    reduced.reduction = reduction;
    auto fr = [&](const torch::Tensor& xi) {
      return torchfocal::ops::focal_loss(xi, target, reduced).item<double>();
    };
    EXPECT_TRUE(
        torch::allclose(run_op(x, target, reduced, w).grad, numeric_grad(fr, x), 1e-3, 1e-5));
  }
}

void expect_invalid(const std::function<void()>& fn, const std::string& message) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected: " << message;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not std::invalid_argument: " << e.what();
  }
}

FocalOptions softmax_options(double gamma, const torch::Tensor& alpha = {},
                             Reduction reduction = Reduction::kMean) {
  FocalOptions o;
  o.mode = FocalMode::kSoftmax;
  o.gamma = gamma;
  o.alpha = alpha;
  o.reduction = reduction;
  return o;
}

// Random targets with about a fifth of the rows set to ignore_index.
torch::Tensor random_target(int64_t rows, int64_t classes, int64_t ignore_index) {
  torch::Tensor t = torch::randint(classes, {rows}, torch::kLong);
  return torch::where(torch::rand({rows}) < 0.2, torch::full_like(t, ignore_index), t);
}

// Softmax mode against the reference for one configuration, every reduction.
void check_softmax(torch::ScalarType type, int64_t rows, int64_t classes, double gamma,
                   bool with_alpha, double smoothing, double logit_scale) {
  SCOPED_TRACE("softmax " + std::string(c10::toString(type)) + " " + std::to_string(rows) + "x" +
               std::to_string(classes) + " gamma " + std::to_string(gamma) + " smoothing " +
               std::to_string(smoothing));
  const int64_t ignore = -100;
  const torch::Tensor x = (torch::randn({rows, classes}, torch::kDouble) * logit_scale).to(type);
  const torch::Tensor target = random_target(rows, classes, ignore);
  const torch::Tensor alpha =
      with_alpha ? (torch::rand({classes}, torch::kDouble) * 2 + 0.1).to(type) : torch::Tensor();
  const torch::Tensor upstream = torch::randn({rows}, torch::kDouble);
  for (Reduction reduction : kReductions) {
    FocalOptions o = softmax_options(gamma, alpha, reduction);
    o.label_smoothing = smoothing;
    o.ignore_index = ignore;
    const ValueGrad got = run_op(x, target, o, upstream);
    const ValueGrad want = run_ref(
        x,
        [&](const torch::Tensor& xd) {
          return ref_softmax_rows(xd, target, alpha, gamma, smoothing, ignore);
        },
        reduction, valid_rows(target, ignore), upstream);
    EXPECT_EQ(got.value.scalar_type(), type);
    EXPECT_EQ(got.grad.scalar_type(), type);
    expect_close(got.value, want.value, tolerance(type), "value");
    expect_close(got.grad, want.grad, tolerance(type), "grad");
  }
}

// ---- Softmax mode -----------------------------------------------------------------------------

TEST(FocalLoss, SoftmaxMatchesComposedReference) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    for (double gamma : {0.0, 0.5, 1.0, 2.0, 2.7}) {
      check_softmax(type, 64, 10, gamma, /*with_alpha=*/true, /*smoothing=*/0.0, 3.0);
    }
    check_softmax(type, 33, 1, 2.0, true, 0.0, 3.0);     // one class: p = 1 everywhere
    check_softmax(type, 17, 37, 2.0, false, 0.0, 3.0);   // tail lanes of every width
    check_softmax(type, 16, 1000, 2.0, true, 0.0, 5.0);  // long rows
  }
}

TEST(FocalLoss, LabelSmoothingMatchesComposedReference) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    for (double gamma : {0.0, 0.5, 2.0}) {
      check_softmax(type, 48, 10, gamma, /*with_alpha=*/true, /*smoothing=*/0.1, 3.0);
    }
    check_softmax(type, 8, 300, 1.5, false, 0.3, 4.0);
  }
}

// Targets the caller has checked (the trainer's): no range check, a mean over N, the same values
// and gradients as the reference.
TEST(FocalLoss, CheckedTargetsMatchTheReference) {
  SCOPED_TRACE(fresh_seed());
  const torch::Tensor x = torch::randn({40, 10}, torch::kDouble) * 3;
  const torch::Tensor target = torch::randint(10, {40}, torch::kLong);
  const torch::Tensor alpha = torch::rand({10}, torch::kDouble) + 0.5;
  const torch::Tensor upstream = torch::randn({40}, torch::kDouble);
  for (Reduction reduction : kReductions) {
    FocalOptions o = softmax_options(2.0, alpha, reduction);
    o.targets_checked = true;
    const ValueGrad got = run_op(x, target, o, upstream);
    const ValueGrad want = run_ref(
        x,
        [&](const torch::Tensor& xd) {
          return ref_softmax_rows(xd, target, alpha, 2.0, 0.0, -100);
        },
        reduction, 40, upstream);
    expect_close(got.value, want.value, 1e-10, "value");
    expect_close(got.grad, want.grad, 1e-10, "grad");
  }
}

TEST(FocalLoss, SoftmaxGradcheck) {
  SCOPED_TRACE(fresh_seed());
  const torch::Tensor x = torch::randn({5, 4}, torch::kDouble) * 2;
  const torch::Tensor target = torch::tensor({0, 3, -100, 1, 2}, torch::kLong);
  const torch::Tensor alpha = torch::rand({4}, torch::kDouble) + 0.5;
  gradcheck(x, target, softmax_options(2.0, alpha), "gamma 2");
  gradcheck(x, target, softmax_options(0.5, alpha), "gamma 0.5");
  gradcheck(x, target, softmax_options(0.0), "gamma 0");
  FocalOptions smooth = softmax_options(1.3, alpha);
  smooth.label_smoothing = 0.2;
  gradcheck(x, target, smooth, "label smoothing");
}

TEST(FocalLoss, GammaZeroIsWeightedCrossEntropy) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    const int64_t rows = 50, classes = 7, ignore = 3;  // a real class index, ignored
    const torch::Tensor x = torch::randn({rows, classes}, type) * 3;
    const torch::Tensor target = torch::randint(classes, {rows}, torch::kLong);
    const torch::Tensor alpha = torch::rand({classes}, type) + 0.2;
    FocalOptions o = softmax_options(0.0, alpha, Reduction::kNone);
    o.ignore_index = ignore;

    // Per row: weighted NLL of log-softmax.
    const torch::Tensor nll = F::nll_loss(
        torch::log_softmax(x, 1), target,
        F::NLLLossFuncOptions().weight(alpha).ignore_index(ignore).reduction(torch::kNone));
    expect_close(torchfocal::ops::focal_loss(x, target, o), nll, tolerance(type), "none");

    // Sum equals PyTorch's weighted CE sum; our mean is the plain mean over non-ignored rows
    // (PyTorch's weighted mean divides by the sum of the weights instead).
    torch::Tensor xr = x.clone().requires_grad_(true);
    const torch::Tensor ce_sum = F::cross_entropy(
        xr, target,
        F::CrossEntropyFuncOptions().weight(alpha).ignore_index(ignore).reduction(torch::kSum));
    const double count = valid_rows(target, ignore);
    (ce_sum / count).backward();
    o.reduction = Reduction::kSum;
    expect_close(torchfocal::ops::focal_loss(x, target, o), ce_sum, tolerance(type), "sum");
    o.reduction = Reduction::kMean;
    const ValueGrad got = run_op(x, target, o, {});
    expect_close(got.value, ce_sum / count, tolerance(type), "mean");
    expect_close(got.grad, xr.grad(), tolerance(type), "mean grad");
  }
}

TEST(FocalLoss, ExtremeLogitsStayFinite) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    for (double gamma : {0.0, 0.25, 0.5, 0.75, 2.0}) {
      SCOPED_TRACE(std::string(c10::toString(type)) + " gamma " + std::to_string(gamma));
      // ±1e4 logits: p_t is exactly 0 or 1 in float64 as well.
      const torch::Tensor x = (torch::randint(3, {32, 10}, torch::kDouble) - 1).mul(1e4).to(type);
      const torch::Tensor target = torch::randint(10, {32}, torch::kLong);
      for (double smoothing : {0.0, 0.1}) {
        FocalOptions o = softmax_options(gamma, torch::rand({10}, type) + 0.5);
        o.label_smoothing = smoothing;
        const ValueGrad got = run_op(x, target, o, {});
        EXPECT_TRUE(torch::isfinite(got.value).all().item<bool>()) << got.value;
        EXPECT_TRUE(torch::isfinite(got.grad).all().item<bool>());
        // The loss itself matches the reference (its gradient is NaN there for γ < 1).
        const torch::Tensor want =
            ref_softmax_rows(f64(x), target, o.alpha, gamma, smoothing, -100).mean();
        expect_close(got.value, want, tolerance(type), "value");
      }
    }
  }
}

TEST(FocalLoss, GammaBelowOneNearCertainRows) {
  SCOPED_TRACE(fresh_seed());
  // p_t -> 1: (1 - p_t)^(γ-1) overflows, the op's γ (1 - p)^γ r form does not.
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    for (double margin : {8.0, 20.0, 40.0, 200.0}) {
      torch::Tensor x = torch::randn({6, 5}, torch::kDouble) * 0.1;
      const torch::Tensor target = torch::tensor({0, 1, 2, 3, 4, 0}, torch::kLong);
      for (int64_t i = 0; i < 6; ++i) x[i][target[i].item<int64_t>()] += margin;
      x = x.to(type);
      for (double gamma : {0.2, 0.5, 0.9}) {
        const ValueGrad got = run_op(x, target, softmax_options(gamma), {});
        EXPECT_TRUE(torch::isfinite(got.grad).all().item<bool>()) << got.grad;
        EXPECT_TRUE(torch::isfinite(got.value).all().item<bool>());
        if (margin <= 20.0) {
          // 1 - p_t is still representable in float64: the careful reference is finite there.
          const ValueGrad want =
              run_ref(x,
                      [&](const torch::Tensor& xd) {
                        return ref_softmax_rows(xd, target, {}, gamma, 0, -100, /*careful=*/true);
                      },
                      Reduction::kMean, 6, {});
          expect_close(got.value, want.value, tolerance(type), "value");
          expect_close(got.grad, want.grad, tolerance(type), "grad");
        }
      }
    }
  }
}

TEST(FocalLoss, HugeClassCount) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    check_softmax(type, 3, 100000, 2.0, /*with_alpha=*/true, 0.0, 4.0);
    check_softmax(type, 2, 100000, 0.5, /*with_alpha=*/false, 0.05, 4.0);
  }
}

TEST(FocalLoss, AllRowsIgnoredGiveZero) {
  for (Reduction reduction : kReductions) {
    FocalOptions o = softmax_options(2.0, {}, reduction);
    const torch::Tensor x = torch::randn({4, 3});
    const ValueGrad got = run_op(x, torch::full({4}, -100, torch::kLong), o, torch::ones({4}));
    EXPECT_EQ(got.value.abs().sum().item<double>(), 0.0);
    EXPECT_EQ(got.grad.abs().sum().item<double>(), 0.0);
    // And an empty batch.
    const ValueGrad empty =
        run_op(torch::randn({0, 3}), torch::zeros({0}, torch::kLong), o, torch::ones({0}));
    EXPECT_FALSE(torch::isnan(empty.value).any().item<bool>());
    EXPECT_EQ(empty.value.sum().item<double>(), 0.0);
    EXPECT_EQ(empty.grad.sizes(), (std::vector<int64_t>{0, 3}));
  }
}

TEST(FocalLoss, NonContiguousInputAndRawBackward) {
  SCOPED_TRACE(fresh_seed());
  const torch::Tensor xt = torch::randn({10, 20});  // [C, N], transposed below
  const torch::Tensor x = xt.t();
  ASSERT_FALSE(x.is_contiguous());
  const torch::Tensor target = torch::randint(10, {20}, torch::kLong);
  const FocalOptions o = softmax_options(2.0, torch::rand({10}) + 0.5, Reduction::kSum);
  const ValueGrad got = run_op(x, target, o, {});
  const ValueGrad contiguous = run_op(x.contiguous(), target, o, {});
  expect_close(got.value, contiguous.value, 1e-6, "value");
  expect_close(got.grad, contiguous.grad, 1e-6, "grad");
  // focal_loss_backward with a scalar grad_loss is the gradient of the sum.
  const torch::Tensor raw = torchfocal::ops::focal_loss_backward(torch::tensor(1.0f), x, target, o);
  expect_close(raw, contiguous.grad, 1e-6, "raw backward");
  expect_close(torchfocal::ops::focal_loss_forward(x, target, o).sum(), got.value, 1e-6,
               "raw forward");
}

TEST(FocalLoss, EveryCpuInstructionSetAgrees) {
  using torchfocal::ops::detail::CpuIsa;
  SCOPED_TRACE(fresh_seed());
  for (int64_t classes : {3, 10, 37, 1000}) {
    SCOPED_TRACE("classes " + std::to_string(classes));
    const torch::Tensor x = torch::randn({24, classes}) * 4;
    const torch::Tensor target = random_target(24, classes, -100);
    for (double smoothing : {0.0, 0.1}) {
      FocalOptions o = softmax_options(2.0, torch::rand({classes}) + 0.5, Reduction::kNone);
      o.label_smoothing = smoothing;
      const auto args = torchfocal::ops::detail::check_args(x, target, o);
      const torch::Tensor grad_loss = torch::randn({24});
      const torch::Tensor want_rows =
          ref_softmax_rows(f64(x), target, o.alpha, 2.0, smoothing, -100);
      for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
        if (!torchfocal::ops::detail::cpu_isa_available(isa)) continue;
        SCOPED_TRACE("isa " + std::to_string(static_cast<int>(isa)));
        const auto out = torchfocal::ops::detail::forward_cpu(args, isa);
        expect_close(out.loss, want_rows, 1e-5, "rows");
        expect_close(out.stats.sum(1), torch::where(target.ne(-100), torch::logsumexp(x, 1), 0),
                     1e-6, "logsumexp");
        const torch::Tensor grad =
            torchfocal::ops::detail::backward_cpu(args, out.stats, grad_loss, 0.5, isa);
        const torch::Tensor grad_auto =
            torchfocal::ops::detail::backward_cpu(args, out.stats, grad_loss, 0.5);
        expect_close(grad, grad_auto, 1e-5, "grad");
      }
    }
  }
}

TEST(FocalLoss, ParallelRowsMatchOneThread) {
  SCOPED_TRACE(fresh_seed());
  // Enough rows for several chunks; rows are independent, so any split gives the same bits.
  const torch::Tensor x = torch::randn({20000, 10}) * 3;
  const torch::Tensor target = random_target(20000, 10, -100);
  const torch::Tensor upstream = torch::randn({20000});
  const FocalOptions o = softmax_options(2.0, torch::rand({10}) + 0.5, Reduction::kNone);
  const ValueGrad one = with_threads(1, [&] { return run_op(x, target, o, upstream); });
  const ValueGrad two = with_threads(2, [&] { return run_op(x, target, o, upstream); });
  EXPECT_TRUE(torch::equal(one.value, two.value));
  EXPECT_TRUE(torch::equal(one.grad, two.grad));
}

// ---- Probs mode -------------------------------------------------------------------------------

TEST(FocalLoss, ProbsMatchesOriginalExperiment) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    const int64_t rows = 40, classes = 10, ignore = -1;
    torch::Tensor probs = torch::softmax(torch::randn({rows, classes}, torch::kDouble) * 3, 1);
    const torch::Tensor target = random_target(rows, classes, ignore);
    // A few target probabilities under the clamp: loss from 1e-8, gradient 0 there.
    for (int64_t i : {1, 7}) probs[i][std::max<int64_t>(target[i].item<int64_t>(), 0)] = 1e-12;
    probs = probs.to(type);
    const torch::Tensor alpha = torch::rand({classes}, type) + 0.5;
    const torch::Tensor upstream = torch::randn({rows}, torch::kDouble);
    for (Reduction reduction : kReductions) {
      FocalOptions o = softmax_options(2.0, alpha, reduction);
      o.mode = FocalMode::kProbs;
      o.ignore_index = ignore;
      const ValueGrad got = run_op(probs, target, o, upstream);
      const ValueGrad want = run_ref(
          probs,
          [&](const torch::Tensor& p) { return ref_probs_rows(p, target, alpha, 2.0, ignore); },
          reduction, valid_rows(target, ignore), upstream);
      expect_close(got.value, want.value, tolerance(type), "value");
      expect_close(got.grad, want.grad, tolerance(type), "grad");
      // Only target columns carry gradient.
      EXPECT_EQ(got.grad
                    .masked_select(
                        F::one_hot(target.clamp_min(0), classes).to(torch::kBool).logical_not())
                    .abs()
                    .sum()
                    .item<double>(),
                0.0);
    }
  }
}

TEST(FocalLoss, ProbsGradcheckAndClampEdges) {
  SCOPED_TRACE(fresh_seed());
  const torch::Tensor probs = torch::rand({5, 4}, torch::kDouble) * 0.8 + 0.1;
  const torch::Tensor target = torch::tensor({0, 3, 1, 1, 2}, torch::kLong);
  FocalOptions o = softmax_options(2.0, torch::rand({4}, torch::kDouble) + 0.5);
  o.mode = FocalMode::kProbs;
  gradcheck(probs, target, o, "probs gamma 2");
  o.gamma = 0.5;
  gradcheck(probs, target, o, "probs gamma 0.5");
  // p_t = 1 exactly and p_t = 0: finite for any γ.
  const torch::Tensor edge = torch::tensor({{1.0, 0.0}, {0.0, 1.0}}, torch::kDouble);
  for (double gamma : {0.0, 0.5, 2.0}) {
    o.gamma = gamma;
    o.alpha = torch::Tensor();
    const ValueGrad got = run_op(edge, torch::tensor({0, 0}, torch::kLong), o, {});
    EXPECT_TRUE(torch::isfinite(got.grad).all().item<bool>());
    EXPECT_NEAR(got.value.item<double>(), -0.5 * std::pow(1 - 1e-8, gamma) * std::log(1e-8), 1e-9);
  }
}

// ---- Sigmoid mode -----------------------------------------------------------------------------

FocalOptions sigmoid_options(double alpha, double gamma, Reduction reduction) {
  FocalOptions o;
  o.mode = FocalMode::kSigmoid;
  o.sigmoid_alpha = alpha;
  o.gamma = gamma;
  o.reduction = reduction;
  return o;
}

TEST(FocalLoss, SigmoidMatchesTorchvisionOnBinaryTargets) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    const torch::Tensor x = (torch::randn({6, 5, 3}, torch::kDouble) * 4).to(type);
    const torch::Tensor t = torch::randint(2, {6, 5, 3}, type);
    const torch::Tensor upstream = torch::randn({6, 5, 3}, torch::kDouble);
    for (double alpha : {0.25, -1.0}) {
      for (double gamma : {0.0, 2.0, 0.5}) {
        for (Reduction reduction : kReductions) {
          const auto o = sigmoid_options(alpha, gamma, reduction);
          const ValueGrad got = run_op(x, t, o, upstream);
          const ValueGrad want = run_ref(
              x, [&](const torch::Tensor& xd) { return ref_torchvision(xd, f64(t), alpha, gamma); },
              reduction, x.numel(), upstream);
          expect_close(got.value, want.value, tolerance(type), "value");
          expect_close(got.grad, want.grad, tolerance(type), "grad");
        }
      }
    }
  }
}

TEST(FocalLoss, SigmoidSoftTargetsAndGradcheck) {
  SCOPED_TRACE(fresh_seed());
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    const torch::Tensor x = (torch::randn({40}, torch::kDouble) * 3).to(type);
    const torch::Tensor t = torch::rand({40}, type);
    const torch::Tensor upstream = torch::randn({40}, torch::kDouble);
    for (Reduction reduction : kReductions) {
      const auto o = sigmoid_options(0.3, 1.5, reduction);
      const ValueGrad got = run_op(x, t, o, upstream);
      const ValueGrad want = run_ref(
          x, [&](const torch::Tensor& xd) { return ref_sigmoid_soft(xd, f64(t), 0.3, 1.5); },
          reduction, x.numel(), upstream);
      expect_close(got.value, want.value, tolerance(type), "value");
      expect_close(got.grad, want.grad, tolerance(type), "grad");
    }
  }
  const torch::Tensor x = torch::randn({3, 4}, torch::kDouble) * 2;
  const torch::Tensor t = torch::rand({3, 4}, torch::kDouble);
  gradcheck(x, t, sigmoid_options(0.25, 2.0, Reduction::kMean), "sigmoid gamma 2");
  gradcheck(x, t, sigmoid_options(-1.0, 0.5, Reduction::kMean), "sigmoid gamma 0.5");
  // Extreme logits: finite loss and gradient, and the torchvision value.
  for (torch::ScalarType type : {torch::kFloat, torch::kDouble}) {
    const torch::Tensor big = torch::tensor({-1e4, 1e4, -1e4, 1e4, 0.0}, type);
    const torch::Tensor bt = torch::tensor({1.0, 0.0, 0.0, 1.0, 1.0}, type);
    const ValueGrad got = run_op(big, bt, sigmoid_options(0.25, 0.5, Reduction::kSum), {});
    EXPECT_TRUE(torch::isfinite(got.grad).all().item<bool>());
    expect_close(got.value, ref_torchvision(f64(big), f64(bt), 0.25, 0.5).sum(), 1e-6, "big");
  }
}

// ---- CUDA, when present -----------------------------------------------------------------------

TEST(FocalLoss, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  SCOPED_TRACE(fresh_seed());
  for (int64_t classes : {10, 1000, 5000}) {
    const torch::Tensor x = torch::randn({70, classes}, torch::kDouble) * 3;
    const torch::Tensor target = random_target(70, classes, -100);
    const torch::Tensor upstream = torch::randn({70}, torch::kDouble);
    for (double smoothing : {0.0, 0.1}) {
      for (Reduction reduction : kReductions) {
        FocalOptions o = softmax_options(0.5, torch::rand({classes}) + 0.5, reduction);
        o.label_smoothing = smoothing;
        const ValueGrad want = run_op(x, target, o, upstream);
        for (torch::ScalarType type :
             {torch::kDouble, torch::kFloat, torch::kHalf, torch::kBFloat16}) {
          SCOPED_TRACE(c10::toString(type));
          FocalOptions oc = o;
          oc.alpha = o.alpha.cuda();
          const ValueGrad got =
              run_op(x.to(type).cuda(), target.cuda(), oc, upstream.cuda().to(type));
          const double tol = type == torch::kDouble ? 1e-10 : type == torch::kFloat ? 1e-5 : 3e-2;
          const ValueGrad want_t = type == torch::kDouble
                                       ? want
                                       : run_op(x.to(type).to(torch::kDouble), target, o, upstream);
          expect_close(got.value, want_t.value, tol, "value");
          expect_close(got.grad, want_t.grad, tol, "grad");
        }
      }
    }
  }
  for (FocalMode mode : {FocalMode::kProbs, FocalMode::kSigmoid}) {
    const bool sig = mode == FocalMode::kSigmoid;
    const torch::Tensor x = sig ? torch::randn({50, 7}, torch::kDouble)
                                : torch::softmax(torch::randn({50, 7}, torch::kDouble), 1);
    const torch::Tensor t =
        sig ? torch::rand({50, 7}, torch::kDouble) : torch::randint(7, {50}, torch::kLong);
    FocalOptions o = sig ? sigmoid_options(0.25, 2.0, Reduction::kMean)
                         : softmax_options(2.0, {}, Reduction::kMean);
    o.mode = mode;
    const ValueGrad want = run_op(x, t, o, {});
    const ValueGrad got = run_op(x.cuda(), t.cuda(), o, {});
    expect_close(got.value, want.value, 1e-10, "value");
    expect_close(got.grad, want.grad, 1e-10, "grad");
  }
}

// ---- Arguments --------------------------------------------------------------------------------

TEST(FocalLoss, BadArgumentsThrowInvalidArgument) {
  using torchfocal::ops::focal_loss;
  const torch::Tensor x = torch::randn({4, 10});
  const torch::Tensor t = torch::tensor({0, 1, 2, 9}, torch::kLong);
  const FocalOptions ok = softmax_options(2.0);
  auto with = [&](auto change) {
    FocalOptions o = ok;
    change(o);
    return o;
  };

  expect_invalid(
      [&] { focal_loss(x, t, with([](FocalOptions& o) { o.alpha = torch::ones({3}); })); },
      "focal_loss: alpha has 3 values but input has 10 classes");
  expect_invalid(
      [&] {
        focal_loss(x, torch::tensor({0, 1, 12, 3}, torch::kLong), ok);
      },
      "focal_loss: target value 12 is out of range for 10 classes");
  expect_invalid(
      [&] {
        focal_loss(x, torch::tensor({0, -2, 1, 3}, torch::kLong), ok);
      },
      "focal_loss: target value -2 is out of range for 10 classes");
  EXPECT_NO_THROW(focal_loss(x, torch::tensor({0, -100, 1, 3}, torch::kLong), ok));
  expect_invalid(
      [&] {
        focal_loss(x, torch::tensor({0, 1, 2}, torch::kLong), ok);
      },
      "focal_loss: target has shape [3] but input has 4 rows");
  expect_invalid([&] { focal_loss(torch::randn({4}), t, ok); },
                 "focal_loss: input must be [N, C] in softmax mode, got shape [4]");
  expect_invalid(
      [&] {
        focal_loss(torch::randn({4, 0}), t, ok);
      },
      "focal_loss: input has 0 classes");
  expect_invalid([&] { focal_loss(x, t.to(torch::kInt), ok); },
                 "focal_loss: target must be int64 class indices in softmax mode, got Int");
  expect_invalid([&] { focal_loss(x.to(torch::kLong), t, ok); },
                 "focal_loss: input must be floating point, got Long");
  expect_invalid([&] { focal_loss(x.to(torch::kHalf), t, ok); },
                 "focal_loss: input dtype Half is supported on CUDA only");
  expect_invalid([&] { focal_loss(x, t, with([](FocalOptions& o) { o.gamma = std::nan(""); })); },
                 "focal_loss: gamma must be a finite number >= 0, got nan");
  expect_invalid([&] { focal_loss(x, t, with([](FocalOptions& o) { o.gamma = -1; })); },
                 "focal_loss: gamma must be a finite number >= 0, got -1");
  expect_invalid([&] { focal_loss(x, t, with([](FocalOptions& o) { o.label_smoothing = 1.0; })); },
                 "focal_loss: label_smoothing must be in [0, 1), got 1");
  expect_invalid([&] { focal_loss(x, t, with([](FocalOptions& o) { o.label_smoothing = -0.1; })); },
                 "focal_loss: label_smoothing must be in [0, 1), got -0.1");
  expect_invalid(
      [&] {
        focal_loss(x, t, with([](FocalOptions& o) { o.alpha = torch::ones({10}, torch::kLong); }));
      },
      "focal_loss: alpha must be Float or the input's dtype (Float), got Long");
  expect_invalid(
      [&] {
        focal_loss(x, t, with([](FocalOptions& o) { o.alpha = torch::ones({2, 5}); }));
      },
      "focal_loss: alpha must be 1-D with one value per class, got shape [2, 5]");
  expect_invalid([&] { focal_loss(torch::Tensor(), t, ok); }, "focal_loss: input is undefined");
  // Probs restrictions.
  expect_invalid(
      [&] {
        focal_loss(x, t, with([](FocalOptions& o) {
                     o.mode = FocalMode::kProbs;
                     o.label_smoothing = 0.1;
                   }));
      },
      "focal_loss: label_smoothing is only supported in softmax mode, not probs");
  // Sigmoid restrictions.
  const FocalOptions sig = sigmoid_options(0.25, 2.0, Reduction::kMean);
  expect_invalid(
      [&] {
        focal_loss(x, torch::rand({4, 9}), sig);
      },
      "focal_loss: target has shape [4, 9] but input has shape [4, 10]");
  expect_invalid(
      [&] {
        focal_loss(x, torch::ones({4, 10}, torch::kLong), sig);
      },
      "focal_loss: target must be floating point in sigmoid mode, got Long");
  expect_invalid(
      [&] {
        FocalOptions o = sig;
        o.alpha = torch::ones({10});
        focal_loss(x, torch::rand({4, 10}), o);
      },
      "focal_loss: alpha (per-class weights) is not used in sigmoid mode");
  expect_invalid(
      [&] {
        FocalOptions o = sig;
        o.sigmoid_alpha = 1.5;
        focal_loss(x, torch::rand({4, 10}), o);
      },
      "focal_loss: sigmoid_alpha must be in [0, 1] (or < 0 to disable the weighting), got 1.5");
  expect_invalid(
      [&] {
        FocalOptions o = sig;
        o.label_smoothing = 0.1;
        focal_loss(x, torch::rand({4, 10}), o);
      },
      "focal_loss: label_smoothing is only supported in softmax mode, not sigmoid");
  // Raw backward's grad_loss.
  expect_invalid([&] { torchfocal::ops::focal_loss_backward(torch::ones({3}), x, t, ok); },
                 "focal_loss: grad_loss has shape [3] but expected a scalar or [4]");
  // Names.
  EXPECT_EQ(torchfocal::ops::parse_reduction("none"), Reduction::kNone);
  EXPECT_EQ(torchfocal::ops::parse_reduction("mean"), Reduction::kMean);
  EXPECT_EQ(torchfocal::ops::parse_reduction("sum"), Reduction::kSum);
  EXPECT_EQ(torchfocal::ops::parse_mode("softmax"), FocalMode::kSoftmax);
  EXPECT_EQ(torchfocal::ops::parse_mode("probs"), FocalMode::kProbs);
  EXPECT_EQ(torchfocal::ops::parse_mode("sigmoid"), FocalMode::kSigmoid);
  expect_invalid([] { torchfocal::ops::parse_reduction("avg"); },
                 "focal_loss: unknown reduction 'avg' (expected none, mean or sum)");
  expect_invalid([] { torchfocal::ops::parse_mode("logits"); },
                 "focal_loss: unknown mode 'logits' (expected softmax, probs or sigmoid)");
}

// ---- The shared maths (focal_math.h), as the CUDA kernels call it ----------------------------

TEST(FocalMath, HandComputedValues) {
  namespace m = torchfocal::ops::math;
  const double ln2 = std::log(2.0);
  // p = 0.5, γ = 2: f = -(1/4) ln(1/2); p f'(p) = 2 p (1-p) ln p - (1-p)^2.
  auto term = m::focal_term(0.5, 0.5, std::log(0.5), 2.0);
  EXPECT_NEAR(term.loss, 0.25 * ln2, 1e-15);
  EXPECT_NEAR(term.grad, -0.5 * ln2 - 0.25, 1e-15);
  // Same through log p, in float.
  auto termf = m::softmax_term(std::log(0.5f), 2.0f);
  EXPECT_NEAR(termf.loss, 0.25 * ln2, 1e-7);
  EXPECT_NEAR(termf.grad, -0.5 * ln2 - 0.25, 1e-7);
  // p = 1 exactly: loss 0; γ = 0 gives the cross-entropy gradient -1, γ in (0, 1) gives 0.
  EXPECT_EQ(m::softmax_term(0.0, 0.0).loss, 0.0);
  EXPECT_EQ(m::softmax_term(0.0, 0.0).grad, -1.0);
  EXPECT_EQ(m::softmax_term(0.0f, 0.5f).grad, 0.0f);
  // 1 - p tiny: r -> -1, so grad = (1-p)^γ (-γ - 1).
  const double lp = -1e-12;
  EXPECT_NEAR(m::softmax_term(lp, 0.5).grad, std::sqrt(1e-12) * (-1.5), 1e-15);
  // Probs: p = 0.25, γ = 1: f = -0.75 ln 0.25, f' = ln p - (1-p)/p.
  auto pr = m::probs_term(0.25, 1.0);
  EXPECT_NEAR(pr.loss, -0.75 * std::log(0.25), 1e-15);
  EXPECT_NEAR(pr.grad, std::log(0.25) - 3.0, 1e-14);
  // Below the clamp: loss at 1e-8, no gradient.
  auto clamped = m::probs_term(1e-12, 2.0);
  EXPECT_NEAR(clamped.loss, -std::pow(1 - 1e-8, 2) * std::log(1e-8), 1e-12);
  EXPECT_EQ(clamped.grad, 0.0);
  // Sigmoid at x = 0, t = 1, α = 0.25, γ = 2: p = 1/2.
  auto s = m::sigmoid_focal(0.0, 1.0, 0.25, 0.75, 2.0);
  EXPECT_NEAR(s.loss, 0.25 * 0.25 * ln2, 1e-15);
  EXPECT_NEAR(s.grad, 0.25 * 0.25 * (2 * 0.5 * -ln2 - 0.5), 1e-15);
  // Sigmoid at ±1e4 in float: -log p = 1e4 exactly, gradient ∓1, nothing overflows.
  auto lo = m::sigmoid_focal(-1e4f, 1.0f, 1.0f, 1.0f, 2.0f);
  EXPECT_EQ(lo.loss, 1e4f);
  EXPECT_EQ(lo.grad, -1.0f);
  auto hi = m::sigmoid_focal(1e4f, 0.0f, 1.0f, 1.0f, 2.0f);
  EXPECT_EQ(hi.loss, 1e4f);
  EXPECT_EQ(hi.grad, 1.0f);
  // Weights, smoothing, powers.
  EXPECT_EQ(m::sigmoid_weight_pos(-1.0), 1.0);
  EXPECT_EQ(m::sigmoid_weight_neg(0.25), 0.75);
  EXPECT_NEAR(m::smoothed_target(true, 0.1, 10), 0.91, 1e-15);
  EXPECT_NEAR(m::smoothed_target(false, 0.1, 10), 0.01, 1e-15);
  EXPECT_EQ(m::focal_pow(0.0, 0.0), 1.0);
  EXPECT_EQ(m::focal_pow(0.25, 0.5), 0.5);
  EXPECT_EQ(m::focal_pow(0.0, 0.5), 0.0);
  EXPECT_EQ(m::onehot_grad_target(2.0, 0.25), 0.5);
  EXPECT_EQ(m::onehot_grad_other(0.25, 2.0), -0.5);
  EXPECT_EQ(m::smoothed_grad(1.0, 0.25, 2.0), 0.5);
}

}  // namespace
