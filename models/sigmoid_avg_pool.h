// sigmoid followed by 2x2 average pooling (stride 2), LeNet's activation-and-pooling pair, with a
// backward pass fused into one loop on the CPU: the input gradient s (1 - s) · dy / 4 comes from
// the saved sigmoid output and the pooled gradient directly, instead of a pooling backward, its
// layout copies and a sigmoid backward (three passes over the largest activations). The forward
// stays LibTorch's (vectorised sigmoid, pooling). Other devices and layouts compute the same
// backward with LibTorch ops.
#pragma once

#include <torch/torch.h>

namespace torchfocal::models {

// x [N, C, H, W] floating -> [N, C, H / 2, W / 2] (an odd last row or column is dropped, as
// AvgPool2d(2) drops it); differentiable with respect to x.
torch::Tensor sigmoid_avg_pool2x2(const torch::Tensor& x);

class SigmoidAvgPool2x2Impl : public torch::nn::Cloneable<SigmoidAvgPool2x2Impl> {
 public:
  void reset() override {}
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& x) { return sigmoid_avg_pool2x2(x); }
};
TORCH_MODULE(SigmoidAvgPool2x2);

}  // namespace torchfocal::models
