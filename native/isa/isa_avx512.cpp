// SIMD kernels compiled for avx512; see isa_body.inl.
// GCC 12 flags its own AVX-512 intrinsics (_mm512_undefined_*) as uninitialized: header false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#define FL_ISA_AVX512 1
#define FL_ISA_NS isa_avx512
#define FL_VEC Avx512
#define FL_ISA Isa::Avx512
#define FL_KERNEL_TABLE kernels_avx512
#include "isa_body.inl"
