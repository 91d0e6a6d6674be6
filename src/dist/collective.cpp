#include "src/dist/collective.h"

#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef TORCHFOCAL_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef TORCHFOCAL_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "src/common/torch_compat.h"

namespace torchfocal::dist {
namespace {

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The first line where two "key=value" descriptions differ, as "key: a vs b".
std::string first_difference(const std::string& mine, const std::string& theirs) {
  std::istringstream a(mine), b(theirs);
  std::string la, lb;
  while (true) {
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) return "";
    if (la != lb) {
      return (more_a ? la : "(nothing)") + " against " + (more_b ? lb : "(nothing)");
    }
  }
}

}  // namespace

void validate(const DistributedConfig& c) {
  if (c.world_size < 1) throw std::invalid_argument("world size must be at least 1");
  if (c.rank < 0 || c.rank >= c.world_size) {
    throw std::invalid_argument("rank " + std::to_string(c.rank) + " is outside the world of " +
                                std::to_string(c.world_size));
  }
  if (c.master_port < 1 || c.master_port > 65535) {
    throw std::invalid_argument("master port must be in 1..65535");
  }
  if (!(c.timeout_s > 0)) throw std::invalid_argument("distributed timeout must be > 0 s");
  if (c.bucket_bytes < 1) throw std::invalid_argument("gradient bucket size must be > 0 bytes");
}

// The backend behind one type: c10d's Gloo and NCCL groups share the collective signatures but
// not a base class across LibTorch releases (ProcessGroup in 1.x, Backend in 2.x).
struct Collective::Group {
  c10::intrusive_ptr<c10d::Store> store;
#ifdef TORCHFOCAL_WITH_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef TORCHFOCAL_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

  template <typename F>
  auto run(F&& f) {
#ifdef TORCHFOCAL_WITH_NCCL
    if (nccl) return f(*nccl);
#endif
#ifdef TORCHFOCAL_WITH_GLOO
    if (gloo) return f(*gloo);
#endif
    throw std::logic_error("no process group");
  }
};

Collective::Collective(const DistributedConfig& config, const torch::Device& device)
    : config_(config), device_(device), group_(std::make_unique<Group>()) {
  validate(config_);
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(config_.master_port);
  options.isServer = config_.rank == 0;
  options.numWorkers = static_cast<std::size_t>(config_.world_size);
  options.waitWorkers = false;  // the process group's own rendezvous waits, with our timeout
  options.timeout = millis(config_.timeout_s);
  compat::use_classic_store_backend(options);
  try {
    group_->store = c10::make_intrusive<c10d::TCPStore>(config_.master_addr, options);
  } catch (const std::exception& e) {
    throw std::runtime_error(
        "rank " + std::to_string(config_.rank) + ": cannot reach the store at " +
        config_.master_addr + ":" + std::to_string(config_.master_port) + " within " +
        std::to_string(config_.timeout_s) + " s (" +
        std::string(e.what()).substr(0, std::string(e.what()).find('\n')) + ")");
  }
  const auto rank = static_cast<int>(config_.rank);
  const auto size = static_cast<int>(config_.world_size);
  try {
    if (device_.is_cuda()) {
#ifdef TORCHFOCAL_WITH_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = millis(config_.timeout_s);
      group_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(group_->store, rank, size, opts);
#else
      throw std::invalid_argument(
          "this build has no NCCL: distributed CUDA training needs LibTorch with NCCL and nccl.h "
          "at "
          "build time");
#endif
    } else {
#ifdef TORCHFOCAL_WITH_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(millis(config_.timeout_s));
      const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
      if (iface != nullptr && *iface != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      } else if (config_.master_addr == "127.0.0.1" || config_.master_addr == "localhost") {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      group_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, rank, size, opts);
#else
      throw std::invalid_argument(
          "this build has no Gloo: distributed CPU training needs gloo's headers at build time");
#endif
    }
  } catch (const c10::Error& e) {
    throw std::runtime_error(
        "rank " + std::to_string(config_.rank) + ": the process group did not form within " +
        std::to_string(config_.timeout_s) + " s (a rank missing?): " + e.what_without_backtrace());
  }
}

Collective::~Collective() = default;

void Collective::check_same(const std::string& what, const std::string& description) {
  const std::string prefix = "torchfocal/check/" + std::to_string(checks_++) + "/";
  group_->store->set(prefix + std::to_string(config_.rank),
                     std::vector<uint8_t>(description.begin(), description.end()));
  // Every rank compares with rank 0, and rank 0 with every rank: both sides of a mismatch fail.
  for (int64_t other = 0; other < config_.world_size; ++other) {
    if (other == config_.rank || (config_.rank != 0 && other != 0)) continue;
    const auto bytes = group_->store->get(prefix + std::to_string(other));
    const std::string theirs(bytes.begin(), bytes.end());
    if (theirs == description) continue;
    const bool root = config_.rank == 0;
    const int64_t odd = root ? other : config_.rank;
    throw std::invalid_argument(
        "rank " + std::to_string(odd) + "'s " + what + " differs from rank 0's: " +
        first_difference(root ? theirs : description, root ? description : theirs));
  }
}

void Collective::sum(const std::vector<torch::Tensor>& tensors) {
  // Every caller passes whole contiguous tensors, so each is summed in place: all launched,
  // then all waited for.
  std::vector<std::function<void()>> waits;
  for (const auto& t : tensors) waits.push_back(start_sum(t));
  for (auto& wait : waits) wait();
}

std::function<void()> Collective::start_sum(const torch::Tensor& tensor) {
  if (!tensor.is_contiguous()) throw std::logic_error("Collective::sum needs contiguous tensors");
  std::vector<torch::Tensor> one{tensor};
  auto work = group_->run([&](auto& g) { return g.allreduce(one); });
  return [work] { work->wait(); };
}

void Collective::broadcast(const std::vector<torch::Tensor>& tensors) {
  for (const auto& t : tensors) {
    std::vector<torch::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
    group_->run([&](auto& g) { return g.broadcast(one); })->wait();
    if (!one.front().is_same(t)) t.copy_(one.front());
  }
}

}  // namespace torchfocal::dist
