#include "src/train/named_tensors.h"

#include <stdexcept>

namespace torchfocal::train {

std::map<std::string, torch::Tensor> match_tensors(const TensorSpecs& expected,
                                                   const NamedTensors& given,
                                                   const std::string& where) {
  std::map<std::string, torch::Tensor> matched;
  for (const auto& [name, tensor] : given) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      throw std::invalid_argument(where + ": unexpected tensor '" + name + "'");
    }
    if (!tensor.defined()) throw std::invalid_argument(where + ": tensor '" + name + "' is empty");
    if (!tensor.sizes().equals(it->second.sizes)) {
      throw std::invalid_argument(where + ": tensor '" + name + "' has shape " +
                                  shape_string(tensor.sizes()) + ", expected " +
                                  shape_string(it->second.sizes));
    }
    if (tensor.scalar_type() != it->second.dtype) {
      throw std::invalid_argument(where + ": tensor '" + name + "' has dtype " +
                                  c10::toString(tensor.scalar_type()) + ", expected " +
                                  c10::toString(it->second.dtype));
    }
    if (!matched.emplace(name, tensor).second) {
      throw std::invalid_argument(where + ": tensor '" + name + "' is given twice");
    }
  }
  return matched;
}

void require_all(const TensorSpecs& expected, const std::map<std::string, torch::Tensor>& matched,
                 const std::string& where) {
  for (const auto& [name, spec] : expected) {
    if (!matched.count(name))
      throw std::invalid_argument(where + ": tensor '" + name + "' is missing");
  }
}

void require_finite(const NamedTensors& given, const std::string& where) {
  for (const auto& [name, tensor] : given) {
    if (!tensor.defined() || !tensor.is_floating_point() || tensor.numel() == 0) continue;
    const auto finite = torch::isfinite(tensor);
    if (finite.all().item<bool>()) continue;
    const auto nan = torch::isnan(tensor).sum().item<int64_t>();
    const auto inf = tensor.numel() - finite.sum().item<int64_t>() - nan;
    throw std::invalid_argument(where + ": tensor '" + name + "' holds non-finite values (" +
                                std::to_string(nan) + " NaN, " + std::to_string(inf) +
                                " infinite)");
  }
}

}  // namespace torchfocal::train
