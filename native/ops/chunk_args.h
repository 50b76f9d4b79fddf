// What both drivers of the losses from embeddings (native/ops/embeddings.cpp, cuda/embeddings.cu)
// hand each loss's matrix-form op, written once: the argument checks made before any work, and
// for a chunk of S's rows idx[0..rows) the op's arguments, with the loss's CSRs and per-row
// options re-based to the chunk. A chunk object owns the arrays its `args` point into, so it is
// not copied and lives as long as the call that uses them. Host memory.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../api/args.h"
#include "../api/error.h"
#include "chunk_csr.h"
#include "cross_entropy.h"

namespace fl {

// A chunk's own LossArgs, which the loss's op runs on: its fp32 scores S_c (rows × N), their
// gradient in place when one is wanted, reduction 'none' with each row's upstream factor as its
// gradOutput (so the chunk's gradient rows are exactly the batch's), its row losses into
// `row_loss`.
inline LossArgs chunk_loss_args(const EmbeddingsArgs& a, float* scores, int64_t rows, int64_t N, const float* upstream, bool want_grad, float* row_loss) {
  LossArgs chunk{};
  chunk.scores = scores;
  chunk.dtype = DType::Float32;
  chunk.rows = rows;
  chunk.cols = N;
  chunk.scale = a.scale;
  chunk.reduction = Reduction::None;
  chunk.grad_output = upstream;
  chunk.grad = want_grad ? scores : nullptr;
  chunk.grad_dtype = DType::Float32;
  chunk.grad_scale = a.grad_scale;
  chunk.row_loss = row_loss;
  return chunk;
}

struct ChunkOwner {
  ChunkOwner() = default;
  ChunkOwner(const ChunkOwner&) = delete;
  ChunkOwner& operator=(const ChunkOwner&) = delete;
};

// The losses over CSR positives (decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy).
struct PositivesChunk : ChunkOwner {
  ChunkCsr pos, ex;
  PositivesLossArgs args{};
  PositivesChunk(const PositivesEmbeddingsArgs& a, const LossArgs& chunk, const int64_t* idx)
      : pos(a.positives, idx, chunk.rows), ex(a.exclude, idx, chunk.rows) {
    static_cast<LossArgs&>(args) = chunk;
    args.positives = pos.view();
    args.exclude = ex.view();
  }
};

// One-way InfoNCE: the given positives, or the chunk's rows' diagonal ones.
struct InfoNCEChunk : ChunkOwner {
  ChunkCsr pos, ex;
  InfoNCEArgs args{};
  InfoNCEChunk(const InfoNCEEmbeddingsArgs& a, const LossArgs& chunk, const int64_t* idx)
      : pos(a.positives ? ChunkCsr(a.positives, idx, chunk.rows) : ChunkCsr(idx, chunk.rows)), ex(a.exclude, idx, chunk.rows) {
    static_cast<LossArgs&>(args) = chunk;
    args.positives = pos.view();
    args.exclude = ex.view();
  }
};

// DCL/DCLW: `w` holds DCLW's weights of all B rows (empty for plain DCL), computed beforehand.
struct DecoupledContrastiveChunk : ChunkOwner {
  ChunkCsr pos, ex;
  std::vector<double> weights;
  DecoupledContrastiveArgs args{};
  DecoupledContrastiveChunk(const DecoupledContrastiveEmbeddingsArgs& a, const LossArgs& chunk, const int64_t* idx, const std::vector<double>& w)
      : pos(a.positives ? ChunkCsr(a.positives, idx, chunk.rows) : ChunkCsr(idx, chunk.rows)), ex(a.exclude, idx, chunk.rows) {
    for (int64_t r = 0; r < chunk.rows && !w.empty(); ++r) weights.push_back(w[size_t(idx[r])]);
    static_cast<LossArgs&>(args) = chunk;
    args.positives = pos.view();
    args.exclude = ex.view();
    args.sigma = a.sigma;
    args.row_weights = w.empty() ? nullptr : weights.data();
  }
};

// softTopKLoss: the solver's options, and k per row when given.
struct SoftTopKLossChunk : ChunkOwner {
  ChunkCsr pos, ex;
  std::vector<int32_t> k;
  SoftTopKLossArgs args{};
  SoftTopKLossChunk(const SoftTopKLossEmbeddingsArgs& a, const LossArgs& chunk, const int64_t* idx)
      : pos(a.positives, idx, chunk.rows), ex(a.exclude, idx, chunk.rows) {
    if (a.k_rows)
      for (int64_t r = 0; r < chunk.rows; ++r) k.push_back(a.k_rows[idx[r]]);
    static_cast<LossArgs&>(args) = chunk;
    static_cast<TopKSolve&>(args) = a;
    args.k_rows = a.k_rows ? k.data() : nullptr;
    args.exclude = ex.view();
    args.positives = pos.view();
  }
};

// linearCrossEntropy: the chunk's labels, and its rows' lse, which `scatter_lse` puts back in
// the caller's array.
struct CrossEntropyChunk : ChunkOwner {
  std::vector<int32_t> labels;
  std::vector<float> lse;
  CrossEntropyArgs args{};
  CrossEntropyChunk(const LinearCrossEntropyArgs& a, const LossArgs& chunk, const int64_t* idx)
      : labels(static_cast<size_t>(chunk.rows)), lse(static_cast<size_t>(chunk.rows)) {
    for (int64_t r = 0; r < chunk.rows; ++r) labels[size_t(r)] = a.labels[idx[r]];
    static_cast<LossArgs&>(args) = chunk;
    args.labels = labels.data();
    args.ignore_index = a.ignore_index;
    args.softcap = a.softcap;
    args.label_smoothing = a.label_smoothing;
    args.class_weights = a.class_weights;
    args.z_loss = a.z_loss;
    args.lse = lse.data();
  }
  void scatter_lse(const LinearCrossEntropyArgs& a, const int64_t* idx) const {
    if (a.lse)
      for (int64_t r = 0; r < args.rows; ++r) a.lse[idx[r]] = lse[size_t(r)];
  }
};

// linearCrossEntropy as the driver sees it: the hidden states are the queries, the weight's rows
// the keys.
inline EmbeddingsArgs linear_as_embeddings(const LinearCrossEntropyArgs& a) {
  EmbeddingsArgs e{};
  e.queries = a.hidden;
  e.keys = a.weight;
  e.dtype = a.dtype;
  e.rows = a.rows, e.dim = a.dim, e.cols = a.classes;
  e.normalize = false;
  e.scale = a.scale;
  e.reduction = a.reduction;
  e.grad_output = a.grad_output;
  e.grad_queries = a.grad_hidden;
  e.grad_dtype = a.grad_dtype;
  e.grad_keys = a.grad_weight;
  e.accumulate = a.accumulate;
  e.grad_scale = a.grad_scale;
  e.row_loss = a.row_loss;
  e.memory_budget = a.memory_budget;
  e.bias = a.bias;
  e.grad_bias = a.grad_bias;
  return e;
}

// linearCrossEntropy's labels checked (ERR_LABEL_RANGE) and its 'mean' denominator formed over
// every row; the ignored rows' lse is NaN (not computed: they cost no matrix work).
inline CrossEntropyTotals linear_cross_entropy_totals(const LinearCrossEntropyArgs& a) {
  CrossEntropyArgs whole{};
  whole.rows = a.rows;
  whole.cols = a.classes;
  whole.labels = a.labels;
  whole.ignore_index = a.ignore_index;
  whole.class_weights = a.class_weights;
  const CrossEntropyTotals totals = cross_entropy_totals(whole);
  if (a.lse)
    for (int64_t i = 0; i < a.rows; ++i)
      if (a.labels[i] == a.ignore_index) a.lse[i] = NAN;
  return totals;
}

// linearCrossEntropy's NaN/+inf error: the driver's queries and keys are hidden and weight here
// (and the bias).
[[noreturn]] inline void fail_linear_non_finite(const LinearCrossEntropyArgs& a, int64_t row, int64_t col) {
  fail_non_finite_product(std::string("scores hidden·weightᵀ") + (a.bias ? " + bias" : ""), "hidden", "weight", row, col);
}

// infoNCEFromEmbeddings' shape and option checks (symmetric: a square S with the diagonal
// positives; one-way with diagonal positives: N ≥ B).
inline void check_info_nce_embeddings(const InfoNCEEmbeddingsArgs& a) {
  if (a.symmetric) {
    if (a.rows != a.cols)
      fail(err::kShape, "keys: symmetric InfoNCE expects as many keys as queries, received " + std::to_string(a.rows) + " queries and " +
                            std::to_string(a.cols) + " keys");
    if (a.positives || a.exclude) fail(err::kArg, "symmetric: expected the diagonal positives and no exclusions (CLIP)");
  } else if (!a.positives && a.cols < a.rows) {
    fail(err::kShape, "keys: diagonal positives expect at least as many keys as queries, received " + std::to_string(a.rows) + " queries and " +
                          std::to_string(a.cols) + " keys");
  }
}

}  // namespace fl
