// <loss>FromEmbeddings and linearCrossEntropy on the CPU (see embeddings.h; docs/MATH.md §3.10). The losses of section 3
// are row-separable once S is known, so one driver serves them all: the rows that count are
// taken in chunks of R (as many as memoryBudget holds), and each chunk does
//   Q̂_c = the chunk's queries, widened to fp32 (divided by ‖q_i‖ with `normalize`)
//   S_c = Q̂_c·Kᵀ, columns times 1/‖k_j‖ with `normalize` (+ b) GEMM 1
//   G_c = dL/dS_c in place in S_c                               the loss's own matrix-form op
//   G'_c = G_c·diag(1/‖k_j‖) (normalize), else G_c
//   dQ̂_c = G'_c·K, chained through the row normalisation         GEMM 2
//   A += G'_cᵀ·Q̂_c, into gradKeys                               GEMM 3
//   db += Σ_rows G_c (linearCrossEntropy's bias)
// and at the end, with `normalize`, dk_j = A_j − k̂_j (k̂_j·A_j) (see §3.10: K̂ is never formed,
// so the scratch has no N×D term). The matrix-form op runs with reduction 'none' and each row's
// upstream factor (1/D for 'mean' over ALL rows, gradOutput_i, 1) as gradOutput, which gives
// exactly the rows of the whole batch's gradient; 'mean' divides the sum of row losses at the end.
//
// Column tiles. When the budget holds few rows of S (DEXML: 32 MiB is 8 rows of 10^6 scores,
// whose skinny GEMMs re-read and re-write dK for every 8 rows), a loss whose gradient needs only
// per-row statistics (the softmax-row engine's losses; bce, which is elementwise) runs instead
// on chunks of up to kGemmKc rows, each swept over K in tiles of T columns twice, Cut
// Cross-Entropy's way (score_tiles.h, SoftmaxRows::run_tiles):
//   sweep 1  S_t = Q̂_c·K_tᵀ (GEMM), folded into the rows' statistics while in cache
//   sweep 2  S_t again (bitwise the same), G_t in place, dQ̂_c += G'_t·K_t, dK_t += G'_tᵀ·Q̂_c
// Four GEMMs instead of three, each with hundreds of rows; no chunk of S reaches memory. Losses
// that need the whole row or column first (soft top-k's threshold, symmetric InfoNCE) keep row
// chunks. Every sum runs in a fixed order (GEMMs per C entry over K, tiles in column order,
// rows in order), so the results do not depend on the thread count, as long as the plan does
// not: the budget's fixed part counts each thread's GEMM panels, so a budget near a plan's edge
// can give another chunking (and dK's order) on another thread count.
#include "embeddings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../api/error.h"
#include "chunk_args.h"
#include "../core/context.h"
#include "../core/dtype.h"
#include "../gemm/gemm.h"
#include "../isa/kernels.h"
#include "contrastive.h"
#include "score_tiles.h"
#include "soft_topk.h"
#include "softmax_rows.h"

