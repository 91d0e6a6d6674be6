#include "src/train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace torchfocal::train {
namespace {

constexpr double kPi = 3.14159265358979323846;

// OneCycleLR's defaults (torch/optim/lr_scheduler.py).
constexpr double kPctStart = 0.3, kDivFactor = 25, kFinalDivFactor = 1e4;

// OneCycleLR's _annealing_cos: from `start` at pct 0 to `end` at pct 1.
double annealing_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1);
}

double one_cycle(double max_lr, int64_t step, int64_t total) {
  const double initial = max_lr / kDivFactor, last = initial / kFinalDivFactor;
  // The phases end at these (fractional) steps, as in OneCycleLR.
  const double warm_end = kPctStart * static_cast<double>(total) - 1;
  const double end = static_cast<double>(total) - 1;
  const double t = static_cast<double>(step);
  if (t <= warm_end && warm_end > 0) return annealing_cos(initial, max_lr, t / warm_end);
  return annealing_cos(max_lr, last, (t - warm_end) / (end - warm_end));
}

}  // namespace

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrSchedule::kConstant;
  if (name == "onecycle") return LrSchedule::kOneCycle;
  if (name == "cosine") return LrSchedule::kCosine;
  throw std::invalid_argument("unknown lr_schedule '" + name +
                              "' (known: constant, onecycle, cosine)");
}

double scheduled_lr(LrSchedule kind, double lr, int64_t step, int64_t total, int64_t warmup) {
  if (warmup < 0) throw std::invalid_argument("warm-up steps must be >= 0");
  if (warmup > 0) {
    if (kind != LrSchedule::kConstant && total <= warmup) {
      throw std::invalid_argument("the warm-up must end before the lr schedule does");
    }
    if (step < warmup) {
      // LinearLR's closed form: start + (end - start)·s/total_iters, start = 1/warmup.
      const double start = 1.0 / static_cast<double>(warmup);
      const double factor = warmup == 1 ? 1.0
                                        : start + (1.0 - start) * static_cast<double>(step) /
                                                      static_cast<double>(warmup - 1);
      return lr * factor;
    }
    step -= warmup;
    total -= warmup;
  }
  if (kind == LrSchedule::kConstant) return lr;
  if (total < 1) throw std::invalid_argument("an lr schedule needs at least one step");
  step = std::clamp<int64_t>(step, 0, total - 1);
  if (kind == LrSchedule::kOneCycle) return one_cycle(lr, step, total);
  return lr * (1 + std::cos(kPi * static_cast<double>(step) / static_cast<double>(total))) / 2;
}

std::vector<double> epoch_learning_rates(LrSchedule kind, double lr, int64_t first_step,
                                         int64_t steps, int64_t total, int64_t warmup) {
  if (!std::isfinite(lr) || lr <= 0) throw std::invalid_argument("lr must be a number > 0");
  std::vector<double> rates(static_cast<size_t>(std::max<int64_t>(steps, 0)));
  for (int64_t i = 0; i < steps; ++i)
    rates[i] = scheduled_lr(kind, lr, first_step + i, total, warmup);
  return rates;
}

}  // namespace torchfocal::train
