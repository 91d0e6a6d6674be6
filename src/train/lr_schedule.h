// The learning rate of every step of a run (TrainConfig::lr_schedule). Rates change per batch,
// as PyTorch's schedulers do when stepped after every optimizer step, and depend only on the
// step's place in the run: a resumed run continues its schedule without saved state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace torchfocal::train {

enum class LrSchedule {
  kConstant,
  // PyTorch's OneCycleLR with its defaults and cycle_momentum=False: cosine from lr/25 up to lr
  // over the first 30% of the steps, then cosine down to lr/25e4.
  kOneCycle,
  // PyTorch's CosineAnnealingLR with T_max = the schedule's steps and eta_min = 0.
  kCosine,
};

// "constant", "onecycle" or "cosine"; std::invalid_argument naming the known ones otherwise.
LrSchedule parse_lr_schedule(const std::string& name);

// The rate of step `step` (from 0) of a schedule of `total` steps at base rate `lr`. Steps at and
// past the end keep the last step's rate (PyTorch's OneCycleLR throws there; a run trained on
// past its schedule should not).
//
// With `warmup` > 0 steps of linear warm-up, step s < warmup runs at lr·(s + 1)/warmup, and the
// schedule follows over the remaining total - warmup steps, from its own step 0. That is
// PyTorch's SequentialLR([LinearLR(start_factor=1/warmup, end_factor=1, total_iters=warmup-1),
// S], milestones=[warmup]) with S the schedule built for total - warmup steps (LambdaLR(1) for
// "constant"). A non-constant schedule needs total > warmup (std::invalid_argument).
double scheduled_lr(LrSchedule kind, double lr, int64_t step, int64_t total, int64_t warmup = 0);

// The rates of one epoch's steps: steps `first_step` .. `first_step + steps - 1` of the run.
// std::invalid_argument unless lr is a finite number > 0.
std::vector<double> epoch_learning_rates(LrSchedule kind, double lr, int64_t first_step,
                                         int64_t steps, int64_t total, int64_t warmup = 0);

}  // namespace torchfocal::train
