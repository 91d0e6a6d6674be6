// Named tensors as checkpoints carry them, and the one check every loader runs before it
// copies anything: names, shapes and dtypes against what the model expects.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "src/common/shape_string.h"

namespace torchfocal::train {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct TensorSpec {
  std::vector<int64_t> sizes;
  torch::ScalarType dtype;
};
using TensorSpecs = std::map<std::string, TensorSpec>;

// Every tensor of `given` must be named in `expected`, once, with that shape and dtype; throws
// std::invalid_argument "<where>: ..." naming the first that is not. Names of `expected` may be
// missing from `given`; the result maps each given name to its tensor.
std::map<std::string, torch::Tensor> match_tensors(const TensorSpecs& expected,
                                                   const NamedTensors& given,
                                                   const std::string& where);

// Throws "<where>: tensor '<name>' is missing" for the first expected name not in `matched`.
void require_all(const TensorSpecs& expected, const std::map<std::string, torch::Tensor>& matched,
                 const std::string& where);

// Throws std::invalid_argument "<where>: tensor '<name>' holds non-finite values (N NaN, M
// infinite)" for the first floating-point tensor of `given` holding a NaN or an infinity: weights
// like that predict nothing (every probability NaN), so no loader accepts them.
void require_finite(const NamedTensors& given, const std::string& where);

}  // namespace torchfocal::train
