// A labelled image set resident on the training device as uint8, batched by index there.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "src/data/augment.h"

namespace torchfocal::data {

struct Batch {
  torch::Tensor images;  // [B, C, S, S] float, transformed (InputTransform)
  torch::Tensor labels;  // [B] int64
};

// How stored uint8 pixels become the network's input, as torchvision's ToTensor, Resize and
// Normalize do it: scaled to [0, 1], resized bilinearly to side × side when the stored size
// differs, then (x − mean[c]) / std[c] per channel. Empty mean and std: no normalisation (the
// original experiment's transform).
struct InputTransform {
  int64_t side = 0;
  std::vector<double> mean;
  std::vector<double> std;
};

// Throws std::invalid_argument unless mean and std are both empty or both hold one finite
// value per channel, each std positive.
void check_transform(const InputTransform& transform, int64_t channels);

class DeviceDataset {
 public:
  DeviceDataset() = default;
  // images: [N, C, H, W] uint8 (any device; [N, H, W] is one channel); labels: [N] integer.
  // Copied to `device` once.
  DeviceDataset(const torch::Tensor& images, const torch::Tensor& labels, int64_t num_classes,
                const torch::Device& device);

  bool empty() const { return size() == 0; }
  int64_t size() const { return images_.defined() ? images_.size(0) : 0; }
  int64_t channels() const { return images_.size(1); }
  int64_t height() const { return images_.size(2); }
  int64_t width() const { return images_.size(3); }
  const torch::Tensor& images() const { return images_; }
  const torch::Tensor& labels() const { return labels_; }
  std::vector<int64_t> class_counts() const;

  // Gathers `indices` (int64, on the device) and transforms them, augmented first when given.
  Batch gather(const torch::Tensor& indices, const InputTransform& transform,
               const Augment* augment = nullptr) const;
  // The contiguous range [begin, end), same transform; avoids an index gather for evaluation.
  Batch slice(int64_t begin, int64_t end, const InputTransform& transform) const;

 private:
  torch::Tensor images_;  // [N, C, H, W] uint8
  torch::Tensor labels_;  // [N] int64
  int64_t num_classes_ = 0;
};

// Same transform for images outside a dataset (prediction): [N, C, H, W] uint8 -> [N, C, S, S].
// With `augment` (training), the scaled images are augmented (src/data/augment.h), which
// brings them to S × S, before the normalisation.
torch::Tensor to_model_input(const torch::Tensor& images_u8, const InputTransform& transform,
                             const Augment* augment = nullptr);

// Per-channel mean and (population) standard deviation of [N, C, H, W] uint8 images scaled to
// [0, 1], over every pixel, computed where the images are, in float64: torchvision's recipe for
// a dataset's Normalize.
std::pair<std::vector<double>, std::vector<double>> channel_statistics(const torch::Tensor& images);

}  // namespace torchfocal::data
