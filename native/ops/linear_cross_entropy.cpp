// linearCrossEntropy on the CPU (see linear_cross_entropy.h), Cut Cross-Entropy's idea with a
// CPU's cache sizes: S is never held for all rows at once.
//
// The rows that are not ignored (ignored rows cost no matrix work) are taken in chunks, and one
// of two strategies runs, picked by the plan from the budget:
//
// Row chunks × all N columns, when the budget holds the scores of a whole chunk of rows (at
// least kMinChunkRows rows, or every row): each chunk of R rows does
//   S  = H_c·Wᵀ (+ b)                    GEMM 1 (scores, fp32)
//   G  = dL/dS, in place in S            the per-row cross-entropy engine (softmax_rows.h),
//                                        the same code as softmaxCrossEntropy on given scores
//   dH_c = G·W                           GEMM 2
//   dW += Gᵀ·H_c,  db += Σ_rows G        GEMM 3 and a column sum
// Three GEMMs of 2·R·N·D flops: S is computed once. This is the cheaper strategy; the default
// budget (32 MiB) gives it 235 rows at N = 32768 and 64 rows up to N ≈ 120k.
//
// Column tiles, when it does not (a vocabulary so large that few rows of S fit): each chunk of
// rows sweeps W in tiles of T columns twice. Sweep 1 computes each tile's scores and folds them
// into every row's running max and Σ exp (and Σ w·z for smoothing) while the tile is in cache;
// the rows' loss terms follow. Sweep 2 recomputes each tile (bitwise the same scores), forms G
// for it with the same SIMD gradient kernel the engine uses, and adds dH_c += G_t·W_t,
// dW_t += G_tᵀ·H_c, db_t. Four GEMMs instead of three, but each keeps hundreds of rows, so
// dW is not re-read and re-written for every few rows as tiny row chunks would make it.
//
// Either way nothing of size B×N exists, and the scratch stays within the budget.
//
// Every sum runs in a fixed order (the GEMMs per C entry over K, chunks in row order, db over
// rows in order), so results do not depend on the thread count. Chunks of at least kGemmKc rows
// are multiples of it, which keeps dW's order the same whatever the chunking; a budget too small
// for that (under 256 rows) changes the order of dW's terms, and dScale's per-chunk partials.
#include "linear_cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../api/error.h"
#include "../core/context.h"
#include "../core/parallel.h"
#include "../core/rowmath.h"
#include "../gemm/gemm.h"
#include "../isa/kernels.h"
#include "cross_entropy.h"
#include "cross_entropy_math.h"
#include "softmax_rows.h"

