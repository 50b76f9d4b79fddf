// The GEMM core: C (fp32) = or += op(A)·op(B) on the CPU, for the losses computed straight from
// embeddings (docs/MATH.md §3.9–3.10): the score tile S = H·Wᵀ, and the gradients dH = G·W and dW += Gᵀ·H.
//
// Packed panels and register-blocked micro-kernels per ISA (native/gemm/gemm_kernels.inl),
// B widened from fp16/bf16 to fp32 while it is packed. C is cut into blocks spread over the
// pool; each entry of C is computed by one task, summing over K in a fixed order, so results
// are bitwise the same on any thread count (no atomics, no split-K reductions).
#pragma once
#include <cstdint>

#include "../core/context.h"
#include "../core/dtype.h"

namespace fl {

// A matrix operand. Element (r, c) of op(X) is p[r·ld + c], or p[c·ld + r] when `trans`.
struct GemmOperand {
  const void* p;
  DType dtype;
  int64_t ld;
  bool trans;
};

// C[m × n] (row stride ldc) = op(A)[m × k] · op(B)[k × n], or += with `accumulate`.
// A must be float32; B may be any DType. k = 0 gives C = 0 (or leaves it).
void gemm(Context& ctx, int64_t m, int64_t n, int64_t k, const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc,
          bool accumulate);

// The scratch gemm() keeps per pool thread (its packed panels), in bytes.
int64_t gemm_scratch_bytes(const Context& ctx);

}  // namespace fl
