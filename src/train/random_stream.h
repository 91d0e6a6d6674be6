// Each trainer's own random stream for dropout.
//
// Dropout draws from LibTorch's global generator of the device it runs on. Left global, two
// trainers in one process would draw from each other's stream, and a resumed run could not
// continue the stream it was killed in. So each trainer keeps its stream's state and swaps it in
// for the duration of its own work (all LibTorch work runs on one engine thread, so nothing else
// draws in between); the state goes into checkpoints.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace torchfocal::train {

class RandomStream {
 public:
  RandomStream(const torch::Device& device, uint64_t seed);

  // The generator's state as a uint8 tensor, and the name it is saved under ("rng.cpu" or
  // "rng.cuda": the two generators' states differ in layout).
  const torch::Tensor& state() const { return state_; }
  const char* name() const;
  // Throws std::invalid_argument when `state` is not a state of this device type's generator.
  void set_state(const torch::Tensor& state);

  // Installs the stream into the global generator for its lifetime, then takes it back out and
  // restores whatever was there.
  class Scope {
   public:
    explicit Scope(RandomStream& stream);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    RandomStream& stream_;
    torch::Tensor saved_;
  };

 private:
  at::Generator global() const;

  torch::Device device_;
  torch::Tensor state_;
};

}  // namespace torchfocal::train
