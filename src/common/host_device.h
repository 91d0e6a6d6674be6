// HOST_DEVICE_INLINE: functions that nvcc compiles for both the host and the device, and a plain
// C++ compiler for the host; the per-element maths shared by CPU and CUDA kernels uses it.
#pragma once

#ifndef HOST_DEVICE_INLINE
#ifdef __CUDACC__
#define HOST_DEVICE_INLINE __host__ __device__ inline
#else
#define HOST_DEVICE_INLINE inline
#endif
#endif
