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
  // top_k_accuracy[k - 1]: fraction whose true class is among the k highest logits (k = 1..C);
  // empty when no rank counts were given.
  std::vector<double> top_k_accuracy;
};

// Accumulates predictions into a [C, C] int64 confusion matrix on the predictions' device.
torch::Tensor confusion_matrix(const torch::Tensor& target, const torch::Tensor& predicted,
                               int64_t num_classes);

// Each sample's rank of its true class among the logits [N, C] (0 = the top): the classes with
// a higher logit, ties counted ahead when their index is lower (as argmax breaks them), so
// rank 0 is exactly argmax == target. No topk or sort: comparisons against the gathered logit.
torch::Tensor true_class_rank(const torch::Tensor& logits, const torch::Tensor& target);

// How many samples have each true-class rank: a [C] int64 count on the logits' device.
torch::Tensor rank_counts(const torch::Tensor& logits, const torch::Tensor& target);

// Convention for empty rows or columns: a ratio with a zero denominator is 0 (never NaN);
// classes without support are left out of the balanced accuracy and macro-F1 means.
// `ranks` (optional, from rank_counts summed over batches) fills top_k_accuracy.
Metrics compute_metrics(const torch::Tensor& confusion, const torch::Tensor& ranks = {});

}  // namespace torchfocal::metrics
