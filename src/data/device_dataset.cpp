#include "src/data/device_dataset.h"

#include <sstream>
#include <stdexcept>

namespace torchfocal::data {

namespace F = torch::nn::functional;

torch::Tensor to_model_input(const torch::Tensor& images_u8, int64_t side) {
  // Divide in float32 right away: uint8 -> float is the only full-size temporary.
  auto x = images_u8.unsqueeze(1).to(torch::kFloat32).div_(255.0f);
  if (x.size(2) != side || x.size(3) != side) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{side, side})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  return x;
}

DeviceDataset::DeviceDataset(const torch::Tensor& images, const torch::Tensor& labels,
                             int64_t num_classes, const torch::Device& device)
    : num_classes_(num_classes) {
  if (images.dim() != 3 || images.scalar_type() != torch::kUInt8) {
    throw std::invalid_argument("images must be a [N, H, W] uint8 tensor");
  }
  if (labels.dim() != 1 || labels.size(0) != images.size(0)) {
    std::ostringstream msg;
    msg << "labels: expected " << images.size(0) << " labels (one per image), got "
        << (labels.dim() == 1 ? labels.size(0) : labels.numel());
    throw std::invalid_argument(msg.str());
  }
  if (images.size(0) == 0) throw std::invalid_argument("the dataset is empty");
  auto labels64 = labels.to(torch::kInt64);
  auto lo = labels64.min().item<int64_t>(), hi = labels64.max().item<int64_t>();
  if (lo < 0 || hi >= num_classes) {
    std::ostringstream msg;
    msg << "labels: value " << (lo < 0 ? lo : hi) << " is out of range for " << num_classes
        << " classes";
    throw std::invalid_argument(msg.str());
  }
  images_ = images.contiguous().to(device);
  labels_ = labels64.contiguous().to(device);
}

std::vector<int64_t> DeviceDataset::class_counts() const {
  auto counts = torch::bincount(labels_, /*weights=*/{}, /*minlength=*/num_classes_).cpu();
  return {counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel()};
}

Batch DeviceDataset::gather(const torch::Tensor& indices, int64_t side) const {
  return {to_model_input(images_.index_select(0, indices), side), labels_.index_select(0, indices)};
}

Batch DeviceDataset::slice(int64_t begin, int64_t end, int64_t side) const {
  return {to_model_input(images_.slice(0, begin, end), side), labels_.slice(0, begin, end)};
}

}  // namespace torchfocal::data
