// SIMD kernels compiled for avx2; see isa_body.inl.
#pragma GCC target("avx2,fma,f16c")
#define FL_ISA_AVX2 1
#define FL_ISA_NS isa_avx2
#define FL_VEC Avx2
#define FL_ISA Isa::Avx2
#define FL_KERNEL_TABLE kernels_avx2
#include "isa_body.inl"
