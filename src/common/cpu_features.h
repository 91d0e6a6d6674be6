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

// AVX-512 as TORCHFOCAL_AVX512 compiles for, whatever ATEN_CPU_CAPABILITY says.
inline bool cpu_supports_avx512() {
#ifdef TORCHFOCAL_X86_TARGETS
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl") && cpu_has_avx2_fma();
  return yes;
#else
  return false;
#endif
}

// The widest instruction set LibTorch lets its own kernels use, by ATEN_CPU_CAPABILITY (default |
// avx2 | avx512; unset or other: no cap). Ours follow the same cap; read once.
enum class CpuCap { kDefault, kAvx2, kNone };
inline CpuCap aten_cpu_capability() {
  static const CpuCap cap = [] {
    const char* value = std::getenv("ATEN_CPU_CAPABILITY");
    if (value != nullptr && std::strcmp(value, "default") == 0) return CpuCap::kDefault;
    if (value != nullptr && std::strcmp(value, "avx2") == 0) return CpuCap::kAvx2;
    return CpuCap::kNone;
  }();
  return cap;
}

// AVX-512 (16 floats a vector) for our kernels: the CPU has it and LibTorch's are not capped below.
inline bool cpu_has_avx512() {
  return cpu_supports_avx512() && aten_cpu_capability() == CpuCap::kNone;
}

}  // namespace torchfocal