namespace fl {

namespace {

// Column tiles are at least this wide (narrower ones would spend their time in overheads).
constexpr int64_t kColumnTileMin = 256;
// Row chunks need room for this many rows of S (or every row): each chunk re-reads and
// re-writes dW (N×D) for 2·R·N·D flops, 4/R bytes a flop, which stops mattering around here.
constexpr int64_t kMinChunkRows = 64;

// Per-call bookkeeping besides the big buffers: the engine keeps per-row vectors and, for rows of
// up to kRowTile columns, a thread-local copy of the row's exponentials (4·N bytes a thread).
int64_t fixed_scratch(const Context& ctx, int64_t classes) {
  const int64_t threads = ctx.pool.threads();
  return threads * (gemm_scratch_bytes(ctx) + 4 * std::min(classes, kRowTile) + 4096) + (int64_t(64) << 10);
}
// Bytes per chunk row: its scores (fp32), H_c and dH_c (fp32), the engine's per-row state.
int64_t row_scratch(int64_t classes, int64_t dim) { return 4 * classes + 8 * dim + 64 + 16 * tiles_per_row(classes); }

template <class T>
void widen_row(const void* src, int64_t row, int64_t dim, float* dst) {
  const T* s = static_cast<const T*>(src) + row * dim;
  for (int64_t k = 0; k < dim; ++k) dst[k] = to_float(s[k]);
}

[[noreturn]] void non_finite(const LinearCrossEntropyArgs& a, int64_t row, int64_t col) {
  fail(err::kNonFinite, "scores hidden·weightᵀ" + std::string(a.bias ? " + bias" : "") + ": expected finite values, received NaN or +Infinity at [" +
                             std::to_string(row) + ", " + std::to_string(col) + "] (check hidden row " + std::to_string(row) + " and weight row " +
                             std::to_string(col) + ")");
}

// H_c: the chunk's rows of hidden, widened to fp32 (the GEMMs' A operand is fp32; W is widened
// while it is packed).
void gather_hidden(Context& ctx, const LinearCrossEntropyArgs& a, const int64_t* idx, int64_t rows, float* h) {
  const int64_t D = a.dim;
  ctx.pool.parallel_for(rows, [&](int64_t r) {
    float* dst = h + r * D;
    if (a.dtype == DType::Float32) std::memcpy(dst, static_cast<const float*>(a.hidden) + idx[r] * D, size_t(D) * sizeof(float));
    else if (a.dtype == DType::Float16) widen_row<f16_t>(a.hidden, idx[r], D, dst);
    else widen_row<bf16_t>(a.hidden, idx[r], D, dst);
  });
}

// The chunk's dH rows into gradHidden (added with `accumulate`), rounded once to its dtype.
void scatter_grad_hidden(Context& ctx, const LinearCrossEntropyArgs& a, const int64_t* idx, int64_t rows, const float* dh) {
  const int64_t D = a.dim;
  ctx.pool.parallel_for(rows, [&](int64_t r) {
    const float* src = dh + r * D;
    const int64_t off = idx[r] * D;
    if (a.grad_dtype == DType::Float32) {
      float* dst = static_cast<float*>(a.grad_hidden) + off;
      for (int64_t k = 0; k < D; ++k) dst[k] = a.accumulate ? dst[k] + src[k] : src[k];
    } else if (a.dtype == DType::Float16) {
      f16_t* dst = static_cast<f16_t*>(a.grad_hidden) + off;
      for (int64_t k = 0; k < D; ++k) dst[k] = to_f16(a.accumulate ? to_float(dst[k]) + src[k] : src[k]);
    } else {
      bf16_t* dst = static_cast<bf16_t*>(a.grad_hidden) + off;
      for (int64_t k = 0; k < D; ++k) dst[k] = to_bf16(a.accumulate ? to_float(dst[k]) + src[k] : src[k]);
    }
  });
}

// db[j0, j0 + cols) += Σ_rows g (row stride ld): column stripes over the pool, rows in order.
void add_column_sums(Context& ctx, const float* g, int64_t rows, int64_t cols, int64_t ld, float* db) {
  constexpr int64_t kStripe = 4096;
  ctx.pool.parallel_for((cols + kStripe - 1) / kStripe, [&](int64_t t) {
    const int64_t j0 = t * kStripe, j1 = std::min(cols, j0 + kStripe);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = j0; j < j1; ++j) db[j] += g[r * ld + j];
  });
}

// The column-tile strategy (see the top of this file) for one chunk of rows; returns its Σℓ
// and dScale, and writes its row losses, lse and gradients.
struct ChunkResult {
  double loss, dscale;
};
ChunkResult column_tiles(Context& ctx, const LinearCrossEntropyArgs& a, const CrossEntropyTotals& totals, const int64_t* idx, int64_t rows,
                         int64_t T, const float* h, float* s, float* dh) {
  const int64_t D = a.dim, N = a.classes;
  const CpuKernels& K = *ctx.kernels;
  const bool cap = a.softcap > 0;
  const TileStatsFn stats_fn = K.tile_stats[int(DType::Float32)][stats_variant(cap, a.label_smoothing > 0)];
  const TileExpGradFn grad_fn = K.tile_exp_grad[int(DType::Float32)][grad_variant(cap, DType::Float32)];
  const bool want_grad = a.grad_hidden || a.grad_weight || a.grad_bias;
  const int64_t wsize = dtype_size(a.dtype);
  std::vector<MaxSumExp<double>> acc(size_t(rows), max_sum_exp_empty<double>());
  std::vector<double> lin(size_t(rows), 0.0), row_dscale(size_t(rows), 0.0);
  std::vector<float> label_x(size_t(rows), 0.f), label_dz(size_t(rows), 0.f);
  std::vector<int64_t> bad(size_t(rows), -1);
  std::vector<DenseTerms> terms(static_cast<size_t>(rows));

  // The tile's scores, S_t = H_c·W_tᵀ (+ b_t), rows × cols with row stride cols: the same GEMM
  // blocks and K order on both sweeps, so the second sees bitwise the first's scores.
  auto scores = [&](int64_t j0, int64_t cols) {
    gemm(ctx, rows, cols, D, GemmOperand{h, DType::Float32, D, false},
         GemmOperand{static_cast<const char*>(a.weight) + j0 * D * wsize, a.dtype, D, true}, s, cols, false);
    if (a.bias)
      ctx.pool.parallel_for(rows, [&](int64_t r) {
        for (int64_t j = 0; j < cols; ++j) s[r * cols + j] += a.bias[j0 + j];
      });
  };
  // Sweep 1: every row's running statistics, tile by tile (merged in tile order).
  for (int64_t j0 = 0; j0 < N; j0 += T) {
    const int64_t cols = std::min(T, N - j0);
    scores(j0, cols);
    ctx.pool.parallel_for(rows, [&](int64_t r) {
      if (bad[size_t(r)] >= 0) return;
      const float* row = s + r * cols;
      const TileMaxSumExp t = stats_fn(StatsTile{row, cols, a.scale, a.softcap, a.class_weights ? a.class_weights + j0 : nullptr, nullptr, nullptr});
      if (t.first_bad >= 0) {
        bad[size_t(r)] = j0 + t.first_bad;
        return;
      }
      merge(acc[size_t(r)], MaxSumExp<double>{t.max, t.rest});
      lin[size_t(r)] += t.lin;
      const int64_t y = a.labels[idx[r]];
      if (y >= j0 && y < j0 + cols) label_x[size_t(r)] = row[y - j0];
    });
  }
  for (int64_t r = 0; r < rows; ++r)
    if (bad[size_t(r)] >= 0) non_finite(a, idx[r], bad[size_t(r)]);

  // The rows' loss and gradient terms (as the engine's CrossEntropyLoss::terms, on merged stats).
  const double u_mean = totals.weight_sum > 0 ? 1.0 / totals.weight_sum : 0.0;
  double total = 0;
  auto label_entry = [&](float x, float* z, float* dzdx, float* dzds) {
    if (cap) {
      float sech2;
      tanh_sech2(a.scale * x / a.softcap, &sech2);
      *z = K.softcap(x, a.scale, a.softcap), *dzdx = a.scale * sech2, *dzds = x * sech2;
    } else {
      *z = a.scale * x, *dzdx = a.scale, *dzds = x;
    }
  };
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = idx[r];
    const RowStats st{acc[size_t(r)].max, acc[size_t(r)].rest, lin[size_t(r)]};
    const double lse = st.lse();
    if (a.lse) a.lse[i] = float(lse);
    float z, dzdx, dzds;
    label_entry(label_x[size_t(r)], &z, &dzdx, &dzds);
    const int32_t y = a.labels[i];
    const double u = a.reduction == Reduction::Mean ? u_mean : a.reduction == Reduction::None && a.grad_output ? double(a.grad_output[i]) : 1.0;
    const LabelTerms lt = label_terms(z == st.max, st.rest, lse, double(z));
    const CrossEntropyRow row = cross_entropy_row(lse, lt.margin, lt.p_minus_one, st.lin, a.class_weights ? a.class_weights[y] : 1.0,
                                                  totals.mean_class_weight, double(N), a.label_smoothing, a.z_loss, u);
    a.row_loss[i] = float(row.loss);
    total += double(float(row.loss));
    label_dz[size_t(r)] = row.label_dz;
    DenseTerms t{st.max, float(double(row.coef) * st.inv_sum()), 0.f, 0.f};
    if (a.class_weights) t.colw_coef = -row.smooth;
    else t.bias = -row.smooth;
    terms[size_t(r)] = t;
  }
  if (!want_grad && !a.grad_scale) return {total, 0.0};