namespace fl {

namespace {

// F.normalize's eps: a vector shorter than this is divided by it instead (and its gradient is
// the plain 1/eps, no projection).
constexpr double kNormEps = 1e-12;
constexpr float kTinyInv = float(1.0 / kNormEps);

// Rows of keys per task in the O(N·D) passes (norms, the final projection).
constexpr int64_t kKeyBlock = 1024;

// Column tiles (see the top): taken when the budget holds fewer rows of S than this (or than
// the rows there are), for N above kColumnTileMin. Below ~64 rows each row chunk re-reads and
// re-writes dK (N×D) for 2·R·N·D flops, and that traffic dominates.
constexpr int64_t kMinChunkRows = 64;
constexpr int64_t kColumnTileMin = 256;
// A tile of S: rows × T fp32 of about this many bytes, to stay in L2 between its GEMM and the
// engine's pass (1024 columns at 256 rows).
constexpr int64_t kTileBytes = int64_t(1) << 20;

// Row `row` of a rows × dim matrix of `d`, widened to fp32.
void widen_row(const void* src, DType d, int64_t row, int64_t dim, float* dst) {
  with_dtype(d, [&](auto t) {
    const auto* s = static_cast<const decltype(t)*>(src) + row * dim;
    for (int64_t k = 0; k < dim; ++k) dst[k] = to_float(s[k]);
  });
}

// 1/max(‖v‖, eps), the norm summed in double.
float inv_norm(const float* v, int64_t n) {
  double s = 0;
  for (int64_t k = 0; k < n; ++k) s += double(v[k]) * double(v[k]);
  const double norm = std::sqrt(s);
  return norm < kNormEps ? kTinyInv : float(1.0 / norm);
}

int64_t fixed_scratch(const Context& ctx, const EmbeddingsArgs& a) {
  const int64_t threads = ctx.pool.threads();
  int64_t bytes = threads * (gemm_scratch_bytes(ctx) + 4 * std::min(a.cols, kRowTile) + 4096) + (int64_t(64) << 10);
  if (a.normalize) bytes += 4 * a.cols;                                // 1/‖k_j‖
  if (a.normalize && a.accumulate && a.grad_keys) bytes += 4 * a.cols;  // k̂_j·(gradKeys_j before the call)
  return bytes;
}
// Per chunk row: its scores (fp32), Q̂ and dQ̂ rows, the engine's per-row state.
int64_t row_scratch(const EmbeddingsArgs& a) { return 4 * a.cols + 8 * a.dim + 96 + 16 * tiles_per_row(a.cols); }
// Per chunk row of the column-tile plan, besides its tile row: Q̂ and dQ̂, statistics and terms.
int64_t tile_row_state(const EmbeddingsArgs& a) { return 8 * a.dim + 160; }

// S += b over rows × cols (row stride cols).
void add_bias(Context& ctx, const float* b, int64_t rows, int64_t cols, float* s) {
  ctx.pool.parallel_for(rows, [&](int64_t r) {
    for (int64_t j = 0; j < cols; ++j) s[r * cols + j] += b[j];
  });
}

// db[0, cols) += Σ_rows g (row stride cols): column stripes over the pool, rows in order.
void add_column_sums(Context& ctx, const float* g, int64_t rows, int64_t cols, float* db) {
  constexpr int64_t kStripe = 4096;
  ctx.pool.parallel_for((cols + kStripe - 1) / kStripe, [&](int64_t t) {
    const int64_t j0 = t * kStripe, j1 = std::min(cols, j0 + kStripe);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = j0; j < j1; ++j) db[j] += g[r * cols + j];
  });
}

// The chunk's scores, tile by tile, for SoftmaxRows::run_tiles (score_tiles.h).
class KeyTiles final : public ScoreTiles {
 public:
  KeyTiles(Context& ctx, const EmbeddingsArgs& a, const float* kinv, const float* h, int64_t rows, int64_t T, float* s, float* dh)
      : ctx_(ctx), a_(a), kinv_(kinv), h_(h), rows_(rows), T_(T), s_(s), dh_(dh) {}
  int64_t tile_cols() const override { return T_; }
  float* scores(int64_t c0, int64_t w) override {
    gemm(ctx_, rows_, w, a_.dim, GemmOperand{h_, DType::Float32, a_.dim, false}, keys(c0, true), s_, w, false);
    if (kinv_) scale_columns(c0, w);
    if (a_.bias) add_bias(ctx_, a_.bias + c0, rows_, w, s_);
    return s_;
  }
  void gradient(int64_t c0, int64_t w) override {
    const int64_t D = a_.dim;
    if (a_.grad_bias) add_column_sums(ctx_, s_, rows_, w, a_.grad_bias + c0);
    if (kinv_) scale_columns(c0, w);  // G' = G·diag(1/‖k‖)
    if (dh_) gemm(ctx_, rows_, D, w, GemmOperand{s_, DType::Float32, w, false}, keys(c0, false), dh_, D, c0 > 0);
    if (a_.grad_keys)
      gemm(ctx_, w, D, rows_, GemmOperand{s_, DType::Float32, w, true}, GemmOperand{h_, DType::Float32, D, false}, a_.grad_keys + c0 * D, D, true);
  }

 private:
  GemmOperand keys(int64_t c0, bool trans) const {
    return GemmOperand{static_cast<const char*>(a_.keys) + c0 * a_.dim * dtype_size(a_.dtype), a_.dtype, a_.dim, trans};
  }
  void scale_columns(int64_t c0, int64_t w) {
    ctx_.pool.parallel_for(rows_, [&](int64_t r) {
      float* row = s_ + r * w;
      for (int64_t j = 0; j < w; ++j) row[j] *= kinv_[c0 + j];
    });
  }
  Context& ctx_;
  const EmbeddingsArgs& a_;
  const float* kinv_;
  const float* h_;
  int64_t rows_, T_;
  float* s_;
  float* dh_;
};

[[noreturn]] void non_finite(int64_t row, int64_t col) { fail_non_finite_product("scores queries·keysᵀ (+ bias)", "query", "key", row, col); }

}  // namespace


