// Torch side of the CUDA kernels: device and dtype checks, device guard, current stream,
// dispatch over float types and half/bfloat16 (at::Half* / at::BFloat16* passed on as
// __half* / __nv_bfloat16*, same bits), launch checks. The build compiles every src/**/*.cpp,
// also against CPU-only LibTorch, so all of it sits behind TORCHFOCAL_WITH_CUDA (defined by
// CMake when Torch has CUDA, which is also when focal_loss_kernel.cu is linked in).
#ifdef TORCHFOCAL_WITH_CUDA

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include <stdexcept>
#include <string>

#include "src/ops/cuda/focal_loss_kernel.h"
#include "src/ops/focal_loss_impl.h"

namespace torchfocal::ops::detail {
namespace {

// LibTorch's element types as the kernels name them.
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<at::Half> {
  using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
  using type = __nv_bfloat16;
};

static_assert(sizeof(at::Half) == sizeof(__half), "at::Half and __half differ in size");
static_assert(sizeof(at::BFloat16) == sizeof(__nv_bfloat16),
              "at::BFloat16 and __nv_bfloat16 differ in size");

template <typename scalar_t>
const typename CudaType<scalar_t>::type* cuda_ptr(const torch::Tensor& t) {
  return reinterpret_cast<const typename CudaType<scalar_t>::type*>(t.data_ptr<scalar_t>());
}
template <typename scalar_t>
typename CudaType<scalar_t>::type* cuda_mutable_ptr(torch::Tensor& t) {
  return reinterpret_cast<typename CudaType<scalar_t>::type*>(t.data_ptr<scalar_t>());
}

template <typename acc_t>
const acc_t* optional_ptr(const torch::Tensor& t) {
  return t.defined() ? t.data_ptr<acc_t>() : nullptr;
}

// What focal_loss.cpp's check_args established, asserted again at the kernel boundary.
void check_cuda_args(const KernelArgs& args) {
  const torch::Tensor& x = args.input;
  if (!x.is_cuda()) throw std::invalid_argument("focal_loss: CUDA kernels need a CUDA input");
  const torch::ScalarType type = x.scalar_type();
  if (type != torch::kFloat && type != torch::kDouble && type != torch::kHalf &&
      type != torch::kBFloat16) {
    throw std::invalid_argument(std::string("focal_loss: CUDA kernels take Float, Double, Half "
                                            "or BFloat16 input, got ") +
                                c10::toString(type));
  }
  for (const torch::Tensor* t : {&args.target, &args.alpha}) {
    if (t->defined() && t->device() != x.device()) {
      throw std::invalid_argument("focal_loss: all tensors must be on " + x.device().str());
    }
  }
  if (!x.is_contiguous() || !args.target.is_contiguous()) {
    throw std::invalid_argument("focal_loss: CUDA kernels need contiguous tensors");
  }
}

cuda::FocalParams params_of(const KernelArgs& args) {
  cuda::FocalParams p;
  p.gamma = args.gamma;
  p.label_smoothing = args.label_smoothing;
  p.ignore_index = args.ignore_index;
  p.sigmoid_alpha = args.sigmoid_alpha;
  return p;
}

}  // namespace

ForwardOut forward_cuda(const KernelArgs& args) {
  check_cuda_args(args);
  const torch::Tensor& x = args.input;
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  const auto acc_options = x.options().dtype(accumulate_dtype(x.scalar_type()));
  const cuda::FocalParams params = params_of(args);

  ForwardOut out;
  if (args.mode == FocalMode::kSigmoid) {
    out.loss = torch::empty(x.sizes(), acc_options);
  } else {
    out.loss = torch::empty({args.rows()}, acc_options);
    if (args.mode == FocalMode::kSoftmax) out.stats = torch::empty({args.rows(), 2}, acc_options);
  }
  if (x.numel() == 0) return out;

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "focal_loss_forward_cuda",
      [&] {
        using cuda_t = typename CudaType<scalar_t>::type;
        using acc_t = cuda::acc_type<cuda_t>;
        const cuda_t* input = cuda_ptr<scalar_t>(x);
        acc_t* loss = out.loss.data_ptr<acc_t>();
        cudaError_t err = cudaSuccess;
        switch (args.mode) {
          case FocalMode::kSoftmax:
            err = cuda::launch_softmax_forward(
                input, args.target.data_ptr<int64_t>(), optional_ptr<acc_t>(args.alpha),
                args.rows(), args.classes(), params, loss, out.stats.data_ptr<acc_t>(), stream);
            break;
          case FocalMode::kProbs:
            err = cuda::launch_probs_forward(input, args.target.data_ptr<int64_t>(),
                                             optional_ptr<acc_t>(args.alpha), args.rows(),
                                             args.classes(), params, loss, stream);
            break;
          case FocalMode::kSigmoid:
            err = cuda::launch_sigmoid_forward(input, cuda_ptr<scalar_t>(args.target), x.numel(),
                                               params, loss, stream);
            break;
        }
        C10_CUDA_CHECK(err);
      });
  return out;
}

torch::Tensor backward_cuda(const KernelArgs& args, const torch::Tensor& stats,
                            const torch::Tensor& grad_loss, double scale) {
  check_cuda_args(args);
  const torch::Tensor& x = args.input;
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  const cuda::FocalParams params = params_of(args);
  torch::Tensor grad = torch::empty(x.sizes(), x.options());
  if (x.numel() == 0) return grad;
  const int64_t grad_stride = grad_loss.numel() == 1 ? 0 : 1;

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "focal_loss_backward_cuda",
      [&] {
        using cuda_t = typename CudaType<scalar_t>::type;
        using acc_t = cuda::acc_type<cuda_t>;
        const cuda_t* input = cuda_ptr<scalar_t>(x);
        const acc_t* gl = grad_loss.data_ptr<acc_t>();
        cuda_t* g = cuda_mutable_ptr<scalar_t>(grad);
        cudaError_t err = cudaSuccess;
        switch (args.mode) {
          case FocalMode::kSoftmax:
            err = cuda::launch_softmax_backward(input, args.target.data_ptr<int64_t>(),
                                                optional_ptr<acc_t>(args.alpha),
                                                stats.data_ptr<acc_t>(), gl, grad_stride, scale,
                                                args.rows(), args.classes(), params, g, stream);
            break;
          case FocalMode::kProbs:
            err = cuda::launch_probs_backward(
                input, args.target.data_ptr<int64_t>(), optional_ptr<acc_t>(args.alpha), gl,
                grad_stride, scale, args.rows(), args.classes(), params, g, stream);
            break;
          case FocalMode::kSigmoid:
            err = cuda::launch_sigmoid_backward(input, cuda_ptr<scalar_t>(args.target), gl,
                                                grad_stride, scale, x.numel(), params, g, stream);
            break;
        }
        C10_CUDA_CHECK(err);
      });
  return grad;
}

}  // namespace torchfocal::ops::detail

#endif  // TORCHFOCAL_WITH_CUDA
