// The CUDA side of the sync-free train step (Trainer with device steps): a side stream for its
// warm-up, capture and replays; the captured graph; and reads of device values that never wait
// on the queue. CUDA graphs exist on CUDA only: without it StepGraph cannot be made, StepStream
// does nothing and LaggedRead reads at once.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>

namespace torchfocal::train {

// A side stream of `device`, taken once, on which the device step runs: CUDA graphs are captured
// off the default stream, and the warm-ups, the capture and the replays should share one stream
// (cuBLAS keeps a workspace per stream). Nothing on the CPU.
class StepStream {
 public:
  explicit StepStream(const torch::Device& device);
  ~StepStream();
  StepStream(const StepStream&) = delete;
  StepStream& operator=(const StepStream&) = delete;

  // Makes the side stream current while in scope, ordered after the work already queued on the
  // current stream; on leaving, the current stream is ordered after the side stream's work.
  class Scope {
   public:
    explicit Scope(StepStream& stream);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One train step captured as a CUDA graph (at::cuda::CUDAGraph) and replayed. The captured code
// must read nothing back to the host and must allocate its lasting tensors before capture: a
// replay reruns the recorded kernels on the same addresses.
class StepGraph {
 public:
  explicit StepGraph(const torch::Device& device);  // std::invalid_argument without CUDA
  ~StepGraph();

  bool captured() const;
  // Records `step` (runs nothing: call replay() for its first run). Autocast's weight cache is
  // off while recording, since cached casts would be replayed stale.
  void capture(const std::function<void()>& step);
  void replay();
  void reset();  // a later capture records anew (the loss or the batch size changed)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads a small device tensor (progress figures) without waiting for the queue: request() queues
// a copy into host memory, latest() returns the newest copy that has landed and its tag.
class LaggedRead {
 public:
  LaggedRead();
  ~LaggedRead();
  void request(const torch::Tensor& value, int64_t tag);
  std::optional<std::pair<torch::Tensor, int64_t>> latest();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace torchfocal::train