EmbeddingsPlan embeddings_plan(const Context& ctx, const EmbeddingsArgs& a, int64_t active, bool column_tiles, int64_t extra_row_bytes,
                               int64_t extra_fixed_bytes) {
  const int64_t N = a.cols;
  const int64_t fixed = fixed_scratch(ctx, a) + extra_fixed_bytes, per_row = row_scratch(a) + extra_row_bytes;
  const int64_t fit = a.memory_budget > fixed ? (a.memory_budget - fixed) / per_row : 0;
  active = std::max<int64_t>(active, 1);
  if (column_tiles && fit < std::min(active, kMinChunkRows) && N > kColumnTileMin) {
    const int64_t state = tile_row_state(a) + extra_row_bytes, room = a.memory_budget - fixed;
    int64_t R = std::min(active, kGemmKc);
    if (room > 0) R = std::min(R, room / (4 * kColumnTileMin + state));
    if (room <= 0 || R < 1)
      fail(err::kArg, "opts.memoryBudget: expected at least " + std::to_string(fixed + 4 * kColumnTileMin + state) + " bytes (one row of a " +
                          std::to_string(kColumnTileMin) + "-column score tile and the GEMM's panels), received " + std::to_string(a.memory_budget));
    if (R < active && R < kGemmKc) R = (active + (active + R - 1) / R - 1) / ((active + R - 1) / R);  // equal chunks
    int64_t T = std::min({N, std::max(kColumnTileMin, kTileBytes / (4 * R)), (room - R * state) / (4 * R)});
    // Tiles of whole K slices keep dQ's sums in the order one tile would give them (whatever T).
    if (T < N) T -= T % (T >= kGemmKc ? kGemmKc : 16);
    return {R, T, fixed + R * (state + 4 * T)};
  }
  if (fit < 1)
    fail(err::kArg, "opts.memoryBudget: expected at least " + std::to_string(fixed + per_row) + " bytes (one row of " + std::to_string(N) +
                        " scores and the GEMM's panels), received " + std::to_string(a.memory_budget));
  // As many rows as the budget holds. Chunks of a multiple of the GEMM's K slice add dK's terms
  // in the order one chunk would, so dK does not depend on the budget above that.
  int64_t R = std::min(active, fit);
  if (R < active) {
    if (R >= kGemmKc) R -= R % kGemmKc;
    else R = (active + (active + R - 1) / R - 1) / ((active + R - 1) / R);  // equal chunks
  }
  return {R, N, fixed + R * per_row};
}

