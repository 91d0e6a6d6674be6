// The c10d process group of a data-parallel run: a TCPStore rendezvous, then Gloo for CPU
// tensors or NCCL for CUDA tensors, the same engine torch.distributed uses.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace torchfocal::dist {

struct DistributedConfig {
  int64_t world_size = 1;  // 1 with no master_port: not distributed
  int64_t rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;    // rank 0 hosts the TCPStore here
  double timeout_s = 60;  // rendezvous, and any collective: a rank gone stops the others
  // Gradients are summed in buckets of about this size, each as soon as backward has produced
  // it (DDP's bucket_cap_mb, 25 MB by default).
  int64_t bucket_bytes = 25 << 20;
  // What the caller's run adds to the configuration every rank must share ("epochs=5\n"): the
  // start-up check compares it with the rest.
  std::string run_description;
  bool enabled() const { return master_port > 0; }
};

// Throws std::invalid_argument for a world size < 1, a rank outside it or a port outside 1..65535.
void validate(const DistributedConfig& config);

class Collective {
 public:
  // Blocks until every rank has joined (or the timeout passes: std::runtime_error naming who is
  // missing). `device` picks the backend: Gloo for the CPU, NCCL for CUDA.
  Collective(const DistributedConfig& config, const torch::Device& device);
  ~Collective();

  int64_t rank() const { return config_.rank; }
  int64_t world_size() const { return config_.world_size; }

  // Every rank passes its description of `what`, one "key=value" per line; throws
  // std::invalid_argument naming the rank and the first line where it differs from rank 0.
  void check_same(const std::string& what, const std::string& description);

  // In place: the element-wise sum over ranks of each (contiguous) tensor; all in flight at
  // once, returned when all are done.
  void sum(const std::vector<torch::Tensor>& tensors);
  // Starts that sum for one contiguous tensor and returns at once; calling the result waits for
  // it. Every rank starts the same sums in the same order.
  std::function<void()> start_sum(const torch::Tensor& tensor);
  // In place: rank 0's values everywhere.
  void broadcast(const std::vector<torch::Tensor>& tensors);

 private:
  struct Group;
  DistributedConfig config_;
  torch::Device device_;
  std::unique_ptr<Group> group_;
  int64_t checks_ = 0;  // store keys are never reused
};

}  // namespace torchfocal::dist
