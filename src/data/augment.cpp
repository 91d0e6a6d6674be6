#include "src/data/augment.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace torchfocal::data {

namespace F = torch::nn::functional;

namespace {

// RandomResizedCrop's candidate boxes per image: torchvision tries 10 in turn; all 10 are drawn
// at once here and the first that fits is taken, which keeps the draw free of host decisions.
constexpr int64_t kCropAttempts = 10;
constexpr double kMinRatio = 3.0 / 4.0;
constexpr double kMaxRatio = 4.0 / 3.0;

double number(const std::string& text, const std::string& part) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(value)) {
    throw std::invalid_argument("augment: '" + part + "': '" + text + "' is not a number");
  }
  return value;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, sep)) out.push_back(item);
  if (!text.empty() && text.back() == sep) out.push_back("");
  return out;
}

// Random crop at offsets in [0, 2·pad] of the zero-padded image, the flip folded into the column
// indices: two gathers, every output pixel a copy of an input pixel or a padding zero.
torch::Tensor crop_and_flip(const torch::Tensor& x, int64_t pad, bool flip) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const auto longs = torch::TensorOptions().dtype(torch::kInt64).device(x.device());
  auto padded = pad > 0 ? F::pad(x, F::PadFuncOptions({pad, pad, pad, pad})) : x;
  auto rows = torch::arange(h, longs).view({1, h}).expand({b, h});
  auto cols = torch::arange(w, longs).view({1, w}).expand({b, w});
  if (pad > 0) {
    rows = rows + torch::randint(0, 2 * pad + 1, {b, 1}, longs);
    cols = cols + torch::randint(0, 2 * pad + 1, {b, 1}, longs);
  }
  if (flip) {
    // cropped column k becomes column w − 1 − k: the offset columns in reverse
    const auto flipped = torch::rand({b, 1}, x.options()).lt(0.5);
    const auto reversed = cols.flip({1});
    cols = torch::where(flipped, reversed, cols);
  }
  auto y = padded.gather(2, rows.reshape({b, 1, h, 1}).expand({b, c, h, padded.size(3)}));
  return y.gather(3, cols.reshape({b, 1, 1, w}).expand({b, c, h, w}));
}

}  // namespace

CropBoxes random_resized_boxes(int64_t b, int64_t h, int64_t w, double scale_min,
                               const torch::Device& device) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  const double area = static_cast<double>(h * w);
  auto target = area * (scale_min + (1.0 - scale_min) * torch::rand({b, kCropAttempts}, opts));
  auto log_ratio = std::log(kMinRatio) + (std::log(kMaxRatio) - std::log(kMinRatio)) *
                                             torch::rand({b, kCropAttempts}, opts);
  auto ratio = torch::exp(log_ratio);
  auto cw = torch::round(torch::sqrt(target * ratio));
  auto ch = torch::round(torch::sqrt(target / ratio));
  auto fits = cw.gt(0) & cw.le(w) & ch.gt(0) & ch.le(h);
  auto first = fits.to(torch::kInt64).argmax(1, /*keepdim=*/true);  // the first that fits
  auto found = fits.any(1);
  // torchvision's fallback when none fits: the whole image, cut to the nearest allowed ratio
  double fw = w, fh = h;
  if (static_cast<double>(w) / h < kMinRatio) {
    fh = std::round(w / kMinRatio);
  } else if (static_cast<double>(w) / h > kMaxRatio) {
    fw = std::round(h * kMaxRatio);
  }
  auto bw = torch::where(found, cw.gather(1, first).squeeze(1), torch::full({b}, fw, opts));
  auto bh = torch::where(found, ch.gather(1, first).squeeze(1), torch::full({b}, fh, opts));
  // top-left corner uniform over the positions that keep the box inside (randint(0, h − bh + 1))
  auto top = torch::where(found, torch::floor(torch::rand({b}, opts) * (h - bh + 1)),
                          torch::floor((h - bh) / 2));
  auto left = torch::where(found, torch::floor(torch::rand({b}, opts) * (w - bw + 1)),
                           torch::floor((w - bw) / 2));
  return {top, left, bh, bw};
}