LossResult embeddings_loss(Context& ctx, const EmbeddingsArgs& a, const std::function<bool(int64_t)>& active, double mean_divisor,
                           const ChunkLossFn& loss, bool column_tiles, int64_t extra_row_bytes, int64_t extra_fixed_bytes) {
  const int64_t B = a.rows, D = a.dim, N = a.cols;
  std::vector<int64_t> act;
  act.reserve(size_t(B));
  for (int64_t i = 0; i < B; ++i) {
    if (active(i)) act.push_back(i);
    else a.row_loss[i] = 0.f;
  }
  if (a.grad_queries && !a.accumulate) std::memset(a.grad_queries, 0, size_t(B * D * dtype_size(a.grad_dtype)));
  if (a.grad_keys && !a.accumulate) std::memset(a.grad_keys, 0, size_t(N * D) * sizeof(float));
  if (a.grad_bias && !a.accumulate) std::memset(a.grad_bias, 0, size_t(N) * sizeof(float));
  if (act.empty() || N == 0) return {0.0, 0.0};

  const int64_t n_act = int64_t(act.size());
  const EmbeddingsPlan plan = embeddings_plan(ctx, a, n_act, column_tiles, extra_row_bytes, extra_fixed_bytes);
  const int64_t R = plan.chunk_rows;
  const bool tiled = plan.tile_cols < N;

  const bool want_grad = a.grad_queries || a.grad_keys || a.grad_bias;
  std::vector<float> kinv(a.normalize ? size_t(N) : 0), kdot(a.normalize && a.accumulate && a.grad_keys ? size_t(N) : 0);
  if (a.normalize)
    ctx.pool.parallel_for((N + kKeyBlock - 1) / kKeyBlock, [&](int64_t t) {
      std::vector<float> k(static_cast<size_t>(D));
      for (int64_t j = t * kKeyBlock; j < std::min(N, (t + 1) * kKeyBlock); ++j) {
        widen_row(a.keys, a.dtype, j, D, k.data());
        kinv[size_t(j)] = inv_norm(k.data(), D);
        if (kdot.empty()) continue;
        // What the final projection must leave alone: the caller's gradKeys along k̂_j.
        double d = 0;
        for (int64_t c = 0; c < D; ++c) d += double(k[size_t(c)]) * double(a.grad_keys[j * D + c]);
        kdot[size_t(j)] = float(d * kinv[size_t(j)]);
      }
    });

  std::vector<float> s(static_cast<size_t>(R * plan.tile_cols)), h(static_cast<size_t>(R * D)), dh(a.grad_queries ? static_cast<size_t>(R * D) : 0), qinv(static_cast<size_t>(R), 1.f), up(static_cast<size_t>(R)),
      rl(static_cast<size_t>(R));
  const double u_mean = mean_divisor > 0 ? 1.0 / mean_divisor : 0.0;
  auto scale_columns = [&](int64_t rows) {
    ctx.pool.parallel_for(rows, [&](int64_t r) {
      float* row = s.data() + r * N;
      for (int64_t j = 0; j < N; ++j) row[j] *= kinv[size_t(j)];
    });
  };
  double total = 0, dscale = 0;
  for (int64_t c0 = 0; c0 < n_act; c0 += R) {
    const int64_t rows = std::min(R, n_act - c0);
    const int64_t* idx = act.data() + c0;
    ctx.pool.parallel_for(rows, [&](int64_t r) {
      float* q = h.data() + r * D;
      widen_row(a.queries, a.dtype, idx[r], D, q);
      if (!a.normalize) return;
      qinv[size_t(r)] = inv_norm(q, D);
      for (int64_t k = 0; k < D; ++k) q[k] *= qinv[size_t(r)];
    });
    for (int64_t r = 0; r < rows; ++r)
      up[size_t(r)] = float(a.reduction == Reduction::Mean ? u_mean : a.reduction == Reduction::None && a.grad_output ? double(a.grad_output[idx[r]]) : 1.0);

    KeyTiles tiles(ctx, a, a.normalize ? kinv.data() : nullptr, h.data(), rows, plan.tile_cols, s.data(), a.grad_queries ? dh.data() : nullptr);
    if (!tiled) {
      gemm(ctx, rows, N, D, GemmOperand{h.data(), DType::Float32, D, false}, GemmOperand{a.keys, a.dtype, D, true}, s.data(), N, false);
      if (a.normalize) scale_columns(rows);
      if (a.bias) add_bias(ctx, a.bias, rows, N, s.data());
    }

    LossArgs chunk = chunk_loss_args(a, s.data(), rows, N, up.data(), want_grad, rl.data());
    if (tiled) chunk.scores = nullptr;  // the tiles hold the scores, a tile at a time
    LossResult part;
    try {
      part = loss(ctx, chunk, idx, tiled ? &tiles : nullptr);
    } catch (const Error& e) {
      if (e.code != err::kNonFinite) throw;
      long long r = 0, col = 0;
      const size_t at = std::string(e.what()).rfind('[');
      if (at != std::string::npos) std::sscanf(e.what() + at, "[%lld, %lld]", &r, &col);
      non_finite(idx[r], col);
    }
    for (int64_t r = 0; r < rows; ++r) {
      a.row_loss[idx[r]] = rl[size_t(r)];
      total += double(rl[size_t(r)]);
    }
    dscale += part.dscale;
    if (!want_grad) continue;

    // G' = G·diag(1/‖k‖): then dQ̂ = G'·K and dK̂ = diag(‖k‖)·G'ᵀ·Q̂, with the raw keys (the
    // tiles did both GEMMs already).
    if (a.grad_bias && !tiled) add_column_sums(ctx, s.data(), rows, N, a.grad_bias);
    if (a.normalize && !tiled) scale_columns(rows);
    if (a.grad_queries) {
      if (!tiled)
        gemm(ctx, rows, D, N, GemmOperand{s.data(), DType::Float32, N, false}, GemmOperand{a.keys, a.dtype, D, false}, dh.data(), D, false);
      ctx.pool.parallel_for(rows, [&](int64_t r) {
        float* g = dh.data() + r * D;
        if (a.normalize) {
          // dq = (dq̂ − q̂ (q̂·dq̂)) / ‖q‖ (plain dq̂/eps for a vector shorter than eps).
          const float* q = h.data() + r * D;
          double dot = 0;
          if (qinv[size_t(r)] != kTinyInv)
            for (int64_t k = 0; k < D; ++k) dot += double(q[k]) * double(g[k]);
          for (int64_t k = 0; k < D; ++k) g[k] = float((double(g[k]) - double(q[k]) * dot) * qinv[size_t(r)]);
        }
        const int64_t off = idx[r] * D;
        with_dtype(a.grad_dtype == DType::Float32 ? DType::Float32 : a.dtype, [&](auto t) {
          using T = decltype(t);
          T* dst = static_cast<T*>(a.grad_queries) + off;
          for (int64_t k = 0; k < D; ++k) dst[k] = from_float<T>(a.accumulate ? to_float(dst[k]) + g[k] : g[k]);
        });
      });
    }
    if (a.grad_keys && !tiled)
      gemm(ctx, N, D, rows, GemmOperand{s.data(), DType::Float32, N, true}, GemmOperand{h.data(), DType::Float32, D, false}, a.grad_keys, D, true);
  }

  if (a.normalize && a.grad_keys)
    // gradKeys holds E + A (E: the caller's, with accumulate); dk_j = A_j − k̂_j (k̂_j·A_j).
    ctx.pool.parallel_for((N + kKeyBlock - 1) / kKeyBlock, [&](int64_t t) {
      std::vector<float> k(static_cast<size_t>(D));
      for (int64_t j = t * kKeyBlock; j < std::min(N, (t + 1) * kKeyBlock); ++j) {
        const float inv = kinv[size_t(j)];
        if (inv == kTinyInv) continue;
        widen_row(a.keys, a.dtype, j, D, k.data());
        float* g = a.grad_keys + j * D;
        double dot = 0;
        for (int64_t c = 0; c < D; ++c) dot += double(k[size_t(c)]) * double(g[c]);
        const double along = dot * inv - (kdot.empty() ? 0.0 : double(kdot[size_t(j)]));
        for (int64_t c = 0; c < D; ++c) g[c] = float(double(g[c]) - double(k[size_t(c)]) * inv * along);
      }
    });
  if (a.reduction == Reduction::Mean) total = mean_divisor > 0 ? total / mean_divisor : 0.0;
  return {total, a.grad_scale ? dscale : 0.0};
}

