// How uint8 images become network inputs (InputTransform) and a dataset's channel statistics,
// each against a float64 reference composed from plain ops on fresh random images.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <string>

#include "src/data/device_dataset.h"

namespace data = torchfocal::data;
namespace F = torch::nn::functional;

namespace {

torch::Tensor random_images(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(0, 256, shape, gen, torch::kInt64).to(torch::kUInt8);
}

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no exception";
}

}  // namespace

TEST(InputTransform, ScalesResizesAndNormalisesPerChannelAsTorchvision) {
  const auto images = random_images({5, 3, 20, 24}, 11);
  const data::InputTransform transform{32, {0.49, 0.48, 0.45}, {0.25, 0.24, 0.26}};
  const auto got = data::to_model_input(images, transform);
  // float64 reference: ToTensor, Resize (bilinear, no corner alignment), Normalize
  auto x = images.to(torch::kFloat64) / 255.0;
  x = F::interpolate(x, F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{32, 32})
                            .mode(torch::kBilinear)
                            .align_corners(false));
  const auto mean = torch::tensor(transform.mean, torch::kFloat64).view({1, 3, 1, 1});
  const auto std = torch::tensor(transform.std, torch::kFloat64).view({1, 3, 1, 1});
  const auto want = (x - mean) / std;
  ASSERT_EQ(got.sizes().vec(), (std::vector<int64_t>{5, 3, 32, 32}));
  EXPECT_EQ(got.scalar_type(), torch::kFloat32);
  EXPECT_LT((got.to(torch::kFloat64) - want).abs().max().item<double>(), 1e-5);
  // each channel has its own figures: channel 2 differs from what channel 0's would give
  const auto channel0_figures = (x.select(1, 2) - 0.49) / 0.25;
  EXPECT_GT((got.select(1, 2).to(torch::kFloat64) - channel0_figures).abs().max().item<double>(),
            1e-2);
}

TEST(InputTransform, WithoutNormalisationIsToTensorAndAGreyStackIsOneChannel) {
  const auto images = random_images({4, 28, 28}, 12);
  const auto got = data::to_model_input(images, {28, {}, {}});
  ASSERT_EQ(got.sizes().vec(), (std::vector<int64_t>{4, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(got, images.unsqueeze(1).to(torch::kFloat32) / 255.0f));
}

TEST(InputTransform, ChecksItsFigures) {
  EXPECT_NO_THROW(data::check_transform({32, {}, {}}, 3));
  EXPECT_NO_THROW(data::check_transform({32, {0.5}, {0.2}}, 1));
  EXPECT_NE(message_of([] {
              data::check_transform({32, {0.5}, {0.2}}, 3);
            }).find("one mean and one std per channel (3), got 1 and 1"),
            std::string::npos);
  EXPECT_NE(message_of([] {
              data::check_transform({32, {0.5}, {0}}, 1);
            }).find("positive std"),
            std::string::npos);
  EXPECT_NE(message_of([] {
              data::check_transform({32, {NAN}, {1}}, 1);
            }).find("finite mean"),
            std::string::npos);
  EXPECT_THROW(data::check_transform({32, {0.5}, {}}, 1), std::invalid_argument);
}

TEST(ChannelStatistics, EqualFloat64MeanAndPopulationStd) {
  // 3 channels with different ranges, so that a mix-up of channels shows
  auto images = random_images({70, 3, 9, 11}, 13);
  images.select(1, 1).div_(4, "floor");
  images.select(1, 2).add_(40);  // uint8 wraps: still a valid, different distribution
  const auto [mean, std] = data::channel_statistics(images);
  const auto x = images.to(torch::kFloat64) / 255.0;
  for (int64_t c = 0; c < 3; ++c) {
    const auto plane = x.select(1, c);
    EXPECT_NEAR(mean[c], plane.mean().item<double>(), 1e-12) << "channel " << c;
    EXPECT_NEAR(std[c], plane.std(/*unbiased=*/false).item<double>(), 1e-12) << "channel " << c;
  }
  EXPECT_GT(std::abs(mean[0] - mean[1]), 0.1);
  EXPECT_THROW(data::channel_statistics(images.select(1, 0)), std::invalid_argument);
}

TEST(ChannelStatistics, SumsInChunksWithoutLosingPrecision) {
  // more than one 16 M-pixel chunk: 300 images of 1×256×256 pixels
  const auto images = random_images({300, 1, 256, 256}, 14);
  const auto [mean, std] = data::channel_statistics(images);
  const auto x = images.to(torch::kFloat64) / 255.0;
  EXPECT_NEAR(mean[0], x.mean().item<double>(), 1e-12);
  // E[x²] − E[x]² over 20 M pixels gives up a few digits (3e-12 seen): far below float32's
  EXPECT_NEAR(std[0], x.std(/*unbiased=*/false).item<double>(), 1e-10);
}

TEST(DeviceDataset, HoldsChannelsAndGathersTransformedBatches) {
  const auto images = random_images({6, 3, 8, 8}, 15);
  const auto labels = torch::tensor({0, 1, 2, 0, 1, 2});
  data::DeviceDataset ds(images, labels, 3, torch::kCPU);
  EXPECT_EQ(ds.channels(), 3);
  EXPECT_EQ(ds.height(), 8);
  const data::InputTransform transform{8, {0.5, 0.4, 0.3}, {0.2, 0.3, 0.4}};
  const auto batch = ds.gather(torch::tensor({4, 1}), transform);
  const auto want = data::to_model_input(images.index_select(0, torch::tensor({4, 1})), transform);
  EXPECT_TRUE(torch::equal(batch.images, want));
  EXPECT_TRUE(torch::equal(batch.labels, torch::tensor({1, 1})));
  data::DeviceDataset grey(images.select(1, 0), labels, 3, torch::kCPU);
  EXPECT_EQ(grey.channels(), 1);
  EXPECT_THROW(data::DeviceDataset(images.view({6, 3, 8, 8, 1}), labels, 3, torch::kCPU),
               std::invalid_argument);
}
