// The oneDNN guard (src/train/onednn_guard.h): after it, the float32 gradients of every narrow
// convolution the zoo has match float64 (which never runs through oneDNN), whichever oneDNN
// this LibTorch brings. Debian 13's oneDNN 3.7.2 fails this without the guard.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "src/train/onednn_guard.h"

namespace {

using torchfocal::train::guard_onednn_convolutions;
using torchfocal::train::onednn_convolutions_state;

struct Layer {
  int64_t in, out, kernel, stride, padding, side;
};

// LeNet's convolutions and ResNet-18 / 16's (d2l, 96x96 input).
constexpr Layer kLayers[] = {{1, 6, 5, 1, 2, 28},  {6, 16, 5, 1, 0, 14}, {1, 4, 7, 2, 3, 96},
                             {4, 4, 3, 1, 1, 24},  {4, 8, 3, 2, 1, 24},  {8, 8, 3, 1, 1, 12},
                             {4, 8, 1, 1, 0, 12},  {8, 16, 3, 2, 1, 12}, {16, 16, 3, 1, 1, 6},
                             {16, 32, 3, 2, 1, 6}, {32, 32, 3, 1, 1, 3}};

double relative_error(const torch::Tensor& a, const torch::Tensor& reference) {
  return (a.to(torch::kFloat64) - reference).abs().max().item<double>() /
         reference.abs().max().item<double>();
}

TEST(OneDnnGuard, NarrowConvolutionGradientsMatchFloat64) {
  guard_onednn_convolutions();
  const std::string state = onednn_convolutions_state();
  EXPECT_TRUE(state == "used" || state == "not built" || state == "off by the caller" ||
              state.rfind("off: ", 0) == 0)
      << state;
  torch::manual_seed(3);
  for (const auto format : {c10::MemoryFormat::Contiguous, c10::MemoryFormat::ChannelsLast}) {
    for (const auto& l : kLayers) {
      auto x = torch::randn({16, l.in, l.side, l.side}, torch::kFloat64).contiguous(format);
      auto w = torch::randn({l.out, l.in, l.kernel, l.kernel}, torch::kFloat64);
      auto b = torch::randn({l.out}, torch::kFloat64);
      const int64_t out_side = (l.side + 2 * l.padding - l.kernel) / l.stride + 1;
      auto upstream = torch::randn({16, l.out, out_side, out_side}, torch::kFloat64);
      auto grads = [&](torch::ScalarType type) {
        auto input = x.to(type).contiguous(format).requires_grad_();
        auto weight = w.to(type).contiguous(format).requires_grad_();
        auto bias = b.to(type).requires_grad_();
        auto y = torch::conv2d(input, weight, bias, l.stride, l.padding);
        return torch::autograd::grad({y}, {input, weight, bias}, {upstream.to(type)});
      };
      const auto reference = grads(torch::kFloat64);
      const auto ours = grads(torch::kFloat32);
      const std::string what =
          std::to_string(l.in) + " -> " + std::to_string(l.out) + ", " + std::to_string(l.kernel) +
          "x" + std::to_string(l.kernel) +
          (format == c10::MemoryFormat::ChannelsLast ? ", channels-last" : ", NCHW") +
          " (oneDNN convolutions: " + state + ")";
      EXPECT_LT(relative_error(ours[0], reference[0]), 1e-4) << "input gradient, " << what;
      EXPECT_LT(relative_error(ours[1], reference[1]), 1e-4) << "weight gradient, " << what;
      EXPECT_LT(relative_error(ours[2], reference[2]), 1e-4) << "bias gradient, " << what;
    }
  }
}

}  // namespace