namespace {

// RandomResizedCrop to side × side, the flip folded into the sampling grid.
torch::Tensor resized_crop(const torch::Tensor& x, double scale_min, bool flip, int64_t side) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const auto opts = x.options().dtype(torch::kFloat64);
  const auto box = random_resized_boxes(b, h, w, scale_min, x.device());
  const auto &top = box.top, &left = box.left, &bh = box.height, &bw = box.width;
  // The affine map from output to input coordinates (align_corners=false): output pixel u of
  // side S samples input x = left + (u + 0.5)·bw/S − 0.5, as a crop resized bilinearly does.
  auto sx = bw / w, sy = bh / h;
  auto tx = (2 * left + bw) / w - 1, ty = (2 * top + bh) / h - 1;
  if (flip) sx = torch::where(torch::rand({b}, opts).lt(0.5), -sx, sx);
  auto zero = torch::zeros({b}, opts);
  auto theta = torch::stack({torch::stack({sx, zero, tx}, 1), torch::stack({zero, sy, ty}, 1)}, 1)
                   .to(x.scalar_type());
  auto grid = F::affine_grid(theta, {b, c, side, side}, /*align_corners=*/false);
  return F::grid_sample(x, grid,
                        F::GridSampleFuncOptions()
                            .mode(torch::kBilinear)
                            // beyond the image, its edge pixels (as a resize clamps there)
                            .padding_mode(torch::kBorder)
                            .align_corners(false));
}

// torchvision's rgb_to_grayscale (0.2989, 0.587, 0.114); a one-channel image is its own grey.
torch::Tensor grey(const torch::Tensor& x) {
  if (x.size(1) == 1) return x;
  return (0.2989 * x.select(1, 0) + 0.587 * x.select(1, 1) + 0.114 * x.select(1, 2)).unsqueeze(1);
}

// torchvision's _blend: ratio·a + (1 − ratio)·b, clamped to [0, 1].
torch::Tensor blend(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& ratio) {
  return (ratio * a + (1 - ratio) * b).clamp(0, 1);
}

// A factor per image, uniform in [max(0, 1 − amount), 1 + amount], shaped [B, 1, 1, 1].
torch::Tensor factor(double amount, const torch::Tensor& x) {
  const double lo = std::max(0.0, 1 - amount), hi = 1 + amount;
  return (lo + (hi - lo) * torch::rand({x.size(0), 1, 1, 1}, x.options()));
}

// ColorJitter: brightness, contrast and saturation in a random order per image.
torch::Tensor jitter(torch::Tensor x, const Augment& a) {
  const int64_t b = x.size(0);
  const auto fb = a.brightness > 0 ? factor(a.brightness, x) : torch::Tensor();
  const auto fc = a.contrast > 0 ? factor(a.contrast, x) : torch::Tensor();
  const auto fs = a.saturation > 0 && x.size(1) == 3 ? factor(a.saturation, x) : torch::Tensor();
  // each image's order of the three: the ranks of three uniform draws (torch.randperm(3))
  const auto order = torch::rand({b, 3}, x.options()).argsort(/*dim=*/1, /*descending=*/false);
  for (int64_t stage = 0; stage < 3; ++stage) {
    const auto op = order.select(1, stage).view({b, 1, 1, 1});
    auto y = x;
    if (fb.defined()) y = torch::where(op.eq(0), blend(x, torch::zeros_like(x), fb), y);
    if (fc.defined()) {
      const auto mean = grey(x).mean({1, 2, 3}, /*keepdim=*/true);
      y = torch::where(op.eq(1), blend(x, mean, fc), y);
    }
    if (fs.defined()) y = torch::where(op.eq(2), blend(x, grey(x), fs), y);
    x = y;
  }
  return x;
}

}  // namespace

