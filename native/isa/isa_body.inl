// The body of every per-ISA translation unit. Before including this file the TU sets:
//   #pragma GCC target(...)   the instruction set
//   FL_ISA_NS                 a namespace unique to the ISA (see native/simd/vec.h)
//   FL_VEC                    the vector struct from vec.h
//   FL_KERNEL_TABLE, FL_ISA   the CpuKernels instance to define and its Isa value
// Each op's SIMD code is an .inl of templates over the vector type V, included here.
#include "../simd/vec.h"
#include "kernels.h"
#include "../core/rowmath.h"

namespace fl::FL_ISA_NS {
using V = simd::FL_VEC;
#include "../ops/logsumexp.inl"
}  // namespace fl::FL_ISA_NS

// Fills one entry with the float32, float16 and bfloat16 instantiations of a kernel template.
#define FL_BY_DTYPE(fn) \
  { FL_ISA_NS::fn<FL_ISA_NS::V, float>, FL_ISA_NS::fn<FL_ISA_NS::V, f16_t>, FL_ISA_NS::fn<FL_ISA_NS::V, bf16_t> }

namespace fl {
const CpuKernels FL_KERNEL_TABLE = {
    FL_ISA,
    FL_BY_DTYPE(tile_max_sum_exp),
};
}  // namespace fl
