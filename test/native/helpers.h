// Inputs and result holders that several native tests share.
#pragma once

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstdint>
#include <utility>

namespace torchfocal::testing {

// Two classes a LeNet or an MLP learns in a few steps: a bright left or right half, with noise.
inline std::pair<torch::Tensor, torch::Tensor> halves(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto labels = torch::randint(0, 2, {n}, gen, torch::kInt64);
  auto images = torch::randint(0, 60, {n, 28, 28}, gen, torch::kInt64);
  auto left = labels.eq(0).view({n, 1, 1}).to(torch::kInt64);
  images.slice(2, 0, 14).add_(left * 180);
  images.slice(2, 14, 28).add_((1 - left) * 180);
  return {images.to(torch::kUInt8), labels};
}

// An op's value and the gradient of its input, from one backward.
struct ValueGrad {
  torch::Tensor value;
  torch::Tensor grad;
};

// f() run with n intra-op threads; the count is restored afterwards, also when f throws.
template <typename F>
auto with_threads(int n, F&& f) {
  struct Restore {
    int saved;
    ~Restore() { at::set_num_threads(saved); }
  } restore{at::get_num_threads()};
  at::set_num_threads(n);
  return f();
}

}  // namespace torchfocal::testing
