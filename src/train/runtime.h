// Process-wide runtime settings: threads, BLAS, devices.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace torchfocal::train {

// Resolves "auto" | "cpu" | "cuda" | "cuda:N"; throws std::invalid_argument when unavailable.
torch::Device resolve_device(const std::string& name);

// Sets LibTorch's intra-op threads (0 = all cores) and keeps BLAS single-threaded under them:
// a multi-threaded OpenBLAS inside LibTorch's own threads oversubscribes the cores (3x slower).
void configure_threads(int threads);

// While it lives, the kernels called from this thread run on it alone. OpenMP's thread count is
// a per-thread setting that LibTorch and oneDNN read at each call, so this costs nothing, where
// torch::set_num_threads would also rebuild a thread pool. For tiny work (one small image),
// which a second thread slows down: its wake-up and barrier cost more than its share.
class SingleThreadScope {
 public:
  SingleThreadScope();
  ~SingleThreadScope();
  SingleThreadScope(const SingleThreadScope&) = delete;
  SingleThreadScope& operator=(const SingleThreadScope&) = delete;

 private:
  int saved_ = 1;
};

// While it lives, convolutions run LibTorch's own im2col + GEMM kernels instead of oneDNN's.
// For one small image oneDNN's per-call primitive lookup and layout handling cost more than the
// arithmetic (LeNet's first convolution on one 28 x 28 image: 59 us against 33 us). The switch
// is process-wide: meant for the engine thread, on which the addon runs all LibTorch work.
class DirectConvolutionScope {
 public:
  DirectConvolutionScope();
  ~DirectConvolutionScope();
  DirectConvolutionScope(const DirectConvolutionScope&) = delete;
  DirectConvolutionScope& operator=(const DirectConvolutionScope&) = delete;

 private:
  bool saved_ = true;
};

// Keeps BLAS single-threaded (configure_threads does too). Called when the addon loads: the
// OPENBLAS_NUM_THREADS that the JS side sets never reaches OpenBLAS when the addon is first
// loaded from a worker thread, whose process.env is a copy.
void configure_blas();

// Keeps freed tensor memory in the process instead of returning it to the kernel after every
// step. Training runs on a worker thread, whose glibc arena trims and unmaps freed blocks
// eagerly: each step then faults its activations in again (a third of a LeNet epoch went to
// kernel time). Fixed thresholds stop that; called once per process.
void configure_allocator();

// Hands the allocator's cached blocks back to the device (CUDA; nothing to do on the CPU), so that
// memory freed by a failed step is there for the next, smaller one.
void release_cached_memory(const torch::Device& device);

struct CudaDeviceInfo {
  std::string name;
  int64_t total_memory = 0;  // bytes
  std::string capability;    // "9.0"
};

// What a bug report needs: what the addon was built with and what this process found.
struct RuntimeInfo {
  std::string torch_version;
  std::string torch_dir;  // the LibTorch CMake config the build found
  bool cuda_built = false;
  int cuda_version = 0;  // CUDA runtime the build compiled against (12040 = 12.4), 0 without
  bool cuda_available = false;
  int cuda_devices = 0;
  std::vector<CudaDeviceInfo> devices;
  bool cudnn_built = false;
  int64_t cudnn_version = 0;  // read only when a device is present (0 otherwise)
  bool nccl_built = false;
  bool gloo_built = false;
  std::string onednn;               // "v3.7.2" from LibTorch's build configuration, empty without
  std::string onednn_convolutions;  // onednn_convolutions_state(): "used", "off: ..."
  std::string cpu_capability;       // the widest CPU kernels LibTorch uses: "AVX2", "AVX512"
  int threads = 0;
  std::string blas_library;  // the libblas / openblas file actually mapped into the process
  int blas_threads = 0;      // OpenBLAS's threads; 0 when the BLAS cannot say
  std::string cxx_compiler;
  std::string cuda_compiler;  // nvcc that compiled the kernels, empty without CUDA
};
RuntimeInfo runtime_info();

}  // namespace torchfocal::train