  // Sweep 2: each tile again, G_t in place, and its share of every gradient.
  for (int64_t j0 = 0; j0 < N; j0 += T) {
    const int64_t cols = std::min(T, N - j0);
    scores(j0, cols);
    ctx.pool.parallel_for(rows, [&](int64_t r) {
      float* row = s + r * cols;
      const DenseTerms& t = terms[size_t(r)];
      const float* colw = a.class_weights ? a.class_weights + j0 : nullptr;
      double d = grad_fn(ExpGradTile{row, want_grad ? row : nullptr, cols, a.scale, a.softcap, t.shift, t.coef, t.bias, colw, t.colw_coef,
                                     nullptr, nullptr, a.grad_scale, false});
      const int64_t y = a.labels[idx[r]];
      if (y >= j0 && y < j0 + cols) {
        // The label's whole dℓ/dz comes from the row terms, rounded once (the engine's correct()).
        float z, dzdx, dzds;
        label_entry(label_x[size_t(r)], &z, &dzdx, &dzds);
        const float dense = t.coef * std::exp(z - t.shift) + t.bias + (colw ? t.colw_coef * colw[y - j0] : 0.f);
        if (want_grad) row[y - j0] = label_dz[size_t(r)] * dzdx;
        d += double(label_dz[size_t(r)] - dense) * double(dzds);
      }
      row_dscale[size_t(r)] += d;
    });
    if (!want_grad) continue;
    if (a.grad_hidden)
      gemm(ctx, rows, D, cols, GemmOperand{s, DType::Float32, cols, false},
           GemmOperand{static_cast<const char*>(a.weight) + j0 * D * wsize, a.dtype, D, false}, dh, D, j0 > 0);
    if (a.grad_weight)
      gemm(ctx, cols, D, rows, GemmOperand{s, DType::Float32, cols, true}, GemmOperand{h, DType::Float32, D, false}, a.grad_weight + j0 * D, D,
           true);
    if (a.grad_bias) add_column_sums(ctx, s, rows, cols, cols, a.grad_bias + j0);
  }
  if (a.grad_hidden) scatter_grad_hidden(ctx, a, idx, rows, dh);
  double dscale = 0;
  for (double d : row_dscale) dscale += d;
  return {total, dscale};
}

}  // namespace

