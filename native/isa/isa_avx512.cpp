// SIMD kernels compiled for avx512; see isa_body.inl.
// GCC 12 flags its own _mm512_cvtph_ps as maybe-uninitialized (a false positive in the header).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#define FL_ISA_AVX512 1
#define FL_ISA_NS isa_avx512
#define FL_VEC Avx512
#define FL_ISA Isa::Avx512
#define FL_KERNEL_TABLE kernels_avx512
#include "isa_body.inl"
