// The vocabulary of the fusedloss API: element types, reductions, CSR views and results.
// Dependency-free (the standard library and the FL_HD marker only), so that the CPU ops, the
// CUDA launchers, the N-API layer and C++ users all speak it without pulling in a runtime.
#pragma once
#include <cstdint>

#include "../core/hd.h"

namespace fl {

// Element type of a tensor. Half-precision tensors travel as raw 16-bit patterns; the
// conversions live in native/core/dtype.h. TS: 'float32' | 'float16' | 'bfloat16' (codes 0, 1, 2).
enum class DType : int32_t { Float32 = 0, Float16 = 1, BFloat16 = 2 };

FL_HD const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "?";
}
FL_HD int64_t dtype_size(DType d) { return d == DType::Float32 ? 4 : 2; }

// How row losses are combined (TS `reduction`: 'mean' | 'sum' | 'none', codes 0, 1, 2). What
// 'mean' divides by is each loss's own (docs/MATH.md).
enum class Reduction : int32_t { Mean = 0, Sum = 1, None = 2 };

// What every loss returns besides the arrays it writes.
struct LossResult {
  double loss;    // the reduced loss; with Reduction::None, Σ_i ℓ_i
  double dscale;  // dL/dscale (0 unless LossArgs::grad_scale)
};

// A view of a caller's CSR over a rows × cols matrix: row r owns entries
// [row_ptr[r], row_ptr[r+1]) of cols/weights. An empty Csr (row_ptr null) has no entries in
// any row. Positives, exclusions (native/ops/csr.h checks and merges them).
struct Csr {
  const int32_t* row_ptr = nullptr;  // rows + 1
  const int32_t* cols = nullptr;     // columns, in any order within a row
  const float* weights = nullptr;    // one per entry, or null: every weight 1

  explicit operator bool() const { return row_ptr != nullptr; }
  int64_t begin(int64_t r) const { return row_ptr ? row_ptr[r] : 0; }
  int64_t end(int64_t r) const { return row_ptr ? row_ptr[r + 1] : 0; }
  int64_t size(int64_t r) const { return end(r) - begin(r); }
  int64_t nnz(int64_t rows) const { return row_ptr ? row_ptr[rows] : 0; }
  float weight(int64_t e) const { return weights ? weights[e] : 1.f; }
};

}  // namespace fl
