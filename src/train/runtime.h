// Process-wide runtime settings: threads, BLAS, devices.
#pragma once

#include <torch/torch.h>

#include <string>

namespace torchfocal::train {

// Resolves "auto" | "cpu" | "cuda" | "cuda:N"; throws std::invalid_argument when unavailable.
torch::Device resolve_device(const std::string& name);

// Sets LibTorch's intra-op threads (0 = all cores) and keeps BLAS single-threaded under them:
// a multi-threaded OpenBLAS inside LibTorch's own threads oversubscribes the cores (3x slower).
void configure_threads(int threads);

// Keeps freed tensor memory in the process instead of returning it to the kernel after every
// step. Training runs on a worker thread, whose glibc arena trims and unmaps freed blocks
// eagerly: each step then faults its activations in again (a third of a LeNet epoch went to
// kernel time). Fixed thresholds stop that; called once per process.
void configure_allocator();

// Hands the allocator's cached blocks back to the device (CUDA; nothing to do on the CPU), so that
// memory freed by a failed step is there for the next, smaller one.
void release_cached_memory(const torch::Device& device);

struct RuntimeInfo {
  std::string torch_version;
  bool cuda_available = false;
  int cuda_devices = 0;
  int threads = 0;
  std::string blas_library;  // the libblas / openblas file actually mapped into the process
};
RuntimeInfo runtime_info();

}  // namespace torchfocal::train
