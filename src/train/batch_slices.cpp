#include "src/train/batch_slices.h"

#include <ATen/Parallel.h>

#include <string>

#include "src/train/runtime.h"

namespace torchfocal::train {

int64_t slice_count(const torch::Device& device, int64_t n) {
  // Below 8 images a slice is too small to pay for its own pass through the network.
  constexpr int64_t kMinSlice = 8;
  const int64_t threads = at::get_num_threads();
  if (!device.is_cpu() || threads < 2 || n < 2 * kMinSlice) return 1;
  return std::min(threads, n / kMinSlice);
}

int64_t batch_share_count(const torch::Device& device, int64_t batches) {
  const int64_t threads = at::get_num_threads();
  return device.is_cpu() && threads >= 2 && batches >= 2 * threads ? threads : 1;
}

void for_each_slice(int64_t n, int64_t slices,
                    const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  at::parallel_for(0, slices, 1, [&](int64_t first, int64_t last) {
    // Kernels nested here run on this thread alone, and must know it: oneDNN sizes a primitive,
    // and the barriers of its weight-gradient kernels, by the thread count it reads, and would
    // wait forever for a second thread that nested parallelism never starts.
    SingleThreadScope one_thread;
    for (int64_t i = first; i < last; ++i) fn(i, n * i / slices, n * (i + 1) / slices);
  });
}

bool trains_in_slices(const torch::nn::Module& model) {
  for (const auto& module : model.modules(/*include_self=*/true)) {
    const std::string name = module->name();
    if (!module->buffers(/*recurse=*/false).empty() || name.find("Dropout") != std::string::npos ||
        name.find("BatchNorm") != std::string::npos) {
      return false;
    }
  }
  return true;
}

SlicedForward::SlicedForward(int64_t n, int64_t slices,
                             const std::function<torch::Tensor(int64_t, int64_t)>& forward)
    : n_(n), slices_(slices), parts_(slices) {
  for_each_slice(n, slices, [&](int64_t i, int64_t begin, int64_t end) {
    // Grad mode is thread-local: a pool thread's is on unless set, as here.
    torch::AutoGradMode grad(true);
    parts_[i] = forward(begin, end);
  });
  std::vector<torch::Tensor> detached;
  detached.reserve(parts_.size());
  for (const auto& part : parts_) detached.push_back(part.detach());
  logits_ = torch::cat(detached).requires_grad_(true);
}

void SlicedForward::backward(const torch::Tensor& loss, const std::vector<torch::Tensor>& params) {
  const auto upstream = torch::autograd::grad({loss}, {logits_})[0];
  std::vector<torch::autograd::variable_list> grads(slices_);
  for_each_slice(n_, slices_, [&](int64_t i, int64_t begin, int64_t end) {
    grads[i] = torch::autograd::grad({parts_[i]}, params, {upstream.slice(0, begin, end)},
                                     /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  });
  torch::NoGradGuard no_grad;
  for (size_t p = 0; p < params.size(); ++p) {
    // The first add is out of place: autograd's result may be a view (an expanded gradient)
    // that an in-place add would refuse; the sum it returns is ours to add into.
    torch::Tensor sum;
    bool owned = false;
    for (const auto& slice : grads) {
      if (!slice[p].defined()) continue;
      if (!sum.defined()) {
        sum = slice[p];
      } else if (owned) {
        sum.add_(slice[p]);
      } else {
        sum = sum + slice[p];
        owned = true;
      }
    }
    // Accumulated, as backward does: into the gradient buffers when they are views of one.
    auto& grad = params[p].mutable_grad();
    if (!grad.defined()) {
      grad = sum;
    } else if (sum.defined()) {
      grad.add_(sum);
    }
  }
}

}  // namespace torchfocal::train
