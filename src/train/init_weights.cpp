#include "src/train/init_weights.h"

#include <map>
#include <set>
#include <stdexcept>
#include <utility>

namespace torchfocal::train {
namespace {

// "[10,84]": compact, since the shapes sit inside a comma-separated list.
std::string dims(c10::ArrayRef<int64_t> sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) out += (i ? "," : "") + std::to_string(sizes[i]);
  return out + "]";
}

// "3 missing (a, b, c)", at most kShown items and then "…".
void add_group(std::string& message, const char* what, const std::vector<std::string>& items) {
  constexpr size_t kShown = 4;
  if (items.empty()) return;
  if (!message.empty()) message += ", ";
  message += std::to_string(items.size()) + " " + what + " (";
  for (size_t i = 0; i < items.size() && i < kShown; ++i) message += (i ? ", " : "") + items[i];
  message += items.size() > kShown ? ", …)" : ")";
}

bool same_kind(torch::ScalarType a, torch::ScalarType b) {
  const auto real = [](torch::ScalarType t) { return c10::isFloatingType(t); };
  const auto integer = [](torch::ScalarType t) {
    return c10::isIntegralType(t, /*includeBool=*/false);
  };
  return (real(a) && real(b)) || (integer(a) && integer(b));
}

}  // namespace

InitReport init_weights(torch::nn::Module& model, const NamedTensors& state, bool partial) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& item : model.named_parameters(/*recurse=*/true))
    targets[item.key()] = item.value();
  for (const auto& item : model.named_buffers(/*recurse=*/true)) targets[item.key()] = item.value();

  InitReport report;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (model's, file's)
  std::vector<std::string> missing, unexpected, shapes, dtypes, twice;
  std::set<std::string> seen;
  for (const auto& [name, given] : state) {
    if (!seen.insert(name).second) {
      twice.push_back(name);
      continue;
    }
    auto it = targets.find(name);
    if (it == targets.end()) {
      unexpected.push_back(name);
      continue;
    }
    const auto& target = it->second;
    if (!given.defined() || !given.sizes().equals(target.sizes())) {
      const auto file_shape = given.defined() ? given.sizes().vec() : std::vector<int64_t>{};
      if (partial) {
        report.reinitialised.push_back({name, file_shape, target.sizes().vec()});
      } else {
        shapes.push_back(name + ": file " + dims(file_shape) + ", model " + dims(target.sizes()));
      }
      continue;
    }
    if (!same_kind(given.scalar_type(), target.scalar_type())) {
      dtypes.push_back(name + ": file " + c10::toString(given.scalar_type()) + ", model " +
                       c10::toString(target.scalar_type()));
      continue;
    }
    copies.emplace_back(target, given);
    report.loaded.push_back(name);
  }
  for (const auto& [name, target] : targets) {
    if (!seen.count(name)) missing.push_back(name);
  }
  std::string problems;
  add_group(problems, "missing", missing);
  add_group(problems, "unexpected", unexpected);
  add_group(problems, shapes.size() == 1 ? "shape mismatch" : "shape mismatches", shapes);
  add_group(problems, dtypes.size() == 1 ? "dtype mismatch" : "dtype mismatches", dtypes);
  add_group(problems, "given twice", twice);
  if (!problems.empty()) throw std::invalid_argument(problems);
  NamedTensors loading;  // only what is copied: a partial load may skip a tensor of the file
  for (size_t i = 0; i < copies.size(); ++i)
    loading.emplace_back(report.loaded[i], copies[i].second);
  require_finite(loading, "weights are unusable");
  // Everything checked: only now copy, so a bad file never leaves a half-loaded model.
  torch::NoGradGuard no_grad;
  for (auto& [target, given] : copies) target.copy_(given);  // converts the dtype
  return report;
}

}  // namespace torchfocal::train
