// The argument structs of every op, each followed by its entry points: the CPU op (native/ops/)
// and the CUDA launcher (cuda/, fl::cuda; defined only in the CUDA build). The N-API op table
// (napi/ops.cpp) calls both through this header alone. Each field is the snake_case of the TS
// option it comes from (`gradScale` → grad_scale); docs/ADDING_A_LOSS.md says how a new loss
// extends them. Pointers are host memory for the CPU ops; each launcher's comment says which of
// them are device memory there. Each launcher checks every CUDA call and launch and throws
// fl::Error on failure.
#pragma once
#include <cstdint>

#include "types.h"

namespace fl {

struct Context;  // native/core/context.h: the CPU ops' thread pool and kernels

// The scores matrix every op reads, z = scale·x.
struct ScoresArgs {
  const void* scores;  // rows × cols, row-major, of `dtype` (TS: the scores, or logits)
  DType dtype;
  int64_t rows, cols;
  float scale;         // > 0
};

// What every loss takes: the scores, the reduction and the outputs. A loss's own struct derives
// from it, so that code shared by the losses (napi's reader, the row factor upstream()) takes a
// LossArgs.
struct LossArgs : ScoresArgs {
  Reduction reduction;
  const float* grad_output;  // rows (Reduction::None only), or null for ones
  void* grad;                // rows × cols of grad_dtype, or null for none; may equal `scores` (in place)
  DType grad_dtype;          // Float32, or `dtype`
  bool grad_scale;           // also compute dL/dscale (LossResult::dscale)
  float* row_loss;           // rows: ℓ_i before any reduction
};

// ---------- the losses ----------

// softmaxCrossEntropy (docs/MATH.md): torch F.cross_entropy with ignore_index, label smoothing,
// class weights, z-loss and softcap. The scores are the TS `logits`.
struct CrossEntropyArgs : LossArgs {
  const int32_t* labels;       // rows
  int32_t ignore_index;
  float softcap;               // > 0, or 0 for none
  float label_smoothing;       // ε in [0, 1]
  const float* class_weights;  // cols, or null
  float z_loss;                // λ >= 0
  float* lse;                  // rows, or null: log-sum-exp of z per row
};
// Throws ERR_LABEL_RANGE for a label outside [0, cols) that is not ignore_index, and
// ERR_NON_FINITE for NaN/+inf logits.
LossResult cross_entropy(Context& ctx, const CrossEntropyArgs& args);
// CUDA: logits and grad on the device; labels, class weights, gradOutput, rowLoss and lse on
// the host (the launcher moves them).
namespace cuda { LossResult cross_entropy(const CrossEntropyArgs& args); }

// decoupledSoftmax, multiLabelSoftmax and binaryCrossEntropy: the losses over CSR positives.
struct PositivesLossArgs : LossArgs {
  Csr positives;  // weights: per-positive weights (binaryCrossEntropy: soft targets)
  Csr exclude;    // entries out of the loss (gradient 0), or empty
};
// Each throws ERR_CSR for an exclusion that is also a positive and ERR_NON_FINITE for NaN/+inf
// scores. 'mean' divides by B (decoupled, multi-label) or B·N (bce).
LossResult decoupled_softmax(Context& ctx, const PositivesLossArgs& args);
LossResult multi_label_softmax(Context& ctx, const PositivesLossArgs& args);
LossResult binary_cross_entropy(Context& ctx, const PositivesLossArgs& args);
// CUDA: scores and grad on the device; the CSRs, gradOutput and rowLoss on the host (the
// launcher moves them).
namespace cuda {
LossResult decoupled_softmax(const PositivesLossArgs& args);
LossResult multi_label_softmax(const PositivesLossArgs& args);
LossResult binary_cross_entropy(const PositivesLossArgs& args);
}  // namespace cuda

// infoNCE, one-way and symmetric (CLIP).
struct InfoNCEArgs : LossArgs {
  Csr positives;   // empty: the diagonal (row i ↔ column i; needs cols >= rows)
  Csr exclude;     // entries out of the loss (gradient 0), or empty
  bool symmetric;  // CLIP: (row-wise + column-wise)/2 on a square matrix, diagonal positives,
                   // no exclusions
};
// Throws ERR_SHAPE for diagonal positives with cols < rows (and symmetric on a non-square
// matrix), ERR_ARG for symmetric with positives or exclusions, ERR_CSR for an exclusion that
// is also a positive, ERR_NON_FINITE for NaN/+inf scores.
LossResult info_nce(Context& ctx, const InfoNCEArgs& args);
// CUDA: scores and grad on the device; the CSRs, gradOutput and rowLoss on the host.
namespace cuda { LossResult info_nce(const InfoNCEArgs& args); }

// decoupledContrastive: DCL, or DCLW with TS `weighting: { sigma }`.
struct DecoupledContrastiveArgs : LossArgs {
  Csr positives;  // exactly one per row, unweighted; empty: the diagonal
  Csr exclude;    // or empty
  float sigma;    // DCLW's σ > 0, or 0 for plain DCL (w = 1)
};
// The errors of info_nce, and ERR_CSR for a row without exactly one positive.
LossResult decoupled_contrastive(Context& ctx, const DecoupledContrastiveArgs& args);
// CUDA: scores and grad on the device; the CSRs, gradOutput and rowLoss on the host.
namespace cuda { LossResult decoupled_contrastive(const DecoupledContrastiveArgs& args); }

// ---------- from embeddings (SPEC 6) ----------

// linearCrossEntropy: softmaxCrossEntropy on S = hidden·weightᵀ (+ bias), with dhidden, dweight
// and dbias. Not a LossArgs: there is no scores matrix (that is the point).
struct LinearCrossEntropyArgs {
  const void* hidden;  // rows × dim of `dtype`
  const void* weight;  // classes × dim of `dtype` (torch nn.Linear layout)
  const float* bias;   // classes, or null
  DType dtype;
  int64_t rows, dim, classes;
  const int32_t* labels;  // rows
  int32_t ignore_index;
  float scale;                 // > 0
  float softcap;               // > 0, or 0 for none
  float label_smoothing;       // ε in [0, 1]
  const float* class_weights;  // classes, or null
  float z_loss;                // λ ≥ 0
  Reduction reduction;
  const float* grad_output;  // rows (Reduction::None only), or null for ones
  void* grad_hidden;         // rows × dim of grad_dtype, or null
  DType grad_dtype;          // of grad_hidden: Float32, or `dtype`
  float* grad_weight;        // classes × dim, or null
  float* grad_bias;          // classes, or null
  bool accumulate;           // add into grad_hidden / grad_weight / grad_bias instead of overwriting
  bool grad_scale;           // also compute dL/dscale
  float* row_loss;           // rows: ℓ_i (0 for ignored rows)
  float* lse;                // rows, or null (NaN for ignored rows: they are not computed)
  int64_t memory_budget;     // bytes of scratch, > 0
};

// ---------- soft top-k ----------

// The threshold search (TS TopKSolveOptions and k): per row, t with Σ_j σ(α(z_j + t)) = k.
struct TopKSolve {
  float alpha;             // > 0
  int32_t k;               // k of every row, unless k_rows
  const int32_t* k_rows;   // rows (TS k as an Int32Array), or null
  float tol;               // stop at |Σp − k| ≤ tol·k
  int32_t max_iter;        // ≥ 1 passes at a trial threshold
  Csr exclude;             // entries out of the row, or empty
};

struct SoftTopKProblem : ScoresArgs, TopKSolve {};

// TS `output`: what softTopK's values are.
enum class TopKOutput : int32_t { Prob = 0, Log = 1 };

// softTopK: the operator's values p (or log p), thresholds and solver passes.
struct SoftTopKArgs : SoftTopKProblem {
  TopKOutput output;
  float* values;        // rows × cols: p (0 for out entries) or log p (−inf for out entries)
  float* threshold;     // rows
  int32_t* iterations;  // rows: passes the solver made
};
// Throws ERR_NON_FINITE for NaN/+inf scores and ERR_K_RANGE unless 0 < k_i < N_i (the
// entries of row i that are in).
void soft_topk(Context& ctx, const SoftTopKArgs& args);
// CUDA: the scores and values on the device; k_rows, exclusions, threshold and iterations on
// the host.
namespace cuda { void soft_topk(const SoftTopKArgs& args); }

// softTopK's vjp: dL/dS for L = Σ_ij g_ij·values_ij, with the thresholds softTopK returned.
struct SoftTopKVjpArgs : SoftTopKProblem {
  TopKOutput output;
  const float* threshold;    // rows
  const float* grad_output;  // rows × cols float32
  void* grad;                // rows × cols of grad_dtype
  DType grad_dtype;          // Float32, or `dtype`
};
void soft_topk_vjp(Context& ctx, const SoftTopKVjpArgs& args);
// CUDA: scores, gradOutput and grad on the device; threshold and exclusions on the host.
namespace cuda { void soft_topk_vjp(const SoftTopKVjpArgs& args); }

// softTopKLoss: ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip·log p_ip.
struct SoftTopKLossArgs : LossArgs, TopKSolve {
  Csr positives;  // a positive may not also be excluded (ERR_CSR)
};
// 'mean' divides by rows. Rows without positives add 0 and need no threshold (their k is not
// checked). Same errors as soft_topk.
LossResult soft_topk_loss(Context& ctx, const SoftTopKLossArgs& args);
// CUDA: the scores and grad on the device; k_rows, positives, exclusions, gradOutput and
// rowLoss on the host (the launcher moves them).
namespace cuda { LossResult soft_topk_loss(const SoftTopKLossArgs& args); }

// ---------- utilities ----------

// logSumExp: out[r] = log Σ_c exp(scale·x[r, c]).
struct LogSumExpArgs : ScoresArgs {
  float* out;  // rows
};
// Throws ERR_NON_FINITE naming the first NaN/+inf. A row that is all −inf gives −inf.
void log_sum_exp(Context& ctx, const LogSumExpArgs& args);
// CUDA: x on the device and out on the host.
namespace cuda { void log_sum_exp(const LogSumExpArgs& args); }

}  // namespace fl
