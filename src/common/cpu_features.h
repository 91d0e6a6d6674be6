// What the CPU the process runs on can execute beyond the baseline x86-64 the project is built
// for. Kernels compiled for a wider target (GCC's target attribute) run only where these say yes.
#pragma once

#include <cstdlib>
#include <cstring>

namespace torchfocal {

#if defined(__GNUC__) && defined(__x86_64__)
#define TORCHFOCAL_X86_TARGETS 1
#define TORCHFOCAL_AVX2_FMA __attribute__((target("avx2,fma")))
// AVX-512 as LibTorch requires it for its own AVX512 kernels (F, BW, DQ, VL).
#define TORCHFOCAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#endif

// AVX2 (8 floats a vector).
inline bool cpu_has_avx2() {
#ifdef TORCHFOCAL_X86_TARGETS
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
#else
  return false;
#endif
}

// AVX2 with fused multiply-adds.
inline bool cpu_has_avx2_fma() {
#ifdef TORCHFOCAL_X86_TARGETS
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

// AVX-512 (16 floats a vector) as TORCHFOCAL_AVX512 compiles for, unless ATEN_CPU_CAPABILITY
// caps LibTorch's own kernels below it (avx2 or default): ours follow the same cap.
inline bool cpu_has_avx512() {
#ifdef TORCHFOCAL_X86_TARGETS
  static const bool yes = [] {
    const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
    if (cap != nullptr && (std::strcmp(cap, "avx2") == 0 || std::strcmp(cap, "default") == 0)) {
      return false;
    }
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           cpu_has_avx2_fma();
  }();
  return yes;
#else
  return false;
#endif
}

}  // namespace torchfocal