LinearCrossEntropyPlan linear_cross_entropy_plan(const Context& ctx, const LinearCrossEntropyArgs& a, int64_t active) {
  const int64_t fixed = fixed_scratch(ctx, a.classes), per_row = row_scratch(a.classes, a.dim);
  const int64_t fit = a.memory_budget > fixed ? (a.memory_budget - fixed) / per_row : 0;
  if (fit < std::min<int64_t>(std::max<int64_t>(active, 1), kMinChunkRows) && a.classes > kColumnTileMin) {
    // Column tiles: up to kGemmKc rows, tiles as wide as the rest of the budget allows.
    const int64_t row_state = 8 * a.dim + 64 + 64;  // H_c, dH_c, the row's statistics and terms
    const int64_t min_cols = kColumnTileMin;
    int64_t rows = std::min<int64_t>(std::max<int64_t>(active, 1), kGemmKc);
    const int64_t room = a.memory_budget - fixed;
    if (room > 0) rows = std::min(rows, room / (4 * min_cols + row_state));
    if (room <= 0 || rows < 1)
      fail(err::kArg, "opts.memoryBudget: expected at least " + std::to_string(fixed + 4 * min_cols + row_state) +
                          " bytes (one row of a " + std::to_string(min_cols) + "-column score tile and the GEMM's panels), received " +
                          std::to_string(a.memory_budget));
    int64_t cols = std::min(a.classes, (room - rows * row_state) / (4 * rows));
    // Tiles of whole K slices keep dH's sums in the order one tile would give them.
    if (cols >= kGemmKc && cols < a.classes) cols -= cols % kGemmKc;
    return {rows, cols, fixed + rows * (row_state + 4 * cols)};
  }
  if (fit < 1)
    fail(err::kArg, "opts.memoryBudget: expected at least " + std::to_string(fixed + per_row) + " bytes (one row of " +
                        std::to_string(a.classes) + " scores and the GEMM's panels), received " + std::to_string(a.memory_budget));
  int64_t rows = std::max<int64_t>(1, std::min(active, fit));
  if (rows < active) {
    // Chunks of a multiple of the GEMM's K slice add dW's terms in the same order as one chunk
    // would (C += slice by slice), so the result does not depend on the budget (nor on the
    // thread count, whose panels the budget pays for). Below one slice: equal chunks.
    if (rows >= kGemmKc) rows -= rows % kGemmKc;
    else rows = (active + (active + rows - 1) / rows - 1) / ((active + rows - 1) / rows);
  }
  return {rows, a.classes, fixed + rows * per_row};
}