namespace {

// The losses over CSR positives: the chunk's positives and exclusions, re-based.
template <LossResult (*Op)(Context&, const PositivesLossArgs&), LossResult (*TiledOp)(Context&, const PositivesLossArgs&, ScoreTiles&)>
LossResult positives_from_embeddings(Context& ctx, const PositivesEmbeddingsArgs& a, bool skip_empty, double mean_divisor) {
  return embeddings_loss(
      ctx, a, [&](int64_t i) { return !skip_empty || a.positives.size(i) > 0; }, mean_divisor,
      [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles* tiles) {
        const PositivesChunk p(a, chunk, idx);
        return tiles ? TiledOp(c, p.args, *tiles) : Op(c, p.args);
      },
      true);
}

}  // namespace

// A row without positives adds 0 and has gradient 0 in both softmax forms: it costs no matrix
// work. 'mean' divides by B (MATH decoupledSoftmax and multiLabelSoftmax, native/ops/positives_math.h) and by B·N for bce, whose rows all count.
LossResult decoupled_softmax_from_embeddings(Context& ctx, const PositivesEmbeddingsArgs& a) {
  return positives_from_embeddings<decoupled_softmax, decoupled_softmax>(ctx, a, true, double(a.rows));
}
LossResult multi_label_softmax_from_embeddings(Context& ctx, const PositivesEmbeddingsArgs& a) {
  return positives_from_embeddings<multi_label_softmax, multi_label_softmax>(ctx, a, true, double(a.rows));
}
LossResult binary_cross_entropy_from_embeddings(Context& ctx, const PositivesEmbeddingsArgs& a) {
  return positives_from_embeddings<binary_cross_entropy, binary_cross_entropy>(ctx, a, false, double(a.rows) * double(a.cols));
}

