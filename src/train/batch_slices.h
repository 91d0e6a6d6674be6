// A batch cut into one slice per intra-op thread, each slice run start to end by its thread
// alone. Why: LeNet-sized layers split over two threads spend a quarter of their time in
// libgomp's barriers, one per layer and direction (perf: 28% of an evaluation's samples, 21% of
// a training epoch's); threads that each run single-threaded kernels on their own slice meet
// once per pass instead. Nested ATen and oneDNN parallelism runs serially inside a slice.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>

namespace torchfocal::train {

// How many slices a batch of `n` images is cut into on `device`: one per intra-op thread, each
// of at least 8 images; 1 (run it whole, with the intra-op threads) on other devices, on one
// thread or for a small batch.
int64_t slice_count(const torch::Device& device, int64_t n);

// How many threads share `batches` whole batches on `device`, each running a contiguous run of
// them alone: one per intra-op thread where each gets at least two; 1 otherwise (too few
// batches to balance: cut each batch in slices instead).
int64_t batch_share_count(const torch::Device& device, int64_t batches);

// Calls fn(i, begin, end) for each slice i of `slices` near-equal slices of [0, n), each on one
// thread of the intra-op pool. The first exception a slice throws is rethrown here.
void for_each_slice(int64_t n, int64_t slices,
                    const std::function<void(int64_t, int64_t, int64_t)>& fn);

// Whether a training step over slices computes what it computes over the whole batch: no
// module keeps batch statistics (batch norm and its running buffers) or draws at random
// (dropout, whose draws would depend on which thread came first).
bool trains_in_slices(const torch::nn::Module& model);

// A training forward in slices whose backward runs in the same slices. `logits` joins the
// slices' outputs as a leaf: the loss is taken over the whole batch, as without slices, and
// `backward` sends each slice its part of the gradient.
class SlicedForward {
 public:
  // forward(begin, end) is the network's output for rows [begin, end) of the batch; it runs on
  // a pool thread, so thread-local state (autocast) must be set inside it.
  SlicedForward(int64_t n, int64_t slices,
                const std::function<torch::Tensor(int64_t, int64_t)>& forward);
  const torch::Tensor& logits() const { return logits_; }
  // Backward of `loss` (computed from logits()) into the .grad of `params`, accumulated as
  // backward does. The slices' gradients are summed in slice order, whatever thread finishes
  // first, so a run is reproducible.
  void backward(const torch::Tensor& loss, const std::vector<torch::Tensor>& params);

 private:
  int64_t n_, slices_;
  std::vector<torch::Tensor> parts_;
  torch::Tensor logits_;
};

}  // namespace torchfocal::train
