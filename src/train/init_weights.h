// Weights from outside torchfocal (a PyTorch state_dict saved as safetensors, say) into a model:
// the names and shapes checked all at once, so that one error line says everything that differs.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "src/train/named_tensors.h"

namespace torchfocal::train {

struct ShapeMismatch {
  std::string name;
  std::vector<int64_t> file_shape, model_shape;
};

struct InitReport {
  std::vector<std::string> loaded;           // copied into the model, in the file's order
  std::vector<ShapeMismatch> reinitialised;  // partial: left as the model had them
};

// Copies `state` into `model`'s parameters and buffers (PyTorch's state_dict names). Every name
// of `state` must be one of the model's, and every one of the model's must be in `state`; a
// floating tensor of any precision is converted to the model's dtype, an integer one likewise.
// `partial`: a tensor whose shape differs from the model's (a new classifier head) is left out
// and keeps the model's values (for a model fresh from its constructor, its seeded
// initialisation); it is reported. Anything else that differs throws one std::invalid_argument
// line: "2 missing (a, b), 1 unexpected (c), 1 shape mismatch (d: file [10,84], model [2,84])",
// each list cut after a few names; nothing is copied then.
InitReport init_weights(torch::nn::Module& model, const NamedTensors& state, bool partial);

}  // namespace torchfocal::train
