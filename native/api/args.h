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
  const double* row_weights;  // rows, host: DCLW's w_i given (the embeddings form, which forms
                              // them over all B rows before taking chunks), or null: from sigma
};
// The errors of info_nce, and ERR_CSR for a row without exactly one positive.
LossResult decoupled_contrastive(Context& ctx, const DecoupledContrastiveArgs& args);
// CUDA: scores and grad on the device; the CSRs, gradOutput and rowLoss on the host.
namespace cuda { LossResult decoupled_contrastive(const DecoupledContrastiveArgs& args); }

// ---------- from embeddings (docs/MATH.md §3.9–3.10) ----------

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
// The scratch budget when the caller gives none (here and from embeddings): 32 MiB.
constexpr int64_t kDefaultMemoryBudget = int64_t(32) << 20;
// Throws ERR_LABEL_RANGE for a label outside [0, classes) that is not ignore_index,
// ERR_NON_FINITE naming the hidden and weight rows of a NaN/+inf score, ERR_ARG when the budget
// holds no row (or tile row) of S. dweight and dbias are fp32 whatever the dtype.
LossResult linear_cross_entropy(Context& ctx, const LinearCrossEntropyArgs& args);
// CUDA (cuda/embeddings.cu), here and for every <loss>FromEmbeddings below: hidden/weight and
// queries/keys, gradHidden/gradWeight and gradQueries/gradKeys on the device; bias, gradBias,
// labels, class weights, the CSRs, k, gradOutput, rowLoss and lse on the host (the launcher moves
// them). The same errors as the CPU ops; scratch within memory_budget.
namespace cuda { LossResult linear_cross_entropy(const LinearCrossEntropyArgs& args); }

// <loss>FromEmbeddings: a loss of section 3 on S = Q·Kᵀ, or with `normalize` on the cosine
// scores S = (Q/‖Q_i‖)·(K/‖K_j‖)ᵀ, with dQ and dK, by the driver in native/ops/embeddings.cpp.
// Not a LossArgs: there is no scores matrix. Each loss's struct adds its own options. Each op
// throws what its matrix form throws (ERR_NON_FINITE naming the query and key rows), and ERR_ARG
// when the budget holds no row (or tile row) of S. Each has a CUDA launcher as well (see
// linear_cross_entropy above for what lives on the device).
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
  const float* bias = nullptr;  // cols, added to S (linearCrossEntropy's bias), or null
  float* grad_bias = nullptr;   // cols, fp32: Σ_i dL/dS_ij (added with `accumulate`), or null
};

// decoupledSoftmax / multiLabelSoftmax / binaryCrossEntropy FromEmbeddings.
struct PositivesEmbeddingsArgs : EmbeddingsArgs {
  Csr positives;  // over rows × cols, as PositivesLossArgs
  Csr exclude;
};
LossResult decoupled_softmax_from_embeddings(Context& ctx, const PositivesEmbeddingsArgs& args);
namespace cuda { LossResult decoupled_softmax_from_embeddings(const PositivesEmbeddingsArgs& args); }
LossResult multi_label_softmax_from_embeddings(Context& ctx, const PositivesEmbeddingsArgs& args);
namespace cuda { LossResult multi_label_softmax_from_embeddings(const PositivesEmbeddingsArgs& args); }
LossResult binary_cross_entropy_from_embeddings(Context& ctx, const PositivesEmbeddingsArgs& args);
namespace cuda { LossResult binary_cross_entropy_from_embeddings(const PositivesEmbeddingsArgs& args); }

// infoNCEFromEmbeddings, one-way or symmetric (CLIP: B = N, diagonal, no exclusions).
struct InfoNCEEmbeddingsArgs : EmbeddingsArgs {
  Csr positives;  // empty: the diagonal (query i ↔ key i; needs cols >= rows)
  Csr exclude;
  bool symmetric;
};
LossResult info_nce_from_embeddings(Context& ctx, const InfoNCEEmbeddingsArgs& args);
namespace cuda { LossResult info_nce_from_embeddings(const InfoNCEEmbeddingsArgs& args); }

