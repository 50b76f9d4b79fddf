// The table of SIMD kernel entry points, one instance per ISA (native/isa/isa_*.cpp).
//
// Entries are plain function pointers over POD arguments so that nothing with external
// linkage crosses between ISA translation units. Element-type-generic entries are arrays
// indexed by DType (float32, float16, bfloat16).
#pragma once
#include <cstdint>

#include "../core/cpu_features.h"

namespace fl {

// log-sum-exp statistics of one tile of a row: z = scale·x (scale > 0),
// max = max z, sum = Σ exp(z − max); first_bad = index of the first NaN/+inf, or -1.
struct TileMaxSumExp {
  float max;
  double sum;
  int64_t first_bad;
};
using TileMaxSumExpFn = TileMaxSumExp (*)(const void* x, int64_t n, float scale);

struct CpuKernels {
  Isa isa;
  TileMaxSumExpFn tile_max_sum_exp[3];
};

extern const CpuKernels kernels_sse2;
extern const CpuKernels kernels_avx2;
extern const CpuKernels kernels_avx512;

inline const CpuKernels& cpu_kernels(Isa isa) {
  return isa == Isa::Avx512 ? kernels_avx512 : isa == Isa::Avx2 ? kernels_avx2 : kernels_sse2;
}

}  // namespace fl