Augment parse_augment(const std::string& spec) {
  Augment a;
  if (spec.empty() || spec == "none") return a;
  // jitter's three figures use commas too: a part starting with a digit continues jitter
  std::vector<std::string> parts;
  for (const auto& item : split(spec, ',')) {
    if (!parts.empty() && parts.back().rfind("jitter:", 0) == 0 && !item.empty() &&
        (std::isdigit(static_cast<unsigned char>(item[0])) || item[0] == '.')) {
      parts.back() += "," + item;
    } else {
      parts.push_back(item);
    }
  }
  for (const auto& part : parts) {
    const auto colon = part.find(':');
    const auto name = part.substr(0, colon);
    const auto arg = colon == std::string::npos ? std::string() : part.substr(colon + 1);
    const bool has_arg = colon != std::string::npos;
    if (name == "flip" && !has_arg) {
      a.flip = true;
    } else if (name == "crop" && has_arg) {
      const double pad = number(arg, part);
      if (pad < 0 || pad > 1024 || pad != std::floor(pad)) {
        throw std::invalid_argument("augment: '" + part +
                                    "': the padding is a whole number 0..1024");
      }
      a.crop_padding = static_cast<int64_t>(pad);
    } else if (name == "rrc" && has_arg) {
      a.rrc_scale_min = number(arg, part);
      if (!(a.rrc_scale_min > 0 && a.rrc_scale_min <= 1)) {
        throw std::invalid_argument("augment: '" + part + "': the smallest scale is in (0, 1]");
      }
    } else if (name == "jitter" && has_arg) {
      const auto figures = split(arg, ',');
      if (figures.size() != 3) {
        throw std::invalid_argument("augment: '" + part + "': expected jitter:B,C,S");
      }
      a.brightness = number(figures[0], part);
      a.contrast = number(figures[1], part);
      a.saturation = number(figures[2], part);
      if (a.brightness < 0 || a.contrast < 0 || a.saturation < 0 || a.contrast > 1 ||
          a.saturation > 1) {
        throw std::invalid_argument("augment: '" + part +
                                    "': brightness >= 0, contrast and saturation in [0, 1]");
      }
    } else {
      throw std::invalid_argument("augment: unknown '" + part +
                                  "' (known: crop:PAD, flip, rrc:SCALE_MIN, jitter:B,C,S, none)");
    }
  }
  if (a.crop_padding >= 0 && a.rrc_scale_min > 0) {
    throw std::invalid_argument("augment: crop and rrc both choose the crop: give one of them");
  }
  return a;
}

std::string to_string(const Augment& a) {
  if (!a.any()) return "none";
  std::ostringstream out;
  out.precision(17);
  const char* sep = "";
  if (a.crop_padding >= 0) out << sep << "crop:" << a.crop_padding, sep = ",";
  if (a.rrc_scale_min > 0) out << sep << "rrc:" << a.rrc_scale_min, sep = ",";
  if (a.flip) out << sep << "flip", sep = ",";
  if (a.brightness > 0 || a.contrast > 0 || a.saturation > 0) {
    out << sep << "jitter:" << a.brightness << ',' << a.contrast << ',' << a.saturation;
  }
  return out.str();
}

torch::Tensor augment_batch(const torch::Tensor& x, const Augment& a, int64_t side) {
  torch::NoGradGuard no_grad;
  auto y = x;
  if (a.rrc_scale_min > 0) {
    y = resized_crop(y, a.rrc_scale_min, a.flip, side);
  } else if (a.crop_padding >= 0 || a.flip) {
    y = crop_and_flip(y, std::max<int64_t>(a.crop_padding, 0), a.flip);
  }
  if (y.size(2) != side || y.size(3) != side) {
    y = F::interpolate(y, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{side, side})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  if (a.brightness > 0 || a.contrast > 0 || a.saturation > 0) y = jitter(y, a);
  return y;
}

}  // namespace torchfocal::data
