// The argument structs of every op: what the CPU ops (native/ops/), the CUDA launchers
// (cuda/ops.h) and the N-API op table (napi/ops.cpp) pass around. Each field is the snake_case
// of the TS option it comes from (`gradScale` → grad_scale); docs/ADDING_A_LOSS.md says how a
// new loss extends them. Pointers are host memory for the CPU ops; the CUDA launchers say which
// of them are device memory.
#pragma once
#include <cstdint>

#include "types.h"

namespace fl {

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

// decoupledSoftmax, multiLabelSoftmax and binaryCrossEntropy: the losses over CSR positives.
struct PositivesLossArgs : LossArgs {
  Csr positives;  // weights: per-positive weights (binaryCrossEntropy: soft targets)
  Csr exclude;    // entries out of the loss (gradient 0), or empty
};

// infoNCE, one-way and symmetric (CLIP).
struct InfoNCEArgs : LossArgs {
  Csr positives;   // empty: the diagonal (row i ↔ column i; needs cols >= rows)
  Csr exclude;     // entries out of the loss (gradient 0), or empty
  bool symmetric;  // CLIP: (row-wise + column-wise)/2 on a square matrix, diagonal positives,
                   // no exclusions
};

// decoupledContrastive: DCL, or DCLW with TS `weighting: { sigma }`.
struct DecoupledContrastiveArgs : LossArgs {
  Csr positives;  // exactly one per row, unweighted; empty: the diagonal
  Csr exclude;    // or empty
  float sigma;    // DCLW's σ > 0, or 0 for plain DCL (w = 1)
  const double* row_weights;  // rows, host, CPU op only: DCLW's w_i given (the embeddings form,
                              // which forms them over all B rows before taking chunks), or null:
                              // from sigma
};

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

// <loss>FromEmbeddings: a loss of section 3 on S = Q·Kᵀ, or with `normalize` on the cosine
// scores S = (Q/‖Q_i‖)·(K/‖K_j‖)ᵀ, with dQ and dK (native/ops/embeddings.h). Not a LossArgs:
// there is no scores matrix. Each loss's struct adds its own options.
struct EmbeddingsArgs {
  const void* queries;  // rows × dim of `dtype`
  const void* keys;     // cols × dim of `dtype`
  DType dtype;
  int64_t rows, dim, cols;
  bool normalize;            // cosine scores (F.normalize, eps 1e-12)
  float scale;               // > 0
  Reduction reduction;
  const float* grad_output;  // rows (Reduction::None only), or null for ones
  void* grad_queries;        // rows × dim of grad_dtype, or null
  DType grad_dtype;          // of grad_queries: Float32, or `dtype`
  float* grad_keys;          // cols × dim, fp32 whatever the dtype, or null
  bool accumulate;           // add into grad_queries / grad_keys instead of overwriting
  bool grad_scale;           // also compute dL/dscale
  float* row_loss;           // rows: ℓ_i
  int64_t memory_budget;     // bytes of scratch, > 0
};

// decoupledSoftmax / multiLabelSoftmax / binaryCrossEntropy FromEmbeddings.
struct PositivesEmbeddingsArgs : EmbeddingsArgs {
  Csr positives;  // over rows × cols, as PositivesLossArgs
  Csr exclude;
};

// infoNCEFromEmbeddings, one-way or symmetric (CLIP: B = N, diagonal, no exclusions).
struct InfoNCEEmbeddingsArgs : EmbeddingsArgs {
  Csr positives;  // empty: the diagonal (query i ↔ key i; needs cols >= rows)
  Csr exclude;
  bool symmetric;
};

// decoupledContrastiveFromEmbeddings: DCL, or DCLW with `sigma` (its weights need every row's
// positive score first: B dot products before the chunks).
struct DecoupledContrastiveEmbeddingsArgs : EmbeddingsArgs {
  Csr positives;  // exactly one per row, unweighted; empty: the diagonal
  Csr exclude;
  float sigma;    // > 0 for DCLW, 0 for DCL
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

// softTopK's vjp: dL/dS for L = Σ_ij g_ij·values_ij, with the thresholds softTopK returned.
struct SoftTopKVjpArgs : SoftTopKProblem {
  TopKOutput output;
  const float* threshold;    // rows
  const float* grad_output;  // rows × cols float32
  void* grad;                // rows × cols of grad_dtype
  DType grad_dtype;          // Float32, or `dtype`
};

// softTopKLoss: ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip·log p_ip.
struct SoftTopKLossArgs : LossArgs, TopKSolve {
  Csr positives;  // a positive may not also be excluded (ERR_CSR)
};

// softTopKLossFromEmbeddings: softTopKLoss's options on S = Q·Kᵀ.
struct SoftTopKLossEmbeddingsArgs : EmbeddingsArgs, TopKSolve {
  Csr positives;
};

// ---------- utilities ----------

// logSumExp: out[r] = log Σ_c exp(scale·x[r, c]).
struct LogSumExpArgs : ScoresArgs {
  float* out;  // rows
};

}  // namespace fl
