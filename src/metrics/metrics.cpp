#include "src/metrics/metrics.h"

#include <stdexcept>

namespace torchfocal::metrics {
namespace {
double ratio(int64_t num, int64_t den) { return den == 0 ? 0.0 : static_cast<double>(num) / den; }
}  // namespace

torch::Tensor confusion_matrix(const torch::Tensor& target, const torch::Tensor& predicted,
                               int64_t num_classes) {
  // One bincount over flattened (true, predicted) pairs: no per-sample loop, no host sync.
  auto flat = target.to(torch::kInt64) * num_classes + predicted.to(torch::kInt64);
  return torch::bincount(flat, /*weights=*/{}, /*minlength=*/num_classes * num_classes)
      .view({num_classes, num_classes});
}

torch::Tensor true_class_rank(const torch::Tensor& logits, const torch::Tensor& target) {
  if (logits.dim() != 2 || target.dim() != 1 || target.size(0) != logits.size(0)) {
    throw std::invalid_argument("true_class_rank: logits must be [N, C] and target [N]");
  }
  auto t = target.to(torch::kInt64).unsqueeze(1);
  auto true_logit = logits.gather(1, t);
  auto index = torch::arange(logits.size(1), t.options()).unsqueeze(0);
  auto ahead = logits.gt(true_logit).logical_or(logits.eq(true_logit).logical_and(index.lt(t)));
  return ahead.sum(1, /*keepdim=*/false, torch::kInt64);
}

torch::Tensor rank_counts(const torch::Tensor& logits, const torch::Tensor& target) {
  return torch::bincount(true_class_rank(logits, target), /*weights=*/{},
                         /*minlength=*/logits.size(1));
}

Metrics compute_metrics(const torch::Tensor& confusion, const torch::Tensor& ranks) {
  if (confusion.dim() != 2 || confusion.size(0) != confusion.size(1)) {
    throw std::invalid_argument("confusion matrix must be square");
  }
  auto cm = confusion.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t c = cm.size(0);
  const int64_t* v = cm.data_ptr<int64_t>();

  Metrics m;
  m.per_class.resize(c);
  m.confusion.assign(c, std::vector<int64_t>(c));
  int64_t correct = 0;
  for (int64_t i = 0; i < c; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      m.confusion[i][j] = v[i * c + j];
      m.per_class[i].support += v[i * c + j];
      m.per_class[j].predicted += v[i * c + j];
      m.total += v[i * c + j];
    }
    correct += v[i * c + i];
  }
  int64_t with_support = 0;
  for (int64_t i = 0; i < c; ++i) {
    auto& k = m.per_class[i];
    const int64_t tp = v[i * c + i];
    k.recall = ratio(tp, k.support);
    k.precision = ratio(tp, k.predicted);
    k.f1 = ratio(2 * tp, k.support + k.predicted);  // = 2PR/(P+R), without 0/0
    if (k.support > 0) {
      ++with_support;
      m.balanced_accuracy += k.recall;
      m.macro_f1 += k.f1;
    }
  }
  m.accuracy = ratio(correct, m.total);
  if (with_support > 0) {
    m.balanced_accuracy /= with_support;
    m.macro_f1 /= with_support;
  }
  if (ranks.defined()) {
    if (ranks.dim() != 1 || ranks.size(0) != c) {
      throw std::invalid_argument("rank counts must have one entry per class");
    }
    auto r = ranks.to(torch::kCPU, torch::kInt64).contiguous();
    int64_t within = 0;
    for (int64_t k = 0; k < c; ++k) {
      within += r.data_ptr<int64_t>()[k];
      m.top_k_accuracy.push_back(ratio(within, m.total));
    }
  }
  return m;
}

}  // namespace torchfocal::metrics
