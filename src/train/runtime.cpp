#include "src/train/runtime.h"

#include <dlfcn.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "src/common/build_info.h"
#include "src/train/onednn_guard.h"

#ifdef TORCHFOCAL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace torchfocal::train {

torch::Device resolve_device(const std::string& name) {
  if (name == "auto")
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::kCPU;
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available()) {
      throw std::invalid_argument("device '" + name +
                                  "' requested but this LibTorch build or machine has no CUDA");
    }
    torch::Device device(name);  // throws c10::Error on a malformed index
    if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count())) {
      throw std::invalid_argument("device '" + name + "' does not exist");
    }
    return device;
  }
  throw std::invalid_argument("unknown device '" + name + "' (use auto, cpu or cuda)");
}

void configure_threads(int threads) {
  if (threads < 0) throw std::invalid_argument("threads must be >= 0");
  const int n =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Only on a change: set_num_threads also rebuilds LibTorch's pthreadpool (thread creation,
  // milliseconds), and every engine call passes through here.
  if (at::get_num_threads() != n) torch::set_num_threads(n);
  configure_blas();
}

#ifdef _OPENMP
SingleThreadScope::SingleThreadScope() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
SingleThreadScope::~SingleThreadScope() { omp_set_num_threads(saved_); }
#else
// LibTorch's other parallel backends keep one process-wide count: leave it alone.
SingleThreadScope::SingleThreadScope() = default;
SingleThreadScope::~SingleThreadScope() = default;
#endif

DirectConvolutionScope::DirectConvolutionScope() : saved_(at::globalContext().userEnabledMkldnn()) {
  at::globalContext().setUserEnabledMkldnn(false);
}
DirectConvolutionScope::~DirectConvolutionScope() {
  at::globalContext().setUserEnabledMkldnn(saved_);
}

void configure_blas() {
  // OpenBLAS exports this setter; the reference BLAS has none and is single-threaded anyway.
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
}

void configure_allocator() {
#if defined(__GLIBC__)
  static std::once_flag once;
  std::call_once(once, [] {
    // Blocks up to 32 MiB (glibc's maximum) come from the heap and are reused; heaps shrink
    // only past 1 GiB free.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  });
#endif
}

void release_cached_memory(const torch::Device& device) {
#ifdef TORCHFOCAL_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

namespace {

// The text after `key` on its line of LibTorch's build configuration (at::show_config()).
std::string config_field(const std::string& config, const std::string& key) {
  const auto at = config.find(key);
  if (at == std::string::npos) return "";
  const auto start = at + key.size();
  return config.substr(start, config.find('\n', start) - start);
}

}  // namespace

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  std::ostringstream version;
  version << TORCH_VERSION_MAJOR << '.' << TORCH_VERSION_MINOR << '.' << TORCH_VERSION_PATCH;
  info.torch_version = version.str();
  info.torch_dir = TORCHFOCAL_TORCH_DIR;
  info.cxx_compiler = TORCHFOCAL_CXX_COMPILER;
  info.cuda_compiler = TORCHFOCAL_CUDA_COMPILER;
  info.cuda_available = torch::cuda::is_available();
  info.cuda_devices = info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
#ifdef TORCHFOCAL_WITH_CUDA
  info.cuda_built = true;
  info.cuda_version = CUDART_VERSION;
  for (int i = 0; i < info.cuda_devices; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      cudaGetLastError();  // leave no sticky error for the next launch check
      continue;
    }
    info.devices.push_back({p.name, static_cast<int64_t>(p.totalGlobalMem),
                            std::to_string(p.major) + "." + std::to_string(p.minor)});
  }
#endif
  info.cudnn_built = at::globalContext().hasCuDNN();
  if (info.cudnn_built && info.cuda_available) {
    info.cudnn_version = at::detail::getCUDAHooks().versionCuDNN();
  }
#ifdef TORCHFOCAL_WITH_NCCL
  info.nccl_built = true;
#endif
#ifdef TORCHFOCAL_WITH_GLOO
  info.gloo_built = true;
#endif
  const auto config = at::show_config();
  // 1.13 calls it "Intel(R) MKL-DNN v2.6.3 (...)", 2.x "Intel(R) oneDNN v3.7.2 (...)".
  for (const char* key : {"MKL-DNN ", "oneDNN "}) {
    auto field = config_field(config, key);
    if (!field.empty()) info.onednn = field.substr(0, field.find(' '));
  }
  info.onednn_convolutions = onednn_convolutions_state();
  info.cpu_capability = config_field(config, "CPU capability usage: ");
  info.threads = torch::get_num_threads();
  // /proc/self/maps names the BLAS the dynamic loader actually picked for libblas.so.3.
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    auto path = line.substr(pos);
    if (path.find("libblas") != std::string::npos ||
        path.find("libopenblas") != std::string::npos || path.find("libmkl") != std::string::npos) {
      info.blas_library = path;
      break;
    }
  }
  using GetThreads = int (*)();
  if (auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) {
    info.blas_threads = get();
  }
  return info;
}

}  // namespace torchfocal::train
