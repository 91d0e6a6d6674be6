#include "src/train/random_stream.h"

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>
#include <stdexcept>
#include <string>

#ifdef TORCHFOCAL_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace torchfocal::train {

RandomStream::RandomStream(const torch::Device& device, uint64_t seed) : device_(device) {
  // The stream starts from the run's seed, through a generator of its own: creating it leaves
  // the global one untouched.
  if (device_.is_cpu()) {
    state_ = at::detail::createCPUGenerator(seed).get_state();
  } else {
    Scope scope(*this);  // state_ undefined: the scope only saves and restores the global state
    auto gen = global();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
    state_ = gen.get_state();
  }
}

const char* RandomStream::name() const { return device_.is_cpu() ? "rng.cpu" : "rng.cuda"; }

at::Generator RandomStream::global() const {
  if (device_.is_cpu()) return at::detail::getDefaultCPUGenerator();
#ifdef TORCHFOCAL_WITH_CUDA
  if (device_.is_cuda()) return at::cuda::detail::getDefaultCUDAGenerator(device_.index());
#endif
  throw std::invalid_argument("no random stream for device " + device_.str());
}

void RandomStream::set_state(const torch::Tensor& state) {
  if (state.scalar_type() != torch::kUInt8 || state.dim() != 1 || state.numel() != state_.numel()) {
    throw std::invalid_argument(std::string(name()) + " must be a uint8 tensor of " +
                                std::to_string(state_.numel()) + " bytes");
  }
  // Let the generator judge the bytes (it refuses an invalid Mersenne-Twister state) before
  // keeping them.
  Scope check(*this);
  auto gen = global();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(state.contiguous());  // the scope's end keeps it
  } catch (const c10::Error&) {
    throw std::invalid_argument(std::string(name()) + " is not a valid generator state");
  }
}

RandomStream::Scope::Scope(RandomStream& stream) : stream_(stream) {
  auto gen = stream_.global();
  std::lock_guard<std::mutex> lock(gen.mutex());
  saved_ = gen.get_state();
  if (stream_.state_.defined()) gen.set_state(stream_.state_);
}

RandomStream::Scope::~Scope() {
  auto gen = stream_.global();
  std::lock_guard<std::mutex> lock(gen.mutex());
  stream_.state_ = gen.get_state();
  gen.set_state(saved_);
}

}  // namespace torchfocal::train
