// Augmentation on the device (src/data/augment.h): the spec's grammar, and each transform's
// semantics checked on position-coded images (which pixel went where) over many draws.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>

#include "src/data/augment.h"
#include "src/data/device_dataset.h"

namespace data = torchfocal::data;
namespace F = torch::nn::functional;

namespace {

// [n, c, h, w] images whose every pixel holds its own (1-based) position, scaled into (0, 1].
torch::Tensor position_coded(int64_t n, int64_t c, int64_t h, int64_t w) {
  auto one = torch::arange(1, c * h * w + 1, torch::kFloat32).view({1, c, h, w}) / (c * h * w);
  return one.expand({n, c, h, w}).contiguous();
}

std::string error_of(const std::string& spec) {
  try {
    data::parse_augment(spec);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST(Augment, ParsesTheSpecIntoACanonicalForm) {
  EXPECT_FALSE(data::parse_augment("none").any());
  EXPECT_FALSE(data::parse_augment("").any());
  EXPECT_EQ(data::to_string(data::parse_augment("flip,crop:4")), "crop:4,flip");
  EXPECT_EQ(data::to_string(data::parse_augment("jitter:0.4,0.3,0.2,rrc:0.08,flip")),
            "rrc:0.080000000000000002,flip,jitter:0.40000000000000002,0.29999999999999999,"
            "0.20000000000000001");
  const auto a = data::parse_augment("crop:0");
  EXPECT_EQ(a.crop_padding, 0);
  EXPECT_TRUE(a.any());
}

TEST(Augment, RefusesBadSpecsNamingThePart) {
  EXPECT_NE(error_of("crop:4,flop").find("unknown 'flop'"), std::string::npos);
  EXPECT_NE(error_of("crop:-1").find("'crop:-1'"), std::string::npos);
  EXPECT_NE(error_of("crop:1.5").find("whole number"), std::string::npos);
  EXPECT_NE(error_of("crop:x").find("'x' is not a number"), std::string::npos);
  EXPECT_NE(error_of("crop").find("unknown 'crop'"), std::string::npos);
  EXPECT_NE(error_of("flip:1").find("unknown 'flip:1'"), std::string::npos);
  EXPECT_NE(error_of("rrc:0").find("(0, 1]"), std::string::npos);
  EXPECT_NE(error_of("rrc:1.5").find("(0, 1]"), std::string::npos);
  EXPECT_NE(error_of("jitter:0.4,0.4").find("jitter:B,C,S"), std::string::npos);
  EXPECT_NE(error_of("jitter:0.4,2,0").find("contrast and saturation in [0, 1]"),
            std::string::npos);
  EXPECT_NE(error_of("crop:4,rrc:0.5").find("give one of them"), std::string::npos);
}

TEST(Augment, OffIsTheIdentityBitForBit) {
  auto gen = at::detail::createCPUGenerator(3);
  auto images = torch::randint(0, 256, {8, 3, 10, 10}, gen, torch::kInt64).to(torch::kUInt8);
  const data::InputTransform transform{16, {0.5, 0.4, 0.3}, {0.2, 0.2, 0.3}};
  const auto none = data::parse_augment("none");
  EXPECT_TRUE(torch::equal(data::to_model_input(images, transform, &none),
                           data::to_model_input(images, transform)));
}

TEST(Augment, FlipsHalfTheImages) {
  torch::manual_seed(21);
  constexpr int64_t kDraws = 10000;
  auto x = position_coded(kDraws, 1, 4, 4);
  auto y = data::augment_batch(x, data::parse_augment("flip"), 4);
  const auto corner = [](const torch::Tensor& t, int64_t col) {
    return t.select(1, 0).select(1, 0).select(1, col);
  };
  const auto flipped = corner(y, 0).eq(corner(x, 3));
  const auto kept = corner(y, 0).eq(corner(x, 0));
  // each image is either itself or its mirror, pixel for pixel
  EXPECT_TRUE((flipped | kept).all().item<bool>());
  EXPECT_TRUE(torch::equal(y.index({flipped}), x.index({flipped}).flip({3})));
  const double rate = flipped.to(torch::kFloat64).mean().item<double>();
  // 3σ of a fair coin's mean over 10,000 draws: 3 · 0.5 / 100
  EXPECT_NEAR(rate, 0.5, 0.015) << rate;
}

TEST(Augment, CropsAreWindowsOfThePaddedImage) {
  torch::manual_seed(22);
  constexpr int64_t kPad = 4, kSide = 8, kDraws = 2000;
  auto x = position_coded(kDraws, 3, kSide, kSide);
  auto y = data::augment_batch(x, data::parse_augment("crop:4,flip"), kSide);
  ASSERT_EQ(y.sizes().vec(), x.sizes().vec());
  auto padded = F::pad(x, F::PadFuncOptions({kPad, kPad, kPad, kPad}));
  std::set<int64_t> offsets_seen;
  int64_t mirrored = 0;
  for (int64_t i = 0; i < kDraws; ++i) {
    bool found = false;
    for (int64_t oy = 0; oy <= 2 * kPad && !found; ++oy) {
      for (int64_t ox = 0; ox <= 2 * kPad && !found; ++ox) {
        auto window = padded[i].slice(1, oy, oy + kSide).slice(2, ox, ox + kSide);
        for (bool flip : {false, true}) {
          if (torch::equal(y[i], flip ? window.flip({2}) : window)) {
            found = true;
            offsets_seen.insert(oy * 100 + ox);
            mirrored += flip;
            break;
          }
        }
      }
    }
    ASSERT_TRUE(found) << "image " << i << " is no window of the padded image";
  }
  // every one of the 9 × 9 offsets turns up in 2000 draws (each has p = 1/81)
  EXPECT_EQ(offsets_seen.size(), 81u);
  EXPECT_GT(mirrored, kDraws / 2 - 3 * 23);  // σ of the count: sqrt(2000)/2 ≈ 22.4
  EXPECT_LT(mirrored, kDraws / 2 + 3 * 23);
}

TEST(Augment, ResizedCropBoxesFollowTorchvision) {
  torch::manual_seed(23);
  constexpr int64_t kDraws = 5000, kH = 20, kW = 30;
  const auto boxes = data::random_resized_boxes(kDraws, kH, kW, 0.08, torch::kCPU);
  const auto top = boxes.top, left = boxes.left, h = boxes.height, w = boxes.width;
  // inside the image, every one
  EXPECT_TRUE((top.ge(0) & left.ge(0) & h.ge(1) & w.ge(1)).all().item<bool>());
  EXPECT_TRUE((top + h).le(kH).all().item<bool>());
  EXPECT_TRUE((left + w).le(kW).all().item<bool>());
  // scale in [0.08, 1] and aspect ratio in [3/4, 4/3] up to the rounding of the sides
  const auto scale = h * w / (kH * kW);
  EXPECT_GE(scale.min().item<double>(), 0.08 * 0.8);
  EXPECT_LT(scale.min().item<double>(), 0.12);  // reaches down to the smallest scale
  const auto ratio = w / h;
  EXPECT_GE(ratio.min().item<double>(), 0.75 * 0.8);
  EXPECT_LE(ratio.max().item<double>(), 4.0 / 3.0 * 1.25);
  EXPECT_GT((ratio - 1).abs().max().item<double>(), 0.25);  // both sides of square are drawn
}

TEST(Augment, ResizedCropsSampleOnlyTheImage) {
  torch::manual_seed(26);
  // a constant image: any sample outside it would bring in something else than ones
  auto ones = torch::ones({500, 3, 20, 30});
  auto y = data::augment_batch(ones, data::parse_augment("rrc:0.08,flip"), 16);
  ASSERT_EQ(y.sizes().vec(), (std::vector<int64_t>{500, 3, 16, 16}));
  EXPECT_LT((y - 1).abs().max().item<double>(), 1e-6);
  // crops of a position-coded image differ from its whole
  auto x = position_coded(200, 1, 24, 24);
  auto whole = F::interpolate(x, F::InterpolateFuncOptions()
                                     .size(std::vector<int64_t>{12, 12})
                                     .mode(torch::kBilinear)
                                     .align_corners(false));
  auto crops = data::augment_batch(x, data::parse_augment("rrc:0.08"), 12);
  const auto differs = (crops - whole).abs().amax({1, 2, 3}).gt(1e-3);
  EXPECT_GT(differs.sum().item<int64_t>(), 190);
}

TEST(Augment, ResizedCropOfScaleOneOnASquareIsTheBilinearResize) {
  torch::manual_seed(24);
  // scale 1 and a square image: the only box that fits is the whole image (ratio 1, or the
  // fallback), resized as F.interpolate(bilinear, align_corners=False) resizes it
  auto x = torch::rand({64, 3, 20, 20});
  auto y = data::augment_batch(x, data::parse_augment("rrc:1"), 13);
  auto want = F::interpolate(x, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{13, 13})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
  EXPECT_LT((y - want).abs().max().item<double>(), 1e-5);
}

TEST(Augment, JitterScalesBlendsAndDesaturatesAsTorchvision) {
  torch::manual_seed(25);
  auto x = torch::rand({300, 3, 6, 6}) * 0.5 + 0.2;  // 1.4 · 0.7 < 1: no clamp
  // brightness alone: x · f, one f per image in [0.6, 1.4]
  auto b = data::augment_batch(x, data::parse_augment("jitter:0.4,0,0"), 6);
  auto fb = (b / x).amin({1, 2, 3});
  EXPECT_LT(((b / x) - fb.view({-1, 1, 1, 1})).abs().max().item<double>(), 1e-5);
  EXPECT_GE(fb.min().item<double>(), 0.6 - 1e-6);
  EXPECT_LE((b / x).max().item<double>(), 1.4 + 1e-6);
  EXPECT_GT(fb.max().item<double>() - fb.min().item<double>(), 0.6);  // spread over the range
  // saturation alone: a blend with torchvision's grey, f · x + (1 − f) · grey
  auto s = data::augment_batch(x, data::parse_augment("jitter:0,0,0.5"), 6);
  auto grey = (0.2989 * x.select(1, 0) + 0.587 * x.select(1, 1) + 0.114 * x.select(1, 2))
                  .unsqueeze(1)
                  .to(torch::kFloat64);
  auto x64 = x.to(torch::kFloat64);
  for (int64_t i = 0; i < 300; i += 37) {
    // solve f from the pixel farthest from grey, then check every pixel of the image
    auto d = (x64[i] - grey[i]).abs();
    auto k = d.argmax().item<int64_t>();
    const auto g = grey[i].expand({3, 6, 6}).flatten()[k];
    const double f =
        ((s.to(torch::kFloat64)[i].flatten()[k] - g) / (x64[i].flatten()[k] - g)).item<double>();
    EXPECT_GE(f, 0.5 - 1e-4);
    EXPECT_LE(f, 1.5 + 1e-4);
    auto want = (f * x64[i] + (1 - f) * grey[i]).clamp(0, 1);
    EXPECT_LT((s.to(torch::kFloat64)[i] - want).abs().max().item<double>(), 1e-5) << i;
  }
  // contrast alone: a blend with the mean of the grey image
  auto c = data::augment_batch(x, data::parse_augment("jitter:0,0.5,0"), 6);
  for (int64_t i = 0; i < 300; i += 41) {
    const double mean = grey[i].mean().item<double>();
    auto k = (x64[i] - mean).abs().argmax().item<int64_t>();
    const double f = ((c.to(torch::kFloat64)[i].flatten()[k] - mean) / (x64[i].flatten()[k] - mean))
                         .item<double>();
    auto want = (f * x64[i] + (1 - f) * mean).clamp(0, 1);
    EXPECT_LT((c.to(torch::kFloat64)[i] - want).abs().max().item<double>(), 1e-5) << i;
  }
}

TEST(Augment, SameSeedSameDraws) {
  auto x = torch::rand({16, 3, 12, 12});
  const auto a = data::parse_augment("crop:2,flip,jitter:0.2,0.2,0.2");
  torch::manual_seed(5);
  auto first = data::augment_batch(x, a, 12);
  torch::manual_seed(5);
  auto again = data::augment_batch(x, a, 12);
  EXPECT_TRUE(torch::equal(first, again));
  auto other = data::augment_batch(x, a, 12);
  EXPECT_FALSE(torch::equal(first, other));
}
