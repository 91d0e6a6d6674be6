#include "src/losses/loss.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "src/ops/focal_loss.h"

namespace torchfocal::losses {
namespace {

// Kept in float64; cast to the logits' dtype when used, so float64 runs stay exact.
torch::Tensor to_tensor(const std::vector<double>& v, const torch::Device& device) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kFloat64)).to(device);
}

// The user's α as per-class values: empty -> empty, one value -> broadcast, C values -> as is.
std::vector<double> expand_alpha(const std::vector<double>& alpha, size_t num_classes) {
  if (alpha.empty()) return {};
  if (alpha.size() != 1 && alpha.size() != num_classes) {
    std::ostringstream msg;
    msg << "alpha has " << alpha.size() << " values but the dataset has " << num_classes
        << " classes (give one value or one per class)";
    throw std::invalid_argument(msg.str());
  }
  for (double a : alpha) {
    if (!std::isfinite(a) || a < 0)
      throw std::invalid_argument("alpha values must be finite and >= 0");
  }
  return alpha.size() == 1 ? std::vector<double>(num_classes, alpha[0]) : alpha;
}

// log of the class prior n_c / N; empty classes get a very negative but finite log prior.
std::vector<double> log_prior(const std::vector<int64_t>& counts) {
  double total = 0;
  for (auto n : counts) total += static_cast<double>(n);
  std::vector<double> out;
  for (auto n : counts) out.push_back(std::log(std::max<double>(n, 1e-3) / std::max(total, 1.0)));
  return out;
}

// One member of the family: optional additive logit offsets (a fixed per-class vector, or a
// margin on the target logit), an optional scale, then the fused focal op with per-class
// weights that deferred re-weighting may hold back until an epoch.
class FamilyLoss final : public Loss {
 public:
  struct Parts {
    double gamma = 0;
    double label_smoothing = 0;
    std::vector<double> weights;        // empty = none
    std::vector<double> logit_offset;   // added to every row (balanced-softmax, logit-adjust)
    std::vector<double> target_margin;  // subtracted from the target logit (ldam)
    double scale = 1;                   // multiplies the adjusted logits (ldam's s)
    int64_t drw_epoch = -1;             // weights only from this epoch on (-1: always)
    bool normalize_by_weights = false;  // divide by Σ_i w_{y_i}, not N (LossConfig)
  };

  FamilyLoss(const Parts& p, const torch::Device& device, bool targets_checked) : parts_(p) {
    if (!p.weights.empty()) weights_ = to_tensor(p.weights, device);
    if (p.normalize_by_weights && weights_.defined()) {
      weight_sums_ = weights_.to(torch::kFloat32);
      sum_options_.reduction = ops::Reduction::kSum;
    }
    if (!p.logit_offset.empty()) offset_ = to_tensor(p.logit_offset, device);
    if (!p.target_margin.empty()) margin_ = to_tensor(p.target_margin, device);
    options_.gamma = p.gamma;
    options_.label_smoothing = p.label_smoothing;
    options_.targets_checked = targets_checked;
    sum_options_.gamma = p.gamma;
    sum_options_.label_smoothing = p.label_smoothing;
    sum_options_.targets_checked = targets_checked;
    set_epoch(0);
  }

  bool set_epoch(int64_t epoch) override {
    const bool before = weighted_;
    weighted_ = weights_.defined() && (parts_.drw_epoch < 0 || epoch >= parts_.drw_epoch);
    if (weighted_ == before) return false;  // kept: a captured CUDA graph reads this tensor
    // Made here, not in forward: a CUDA graph capturing forward must find it made.
    options_.alpha = weighted_ ? weights_.to(torch::kFloat32) : torch::Tensor();
    sum_options_.alpha = options_.alpha;
    return true;
  }