LossResult linear_cross_entropy(Context& ctx, const LinearCrossEntropyArgs& a) {
  const int64_t B = a.rows, D = a.dim, N = a.classes;
  // Labels are checked (ERR_LABEL_RANGE) and the 'mean' denominator formed over every row.
  CrossEntropyArgs whole{};
  whole.rows = B;
  whole.cols = N;
  whole.labels = a.labels;
  whole.ignore_index = a.ignore_index;
  whole.class_weights = a.class_weights;
  const CrossEntropyTotals totals = cross_entropy_totals(whole);

  std::vector<int64_t> active;
  active.reserve(size_t(B));
  for (int64_t i = 0; i < B; ++i) {
    if (a.labels[i] != a.ignore_index) active.push_back(i);
    else {
      a.row_loss[i] = 0.f;
      if (a.lse) a.lse[i] = NAN;
    }
  }
  const int64_t hsize = dtype_size(a.grad_dtype);
  if (a.grad_hidden && !a.accumulate) std::memset(a.grad_hidden, 0, size_t(B * D * hsize));
  if (a.grad_weight && !a.accumulate) std::memset(a.grad_weight, 0, size_t(N * D) * sizeof(float));
  if (a.grad_bias && !a.accumulate) std::memset(a.grad_bias, 0, size_t(N) * sizeof(float));
  if (active.empty() || N == 0) return {0.0, 0.0};

  const LinearCrossEntropyPlan plan = linear_cross_entropy_plan(ctx, a, int64_t(active.size()));
  const int64_t R = plan.chunk_rows;
  const bool want_grad = a.grad_hidden || a.grad_weight || a.grad_bias;
  std::vector<float> s(static_cast<size_t>(R * plan.tile_cols)), h(static_cast<size_t>(R * D)),
      dh(a.grad_hidden ? static_cast<size_t>(R * D) : 0);
  double total = 0, dscale = 0;
  if (plan.tile_cols < N) {
    for (size_t c0 = 0; c0 < active.size(); c0 += size_t(R)) {
      const int64_t rows = std::min<int64_t>(R, int64_t(active.size() - c0));
      gather_hidden(ctx, a, active.data() + c0, rows, h.data());
      const ChunkResult part = column_tiles(ctx, a, totals, active.data() + c0, rows, plan.tile_cols, h.data(), s.data(), dh.data());
      total += part.loss;
      dscale += part.dscale;
    }
    if (a.reduction == Reduction::Mean) total = totals.weight_sum > 0 ? total / totals.weight_sum : 0.0;
    return {total, a.grad_scale ? dscale : 0.0};
  }

  std::vector<int32_t> labels(static_cast<size_t>(R));
  std::vector<float> upstream(static_cast<size_t>(R)), row_loss(static_cast<size_t>(R)), lse(static_cast<size_t>(R));
  const double u_mean = totals.weight_sum > 0 ? 1.0 / totals.weight_sum : 0.0;
  for (size_t c0 = 0; c0 < active.size(); c0 += size_t(R)) {
    const int64_t rows = std::min<int64_t>(R, int64_t(active.size() - c0));
    const int64_t* idx = active.data() + c0;
    gather_hidden(ctx, a, idx, rows, h.data());
    for (int64_t r = 0; r < rows; ++r) {
      labels[size_t(r)] = a.labels[idx[r]];
      upstream[size_t(r)] = float(a.reduction == Reduction::Mean                          ? u_mean
                                  : a.reduction == Reduction::None && a.grad_output ? double(a.grad_output[idx[r]])
                                                                                    : 1.0);
    }
    gemm(ctx, rows, N, D, GemmOperand{h.data(), DType::Float32, D, false}, GemmOperand{a.weight, a.dtype, D, true}, s.data(), N, false);
    if (a.bias)
      ctx.pool.parallel_for(rows, [&](int64_t r) {
        float* row = s.data() + r * N;
        for (int64_t j = 0; j < N; ++j) row[j] += a.bias[j];
      });

    // The per-row loss on the chunk, G = dL/dS in place. Reduction None with each row's upstream
    // factor as gradOutput gives exactly the rows of the whole batch's gradient.
    CrossEntropyArgs ce{};
    ce.scores = s.data();
    ce.dtype = DType::Float32;
    ce.rows = rows;
    ce.cols = N;
    ce.labels = labels.data();
    ce.ignore_index = a.ignore_index;
    ce.scale = a.scale;
    ce.softcap = a.softcap;
    ce.label_smoothing = a.label_smoothing;
    ce.class_weights = a.class_weights;
    ce.z_loss = a.z_loss;
    ce.reduction = Reduction::None;
    ce.grad_output = upstream.data();
    ce.grad = want_grad ? s.data() : nullptr;
    ce.grad_dtype = DType::Float32;
    ce.grad_scale = a.grad_scale;
    ce.row_loss = row_loss.data();
    ce.lse = lse.data();
    LossResult part;
    try {
      part = cross_entropy(ctx, ce);
    } catch (const Error& e) {
      if (e.code != err::kNonFinite) throw;
      long long r = 0, col = 0;
      const size_t at = std::string(e.what()).rfind('[');
      if (at != std::string::npos) std::sscanf(e.what() + at, "[%lld, %lld]", &r, &col);
      non_finite(a, idx[r], col);
    }
    for (int64_t r = 0; r < rows; ++r) {
      a.row_loss[idx[r]] = row_loss[size_t(r)];
      if (a.lse) a.lse[idx[r]] = lse[size_t(r)];
      total += double(row_loss[size_t(r)]);
    }
    dscale += part.dscale;
    if (!want_grad) continue;

    if (a.grad_hidden) {
      gemm(ctx, rows, D, N, GemmOperand{s.data(), DType::Float32, N, false}, GemmOperand{a.weight, a.dtype, D, false}, dh.data(), D, false);
      scatter_grad_hidden(ctx, a, idx, rows, dh.data());
    }
    if (a.grad_weight)
      gemm(ctx, N, D, rows, GemmOperand{s.data(), DType::Float32, N, true}, GemmOperand{h.data(), DType::Float32, D, false}, a.grad_weight, D,
           true);
    if (a.grad_bias) add_column_sums(ctx, s.data(), rows, N, N, a.grad_bias);
  }
  if (a.reduction == Reduction::Mean) total = totals.weight_sum > 0 ? total / totals.weight_sum : 0.0;
  return {total, a.grad_scale ? dscale : 0.0};
}

}  // namespace fl
