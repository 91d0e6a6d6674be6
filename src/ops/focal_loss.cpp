// The focal-loss op's signature: argument checks, device dispatch, reductions, and the public
// entry points. The maths is in focal_math.h, the loops in cpu/ and cuda/, the autograd node
// in autograd/.
#include "src/ops/focal_loss.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

#include "src/common/shape_string.h"
#include "src/ops/autograd/focal_loss_autograd.h"
#include "src/ops/focal_loss_impl.h"

namespace torchfocal::ops {
namespace detail {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("focal_loss: " + what);
}

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

const char* type_name(torch::ScalarType type) { return c10::toString(type); }

const char* mode_name(FocalMode mode) {
  switch (mode) {
    case FocalMode::kSoftmax:
      return "softmax";
    case FocalMode::kProbs:
      return "probs";
    case FocalMode::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

// A contiguous tensor, copied outside autograd where needed (it is only read by kernels).
torch::Tensor contiguous(const torch::Tensor& t) {
  return t.is_contiguous() ? t : t.detach().contiguous();
}

void check_device(const char* name, const torch::Tensor& t, const torch::Tensor& input) {
  if (t.device() != input.device()) {
    fail(cat(name, " is on ", t.device(), " but input is on ", input.device()));
  }
}

// Target values must be class indices or ignore_index. Returns the count of non-ignored rows.
int64_t check_target_values(const torch::Tensor& target, int64_t classes, int64_t ignore_index) {
  if (target.is_cpu()) {
    const int64_t* t = target.data_ptr<int64_t>();
    int64_t valid = 0;
    for (int64_t i = 0, n = target.numel(); i < n; ++i) {
      if (t[i] == ignore_index) continue;
      if (t[i] < 0 || t[i] >= classes) {
        fail(cat("target value ", t[i], " is out of range for ", classes, " classes"));
      }
      ++valid;
    }
    return valid;
  }
  // On the device: both counts in one read-back.
  const torch::Tensor valid = target.ne(ignore_index);
  const torch::Tensor bad = valid.logical_and(target.lt(0).logical_or(target.ge(classes)));
  const torch::Tensor counts = torch::stack({valid.sum(), bad.sum()}).cpu();
  if (counts[1].item<int64_t>() > 0) {
    const int64_t value = target.masked_select(bad)[0].item<int64_t>();
    fail(cat("target value ", value, " is out of range for ", classes, " classes"));
  }
  return counts[0].item<int64_t>();
}

// Sum (or mean) of a CPU loss vector in double, four partial sums wide.
template <typename T>
double host_sum(const torch::Tensor& loss) {
  const T* v = loss.data_ptr<T>();
  const int64_t n = loss.numel();
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; ++k) s[k] += v[i + k];
  }
  for (; i < n; ++i) s[0] += v[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace

KernelArgs check_args(const torch::Tensor& input, const torch::Tensor& target,
                      const FocalOptions& options) {
  if (!input.defined()) fail("input is undefined");
  if (!target.defined()) fail("target is undefined");
  const torch::ScalarType type = input.scalar_type();
  if (!at::isFloatingType(type)) fail(cat("input must be floating point, got ", type_name(type)));
  if (input.is_cuda()) {
#ifndef TORCHFOCAL_WITH_CUDA
    fail(cat("input is on ", input.device(), " but torchfocal was built without CUDA"));
#endif
  } else if (!input.is_cpu()) {
    fail(cat("input must be on the CPU or a CUDA device, got ", input.device()));
  } else if (type != torch::kFloat && type != torch::kDouble) {
    fail(cat("input dtype ", type_name(type),
             " is supported on CUDA only (CPU takes Float or Double)"));
  }
  check_device("target", target, input);
  if (!std::isfinite(options.gamma) || options.gamma < 0) {
    fail(cat("gamma must be a finite number >= 0, got ", options.gamma));
  }
  if (!(options.label_smoothing >= 0 && options.label_smoothing < 1)) {
    fail(cat("label_smoothing must be in [0, 1), got ", options.label_smoothing));
  }
  if (options.label_smoothing != 0 && options.mode != FocalMode::kSoftmax) {
    fail(cat("label_smoothing is only supported in softmax mode, not ", mode_name(options.mode)));
  }

  KernelArgs args;
  args.mode = options.mode;
  args.gamma = options.gamma;
  args.sigmoid_alpha = options.sigmoid_alpha;
  args.ignore_index = options.ignore_index;
  args.label_smoothing = options.label_smoothing;

  if (options.mode == FocalMode::kSigmoid) {
    if (options.alpha.defined()) {
      fail("alpha (per-class weights) is not used in sigmoid mode; set sigmoid_alpha");
    }
    if (std::isnan(options.sigmoid_alpha) || options.sigmoid_alpha > 1) {
      fail(cat("sigmoid_alpha must be in [0, 1] (or < 0 to disable the weighting), got ",
               options.sigmoid_alpha));
    }
    if (!at::isFloatingType(target.scalar_type())) {
      fail(cat("target must be floating point in sigmoid mode, got ",
               type_name(target.scalar_type())));
    }
    if (target.sizes() != input.sizes()) {
      fail(cat("target has shape ", shape_string(target.sizes()), " but input has shape ",
               shape_string(input.sizes())));
    }
    args.input = contiguous(input);
    args.target = contiguous(target.scalar_type() == type ? target : target.detach().to(type));
    args.mean_divisor = static_cast<double>(std::max<int64_t>(input.numel(), 1));
    return args;
  }

  const char* mode = mode_name(options.mode);
  if (input.dim() != 2) {
    fail(cat("input must be [N, C] in ", mode, " mode, got shape ", shape_string(input.sizes())));
  }
  const int64_t rows = input.size(0);
  const int64_t classes = input.size(1);
  if (classes == 0) fail("input has 0 classes");
  if (target.scalar_type() != torch::kLong) {
    fail(cat("target must be int64 class indices in ", mode, " mode, got ",
             type_name(target.scalar_type())));
  }
  if (target.dim() != 1 || target.size(0) != rows) {
    fail(cat("target has shape ", shape_string(target.sizes()), " but input has ", rows,
             " rows (expected [", rows, "])"));
  }
  if (options.alpha.defined()) {
    const torch::Tensor& alpha = options.alpha;
    check_device("alpha", alpha, input);
    if (alpha.scalar_type() != type && alpha.scalar_type() != torch::kFloat) {
      fail(cat("alpha must be Float or the input's dtype (", type_name(type), "), got ",
               type_name(alpha.scalar_type())));
    }
    if (alpha.dim() != 1) {
      fail(cat("alpha must be 1-D with one value per class, got shape ",
               shape_string(alpha.sizes())));
    }
    if (alpha.numel() != classes) {
      fail(cat("alpha has ", alpha.numel(), " values but input has ", classes, " classes"));
    }
    args.alpha = contiguous(alpha.detach().to(accumulate_dtype(type)));
  }
  args.input = contiguous(input);
  args.target = contiguous(target);
  const int64_t valid = options.targets_checked
                            ? rows
                            : check_target_values(args.target, classes, options.ignore_index);
  args.mean_divisor = static_cast<double>(std::max<int64_t>(valid, 1));
  return args;
}

ForwardOut forward(const KernelArgs& args) {
#ifdef TORCHFOCAL_WITH_CUDA
  if (args.input.is_cuda()) return forward_cuda(args);
#endif
  return forward_cpu(args);
}

torch::Tensor backward(const KernelArgs& args, const torch::Tensor& stats,
                       const torch::Tensor& grad_loss, double scale) {
  torch::Tensor row_stats = stats;
  if (args.mode == FocalMode::kSoftmax && !row_stats.defined()) row_stats = forward(args).stats;
#ifdef TORCHFOCAL_WITH_CUDA
  if (args.input.is_cuda()) return backward_cuda(args, row_stats, grad_loss, scale);
#endif
  return backward_cpu(args, row_stats, grad_loss, scale);
}

torch::Tensor prepare_grad_loss(const torch::Tensor& grad_loss, const KernelArgs& args) {
  if (!grad_loss.defined()) fail("grad_loss is undefined");
  check_device("grad_loss", grad_loss, args.input);
  const bool per_element = args.mode == FocalMode::kSigmoid;
  const bool matches = per_element ? grad_loss.sizes() == args.input.sizes()
                                   : grad_loss.dim() == 1 && grad_loss.size(0) == args.rows();
  if (grad_loss.dim() != 0 && !matches) {
    fail(cat("grad_loss has shape ", shape_string(grad_loss.sizes()), " but expected a scalar or ",
             per_element ? shape_string(args.input.sizes()) : cat("[", args.rows(), "]")));
  }
  return contiguous(grad_loss.detach().to(accumulate_dtype(args.input.scalar_type())));
}

torch::Tensor reduce(const torch::Tensor& loss, const KernelArgs& args, Reduction reduction) {
  const torch::ScalarType type = args.input.scalar_type();
  if (reduction == Reduction::kNone) return loss.to(type);
  const double divisor = reduction == Reduction::kMean ? args.mean_divisor : 1.0;
  if (!loss.is_cpu()) return (loss.sum() / divisor).to(type);
  double total = 0;
  AT_DISPATCH_FLOATING_TYPES(loss.scalar_type(), "focal_loss_reduce",
                             [&] { total = host_sum<scalar_t>(loss); });
  return torch::scalar_tensor(total / divisor, loss.options().dtype(type));
}

}  // namespace detail

torch::Tensor focal_loss(const torch::Tensor& input, const torch::Tensor& target,
                         const FocalOptions& options) {
  const detail::KernelArgs args = detail::check_args(input, target, options);
  return FocalLossFunction::apply(input, args, options.reduction);
}

torch::Tensor focal_loss_forward(const torch::Tensor& input, const torch::Tensor& target,
                                 const FocalOptions& options) {
  const detail::KernelArgs args = detail::check_args(input, target, options);
  return detail::forward(args).loss.to(input.scalar_type());
}

torch::Tensor focal_loss_backward(const torch::Tensor& grad_loss, const torch::Tensor& input,
                                  const torch::Tensor& target, const FocalOptions& options) {
  const detail::KernelArgs args = detail::check_args(input, target, options);
  return detail::backward(args, /*stats=*/{}, detail::prepare_grad_loss(grad_loss, args),
                          /*scale=*/1.0);
}

Reduction parse_reduction(const std::string& name) {
  if (name == "none") return Reduction::kNone;
  if (name == "mean") return Reduction::kMean;
  if (name == "sum") return Reduction::kSum;
  throw std::invalid_argument("focal_loss: unknown reduction '" + name +
                              "' (expected none, mean or sum)");
}

FocalMode parse_mode(const std::string& name) {
  if (name == "softmax") return FocalMode::kSoftmax;
  if (name == "probs") return FocalMode::kProbs;
  if (name == "sigmoid") return FocalMode::kSigmoid;
  throw std::invalid_argument("focal_loss: unknown mode '" + name +
                              "' (expected softmax, probs or sigmoid)");
}

}  // namespace torchfocal::ops
