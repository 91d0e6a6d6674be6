// Training-time augmentation of a batch on its own device, with torchvision's semantics:
// RandomCrop(padding), RandomHorizontalFlip, RandomResizedCrop and ColorJitter.
//
// Every random number is drawn on the batch's device from that device's global generator, which
// the trainer swaps its own stream into (src/train/random_stream.h): the draws are seeded, saved
// in checkpoints, and, on CUDA, captured into the step's graph (no host round trip, no sync).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace torchfocal::data {

struct Augment {
  // crop:PAD — pad every side with PAD zeros, then crop the stored size at a random offset
  // (torchvision's RandomCrop(size, padding=PAD), the CIFAR recipe); -1: off
  int64_t crop_padding = -1;
  // flip — horizontal, with probability 0.5 (RandomHorizontalFlip)
  bool flip = false;
  // rrc:MIN — RandomResizedCrop(input size, scale=(MIN, 1), ratio=(3/4, 4/3)); 0: off
  double rrc_scale_min = 0;
  // jitter:B,C,S — ColorJitter(brightness=B, contrast=C, saturation=S), applied in a random
  // order per image as torchvision does; 0 leaves that factor out
  double brightness = 0;
  double contrast = 0;
  double saturation = 0;

  bool any() const {
    return crop_padding >= 0 || flip || rrc_scale_min > 0 || brightness > 0 || contrast > 0 ||
           saturation > 0;
  }
};

// "none" (or "") or a comma-separated list: "crop:4,flip", "rrc:0.08,flip,jitter:0.4,0.4,0.4".
// Throws std::invalid_argument naming the bad part.
Augment parse_augment(const std::string& spec);

// The spec again, in a fixed order (what every rank of a distributed run must agree on).
std::string to_string(const Augment& augment);

// RandomResizedCrop's boxes for n images of h × w: float64 tensors of n on `device`, each box
// inside the image, its area a uniform share in [scale_min, 1] of the image's and its aspect
// ratio log-uniform in [3/4, 4/3] (torchvision's draw; the whole image, cut to the nearest
// allowed ratio, where none of 10 attempts fits).
struct CropBoxes {
  torch::Tensor top, left, height, width;
};
CropBoxes random_resized_boxes(int64_t n, int64_t h, int64_t w, double scale_min,
                               const torch::Device& device);

// x: [B, C, H, W] float in [0, 1] on any device; returns [B, C, side, side] in [0, 1]: cropped
// and flipped exactly (pixels copied), or resized-cropped bilinearly straight to side × side,
// then resized to side × side when still another size, then jittered.
torch::Tensor augment_batch(const torch::Tensor& x, const Augment& augment, int64_t side);

}  // namespace torchfocal::data
