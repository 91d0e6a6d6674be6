// Classification metrics derived from a confusion matrix.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace torchfocal::metrics {

struct ClassMetrics {
  int64_t support = 0;  // true instances of the class
  int64_t predicted = 0;
  double recall = 0, precision = 0, f1 = 0;
};

struct Metrics {
  int64_t total = 0;
  double accuracy = 0;
  double balanced_accuracy = 0;  // mean recall over classes with support
  double macro_f1 = 0;           // mean F1 over classes with support
  std::vector<ClassMetrics> per_class;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
};

// Accumulates predictions into a [C, C] int64 confusion matrix on the predictions' device.
torch::Tensor confusion_matrix(const torch::Tensor& target, const torch::Tensor& predicted,
                               int64_t num_classes);

// Convention for empty rows or columns: a ratio with a zero denominator is 0 (never NaN);
// classes without support are left out of the balanced accuracy and macro-F1 means.
Metrics compute_metrics(const torch::Tensor& confusion);

}  // namespace torchfocal::metrics