// decoupledContrastiveFromEmbeddings: DCL, or DCLW with `sigma` (its weights need every row's
// positive score first: B dot products before the chunks).
struct DecoupledContrastiveEmbeddingsArgs : EmbeddingsArgs {
  Csr positives;  // exactly one per row, unweighted; empty: the diagonal
  Csr exclude;
  float sigma;    // > 0 for DCLW, 0 for DCL
};
LossResult decoupled_contrastive_from_embeddings(Context& ctx, const DecoupledContrastiveEmbeddingsArgs& args);
namespace cuda { LossResult decoupled_contrastive_from_embeddings(const DecoupledContrastiveEmbeddingsArgs& args); }

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

// ---------- label-sharded losses (docs/MATH.md §5) ----------
// One rank's block: columns [off, off + cols) of the rows × N scores (float32 on the host, where
// the TS caller converts a half block; any dtype on the device, widened as it is read). The
// per-row math between the exchanges is lib/sharded.ts's; these are the reads of the block, one
// per phase (lib/shardedMath.ts lists which loss uses which).

// A softmax-type loss's block: z = scale·x, or c·tanh(scale·x/c) with a softcap c.
struct ShardedSoftmaxBlock : ScoresArgs {
  float softcap;  // > 0, or 0 for none
  Csr skip;       // per row, local columns out of its softmax (sorted, unique), or empty
  const float* class_weights;  // cols (the shard's slice), or null: every w_j = 1
};

// The partials: per row, over the local entries that are in (not skipped, not −∞), the local
// maximum max_r of z and rest_r = Σ_j e^{z_j − max_r} − 1 (so the entries at the maximum keep
// their exact 1, MATH §2), and on request the sums that ride in the sum round.
struct ShardedRowStatsArgs : ShardedSoftmaxBlock {
  double* max;          // rows (−inf: no entry in)
  double* rest;         // rows
  double* lin;          // rows, or null: Σ_j w_j·z_j (label smoothing)
  double* exp_dscale;   // rows, or null: Σ_j e^{z_j − max_r}·dz_j/dscale
  double* lin_dscale;   // rows, or null: Σ_j w_j·dz_j/dscale
  int32_t* bad;         // 2: the first NaN/+inf entry (row, local column) in row order, or (−1, −1)
};
// A NaN/+inf score is reported in a.bad, not thrown, so that no rank is left waiting.
void sharded_row_stats(Context& ctx, const ShardedRowStatsArgs& a);

// The finish's dense gradient, from the row statistics merged across ranks:
//   grad_ij = (coef_i·e^{z_ij − max_i}/(1 + rest_i) − lin_i·w_j)·dz_ij/dx_ij
// over the entries that are in; skipped and −∞ entries, and rows with max_i = −inf or
// coef_i = lin_i = 0, get 0. The losses then write their own columns (labels, positives).
struct ShardedSoftmaxGradArgs : ShardedSoftmaxBlock {
  const double* max;   // rows: the global row maximum (one of the ranks' float z)
  const double* rest;  // rows: the global Σ_j e^{z_j − max_i} − 1
  const double* coef;  // rows
  const double* lin;   // rows, or null: all 0
  void* grad;          // rows × cols of grad_dtype (float32 on the host)
  DType grad_dtype;    // Float32, or the block's dtype (device)
};
void sharded_softmax_grad(Context& ctx, const ShardedSoftmaxGradArgs& a);

// infoNCE symmetric's columns: a rank holds whole columns, so each column's softmax over the B
// rows is local (the block is B × cols, z = scale·x).
struct ShardedColumnStatsArgs : ScoresArgs {
  double* max;   // cols: the column's max z (−inf: no entry in)
  double* rest;  // cols: Σ_i e^{z_ij − max_j} − 1
  int32_t* bad;  // 2: the first NaN/+inf entry (row, local column) in row order, or (−1, −1)
};
void sharded_column_stats(Context& ctx, const ShardedColumnStatsArgs& a);

// infoNCE symmetric's dense gradient, both softmaxes in one read:
//   grad_ij = (row_coef_i·e^{z_ij − row_max_i} + col_coef_j·e^{z_ij − col_max_j})·scale,
// 0 at −inf entries; LossResult::dscale is Σ_ij (grad_ij/scale)·x_ij (with grad null, that
// sum alone). The losses then write the diagonal.
struct ShardedSymmetricGradArgs : ScoresArgs {
  const double* row_max;   // rows
  const double* row_coef;  // rows
  const double* col_max;   // cols
  const double* col_coef;  // cols
  void* grad;              // rows × cols of grad_dtype (float32 on the host), or null
  DType grad_dtype;
};
LossResult sharded_symmetric_grad(Context& ctx, const ShardedSymmetricGradArgs& a);

