// BatchNorm2d whose batch statistics can span the ranks of a data-parallel run (SyncBatchNorm).
// The parameters and buffers of torch::nn::BatchNorm2d, in its order (weight, bias,
// running_mean, running_var, num_batches_tracked), so state dicts and PyTorch's definitions
// still match; with no cross-rank sum set it computes what torch::nn::BatchNorm2d does. (Not a
// subclass of it: Debian's LibTorch does not export that template's base.)
#pragma once

#include <torch/torch.h>

#include <functional>

namespace torchfocal::models {

// Sums a tensor element-wise over the ranks, in place (every rank calls it in the same order).
using CrossRankSum = std::function<void(torch::Tensor&)>;

class BatchNorm2dImpl : public torch::nn::Cloneable<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(int64_t num_features);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  // Training batches are then normalised with the mean and variance of the whole global batch,
  // and the input gradient accounts for every rank's share of those statistics.
  void set_cross_rank_sum(CrossRankSum sum) { sum_ = std::move(sum); }

  torch::Tensor forward(const torch::Tensor& input);

  // relu(forward(input) [+ residual]): the fused CPU passes of models/batch_norm_relu.h where
  // they apply (not synchronised, channels-last float32; in evaluation only without a graph).
  torch::Tensor forward_relu(const torch::Tensor& input,
                             const torch::Tensor& residual = torch::Tensor());

  // torch::nn::BatchNorm2d's defaults (momentum 0.1, eps 1e-5, affine, running statistics).
  static constexpr double kMomentum = 0.1;
  static constexpr double kEps = 1e-5;

  int64_t num_features;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  CrossRankSum sum_;
};
TORCH_MODULE(BatchNorm2d);

}  // namespace torchfocal::models
