// The loss family for imbalanced data, chosen by name (`--loss`). Every member runs on the
// fused focal op (cross-entropy is its γ = 0 case), so all of them get its single-pass kernels.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace torchfocal::losses {

struct LossConfig {
  std::string name = "ce";
  // Per-class weights (focal's α, ce's class weights): empty = 1 for every class, one value =
  // the same for all, C values = per class. `alpha_auto` replaces them with inverse frequency.
  std::vector<double> alpha;
  bool alpha_auto = false;
  // What a batch's weighted loss is divided by: "mean", the batch size N (torchfocal's default,
  // the original experiment's), or "weights", the sum of the target classes' weights Σ_i w_{y_i}
  // as PyTorch's CrossEntropyLoss(weight=) does (label smoothing included, as there). Applies to
  // whichever class weights the loss uses (α, cb-*, ldam's DRW weights); without any it is "mean".
  std::string alpha_normalize = "mean";
  double gamma = 2.0;            // focal's focusing parameter (focal, cb-focal)
  double label_smoothing = 0.0;  // ce, focal: applied to the target distribution first
  double beta = 0.9999;          // cb-*: effective-number β (Cui et al. 2019)
  double ldam_max_margin = 0.5;  // ldam: the largest class margin (Cao et al. 2019)
  double ldam_scale = 30.0;      // ldam: s
  double tau = 1.0;              // logit-adjust: τ (Menon et al. 2021)
  int64_t drw_epoch = -1;        // deferred re-weighting: class weights from this epoch on
};

struct LossInfo {
  std::string name;
  std::string summary;  // what it does, when to use it, its paper
  bool takes_weights;   // whether --alpha / --drw apply
};

const std::vector<LossInfo>& loss_infos();

class Loss {
 public:
  virtual ~Loss() = default;
  // logits [N, C], target [N] int64 -> scalar mean loss over the batch.
  virtual torch::Tensor forward(const torch::Tensor& logits, const torch::Tensor& target) = 0;
  // Deferred re-weighting switches class weights on at an epoch; called before each epoch.
  // Returns whether forward computes something else from now on (a captured step is stale).
  virtual bool set_epoch(int64_t epoch) { return false; }
};

// `class_counts`: the training set's count per class (priors, effective numbers, margins).
// Throws std::invalid_argument for an unknown name, an α of the wrong length, bad numbers.
// `targets_checked`: every target forward will see is a valid class index (the focal op's
// FocalOptions::targets_checked: no range check, no read-back to the host).
std::unique_ptr<Loss> make_loss(const LossConfig& config, const std::vector<int64_t>& class_counts,
                                const torch::Device& device, bool targets_checked = false);

// Class-balanced weights from the effective number of samples, normalised to sum to C.
std::vector<double> class_balanced_weights(const std::vector<int64_t>& counts, double beta);
// Inverse-frequency weights normalised to mean 1 (empty classes get weight 0).
std::vector<double> inverse_frequency_weights(const std::vector<int64_t>& counts);

}  // namespace torchfocal::losses
