// SIMD kernels compiled for sse2; see isa_body.inl.
#define FL_ISA_NS isa_sse2
#define FL_VEC Sse2
#define FL_ISA Isa::Sse2
#define FL_KERNEL_TABLE kernels_sse2
#include "isa_body.inl"
