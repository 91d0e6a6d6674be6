#include "src/train/onednn_guard.h"

#include <ATen/Context.h>
#include <torch/torch.h>

#include <cstdio>
#include <mutex>

namespace torchfocal::train {
namespace {

constexpr double kTolerance = 1e-3;  // float32 noise is ~1e-7 relative; the bug is 0.2-0.9

std::once_flag checked;
std::string state = "used";

struct Probe {
  int64_t in, out, kernel, padding, side;
  c10::MemoryFormat format;
};

// Layers oneDNN 3.7.2 gets wrong on AVX2 (LeNet's first layer, a narrow ResNet's), batch 16.
constexpr Probe kProbes[] = {{1, 6, 5, 2, 28, c10::MemoryFormat::ChannelsLast},
                             {4, 4, 3, 1, 24, c10::MemoryFormat::Contiguous}};

// The largest difference between oneDNN's input gradient and LibTorch's own, relative to the
// latter's largest value.
double probe_error(const Probe& p) {
  auto gen = at::detail::createCPUGenerator(/*seed_in=*/20261205);
  auto x = torch::randn({16, p.in, p.side, p.side}, gen, torch::kFloat32).contiguous(p.format);
  auto weight =
      torch::randn({p.out, p.in, p.kernel, p.kernel}, gen, torch::kFloat32).contiguous(p.format);
  const int64_t out_side = p.side + 2 * p.padding - p.kernel + 1;
  auto upstream =
      torch::randn({16, p.out, out_side, out_side}, gen, torch::kFloat32).contiguous(p.format);
  auto input_gradient = [&](bool onednn) {
    at::globalContext().setUserEnabledMkldnn(onednn);
    auto input = x.clone(p.format).requires_grad_();
    auto y = torch::conv2d(input, weight, {}, /*stride=*/1, /*padding=*/p.padding);
    return torch::autograd::grad({y}, {input}, {upstream})[0];
  };
  const auto theirs = input_gradient(true);
  const auto ours = input_gradient(false);
  at::globalContext().setUserEnabledMkldnn(true);
  return (theirs - ours).abs().max().item<double>() / ours.abs().max().item<double>();
}

}  // namespace

void guard_onednn_convolutions() {
  std::call_once(checked, [] {
    if (!at::hasMKLDNN()) {
      state = "not built";
      return;
    }
    if (!at::globalContext().userEnabledMkldnn()) {
      state = "off by the caller";
      return;
    }
    torch::AutoGradMode grad(true);
    for (const auto& probe : kProbes) {
      const double error = probe_error(probe);
      if (!(error < kTolerance)) {
        at::globalContext().setUserEnabledMkldnn(false);
        char detail[160];
        std::snprintf(detail, sizeof detail,
                      "off: its gradients failed torchfocal's check (%lld -> %lld channels, "
                      "%lldx%lld: relative error %.2g)",
                      static_cast<long long>(probe.in), static_cast<long long>(probe.out),
                      static_cast<long long>(probe.kernel), static_cast<long long>(probe.kernel),
                      error);
        state = detail;
        return;
      }
    }
  });
}

std::string onednn_convolutions_state() {
  guard_onednn_convolutions();  // call_once also makes its write of `state` visible here
  return state;
}

}  // namespace torchfocal::train
