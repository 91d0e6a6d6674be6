#include "src/data/sampler.h"

#include <stdexcept>

namespace torchfocal::data {

Sampler parse_sampler(const std::string& name) {
  if (name == "instance") return Sampler::kInstance;
  if (name == "class-balanced") return Sampler::kClassBalanced;
  if (name == "sqrt") return Sampler::kSqrt;
  throw std::invalid_argument("unknown sampler '" + name +
                              "' (known: instance, class-balanced, sqrt)");
}

const char* sampler_name(Sampler sampler) {
  switch (sampler) {
    case Sampler::kClassBalanced:
      return "class-balanced";
    case Sampler::kSqrt:
      return "sqrt";
    case Sampler::kInstance:
      break;
  }
  return "instance";
}

torch::Tensor epoch_indices(Sampler sampler, const torch::Tensor& labels, int64_t num_classes,
                            at::Generator generator) {
  const int64_t n = labels.size(0);
  const auto int64 = torch::TensorOptions().dtype(torch::kInt64);
  if (sampler == Sampler::kInstance || n == 0) return torch::randperm(n, generator, int64);
  // Class c is drawn with probability ∝ n_c^q (q = 0: uniform over classes, q = 1/2: sqrt),
  // then an image uniformly within it: image weight n_c^q / n_c, indexed by each image's label.
  const double q = sampler == Sampler::kSqrt ? 0.5 : 0.0;
  const auto counts = torch::bincount(labels, {}, num_classes).to(torch::kFloat64);
  const auto per_class = torch::where(counts > 0, counts.pow(q - 1), torch::zeros_like(counts));
  return torch::multinomial(per_class.index_select(0, labels), n, /*replacement=*/true, generator);
}

}  // namespace torchfocal::data
