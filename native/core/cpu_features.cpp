#include "cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace fl {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "sse2";
  }
}

Isa detect_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::Avx2;
#endif
  return Isa::Sse2;
}

Isa select_isa() {
  const Isa best = detect_isa();
  Isa want = Isa::Avx512;
  if (const char* env = std::getenv("FUSEDLOSS_SIMD")) {
    if (!std::strcmp(env, "avx2")) want = Isa::Avx2;
    else if (!std::strcmp(env, "sse2") || !std::strcmp(env, "baseline")) want = Isa::Sse2;
  }
  return int(want) < int(best) ? want : best;
}

// Defined by the per-ISA translation units (native/isa/isa_body.inl).
extern const CpuKernels kernels_sse2;
extern const CpuKernels kernels_avx2;
extern const CpuKernels kernels_avx512;

const CpuKernels& cpu_kernels(Isa isa) {
  return isa == Isa::Avx512 ? kernels_avx512 : isa == Isa::Avx2 ? kernels_avx2 : kernels_sse2;
}

}  // namespace fl