  torch::Tensor forward(const torch::Tensor& logits, const torch::Tensor& target) override {
    if (weighted_ && options_.alpha.scalar_type() != logits.scalar_type()) {
      options_.alpha = weights_.to(logits.scalar_type());  // once per dtype, not per step
      sum_options_.alpha = options_.alpha;
    }
    auto z = logits;
    if (offset_.defined()) z = z + offset_.to(z.scalar_type());
    if (margin_.defined()) {
      // Only the target logit moves: z_y - m_y (LDAM).
      auto m = margin_.to(z.scalar_type()).index_select(0, target).unsqueeze(1);
      z = z - torch::zeros_like(z).scatter_(1, target.unsqueeze(1), m);
    }
    if (parts_.scale != 1) z = z * parts_.scale;
    if (!weighted_ || !weight_sums_.defined()) return ops::focal_loss(z, target, options_);
    // Σ_i (row loss) / Σ_i w_{y_i}, all on the device (no read-back: a CUDA graph captures it);
    // a batch whose target weights are all 0 divides by 1. The trainer's targets are class
    // indices (targets_checked), so every row counts.
    auto total = ops::focal_loss(z, target, sum_options_);
    auto weight_sum = weight_sums_.index_select(0, target).sum();
    weight_sum = torch::where(weight_sum > 0, weight_sum, torch::ones_like(weight_sum));
    return total / weight_sum.to(total.scalar_type());
  }

 private:
  Parts parts_;
  torch::Tensor weights_, offset_, margin_;
  torch::Tensor weight_sums_;  // float32 weights for the normalize_by_weights denominator
  bool weighted_ = false;
  ops::FocalOptions options_;
  ops::FocalOptions sum_options_;  // options_ with a sum reduction (normalize_by_weights)
};

}  // namespace

const std::vector<LossInfo>& loss_infos() {
  static const std::vector<LossInfo> infos{
      {"ce", "cross-entropy, optional class weights (--alpha) and label smoothing; the baseline",
       true},
      {"focal",
       "focal loss -a_t (1-p_t)^g log p_t: down-weights easy examples; a per-class alpha "
       "re-weights classes (Lin et al. 2017)",
       true},
      {"cb-ce",
       "cross-entropy weighted by the inverse effective number of samples (1-b^n)/(1-b) per "
       "class, from the training counts (Cui et al. 2019)",
       false},
      {"cb-focal", "focal loss with those class-balanced weights as alpha (Cui et al. 2019)",
       false},
      {"ldam",
       "label-distribution-aware margins m_c ~ n_c^(-1/4) on the target logit, scale s; pair "
       "with --drw (Cao et al. 2019)",
       true},
      {"balanced-softmax",
       "cross-entropy on logits + log prior: fits the balanced test distribution (Ren et al. "
       "2020)",
       false},
      {"logit-adjust",
       "cross-entropy on logits + tau log prior; tau = 1 equals balanced-softmax (Menon et al. "
       "2021)",
       false},
  };
  return infos;
}

std::vector<double> class_balanced_weights(const std::vector<int64_t>& counts, double beta) {
  if (!(beta >= 0 && beta < 1)) throw std::invalid_argument("beta must be in [0, 1)");
  std::vector<double> w;
  double sum = 0;
  for (auto n : counts) {
    // effective number E_n = (1 - β^n) / (1 - β); weight ∝ 1 / E_n, 0 for an empty class
    // 1 - β^n = -expm1(n log β), with log β = log1p(β - 1): exact for β close to 1.
    const double effective = n > 0 ? -std::expm1(n * std::log1p(beta - 1)) / (1 - beta) : 0;
    w.push_back(effective > 0 ? 1 / effective : 0);
    sum += w.back();
  }
  for (auto& x : w) x *= sum > 0 ? static_cast<double>(counts.size()) / sum : 0;
  return w;
}

