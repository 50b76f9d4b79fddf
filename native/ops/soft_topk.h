// softTopK (SPEC 3.7), the sigmoid-threshold operator, and softTopKLoss (SPEC 3.8, DEXML's
// "topk" loss) on the CPU: per row, the threshold t with Σ_j σ(α(z_j + t)) = k by safeguarded
// Newton (native/ops/soft_topk_math.h), then the outputs, the loss or the gradient.
#pragma once
#include <cstdint>

#include "../core/context.h"
#include "../core/dtype.h"
#include "cross_entropy.h"  // Reduction, LossResult
#include "csr.h"

namespace fl {

// The threshold problem every entry point shares.
struct SoftTopKProblem {
  const void* x;  // rows × cols scores of `dtype`; −inf marks an entry out
  DType dtype;
  int64_t rows, cols;
  float scale;              // z = scale·x (> 0)
  float alpha;              // > 0
  int32_t k;                // k of every row, unless k_rows
  const int32_t* k_rows;    // rows, or null
  Csr exclude;              // entries out of the row (may be empty); validated (check_csr)
  float tol;                // stop at |Σp − k| ≤ tol·k
  int32_t max_iter;         // ≥ 1 passes at a trial threshold
};

struct SoftTopKArgs {
  SoftTopKProblem p;
  bool log_output;     // values are log p rather than p
  float* values;       // rows × cols: p (0 for out entries) or log p (−inf for out entries)
  float* threshold;    // rows
  int32_t* iterations; // rows: passes the solver made
};

// Throws ERR_NON_FINITE for NaN/+inf scores and ERR_K_RANGE unless 0 < k_i < N_i (the
// entries of row i that are in).
void soft_topk(Context& ctx, const SoftTopKArgs& args);

// dL/dS for L = Σ_ij g_ij·values_ij, with the thresholds soft_topk returned (SPEC 3.7 backward).
struct SoftTopKVjpArgs {
  SoftTopKProblem p;
  bool log_output;
  const float* threshold;    // rows
  const float* grad_output;  // rows × cols float32
  void* grad;                // rows × cols
  bool grad_float32;         // grad in float32 rather than the scores' dtype
};
void soft_topk_vjp(Context& ctx, const SoftTopKVjpArgs& args);

struct SoftTopKLossArgs {
  SoftTopKProblem p;
  Csr positives;              // validated; a positive may not also be excluded (ERR_CSR)
  Reduction reduction;
  const float* grad_output;   // rows (reduction None only), or null for ones
  void* grad;                 // rows × cols, or null; may equal x (in place)
  bool grad_float32;
  bool want_dscale;
  float* row_loss;            // rows
};

// ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip·log p_ip; 'mean' divides by rows. Rows without positives add 0
// and need no threshold (their k is not checked). Same errors as soft_topk.
LossResult soft_topk_loss(Context& ctx, const SoftTopKLossArgs& args);

}  // namespace fl
