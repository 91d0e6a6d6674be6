#include "src/data/device_dataset.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace torchfocal::data {

namespace F = torch::nn::functional;

namespace {

// A per-channel constant shaped to broadcast over [N, C, H, W].
torch::Tensor per_channel(const std::vector<double>& values, const torch::Tensor& like) {
  return torch::tensor(values, torch::kFloat64)
      .to(like.options())
      .view({1, static_cast<int64_t>(values.size()), 1, 1});
}

}  // namespace

void check_transform(const InputTransform& transform, int64_t channels) {
  if (transform.mean.empty() && transform.std.empty()) return;
  if (static_cast<int64_t>(transform.mean.size()) != channels ||
      static_cast<int64_t>(transform.std.size()) != channels) {
    std::ostringstream msg;
    msg << "normalisation: expected one mean and one std per channel (" << channels << "), got "
        << transform.mean.size() << " and " << transform.std.size();
    throw std::invalid_argument(msg.str());
  }
  for (size_t c = 0; c < transform.mean.size(); ++c) {
    if (!std::isfinite(transform.mean[c]) || !std::isfinite(transform.std[c]) ||
        transform.std[c] <= 0) {
      std::ostringstream msg;
      msg << "normalisation: channel " << c << " has mean " << transform.mean[c] << " and std "
          << transform.std[c] << " (a finite mean and a positive std are needed)";
      throw std::invalid_argument(msg.str());
    }
  }
}

torch::Tensor to_model_input(const torch::Tensor& images_u8, const InputTransform& transform,
                             const Augment* augment) {
  auto images = images_u8.dim() == 3 ? images_u8.unsqueeze(1) : images_u8;
  // Divide in float32 right away: uint8 -> float is the only full-size temporary.
  auto x = images.to(torch::kFloat32).div_(255.0f);
  const int64_t side = transform.side;
  if (augment != nullptr && augment->any()) {
    x = augment_batch(x, *augment, side);
  } else if (x.size(2) != side || x.size(3) != side) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{side, side})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  if (!transform.mean.empty()) {
    x.sub_(per_channel(transform.mean, x)).div_(per_channel(transform.std, x));
  }
  return x;
}

DeviceDataset::DeviceDataset(const torch::Tensor& images, const torch::Tensor& labels,
                             int64_t num_classes, const torch::Device& device)
    : num_classes_(num_classes) {
  if ((images.dim() != 3 && images.dim() != 4) || images.scalar_type() != torch::kUInt8) {
    throw std::invalid_argument("images must be a [N, C, H, W] (or [N, H, W]) uint8 tensor");
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
  images_ = (images.dim() == 3 ? images.unsqueeze(1) : images).contiguous().to(device);
  labels_ = labels64.contiguous().to(device);
}

std::vector<int64_t> DeviceDataset::class_counts() const {
  auto counts = torch::bincount(labels_, /*weights=*/{}, /*minlength=*/num_classes_).cpu();
  return {counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel()};
}

Batch DeviceDataset::gather(const torch::Tensor& indices, const InputTransform& transform,
                            const Augment* augment) const {
  return {to_model_input(images_.index_select(0, indices), transform, augment),
          labels_.index_select(0, indices)};
}

Batch DeviceDataset::slice(int64_t begin, int64_t end, const InputTransform& transform) const {
  return {to_model_input(images_.slice(0, begin, end), transform), labels_.slice(0, begin, end)};
}

std::pair<std::vector<double>, std::vector<double>> channel_statistics(
    const torch::Tensor& images) {
  if (images.dim() != 4 || images.scalar_type() != torch::kUInt8 || images.size(0) == 0) {
    throw std::invalid_argument("channel_statistics: expected non-empty [N, C, H, W] uint8 images");
  }
  torch::NoGradGuard no_grad;
  const int64_t channels = images.size(1);
  const auto f64 = images.options().dtype(torch::kFloat64);
  auto sum = torch::zeros({channels}, f64), squares = torch::zeros({channels}, f64);
  // Chunks of about 16 M pixels keep the float64 temporary small whatever the dataset's size.
  const int64_t per_image = images[0].numel();
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 24) / per_image);
  for (int64_t begin = 0; begin < images.size(0); begin += chunk) {
    auto x = images.slice(0, begin, std::min(images.size(0), begin + chunk)).to(torch::kFloat64);
    sum += x.sum({0, 2, 3});
    squares += x.square().sum({0, 2, 3});
  }
  const double n = static_cast<double>(images.numel() / channels);
  auto mean = (sum / n).cpu();
  // E[x²] − E[x]² in float64 over integers 0..255: exact enough (no cancellation to speak of)
  auto var = (squares.cpu() / n - mean.square()).clamp_min(0);
  std::vector<double> m(channels), s(channels);
  for (int64_t c = 0; c < channels; ++c) {
    m[c] = mean[c].item<double>() / 255.0;
    s[c] = std::sqrt(var[c].item<double>()) / 255.0;
  }
  return {m, s};
}

}  // namespace torchfocal::data
