#include "src/dist/gradient_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <stdexcept>

namespace torchfocal::dist {

GradientSync::GradientSync(Collective& collective, const std::vector<torch::Tensor>& params,
                           const torch::Tensor& flat, int64_t tail, int64_t bucket_bytes)
    : collective_(collective) {
  if (params.empty()) throw std::invalid_argument("GradientSync: no parameters");
  std::vector<int64_t> offset(params.size() + 1, 0);
  for (size_t i = 0; i < params.size(); ++i) offset[i + 1] = offset[i] + params[i].numel();
  if (flat.dim() != 1 || flat.numel() != offset.back() + tail) {
    throw std::invalid_argument("GradientSync: the flat buffer does not hold the parameters");
  }
  const int64_t cap =
      std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(flat.element_size()));
  // From the last parameter backwards: a bucket closes once it holds `cap` elements.
  std::vector<int64_t> bucket_of(params.size());
  int64_t end = offset.back() + tail;  // the first bucket carries the tail
  int64_t count = 0;
  for (int64_t i = static_cast<int64_t>(params.size()) - 1; i >= 0; --i) {
    bucket_of[i] = static_cast<int64_t>(buckets_.size());
    ++count;
    if (end - offset[i] >= cap || i == 0) {
      Bucket b;
      b.slice = flat.slice(0, offset[i], end);
      b.params = count;
      buckets_.push_back(std::move(b));
      end = offset[i];
      count = 0;
    }
  }
  for (size_t i = 0; i < params.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(params[i]);
    if (!accumulator) throw std::invalid_argument("GradientSync: a parameter is not a leaf");
    const int64_t b = bucket_of[i];
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, b](const torch::autograd::variable_list& outputs,
                  const torch::autograd::variable_list&) {
          // Runs after the gradient is accumulated into the flat buffer.
          if (armed_ && ++buckets_[b].ready == buckets_[b].params) start(buckets_[b]);
          return outputs;
        }));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradientSync::~GradientSync() = default;

void GradientSync::arm() {
  for (auto& b : buckets_) {
    b.ready = 0;
    b.started = false;
  }
  waits_.clear();
  armed_ = true;
}

void GradientSync::start(Bucket& bucket) {
  bucket.started = true;
  waits_.push_back(collective_.start_sum(bucket.slice));
}

void GradientSync::finish() {
  armed_ = false;
  for (auto& b : buckets_) {
    if (!b.started) start(b);
  }
  for (auto& wait : waits_) wait();
  waits_.clear();
}

}  // namespace torchfocal::dist