// Soft top-k's block (softTopKLoss sharded): z = scale·x over the entries that are in.
struct ShardedTopKBlock : ScoresArgs {
  float alpha;  // > 0
  Csr exclude;  // local columns out of each row, or empty
};

// Phase 1: per row, max z, min z and the count of the entries that are in (−inf, +inf and 0
// for none).
struct ShardedTopKRangeArgs : ShardedTopKBlock {
  double* max;   // rows
  double* min;   // rows
  double* count; // rows
  int32_t* bad;  // 2: the first NaN/+inf entry (row, local column) in row order, or (−1, −1)
};
void sharded_topk_range(Context& ctx, const ShardedTopKRangeArgs& a);

// One Newton step's local split sums (MATH softTopK, native/ops/soft_topk_math.h) at each searching row's trial threshold.
struct ShardedTopKSumsArgs : ShardedTopKBlock {
  const int32_t* rows_at;  // the rows still searching
  int64_t searching;       // how many
  const double* t;         // searching: their trial thresholds
  float* sums;             // 5·searching: [#{a ≥ 0}, Σ_{a<0} p, Σ_{a≥0} (1 − p), Σ_{a<0} p(1 − p), Σ_{a≥0} p(1 − p)]
};
void sharded_topk_sums(Context& ctx, const ShardedTopKSumsArgs& a);

// The dense gradient coef_i·p(1 − p)·scale at the entries that are in (rows with coef_i = 0 are
// left as they are); LossResult::dscale is this block's Σ_ij coef_i·p(1 − p)·x_ij. The losses
// then add their positives' terms.
struct ShardedTopKGradArgs : ShardedTopKBlock {
  const double* t;     // rows: the thresholds
  const double* coef;  // rows
  void* grad;          // rows × cols of grad_dtype (float32 on the host)
  DType grad_dtype;
};
LossResult sharded_topk_grad(Context& ctx, const ShardedTopKGradArgs& a);

// The key-embedding form of the sharded losses (shardedLoss on { queries, keys }, MATH §5): the
// rank holds keys K_r (cols × dim) and the gathered queries; lib/sharded.ts takes S's rows in
// chunks and runs the block reads above on each. These are the GEMM core's two passes per chunk,
// on the host or (cuda/sharded.cu, every operand but the scales and the bias) on the device.
struct ShardedEmbeddingsChunk {
  const void* queries;     // query_rows × dim of queries_dtype: the host's float32 Q̂ (normalised by
                           // the caller with `normalize`), or the device's raw queries (the keys' dtype)
  DType queries_dtype;
  int64_t row0;            // the chunk's first row of queries (and of grad_queries)
  int64_t query_rows;
  const void* keys;        // cols × dim of keys_dtype: the rank's keys
  DType keys_dtype;
  int64_t rows, cols, dim;
  const float* key_scale;    // cols, or null: 1/max(‖k_j‖, 1e-12) with `normalize` (k̂_j = k_j·key_scale_j)
  const float* query_scale;  // rows (the chunk's), or null: q̂_i = q_i·query_scale_i (the device's `normalize`)
};
// scores (rows × cols float32) = q̂·k̂ᵀ + bias.
struct ShardedScoresArgs : ShardedEmbeddingsChunk {
  const float* bias;  // cols (the shard's slice), or null
  float* scores;      // rows × cols
};
void sharded_scores(Context& ctx, const ShardedScoresArgs& a);

// From the chunk's G = dL/dS: grad_keys += Gᵀ·q̂ (the gradient of k̂, times key_scale; the caller
// chains it through the normalisation), grad_bias += Σ_i G_ij, then rows [row0, row0 + rows) of
// grad_queries = G·k̂ (overwritten: dQ̂). G is scaled in place (it is the caller's scratch).
struct ShardedEmbeddingsGradArgs : ShardedEmbeddingsChunk {
  float* grad;          // rows × cols
  float* grad_queries;  // query_rows × dim
  float* grad_keys;     // cols × dim, added into (overwritten with overwrite_keys: the first chunk)
  bool overwrite_keys;
  float* grad_bias;     // cols, host, added into, or null
};
void sharded_embeddings_grad(Context& ctx, const ShardedEmbeddingsGradArgs& a);

