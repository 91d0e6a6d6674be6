// A Sequential that can itself sit inside a torch::nn::Sequential.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <utility>

namespace torchfocal::models {

// LibTorch's AnyModule (what Sequential stores) refuses a plain nn::Sequential child because
// SequentialImpl::forward is a template. This subclass only adds a plain Tensor -> Tensor
// forward; its children are still named "0", "1", ... exactly like PyTorch's nn.Sequential.
struct SequentialBlockImpl : torch::nn::SequentialImpl {
  using torch::nn::SequentialImpl::SequentialImpl;

  torch::Tensor forward(torch::Tensor x) {
    return torch::nn::SequentialImpl::forward(std::move(x));
  }

  // SequentialImpl::clone would return the base type, which the parent Sequential could not
  // cast back to this one; deep copies (Module::clone) must keep the subclass.
  std::shared_ptr<torch::nn::Module> clone(
      const torch::optional<torch::Device>& device = torch::nullopt) const override {
    auto copy = std::make_shared<SequentialBlockImpl>();
    for (const auto& child : *this) {
      copy->push_back(child.clone(device));
    }
    return copy;
  }
};
TORCH_MODULE(SequentialBlock);

}  // namespace torchfocal::models
