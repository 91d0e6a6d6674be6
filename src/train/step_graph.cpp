#include "src/train/step_graph.h"

#include <ATen/autocast_mode.h>

#include <stdexcept>
#include <utility>

#ifdef TORCHFOCAL_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace torchfocal::train {

#ifdef TORCHFOCAL_WITH_CUDA
namespace {

// A CUDA event without timing, through the runtime API: ATen's CUDAEvent header pulls in the
// whole CUDA context (cuBLAS, cuSPARSE headers), which minimal toolkits lack.
class Event {
 public:
  Event() { C10_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const c10::cuda::CUDAStream& stream) {
    C10_CUDA_CHECK(cudaEventRecord(event_, stream.stream()));
  }
  // Work queued on `stream` from now on waits for the recorded point.
  void block(const c10::cuda::CUDAStream& stream) {
    C10_CUDA_CHECK(cudaStreamWaitEvent(stream.stream(), event_, 0));
  }
  bool query() const {
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) {
      // Not an error, but CUDA records it as the thread's last error: clear it, or the next
      // launch check (cudaGetLastError) would report it.
      (void)cudaGetLastError();
      return false;
    }
    C10_CUDA_CHECK(status);
    return true;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace
#endif

// ---- StepStream ---------------------------------------------------------------------------------

#ifdef TORCHFOCAL_WITH_CUDA
struct StepStream::Impl {
  explicit Impl(const torch::Device& device)
      : side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())) {}
  c10::cuda::CUDAStream side;
};

struct StepStream::Scope::Impl {
  explicit Impl(const c10::cuda::CUDAStream& side_stream)
      : before(c10::cuda::getCurrentCUDAStream(side_stream.device_index())),
        side(side_stream),
        guard(side) {
    Event ready;
    ready.record(before);
    ready.block(side);
  }
  ~Impl() {
    // No throw from a destructor (that would end the process): after a failed capture these
    // calls may fail, and the error that caused it is already on its way.
    cudaEvent_t done = nullptr;
    if (cudaEventCreateWithFlags(&done, cudaEventDisableTiming) != cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    if (cudaEventRecord(done, side.stream()) != cudaSuccess ||
        cudaStreamWaitEvent(before.stream(), done, 0) != cudaSuccess) {
      (void)cudaGetLastError();
    }
    cudaEventDestroy(done);
  }
  c10::cuda::CUDAStream before, side;
  c10::cuda::CUDAStreamGuard guard;
};
#else
struct StepStream::Impl {};
struct StepStream::Scope::Impl {};
#endif

StepStream::StepStream(const torch::Device& device) {
#ifdef TORCHFOCAL_WITH_CUDA
  if (device.is_cuda()) impl_ = std::make_unique<Impl>(device);
#endif
}

StepStream::~StepStream() = default;

StepStream::Scope::Scope(StepStream& stream) {
#ifdef TORCHFOCAL_WITH_CUDA
  if (stream.impl_) impl_ = std::make_unique<Impl>(stream.impl_->side);
#endif
}

StepStream::Scope::~Scope() = default;

// ---- StepGraph ----------------------------------------------------------------------------------

#ifdef TORCHFOCAL_WITH_CUDA
struct StepGraph::Impl {
  std::unique_ptr<at::cuda::CUDAGraph> graph;
};
#else
struct StepGraph::Impl {};
#endif

StepGraph::StepGraph(const torch::Device& device) : impl_(std::make_unique<Impl>()) {
#ifdef TORCHFOCAL_WITH_CUDA
  if (device.is_cuda()) return;
#endif
  throw std::invalid_argument("CUDA graphs need a CUDA device and a CUDA build of torchfocal");
}

StepGraph::~StepGraph() = default;

#ifdef TORCHFOCAL_WITH_CUDA
bool StepGraph::captured() const { return impl_->graph != nullptr; }

void StepGraph::capture(const std::function<void()>& step) {
  reset();
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  const bool cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  graph->capture_begin();
  try {
    step();
  } catch (...) {
    // End the capture before rethrowing, so the stream is usable again.
    try {
      graph->capture_end();
    } catch (...) {
    }
    at::autocast::set_autocast_cache_enabled(cache);
    throw;
  }
  graph->capture_end();
  at::autocast::set_autocast_cache_enabled(cache);
  impl_->graph = std::move(graph);
}

void StepGraph::replay() {
  if (!impl_->graph) throw std::logic_error("StepGraph::replay before capture");
  impl_->graph->replay();
}

void StepGraph::reset() { impl_->graph.reset(); }
#else
bool StepGraph::captured() const { return false; }
void StepGraph::capture(const std::function<void()>&) {}
void StepGraph::replay() {}
void StepGraph::reset() {}
#endif

// ---- LaggedRead ---------------------------------------------------------------------------------

struct LaggedRead::Impl {
  struct Pending {
    torch::Tensor host;
#ifdef TORCHFOCAL_WITH_CUDA
    std::shared_ptr<Event> landed;
#endif
    int64_t tag;
  };
  std::deque<Pending> pending;
  std::optional<std::pair<torch::Tensor, int64_t>> newest;
};

LaggedRead::LaggedRead() : impl_(std::make_unique<Impl>()) {}

LaggedRead::~LaggedRead() = default;

void LaggedRead::request(const torch::Tensor& value, int64_t tag) {
  if (!value.is_cuda()) {
    impl_->newest = std::make_pair(value.detach().clone(), tag);  // on the CPU it has landed
    return;
  }
#ifdef TORCHFOCAL_WITH_CUDA
  auto host = torch::empty(value.sizes(), value.options().device(torch::kCPU).pinned_memory(true));
  host.copy_(value, /*non_blocking=*/true);
  auto landed = std::make_shared<Event>();
  landed->record(c10::cuda::getCurrentCUDAStream(value.device().index()));
  impl_->pending.push_back({host, landed, tag});
#endif
}

std::optional<std::pair<torch::Tensor, int64_t>> LaggedRead::latest() {
#ifdef TORCHFOCAL_WITH_CUDA
  while (!impl_->pending.empty() && impl_->pending.front().landed->query()) {
    impl_->newest = std::make_pair(impl_->pending.front().host, impl_->pending.front().tag);
    impl_->pending.pop_front();
  }
#endif
  return impl_->newest;
}

}  // namespace torchfocal::train