LossResult symmetric_info_nce(Context& ctx, const InfoNCEEmbeddingsArgs& a);

// One-way InfoNCE (MATH infoNCE, native/ops/contrastive_math.h): 'mean' divides by the rows with at least one positive; the others
// add 0 with gradient 0 and cost no matrix work.
LossResult info_nce_from_embeddings(Context& ctx, const InfoNCEEmbeddingsArgs& a) {
  check_info_nce_embeddings(a);
  if (a.symmetric) return symmetric_info_nce(ctx, a);
  const bool diagonal = !a.positives;
  auto has_positives = [&](int64_t i) { return diagonal || a.positives.size(i) > 0; };
  double counted = 0;
  for (int64_t i = 0; i < a.rows; ++i) counted += has_positives(i) ? 1 : 0;
  return embeddings_loss(
      ctx, a, has_positives, counted,
      [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles* tiles) {
        const InfoNCEChunk p(a, chunk, idx);
        return tiles ? info_nce(c, p.args, *tiles) : info_nce(c, p.args);
      },
      true);
}

// Symmetric InfoNCE (CLIP, MATH infoNCE, native/ops/contrastive_math.h) on a square S with diagonal positives: ℓ_i = (r_i + c_i)/2,
// where c_j needs column j's log-sum-exp over ALL rows. Sweep 1 runs the driver without
// gradients to fold every chunk's scores into the columns' running (max, Σ exp) and to keep the
// diagonal; sweep 2 runs the one-way op for the row half (upstream u_i/2) into a second chunk
// buffer and adds the column half, (u_j/2)·(e^{z_ij − clse_j} − [i = j]), entry by entry.
LossResult symmetric_info_nce(Context& ctx, const InfoNCEEmbeddingsArgs& a) {
  const int64_t B = a.rows, N = a.cols;
  // Per column: running max and Σ exp, the diagonal z_jj, then the log-sum-exp (32·N bytes,
  // counted in the budget of both sweeps).
  const int64_t column_bytes = 32 * N;
  std::vector<double> col_max(size_t(N), -INFINITY), col_sum(size_t(N), 0.0), diag(size_t(N), 0.0);
  {
    EmbeddingsArgs stats = a;
    stats.grad_queries = nullptr;
    stats.grad_keys = nullptr;
    stats.grad_bias = nullptr;  // the statistics sweep has no gradient (it would sum the scores into db)
    stats.grad_scale = false;
    std::vector<float> ignored(static_cast<size_t>(B));
    stats.row_loss = ignored.data();
    embeddings_loss(ctx, stats, [](int64_t) { return true; }, double(B), [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles*) {
      const float* s = static_cast<const float*>(chunk.scores);
      constexpr int64_t kStripe = 1024;
      c.pool.parallel_for((N + kStripe - 1) / kStripe, [&](int64_t t) {
        for (int64_t r = 0; r < chunk.rows; ++r)
          for (int64_t j = t * kStripe; j < std::min(N, (t + 1) * kStripe); ++j) {
            const double z = double(a.scale) * double(s[r * N + j]);
            double& m = col_max[size_t(j)];
            if (z > m) {
              col_sum[size_t(j)] = col_sum[size_t(j)] * std::exp(m - z) + 1.0;
              m = z;
            } else {
              col_sum[size_t(j)] += std::exp(z - m);
            }
          }
      });
      for (int64_t r = 0; r < chunk.rows; ++r) diag[size_t(idx[r])] = double(a.scale) * double(s[r * N + idx[r]]);
      return LossResult{0.0, 0.0};
    }, false, 0, column_bytes);
  }
  std::vector<double> col_lse(static_cast<size_t>(N));
  for (int64_t j = 0; j < N; ++j) col_lse[size_t(j)] = col_max[size_t(j)] + std::log(col_sum[size_t(j)]);
  auto u = [&](int64_t j) {
    return a.reduction == Reduction::Mean ? 1.0 / double(B) : a.reduction == Reduction::None && a.grad_output ? double(a.grad_output[j]) : 1.0;
  };
  return embeddings_loss(
      ctx, a, [](int64_t) { return true; }, double(B),
      [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles*) {
        const int64_t rows = chunk.rows;
        float* s = static_cast<float*>(const_cast<void*>(chunk.scores));
        std::vector<float> g(chunk.grad ? static_cast<size_t>(rows * N) : 0), half(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) half[size_t(r)] = 0.5f * chunk.grad_output[r];
        const ChunkCsr pos(idx, rows);
        InfoNCEArgs p{};
        static_cast<LossArgs&>(p) = chunk;
        p.grad = chunk.grad ? g.data() : nullptr;
        p.grad_output = half.data();
        p.positives = pos.view();
        const LossResult part = info_nce(c, p);
        std::vector<double> dscale(static_cast<size_t>(rows), 0.0);
        c.pool.parallel_for(rows, [&](int64_t r) {
          double d = 0;
          for (int64_t j = 0; j < N; ++j) {
            const double x = double(s[r * N + j]);
            const double uc = 0.5 * u(j);
            const double dz = uc * (std::exp(double(a.scale) * x - col_lse[size_t(j)]) - (j == idx[r] ? 1.0 : 0.0));
            d += dz * x;
            if (chunk.grad) s[r * N + j] = g[size_t(r * N + j)] + float(dz * double(a.scale));
          }
          dscale[size_t(r)] = d;
        });
        double d = part.dscale;
        for (int64_t r = 0; r < rows; ++r) {
          d += dscale[size_t(r)];
          chunk.row_loss[r] = float(0.5 * (double(chunk.row_loss[r]) + (col_lse[size_t(idx[r])] - diag[size_t(idx[r])])));
        }
        return LossResult{0.0, d};
      },
      false, 4 * N, column_bytes);
}