// 1/max(‖x_r‖, 1e-12) of each row (F.normalize's), the norm summed in double over the widened
// elements: the device's `normalize` (the host form takes its norms in lib/shardedSource.ts).
struct ShardedNormsArgs {
  const void* x;  // rows × dim of dtype
  DType dtype;
  int64_t rows, dim;
  float* inv;     // rows, host
};
void sharded_norms(Context& ctx, const ShardedNormsArgs& a);

// The device form's end (the host's is lib/shardedSource.ts finishGrads): dQ̂ and A (the sums of
// the chunks' grad_queries and grad_keys) chained through the normalisation, MATH §3.9:
//   dq = (dq̂ − q̂ (q̂·dq̂))·query_scale,  dk = A − k̂ (k̂·A)   (plain dq̂·scale, A below eps),
// into grad_queries (grad_dtype) and grad_keys (float32), added to their contents with
// accumulate. grad_keys may be grad_keys_in (projected in place).
struct ShardedEmbeddingsFinishArgs {
  const void* queries;  // rows × dim of dtype
  const void* keys;     // cols × dim of dtype
  DType dtype;
  int64_t rows, cols, dim;
  const float* query_scale;      // rows, host, or null (no normalize)
  const float* key_scale;        // cols, host, or null
  const float* grad_queries_in;  // rows × dim float32: dQ̂
  void* grad_queries;            // rows × dim of grad_dtype
  DType grad_dtype;
  float* grad_keys_in;           // cols × dim float32: A, projected in place
  float* grad_keys;              // cols × dim float32
  bool accumulate;
};

// CUDA (cuda/sharded.cu): the block and grad on the device, of any dtype; skip and exclude
// lists, class weights and the per-row (per-column) arrays on the host (the launchers move them).
namespace cuda {
void sharded_row_stats(const ShardedRowStatsArgs& a);
void sharded_softmax_grad(const ShardedSoftmaxGradArgs& a);
void sharded_column_stats(const ShardedColumnStatsArgs& a);
LossResult sharded_symmetric_grad(const ShardedSymmetricGradArgs& a);
void sharded_topk_range(const ShardedTopKRangeArgs& a);
void sharded_topk_sums(const ShardedTopKSumsArgs& a);
LossResult sharded_topk_grad(const ShardedTopKGradArgs& a);
void sharded_scores(const ShardedScoresArgs& a);
void sharded_embeddings_grad(const ShardedEmbeddingsGradArgs& a);
void sharded_norms(const ShardedNormsArgs& a);
void sharded_embeddings_finish(const ShardedEmbeddingsFinishArgs& a);
}

// A device block's entries read or written by flat index (the labels' and positives' scores
// phase 1 picks, the finish's own entries): lib/sharded.ts's element reads of a host block.
struct ShardedGatherArgs {
  const void* block;    // rows × cols of dtype (float32 on the host)
  DType dtype;
  int64_t size;         // rows·cols
  const double* index;  // count flat indices in [0, size)
  int64_t count;
  float* values;        // count, host
};
struct ShardedScatterArgs {
  void* block;          // rows × cols of dtype (float32 on the host)
  DType dtype;
  int64_t size;
  const double* index;
  int64_t count;
  const float* values;
};
void sharded_gather(Context& ctx, const ShardedGatherArgs& a);
void sharded_scatter(Context& ctx, const ShardedScatterArgs& a);
namespace cuda {
void sharded_gather(const ShardedGatherArgs& a);
void sharded_scatter(const ShardedScatterArgs& a);
}

// softTopKLossFromEmbeddings: softTopKLoss's options on S = Q·Kᵀ.
struct SoftTopKLossEmbeddingsArgs : EmbeddingsArgs, TopKSolve {
  Csr positives;
};
// The threshold needs the whole row: row chunks only.
LossResult soft_topk_loss_from_embeddings(Context& ctx, const SoftTopKLossEmbeddingsArgs& args);
namespace cuda { LossResult soft_topk_loss_from_embeddings(const SoftTopKLossEmbeddingsArgs& args); }

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
