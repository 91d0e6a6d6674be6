// A labelled image set resident on the training device as uint8, batched by index there.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace torchfocal::data {

struct Batch {
  torch::Tensor images;  // [B, 1, S, S] float in [0, 1]
  torch::Tensor labels;  // [B] int64
};

class DeviceDataset {
 public:
  DeviceDataset() = default;
  // images: [N, H, W] uint8 (any device); labels: [N] integer. Copied to `device` once.
  DeviceDataset(const torch::Tensor& images, const torch::Tensor& labels, int64_t num_classes,
                const torch::Device& device);

  bool empty() const { return size() == 0; }
  int64_t size() const { return images_.defined() ? images_.size(0) : 0; }
  int64_t height() const { return images_.size(1); }
  int64_t width() const { return images_.size(2); }
  const torch::Tensor& labels() const { return labels_; }
  std::vector<int64_t> class_counts() const;

  // Gathers `indices` (int64, on the device), scales to [0, 1] (the original experiment's
  // ToTensor, no mean/std) and resizes bilinearly to side × side when the stored size differs.
  Batch gather(const torch::Tensor& indices, int64_t side) const;
  // The contiguous range [begin, end), same transform; avoids an index gather for evaluation.
  Batch slice(int64_t begin, int64_t end, int64_t side) const;

 private:
  torch::Tensor images_;  // [N, H, W] uint8
  torch::Tensor labels_;  // [N] int64
  int64_t num_classes_ = 0;
};

// Same transform for images outside a dataset (prediction): [N, H, W] uint8 -> [N, 1, S, S].
torch::Tensor to_model_input(const torch::Tensor& images_u8, int64_t side);

}  // namespace torchfocal::data
