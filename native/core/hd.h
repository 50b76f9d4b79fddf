// Shared by the C++ (CPU) and CUDA builds: FL_HD marks functions that compile for both.
//
// On the host FL_HD is `static inline`: internal linkage. That matters because the per-ISA
// translation units (native/isa/) compile these same functions with AVX2/AVX-512 enabled; an
// externally visible inline function would be emitted there as a weak symbol, and the linker
// could hand that AVX-512 copy to the baseline code path, which would then crash on a CPU
// without AVX-512. With internal linkage every TU keeps its own copy.
#pragma once
#if defined(__CUDACC__)
#define FL_HD __host__ __device__ __forceinline__
#else
#define FL_HD static inline
#endif

namespace fl {

// log2(e), rounded to fp32: e^x is formed as 2^(x·kLog2e) by the SIMD exp (native/simd/vec.h),
// the softmax sweep (native/ops/softmax_rows.inl) and the CUDA kernels (cuda/common.cuh).
constexpr float kLog2e = 1.4426950408889634f;

}  // namespace fl
