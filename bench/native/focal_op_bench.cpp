#include "bench/native/focal_op_bench.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <vector>

#include "src/ops/focal_loss.h"

namespace torchfocal::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Loss = std::function<torch::Tensor(const torch::Tensor&)>;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Seconds for `iters` forward + backward passes; the input's gradient is dropped each time so
// every op pays for allocating it, as a training step does.
double run_batch(const Loss& loss, torch::Tensor& input, int64_t iters) {
  const auto start = Clock::now();
  for (int64_t i = 0; i < iters; ++i) {
    input.mutable_grad().reset();
    loss(input).backward();
  }
  if (!input.is_cpu()) input.grad().sum().item<float>();  // waits for the device
  return seconds_since(start);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

FocalOpTiming time_focal_op(int64_t rows, int64_t classes, int repeats, double min_batch_seconds,
                            const torch::Device& device) {
  if (rows < 1 || classes < 2)
    throw std::invalid_argument("time_focal_op: need rows >= 1, classes >= 2");
  if (repeats < 1) throw std::invalid_argument("time_focal_op: repeats must be >= 1");
  torch::manual_seed(0);
  auto input = torch::randn({rows, classes}).mul_(3).to(device).requires_grad_(true);
  const auto target = torch::randint(classes, {rows}, torch::kInt64).to(device);
  auto alpha = torch::ones({classes});
  alpha[std::min<int64_t>(6, classes - 1)] = 100;
  alpha = alpha.to(device);
  const double gamma = 2;

  ops::FocalOptions options;
  options.gamma = gamma;
  options.alpha = alpha;
  const std::vector<Loss> losses = {
      [&](const torch::Tensor& x) { return ops::focal_loss(x, target, options); },
      [&](const torch::Tensor& x) { return torch::nn::functional::cross_entropy(x, target); },
      // The original FocalLoss.forward, op for op.
      [&](const torch::Tensor& x) {
        auto pt = torch::softmax(x, 1).gather(1, target.view({-1, 1})).view(-1) + 1e-8;
        auto log_pt = pt.log();
        return (-alpha.gather(0, target) * (1 - pt).pow(gamma) * log_pt).mean();
      },
  };

  // Warm up, then size each op's batch so that it runs for min_batch_seconds.
  std::vector<int64_t> iters;
  for (const auto& loss : losses) {
    run_batch(loss, input, 3);
    int64_t n = 1;
    double t = run_batch(loss, input, n);
    while (t < min_batch_seconds && n < (int64_t{1} << 20)) {
      n = std::max<int64_t>(n * 2, static_cast<int64_t>(n * min_batch_seconds / std::max(t, 1e-9)));
      t = run_batch(loss, input, n);
    }
    iters.push_back(n);
  }
  std::vector<std::vector<double>> per_call(losses.size());
  for (int r = 0; r < repeats; ++r) {
    for (size_t k = 0; k < losses.size(); ++k) {
      per_call[k].push_back(run_batch(losses[k], input, iters[k]) / static_cast<double>(iters[k]));
    }
  }
  FocalOpTiming timing;
  timing.rows = rows;
  timing.classes = classes;
  timing.threads = at::get_num_threads();
  timing.fused = median(per_call[0]);
  timing.cross_entropy = median(per_call[1]);
  timing.composed = median(per_call[2]);
  return timing;
}

}  // namespace torchfocal::bench
