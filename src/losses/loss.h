// Losses the trainer can optimise, chosen by name (`--loss`).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace torchfocal::losses {

struct LossConfig {
  std::string name = "ce";
  // Per-class weights (focal's α); empty = 1 for every class; one value = the same for all.
  std::vector<double> alpha;
  double gamma = 2.0;  // focal's focusing parameter
};

class Loss {
 public:
  virtual ~Loss() = default;
  // logits [N, C] float, target [N] int64 -> scalar mean loss over the batch.
  virtual torch::Tensor forward(const torch::Tensor& logits, const torch::Tensor& target) = 0;
};

// Names accepted by make_loss, for messages and the CLI.
const std::vector<std::string>& loss_names();

// Throws std::invalid_argument for an unknown name, an α of the wrong length or a bad γ.
std::unique_ptr<Loss> make_loss(const LossConfig& config, int64_t num_classes,
                                const torch::Device& device);

}  // namespace torchfocal::losses
