// Which training images an epoch visits, and in what order.
#pragma once

#include <torch/torch.h>

#include <string>

namespace torchfocal::data {

enum class Sampler {
  kInstance,       // every image once, shuffled (the original experiment)
  kClassBalanced,  // class uniform, then an image of it: with replacement
  kSqrt,           // class ∝ sqrt(its count), then an image of it: with replacement
};

Sampler parse_sampler(const std::string& name);  // "instance" | "class-balanced" | "sqrt"
const char* sampler_name(Sampler sampler);

// Draws one epoch of `labels.size(0)` indices into the training set. `labels` [N] int64 on the
// CPU. The draw uses `generator` (a seeded CPU generator), so an epoch's order is the same on
// every device for a given seed; the caller moves the indices to the data's device.
torch::Tensor epoch_indices(Sampler sampler, const torch::Tensor& labels, int64_t num_classes,
                            at::Generator generator);

}  // namespace torchfocal::data
