#include "src/train/runtime.h"

#include <dlfcn.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#ifdef TORCHFOCAL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
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

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  std::ostringstream version;
  version << TORCH_VERSION_MAJOR << '.' << TORCH_VERSION_MINOR << '.' << TORCH_VERSION_PATCH;
  info.torch_version = version.str();
  info.cuda_available = torch::cuda::is_available();
  info.cuda_devices = info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
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
  return info;
}

}  // namespace torchfocal::train
