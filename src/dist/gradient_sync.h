// The gradients' sum over ranks, overlapped with backward as DDP's reducer does it: the flat
// gradient buffer is cut into buckets of whole parameters, taken in the reverse order of the
// parameters (about the order backward produces their gradients), and each bucket's sum starts
// the moment its last gradient has been accumulated, while backward computes the rest.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "src/dist/collective.h"

namespace torch::autograd {
struct Node;
}

namespace torchfocal::dist {

class GradientSync {
 public:
  // `flat`: the buffer every gradient of `params` is a view into, in the parameters' order,
  // followed by `tail` extra values that join the bucket of the last parameters (the trainer's
  // loss and stop flag: one collective for a model that fits one bucket).
  GradientSync(Collective& collective, const std::vector<torch::Tensor>& params,
               const torch::Tensor& flat, int64_t tail, int64_t bucket_bytes);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Sums started since arm(): by backward's hooks, or by finish().
  int64_t started() const { return static_cast<int64_t>(waits_.size()); }
  // Before a backward whose gradients are to be summed (tail values already written).
  void arm();
  // After it: starts the buckets that backward left incomplete (parameters it did not reach),
  // in bucket order, then waits for every sum.
  void finish();

 private:
  struct Bucket {
    torch::Tensor slice;  // its range of the flat buffer
    int64_t params = 0;   // parameters in it
    int64_t ready = 0;    // gradients accumulated since arm()
    bool started = false;
  };
  void start(Bucket& bucket);

  Collective& collective_;
  std::vector<Bucket> buckets_;
  // Held so that every backward uses these accumulators (a parameter keeps only a weak
  // reference), and with them the hooks added to them.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<std::function<void()>> waits_;
  bool armed_ = false;
};

}  // namespace torchfocal::dist
