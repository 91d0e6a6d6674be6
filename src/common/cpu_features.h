// What the CPU the process runs on can execute beyond the baseline x86-64 the project is built
// for. Kernels compiled for a wider target (GCC's target attribute) run only where these say yes.
#pragma once

namespace torchfocal {

#if defined(__GNUC__) && defined(__x86_64__)
#define TORCHFOCAL_X86_TARGETS 1
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

}  // namespace torchfocal