std::vector<double> inverse_frequency_weights(const std::vector<int64_t>& counts) {
  std::vector<double> w;
  double sum = 0;
  size_t present = 0;
  for (auto n : counts) {
    w.push_back(n > 0 ? 1.0 / static_cast<double>(n) : 0);
    sum += w.back();
    present += n > 0;
  }
  for (auto& x : w) x *= sum > 0 ? static_cast<double>(present) / sum : 0;
  return w;
}

std::unique_ptr<Loss> make_loss(const LossConfig& c, const std::vector<int64_t>& counts,
                                const torch::Device& device, bool targets_checked) {
  const size_t num_classes = counts.size();
  if (!std::isfinite(c.gamma) || c.gamma < 0)
    throw std::invalid_argument("gamma must be a finite number >= 0");
  if (!(c.label_smoothing >= 0 && c.label_smoothing < 1)) {
    throw std::invalid_argument("label smoothing must be in [0, 1)");
  }
  const auto& infos = loss_infos();
  auto info =
      std::find_if(infos.begin(), infos.end(), [&](const LossInfo& i) { return i.name == c.name; });
  if (info == infos.end()) {
    std::ostringstream msg;
    msg << "unknown loss '" << c.name << "' (known:";
    for (const auto& i : infos) msg << ' ' << i.name;
    msg << ')';
    throw std::invalid_argument(msg.str());
  }
  if (!info->takes_weights && (!c.alpha.empty() || c.alpha_auto)) {
    throw std::invalid_argument("loss '" + c.name +
                                "' computes its own class weights: drop --alpha");
  }

  if (c.alpha_normalize != "mean" && c.alpha_normalize != "weights") {
    throw std::invalid_argument("alpha normalize must be 'mean' or 'weights', got '" +
                                c.alpha_normalize + "'");
  }
  FamilyLoss::Parts p;
  p.drw_epoch = c.drw_epoch;
  p.normalize_by_weights = c.alpha_normalize == "weights";
  p.weights = c.alpha_auto ? inverse_frequency_weights(counts) : expand_alpha(c.alpha, num_classes);
  if (c.name == "ce") {
    p.label_smoothing = c.label_smoothing;
  } else if (c.name == "focal") {
    p.gamma = c.gamma;
    p.label_smoothing = c.label_smoothing;
  } else if (c.name == "cb-ce" || c.name == "cb-focal") {
    p.weights = class_balanced_weights(counts, c.beta);
    if (c.name == "cb-focal") p.gamma = c.gamma;
  } else if (c.name == "ldam") {
    if (!(c.ldam_max_margin > 0) || !(c.ldam_scale > 0)) {
      throw std::invalid_argument("ldam: max margin and scale must be > 0");
    }
    // m_c = C / n_c^(1/4), scaled so that the rarest class gets the largest margin.
    double largest = 0;
    for (auto n : counts) largest = std::max(largest, 1 / std::pow(std::max<double>(n, 1), 0.25));
    for (auto n : counts) {
      p.target_margin.push_back(c.ldam_max_margin / largest /
                                std::pow(std::max<double>(n, 1), 0.25));
    }
    p.scale = c.ldam_scale;
    // LDAM-DRW re-weights with class-balanced weights when none are given (Cao et al.).
    if (p.weights.empty() && c.drw_epoch >= 0) p.weights = class_balanced_weights(counts, c.beta);
  } else {  // balanced-softmax, logit-adjust: additive log-prior offsets
    const double tau = c.name == "logit-adjust" ? c.tau : 1.0;
    if (!std::isfinite(tau) || tau < 0)
      throw std::invalid_argument("tau must be a finite number >= 0");
    for (double lp : log_prior(counts)) p.logit_offset.push_back(tau * lp);
  }
  if (c.drw_epoch >= 0 && p.weights.empty()) {
    throw std::invalid_argument(
        "--drw needs class weights: give --alpha, or use cb-ce, cb-focal or ldam");
  }
  return std::make_unique<FamilyLoss>(p, device, targets_checked);
}

}  // namespace torchfocal::losses