// DCL/DCLW (MATH decoupledContrastive, native/ops/contrastive_math.h): every row counts ('mean' divides by B). DCLW's w_i is a softmax over ALL
// rows of the raw positive scores S_{i,p(i)}: those B dot products come first (in double, on the
// normalised vectors with `normalize`), then the chunks run with the weights given.
LossResult decoupled_contrastive_from_embeddings(Context& ctx, const DecoupledContrastiveEmbeddingsArgs& a) {
  const bool diagonal = !a.positives;
  DecoupledContrastiveArgs shape{};
  shape.rows = a.rows;
  shape.cols = a.cols;
  shape.positives = a.positives;
  check_decoupled_contrastive_shape(shape);
  auto positive_col = [&](int64_t i) { return diagonal ? i : int64_t(a.positives.cols[a.positives.begin(i)]); };
  std::vector<double> w;
  if (a.sigma > 0) {
    std::vector<float> s(static_cast<size_t>(a.rows));
    ctx.pool.parallel_for(a.rows, [&](int64_t i) {
      std::vector<float> q(static_cast<size_t>(a.dim)), k(static_cast<size_t>(a.dim));
      widen_row(a.queries, a.dtype, i, a.dim, q.data());
      widen_row(a.keys, a.dtype, positive_col(i), a.dim, k.data());
      double d = 0;
      for (int64_t c = 0; c < a.dim; ++c) d += double(q[size_t(c)]) * double(k[size_t(c)]);
      if (a.normalize) d *= double(inv_norm(q.data(), a.dim)) * double(inv_norm(k.data(), a.dim));
      if (a.bias) d += double(a.bias[positive_col(i)]);  // S_{i,p(i)} with its bias, as the matrix form sees it
      s[size_t(i)] = float(d);
    });
    w.resize(size_t(a.rows));
    dclw_weights(s.data(), a.rows, a.sigma, w.data());
  }
  return embeddings_loss(
      ctx, a, [](int64_t) { return true; }, double(a.rows), [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles* tiles) {
        const DecoupledContrastiveChunk p(a, chunk, idx, w);
        return tiles ? decoupled_contrastive(c, p.args, *tiles) : decoupled_contrastive(c, p.args);
      },
      true);
}

// softTopKLoss (MATH softTopKLoss, native/ops/soft_topk_math.h): a row without positives has loss 0 and gradient 0 (U = 0), so it
// costs no matrix work. 'mean' divides by B.
LossResult soft_topk_loss_from_embeddings(Context& ctx, const SoftTopKLossEmbeddingsArgs& a) {
  return embeddings_loss(
      ctx, a, [&](int64_t i) { return a.positives.size(i) > 0; }, double(a.rows), [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles*) {
        const SoftTopKLossChunk p(a, chunk, idx);
        return soft_topk_loss(c, p.args);
      },
      false);
}

}  // namespace fl
