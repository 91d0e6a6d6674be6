// Times the fused focal op against LibTorch's cross-entropy and against the original
// experiment's focal loss composed of separate ops, forward + backward, in one process.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace torchfocal::bench {

struct FocalOpTiming {
  int64_t rows = 0;
  int64_t classes = 0;
  int threads = 0;
  // Median seconds per forward + backward (mean reduction, float32, gradient of the input).
  double fused = 0;          // ops::focal_loss, α 100 on class 6 (class 0 if C < 7), γ 2
  double cross_entropy = 0;  // torch::nn::functional::cross_entropy
  double composed = 0;       // softmax, gather, + 1e-8, log, pow, mul, mean: the original
};

// Interleaves the three ops in `repeats` rounds of timed batches of calls (each batch long
// enough to be timed: at least `min_batch_seconds`), on fresh random logits and targets.
// On a GPU each batch ends by reading a value that depends on its last backward, so the time
// covers the kernels, not just their launches.
FocalOpTiming time_focal_op(int64_t rows, int64_t classes, int repeats = 7,
                            double min_batch_seconds = 0.02,
                            const torch::Device& device = torch::kCPU);

}  // namespace torchfocal::bench
