// Every LibTorch API that differs between the versions torchfocal supports (1.13 to 2.x), guarded
// here and nowhere else, so that the engine reads the same on all of them.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <type_traits>
#include <utility>

#define TORCHFOCAL_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||             \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace torchfocal::compat {

// Turns autocast on or off for one device type, with its low-precision dtype. LibTorch 2.4
// replaced the per-device setters with ones that take the device type.
inline void set_autocast(bool cuda, bool enabled, at::ScalarType dtype) {
#if TORCHFOCAL_TORCH_AT_LEAST(2, 4)
  const auto type = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(type, dtype);
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

// Whether CPU autocast (bf16) is on: LibTorch 2.4 replaced the CPU-specific query.
inline bool cpu_autocast_enabled() {
#if TORCHFOCAL_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(at::kCPU);
#else
  return at::autocast::is_cpu_enabled();
#endif
}

namespace detail {
template <typename Options, typename = void>
struct HasUseLibUV : std::false_type {};
template <typename Options>
struct HasUseLibUV<Options, std::void_t<decltype(std::declval<Options&>().useLibUV)>>
    : std::true_type {};
}  // namespace detail

// Asks c10d's TCPStore for its classic socket backend. Since 2.4 TCPStoreOptions::useLibUV
// defaults to true, and a LibTorch built without libuv (Debian's) then refuses to start the
// store; older versions (1.13) have no such field and only the classic backend. Detected from
// the type rather than the version number, since the field arrived in a minor release.
template <typename TCPStoreOptions>
void use_classic_store_backend(TCPStoreOptions& options) {
  if constexpr (detail::HasUseLibUV<TCPStoreOptions>::value) options.useLibUV = false;
}

// Visits a module option that is a variant (a convolution's padding: numbers, "valid" or "same"):
// c10::variant in LibTorch 1.13, std::variant in 2.x. The unqualified call finds the matching
// visit by argument-dependent lookup.
template <typename Visitor, typename Variant>
decltype(auto) visit_option(Visitor&& visitor, const Variant& option) {
  return visit(std::forward<Visitor>(visitor), option);
}

}  // namespace torchfocal::compat
