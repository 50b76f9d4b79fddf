#include "../api/args.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/context.h"
#include "../gemm/gemm.h"
#include "softmax_rows.h"

namespace fl {

namespace {

// A Loss for SoftmaxRows (softmax_rows.h) whose per-row terms are given: the engine's sweeps
// over a block whose rows' statistics come from elsewhere. `term(r, st)` gives row r's
// DenseTerms; rows where `on(r)` is false are left out (gradient 0).
template <class On, class Term>
struct GivenTerms {
  const Csr& skip_cols;
  On on;
  Term term;
  bool active(int64_t r) const { return on(r); }
  RowSkip skip(int64_t r) const {
    return skip_cols ? RowSkip{skip_cols.cols + skip_cols.begin(r), skip_cols.size(r)} : RowSkip{};
  }
  DenseTerms terms(int64_t r, const RowStats& st) const { return term(r, st); }
  double corrections(int64_t, const RowStats&, const DenseTerms&, const SoftmaxRows&) const { return 0; }
};
template <class On, class Term>
GivenTerms<On, Term> given_terms(const Csr& skip, On on, Term term) {
  return {skip, on, term};
}

SoftmaxProblem block_problem(const ShardedSoftmaxBlock& a, bool want_lin, void* grad, DType grad_dtype, bool grad_scale) {
  return SoftmaxProblem{ScoresArgs(a), a.softcap, a.class_weights, want_lin, grad, grad_dtype, grad_scale, "localScores"};
}

}  // namespace

void sharded_row_stats(Context& ctx, const ShardedRowStatsArgs& a) {
  const int64_t rows = a.rows;
  a.bad[0] = a.bad[1] = -1;
  if (a.cols == 0) {  // an empty shard: no entry in
    for (int64_t r = 0; r < rows; ++r) {
      a.max[r] = -INFINITY;
      a.rest[r] = 0;
      for (double* sum : {a.lin, a.exp_dscale, a.lin_dscale})
        if (sum) sum[r] = 0;
    }
    return;
  }
  auto all = [](int64_t) { return true; };
  auto none = [](int64_t, const RowStats&) { return DenseTerms{}; };
  std::vector<RowStats> st(static_cast<size_t>(rows));
  const SoftmaxRows stats(ctx, block_problem(a, a.lin != nullptr, nullptr, DType::Float32, false));
  auto loss = given_terms(a.skip, all, none);
  const int64_t bad = stats.row_stats(loss, st.data());
  a.bad[0] = bad < 0 ? -1 : int32_t(bad / a.cols);
  a.bad[1] = bad < 0 ? -1 : int32_t(bad % a.cols);
  for (int64_t r = 0; r < rows; ++r) {
    a.max[r] = st[size_t(r)].max;
    a.rest[r] = st[size_t(r)].rest;
    if (a.lin) a.lin[r] = st[size_t(r)].lin;
  }
  if (bad >= 0 || (!a.exp_dscale && !a.lin_dscale)) return;
  // The dScale sums are dense sweeps with no gradient stored (coef = 1 against the local
  // maximum; or the weights alone): the engine returns Σ_j dL/dz_j·dz_j/dscale per row.
  const SoftmaxRows sweeps(ctx, block_problem(a, false, nullptr, DType::Float32, true));
  auto in = [&](int64_t r) { return st[size_t(r)].max != -INFINITY; };
  if (a.exp_dscale) {
    auto e = given_terms(a.skip, in, [](int64_t, const RowStats& s) { return DenseTerms{s.max, 1.f, 0.f, 0.f}; });
    sweeps.run_given(e, st.data(), a.exp_dscale);
  }
  if (a.lin_dscale) {
    const bool w = a.class_weights != nullptr;
    auto l = given_terms(a.skip, in, [w](int64_t, const RowStats& s) { return DenseTerms{s.max, 0.f, w ? 0.f : 1.f, w ? 1.f : 0.f}; });
    sweeps.run_given(l, st.data(), a.lin_dscale);
  }
}

void sharded_softmax_grad(Context& ctx, const ShardedSoftmaxGradArgs& a) {
  if (a.rows * a.cols == 0) return;
  std::vector<RowStats> st(size_t(a.rows));
  for (int64_t r = 0; r < a.rows; ++r) st[size_t(r)] = RowStats{float(a.max[r]), a.rest[r], 0};
  const bool w = a.class_weights != nullptr;
  auto on = [&](int64_t r) { return a.max[r] != -INFINITY && (a.coef[r] != 0 || (a.lin && a.lin[r] != 0)); };
  // −lin_i·w_j: the class weights' term, or a constant bias without them.
  auto term = [&](int64_t r, const RowStats& s) {
    const float lin = a.lin ? float(-a.lin[r]) : 0.f;
    return DenseTerms{s.max, float(a.coef[r] * s.inv_sum()), w ? 0.f : lin, w ? lin : 0.f};
  };
  auto loss = given_terms(a.skip, on, term);
  std::vector<double> unused(size_t(a.rows));
  SoftmaxRows(ctx, block_problem(a, false, a.grad, a.grad_dtype, false)).run_given(loss, st.data(), unused.data());
}

// The key-embedding form's chunk passes (args.h ShardedEmbeddingsChunk): S = Q̂·k̂ᵀ + b with
// k̂ = diag(key_scale)·K, as <loss>FromEmbeddings forms it (GEMM on the raw keys, then the
// columns scaled), so the sharded and unsharded scores agree bit for bit on one thread count.
namespace {
void scale_columns(Context& ctx, float* m, int64_t rows, int64_t cols, const float* by) {
  ctx.pool.parallel_for(rows, [&](int64_t r) {
    float* row = m + r * cols;
    for (int64_t j = 0; j < cols; ++j) row[j] *= by[j];
  });
}
void scale_rows(Context& ctx, float* m, int64_t rows, int64_t cols, const float* by) {
  ctx.pool.parallel_for(rows, [&](int64_t r) {
    float* row = m + r * cols;
    for (int64_t j = 0; j < cols; ++j) row[j] *= by[r];
  });
}
// The chunk's rows of the host's float32 queries (napi/ops.cpp read_sharded_chunk checks the dtype).
const float* chunk_queries(const ShardedEmbeddingsChunk& a) { return static_cast<const float*>(a.queries) + a.row0 * a.dim; }
}  // namespace

void sharded_scores(Context& ctx, const ShardedScoresArgs& a) {
  if (a.rows * a.cols == 0) return;
  gemm(ctx, a.rows, a.cols, a.dim, GemmOperand{chunk_queries(a), DType::Float32, a.dim, false}, GemmOperand{a.keys, a.keys_dtype, a.dim, true}, a.scores, a.cols, false);
  if (a.query_scale) scale_rows(ctx, a.scores, a.rows, a.cols, a.query_scale);
  if (a.key_scale) scale_columns(ctx, a.scores, a.rows, a.cols, a.key_scale);
  if (a.bias)
    ctx.pool.parallel_for(a.rows, [&](int64_t r) {
      float* row = a.scores + r * a.cols;
      for (int64_t j = 0; j < a.cols; ++j) row[j] += a.bias[j];
    });
}

void sharded_embeddings_grad(Context& ctx, const ShardedEmbeddingsGradArgs& a) {
  const int64_t R = a.rows, N = a.cols, D = a.dim;
  if (R == 0) return;
  float* grad_queries = a.grad_queries + a.row0 * D;
  if (N == 0) {  // an empty shard contributes nothing to dQ
    std::fill(grad_queries, grad_queries + R * D, 0.f);
    return;
  }
  if (a.grad_bias) {
    // Σ_i G_ij as Gᵀ·1: the GEMM core's fixed summation order, no atomics.
    const std::vector<float> ones(size_t(R), 1.f);
    gemm(ctx, N, 1, R, GemmOperand{a.grad, DType::Float32, N, true}, GemmOperand{ones.data(), DType::Float32, 1, false}, a.grad_bias, 1, true);
  }
  // G' = G·diag(key_scale): dQ̂ = G'·K, and G'ᵀ·Q̂ = diag(key_scale)·dK̂, which the caller's
  // projection (dk = A − k̂(k̂·A)) takes as it is (MATH §3.9).
  if (a.key_scale) scale_columns(ctx, a.grad, R, N, a.key_scale);
  gemm(ctx, R, D, N, GemmOperand{a.grad, DType::Float32, N, false}, GemmOperand{a.keys, a.keys_dtype, D, false}, grad_queries, D, false);
  // G'ᵀ·q̂ with q̂ = diag(query_scale)·q: the rows scaled first.
  if (a.query_scale) scale_rows(ctx, a.grad, R, N, a.query_scale);
  gemm(ctx, N, D, R, GemmOperand{a.grad, DType::Float32, N, true}, GemmOperand{chunk_queries(a), DType::Float32, D, false}, a.grad_keys, D, !a.overwrite_keys);
}

void sharded_norms(Context& ctx, const ShardedNormsArgs& a) {
  ctx.pool.parallel_for(a.rows, [&](int64_t r) {
    double s = 0;
    for (int64_t k = r * a.dim; k < (r + 1) * a.dim; ++k) {
      const double v = load_element(a.x, a.dtype, k);
      s += v * v;
    }
    const double norm = std::sqrt(s);
    a.inv[r] = norm < 1e-12 ? float(1.0 / 1e-12) : float(1.0 / norm);
  });
}

void sharded_gather(Context&, const ShardedGatherArgs& a) {
  // Host blocks are float32 (napi/ops.cpp read_indexed).
  const float* block = static_cast<const float*>(a.block);
  for (int64_t k = 0; k < a.count; ++k) a.values[k] = block[int64_t(a.index[k])];
}
void sharded_scatter(Context&, const ShardedScatterArgs& a) {
  float* block = static_cast<float*>(a.block);
  for (int64_t k = 0; k < a.count; ++k) block[int64_t(a.index[k])] = a.values[k];
}

}  // namespace fl
