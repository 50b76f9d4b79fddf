// The softmax-row engine: the CPU driver shared by every softmax-family loss (cross-entropy,
// multi-label softmax, InfoNCE, decoupled softmax, DCL).
//
// Each such loss has, per row i, a gradient with respect to z = transform(scale·x) of the form
//     dL/dz_ij = coef_i·exp(z_ij − shift_i) + bias_i + colw_coef_i·colw_j   (the dense part)
//              + a few sparse corrections (labels, positives)
// where shift_i is a log-sum-exp over the row. So every loss runs the same four steps:
//   1. statistics: max and Σ exp over the row's columns minus a sorted skip list, by tiles;
//   2. per-row terms from the merged statistics (the loss's own math, scalar);
//   3. the dense gradient sweep (skipped columns get exactly 0), with the dScale share;
//   4. the sparse corrections at O(nnz) columns, recomputed in fp32 before rounding.
// Rows that fit one tile (kRowTile columns) run all four steps in one task, so the second read
// of the row comes from cache; wider rows are cut into tiles spread over the pool (B = 1,
// N = 10^7 uses every core) and merged in tile order: results do not depend on the thread count
// (run_wide: a cache-sized group of rows at a time, so that their second read comes from cache).
// run_tiles() runs the same steps on scores that are never held whole (score_tiles.h): the
// engine then sees one column tile at a time through a window [col0, col0 + width).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../api/args.h"
#include "../api/error.h"
#include "../core/context.h"
#include "../core/dtype.h"
#include "../core/parallel.h"
#include "../core/rowmath.h"
#include "../isa/kernels.h"
#include "csr.h"
#include "score_tiles.h"

namespace fl {

struct RowStats {
  float max = -INFINITY;  // max z (−inf when every column is skipped or −inf)
  double rest = 0;        // Σ exp(z − max) − 1 (see MaxSumExp in native/core/rowmath.h)
  double lin = 0;         // Σ colw_j·z_j over finite, non-skipped entries (when asked)
  double lse() const { return max == -INFINITY ? -INFINITY : double(max) + std::log1p(rest); }
  // p_j − 1 for an entry whose z equals the row max: −rest/(1 + rest), exact where p_j ≈ 1.
  double p_max_minus_one() const { return -rest / (1.0 + rest); }
  // p_j = exp(z_j − max) · inv_sum(). Losses put inv_sum() into DenseTerms::coef and use the row
  // max as the shift: a shift of lse rounded to float would be off by an ulp of lse (0.004 at
  // lse = 35000), which is a 0.4% error in every probability.
  double inv_sum() const { return 1.0 / (1.0 + rest); }
};

// The dense part of row i's gradient (already multiplied by the row's upstream factor):
// dL/dz_j = coef·exp(z_j − shift) + bias + colw_coef·colw_j. Use shift = RowStats::max and
// fold 1/Σ into coef (RowStats::inv_sum).
struct DenseTerms {
  float shift = 0, coef = 0, bias = 0, colw_coef = 0;
};

// A loss's scores, as the engine sweeps them. A RowSkip (native/ops/csr.h) lists the columns
// of a row left out of the statistics and given a zero dense gradient.
struct SoftmaxProblem : ScoresArgs {
  float cap;              // softcap c, or 0 for none
  const float* colw;      // per-column weights (class weights), or null
  bool want_lin;          // also compute RowStats::lin
  void* grad;             // rows × cols of grad_dtype, or null for no gradient
  DType grad_dtype;       // Float32, or `dtype`
  bool grad_scale;        // run the gradient sweep for dScale even without `grad`
  const char* name;       // the scores as the TS caller named them, for errors
};

// The engine's problem for a loss's arguments; `name`: "logits" for softmaxCrossEntropy.
inline SoftmaxProblem softmax_problem(const LossArgs& a, const char* name = "scores", float cap = 0.f,
                                      const float* colw = nullptr, bool want_lin = false) {
  return SoftmaxProblem{ScoresArgs(a), cap, colw, want_lin, a.grad, a.grad_dtype, a.grad_scale, name};
}

// One entry of the row, seen by a loss's sparse corrections.
struct Entry {
  float x, z;       // score and transformed score
  float dzdx, dzds; // dz/dx and dz/dscale (0 for a −inf score)
};

class SoftmaxRows {
 public:
  SoftmaxRows(Context& ctx, const SoftmaxProblem& p)
      : ctx_(ctx), p_(p), scores_(p.scores), grad_(p.grad), ld_(p.cols), width_(p.cols) {}

  const SoftmaxProblem& problem() const { return p_; }

  // In run_tiles(), after sweep 1, the entries a loss reads (Loss::reads) come from what the
  // sweep kept of them.
  Entry entry(int64_t r, int64_t c) const {
    const float x = captured_ ? captured(r, c) : load_element(scores_, p_.dtype, at(r, c));
    if (x == -INFINITY) return Entry{x, -INFINITY, 0.f, 0.f};
    if (p_.cap > 0) {
      float sech2;
      tanh_sech2(p_.scale * x / p_.cap, &sech2);
      // z as the SIMD sweeps computed it (bitwise), so that z == RowStats::max for the max entry.
      return Entry{x, ctx_.kernels->softcap(x, p_.scale, p_.cap), p_.scale * sech2, x * sech2};
    }
    return Entry{x, p_.scale * x, p_.scale, x};
  }

  // The dense dL/dz at an entry, as the sweep computed it (for dScale bookkeeping).
  float dense(const Entry& e, const DenseTerms& t, int64_t c) const {
    if (e.x == -INFINITY) return 0.f;
    return t.coef * std::exp(e.z - t.shift) + t.bias + (p_.colw ? t.colw_coef * p_.colw[c] : 0.f);
  }

  // Overwrites the gradient at (r, c) with dL/dz · dz/dx, rounded once to the grad dtype, and
  // returns the change of that entry's dScale term.
  // In run_tiles() an entry outside the tile in hand is left to its own tile (returns 0).
  double correct(int64_t r, int64_t c, const Entry& e, float dense_dz, float exact_dz) const {
    if (c < col0_ || c >= col0_ + width_) return 0.0;
    if (grad_) store_element(grad_, p_.grad_dtype, at(r, c), exact_dz * e.dzdx);
    return double(exact_dz - dense_dz) * double(e.dzds);
  }

  // Runs the four steps. Loss provides (called concurrently for different rows):
  //   bool active(r)                               false: the row is left out (grad 0)
  //   RowSkip skip(r)
  //   DenseTerms terms(r, const RowStats&)         also records the row's loss
  //   double corrections(r, const RowStats&, const DenseTerms&, const SoftmaxRows&)
  //                                                sparse fixes; returns their dScale change
  // Returns dScale = Σ_ij dL/dz_ij · dz_ij/dscale, summed in row order.
  template <class Loss>
  double run(Loss& loss) {
    const int64_t tiles = tiles_per_row(p_.cols);
    const bool sweep = p_.grad || p_.grad_scale;
    std::vector<double> row_dscale(size_t(p_.rows), 0.0);
    std::vector<int64_t> row_bad(size_t(p_.rows), -1);
    if (tiles == 1) {
      for_each_row_tile(ctx_.pool, p_.rows, p_.cols, [&](int64_t r, int64_t, int64_t, int64_t) {
        if (!loss.active(r)) {
          zero_row(r, 0, p_.cols);
          return;
        }
        const RowSkip skip = loss.skip(r);
        // Without a softcap, the statistics sweep keeps exp(z − block max) for the gradient
        // sweep (one exp per entry in all). Per-thread buffers: rows here are ≤ kRowTile wide.
        Kept kept_view, *kept = nullptr;
        if (sweep && p_.cap == 0) {
          thread_local std::vector<float> keep, block_max;
          keep.resize(size_t(p_.cols));
          // Blocks over all segments: at most one per segment plus one per kSoftmaxBlock columns.
          block_max.resize(size_t(p_.cols / 2 + p_.cols / kSoftmaxBlock + 2));
          kept_view = Kept{keep.data(), block_max.data()};
          kept = &kept_view;
        }
        TileMaxSumExp s = stats(r, 0, p_.cols, skip, kept);
        if (s.first_bad >= 0) {
          row_bad[size_t(r)] = s.first_bad;
          return;
        }
        const RowStats st{s.max, s.rest, s.lin};
        const DenseTerms t = loss.terms(r, st);
        double d = sweep ? grad_sweep(r, 0, p_.cols, skip, t, kept) : 0.0;
        d += loss.corrections(r, st, t, *this);
        row_dscale[size_t(r)] = d;
      });
      throw_if_bad(row_bad);
    } else {
      run_wide(loss, row_dscale.data());
    }
    double total = 0;
    for (double d : row_dscale) total += d;
    return total;
  }

  // The four steps on a chunk given tile by tile (score_tiles.h). Sweep 1: each tile's
  // statistics merged into the rows' in tile order, and the entries the loss reads
  // (Loss::reads(r): columns, any order) kept as their tile passes. Then the terms. Sweep 2:
  // each tile again, the dense gradient in place and the corrections that fall in it, handed
  // back to the tiles. Row r's dScale adds its tiles' shares in tile order. The scores are
  // fp32 (p_.dtype), and p_.grad is only a flag.
  template <class Loss>
  double run_tiles(Loss& loss, ScoreTiles& tiles) {
    const int64_t R = p_.rows, N = p_.cols, T = tiles.tile_cols();
    cap_off_.assign(size_t(R + 1), 0);
    for (int64_t r = 0; r < R; ++r) cap_off_[size_t(r + 1)] = cap_off_[size_t(r)] + loss.reads(r).n;
    cap_cols_.resize(size_t(cap_off_[size_t(R)]));
    cap_x_.assign(cap_cols_.size(), 0.f);
    for (int64_t r = 0; r < R; ++r) {
      const RowSkip c = loss.reads(r);
      std::copy(c.cols, c.cols + c.n, cap_cols_.begin() + cap_off_[size_t(r)]);
    }
    std::vector<MaxSumExp<double>> acc(size_t(R), max_sum_exp_empty<double>());
    std::vector<double> lin(size_t(R), 0.0);
    std::vector<int64_t> row_bad(size_t(R), -1);
    for (int64_t c0 = 0; c0 < N; c0 += T) {
      const int64_t w = std::min(T, N - c0);
      window(tiles.scores(c0, w), c0, w);
      ctx_.pool.parallel_for(R, [&](int64_t r) {
        if (row_bad[size_t(r)] >= 0 || !loss.active(r)) return;
        const TileMaxSumExp t = stats(r, c0, c0 + w, loss.skip(r));
        if (t.first_bad >= 0) {
          row_bad[size_t(r)] = t.first_bad;
          return;
        }
        merge(acc[size_t(r)], MaxSumExp<double>{t.max, t.rest});
        lin[size_t(r)] += t.lin;
        for (int64_t k = cap_off_[size_t(r)]; k < cap_off_[size_t(r + 1)]; ++k) {
          const int64_t c = cap_cols_[size_t(k)];
          if (c >= c0 && c < c0 + w) cap_x_[size_t(k)] = load_element(scores_, p_.dtype, at(r, c));
        }
      });
    }
    throw_if_bad(row_bad);
    std::vector<RowStats> st(static_cast<size_t>(R));
    std::vector<DenseTerms> terms(static_cast<size_t>(R));
    captured_ = true;
    ctx_.pool.parallel_for(R, [&](int64_t r) {
      if (!loss.active(r)) return;
      st[size_t(r)] = RowStats{acc[size_t(r)].max, acc[size_t(r)].rest, lin[size_t(r)]};
      terms[size_t(r)] = loss.terms(r, st[size_t(r)]);
    });
    captured_ = false;
    if (!p_.grad && !p_.grad_scale) return 0.0;
    std::vector<double> row_dscale(static_cast<size_t>(R), 0.0);
    const bool want_grad = p_.grad != nullptr;
    for (int64_t c0 = 0; c0 < N; c0 += T) {
      const int64_t w = std::min(T, N - c0);
      window(tiles.scores(c0, w), c0, w);
      if (!want_grad) grad_ = nullptr;
      ctx_.pool.parallel_for(R, [&](int64_t r) {
        if (!loss.active(r)) return zero_row(r, c0, c0 + w);
        const double d = grad_sweep(r, c0, c0 + w, loss.skip(r), terms[size_t(r)]);
        row_dscale[size_t(r)] += d + loss.corrections(r, st[size_t(r)], terms[size_t(r)], *this);
      });
      if (want_grad) tiles.gradient(c0, w);
    }
    double total = 0;
    for (double d : row_dscale) total += d;
    return total;
  }

  // Step 1 alone, the partials of a label-sharded loss (docs/MATH.md §5): each active row's
  // statistics over its columns into out[r] (an inactive row gets RowStats{}), by tiles merged
  // in tile order. Returns the first NaN/+inf entry in row order as r·cols + c, or −1: the
  // sharded caller reports it through the exchange, so that no rank is left waiting.
  template <class Loss>
  int64_t row_stats(Loss& loss, RowStats* out) const {
    const int64_t tiles = tiles_per_row(p_.cols);
    std::vector<TileMaxSumExp> parts(size_t(p_.rows * tiles));
    for_each_row_tile(ctx_.pool, p_.rows, p_.cols, [&](int64_t r, int64_t k, int64_t c0, int64_t c1) {
      const TileMaxSumExp& q = parts[size_t(r * tiles + k)] = loss.active(r) ? stats(r, c0, c1, loss.skip(r)) : TileMaxSumExp{-INFINITY, 0, 0, -1};
      if (tiles == 1) out[r] = loss.active(r) ? RowStats{q.max, q.rest, q.lin} : RowStats{};  // no merge needed
    });
    for (int64_t r = 0; r < p_.rows; ++r)
      for (int64_t k = 0; k < tiles; ++k)
        if (parts[size_t(r * tiles + k)].first_bad >= 0) return r * p_.cols + parts[size_t(r * tiles + k)].first_bad;
    if (tiles > 1) ctx_.pool.parallel_for(p_.rows, [&](int64_t r) {
      MaxSumExp<double> acc = max_sum_exp_empty<double>();
      double lin = 0;
      for (int64_t k = 0; k < tiles; ++k) {
        const TileMaxSumExp& q = parts[size_t(r * tiles + k)];
        merge(acc, MaxSumExp<double>{q.max, q.rest});
        lin += q.lin;
      }
      out[r] = loss.active(r) ? RowStats{acc.max, acc.rest, lin} : RowStats{};
    });
    return -1;
  }

  // Steps 2–4 with each row's statistics given (the finish of a label-sharded loss, where they
  // were merged across ranks; and run()'s wide rows): row r's dScale share into row_dscale[r].
  template <class Loss>
  void run_given(Loss& loss, const RowStats* st, double* row_dscale) const {
    const int64_t tiles = tiles_per_row(p_.cols);
    const bool sweep = p_.grad || p_.grad_scale;
    if (tiles == 1) {  // one task per row: terms, sweep and corrections (one pass of the pool)
      for_each_row_tile(ctx_.pool, p_.rows, p_.cols, [&](int64_t r, int64_t, int64_t, int64_t) {
        row_dscale[r] = 0;
        if (!loss.active(r)) {
          zero_row(r, 0, p_.cols);
          return;
        }
        const DenseTerms t = loss.terms(r, st[r]);
        const double d = sweep ? grad_sweep(r, 0, p_.cols, loss.skip(r), t) : 0.0;
        row_dscale[r] = d + loss.corrections(r, st[r], t, *this);
      });
      return;
    }
    std::vector<DenseTerms> terms(size_t(p_.rows));
    ctx_.pool.parallel_for(p_.rows, [&](int64_t r) {
      if (loss.active(r)) terms[size_t(r)] = loss.terms(r, st[r]);
    });
    std::vector<double> tile_dscale(size_t(p_.rows * tiles), 0.0);
    for_each_row_tile(ctx_.pool, p_.rows, p_.cols, [&](int64_t r, int64_t k, int64_t c0, int64_t c1) {
      if (!loss.active(r)) zero_row(r, c0, c1);
      else if (sweep) tile_dscale[size_t(r * tiles + k)] = grad_sweep(r, c0, c1, loss.skip(r), terms[size_t(r)]);
    });
    ctx_.pool.parallel_for(p_.rows, [&](int64_t r) {
      row_dscale[r] = 0;
      if (!loss.active(r)) return;
      double d = 0;
      for (int64_t k = 0; k < tiles; ++k) d += tile_dscale[size_t(r * tiles + k)];
      row_dscale[r] = d + loss.corrections(r, st[r], terms[size_t(r)], *this);
    });
  }

 private:
  // exp(z − block max) of one row and its block maxima, carried from the statistics sweep to
  // the gradient sweep (see ExpGradTile::kept).
  struct Kept {
    float* keep;       // at the column where the stretch swept begins
    float* block_max;  // its first block's
  };

  // Rows wider than a tile, all four steps (run()). A row's statistics need every tile of it
  // before its gradient can start, so the scores are read twice: the rows go in groups of at
  // most kWideGroup columns in all (one row at least), each group's tiles spread over the pool for
  // the statistics, merged in tile order, then again for the gradient, in reverse tile order, so
  // that the tiles read last in the first sweep, the likeliest still in cache, come first.
  // Without a softcap, the last kWideKeep columns' worth of each group's tiles also keep their
  // exps (as the single-tile path does): those tiles, swept last and first, find their exps in
  // L2, and their gradient sweep reads no scores and takes no exp. The kept exps are few enough
  // for L2 because, unlike the scores, they are written: where they fall out to a shared L3 and
  // on to memory (on a loaded machine), they add traffic (measured 1.3x slower with 8 MiB kept),
  // where re-read scores only fall back to one more read. Which tiles keep depends on the shape
  // only, so results do not depend on the thread count.
  static constexpr int64_t kWideGroup = int64_t(1) << 21;  // 8 MiB of fp32 scores
  static constexpr int64_t kWideKeep = int64_t(1) << 18;   // 1 MiB of exps, half an L2 each of 2 cores

  template <class Loss>
  void run_wide(Loss& loss, double* row_dscale) const {
    const int64_t tiles = tiles_per_row(p_.cols);
    const int64_t group_rows = std::max<int64_t>(1, kWideGroup / p_.cols);
    const bool sweep = p_.grad || p_.grad_scale;
    const bool keep = sweep && p_.cap == 0;
    thread_local std::vector<float> keep_buf, bmax_buf;  // the calling thread's, reused across calls
    std::vector<TileMaxSumExp> parts;
    std::vector<double> tile_dscale;
    std::vector<Kept> kept;  // per tile of the group; keep null: not kept
    std::vector<DenseTerms> terms(static_cast<size_t>(group_rows));
    std::vector<RowStats> st(static_cast<size_t>(group_rows));
    for (int64_t r0 = 0; r0 < p_.rows; r0 += group_rows) {
      const int64_t r1 = std::min(p_.rows, r0 + group_rows), n = (r1 - r0) * tiles;
      auto tile_cols = [&](int64_t t, int64_t* c0, int64_t* c1) {
        *c0 = (t % tiles) * kRowTile;
        *c1 = std::min(p_.cols, *c0 + kRowTile);
      };
      // The kept tiles: the group's last ones, up to kWideKeep columns, and their block slots.
      kept.assign(size_t(n), Kept{nullptr, nullptr});
      if (keep) {
        int64_t cols = 0, blocks = 0, t = n;
        std::vector<int64_t> block_count(size_t(n), 0);
        while (t > 0) {
          int64_t c0, c1;
          tile_cols(t - 1, &c0, &c1);
          if (cols + (c1 - c0) > kWideKeep) break;
          --t;
          cols += c1 - c0;
          const int64_t r = r0 + t / tiles;
          if (loss.active(r)) for_each_run(c0, c1, loss.skip(r), [&](int64_t a, int64_t b) { block_count[size_t(t)] += blocks_in(b - a); });
          blocks += block_count[size_t(t)];
        }
        if (int64_t(keep_buf.size()) < cols) keep_buf.resize(size_t(cols));
        if (int64_t(bmax_buf.size()) < blocks) bmax_buf.resize(size_t(blocks));
        for (int64_t k = t, c = 0, b = 0; k < n; ++k) {
          int64_t c0, c1;
          tile_cols(k, &c0, &c1);
          kept[size_t(k)] = Kept{keep_buf.data() + c, bmax_buf.data() + b};
          c += c1 - c0;
          b += block_count[size_t(k)];
        }
      }
      parts.assign(size_t(n), TileMaxSumExp{-INFINITY, 0, 0, -1});
      ctx_.pool.parallel_for(n, [&](int64_t t) {
        const int64_t r = r0 + t / tiles;
        int64_t c0, c1;
        tile_cols(t, &c0, &c1);
        if (loss.active(r)) parts[size_t(t)] = stats(r, c0, c1, loss.skip(r), kept[size_t(t)].keep ? &kept[size_t(t)] : nullptr);
      });
      for (int64_t t = 0; t < n; ++t)
        if (parts[size_t(t)].first_bad >= 0) fail_non_finite(p_.name, r0 + t / tiles, parts[size_t(t)].first_bad);
      for (int64_t r = r0; r < r1; ++r) {
        if (!loss.active(r)) continue;
        MaxSumExp<double> acc = max_sum_exp_empty<double>();
        double lin = 0;
        for (int64_t k = 0; k < tiles; ++k) {
          const TileMaxSumExp& q = parts[size_t((r - r0) * tiles + k)];
          merge(acc, MaxSumExp<double>{q.max, q.rest});
          lin += q.lin;
        }
        st[size_t(r - r0)] = RowStats{acc.max, acc.rest, lin};
        terms[size_t(r - r0)] = loss.terms(r, st[size_t(r - r0)]);
      }
      tile_dscale.assign(size_t(n), 0.0);
      ctx_.pool.parallel_for(n, [&](int64_t i) {
        const int64_t t = n - 1 - i;  // reverse order (see above)
        const int64_t r = r0 + t / tiles;
        int64_t c0, c1;
        tile_cols(t, &c0, &c1);
        if (!loss.active(r)) zero_row(r, c0, c1);
        else if (sweep) tile_dscale[size_t(t)] = grad_sweep(r, c0, c1, loss.skip(r), terms[size_t(r - r0)], kept[size_t(t)].keep ? &kept[size_t(t)] : nullptr);
      });
      for (int64_t r = r0; r < r1; ++r) {
        row_dscale[r] = 0;
        if (!loss.active(r)) continue;
        double d = 0;
        for (int64_t k = 0; k < tiles; ++k) d += tile_dscale[size_t((r - r0) * tiles + k)];
        row_dscale[r] = d + loss.corrections(r, st[size_t(r - r0)], terms[size_t(r - r0)], *this);
      }
    }
  }

  // Element (r, c) of the scores (and gradient) in hand: the whole matrix, or run_tiles()'s tile.
  int64_t at(int64_t r, int64_t c) const { return r * ld_ + (c - col0_); }
  const char* row_ptr(const void* base, DType d, int64_t r, int64_t c) const {
    return static_cast<const char*>(base) + at(r, c) * dtype_size(d);
  }
  void window(float* tile, int64_t c0, int64_t w) {
    scores_ = tile;
    grad_ = tile;
    col0_ = c0;
    ld_ = width_ = w;
  }
  float captured(int64_t r, int64_t c) const {
    for (int64_t k = cap_off_[size_t(r)]; k < cap_off_[size_t(r + 1)]; ++k)
      if (cap_cols_[size_t(k)] == c) return cap_x_[size_t(k)];
    fail(err::kArg, "softmax engine: column " + std::to_string(c) + " of row " + std::to_string(r) + " read but not kept (Loss::reads)");
  }
  int64_t grad_esize() const { return dtype_size(p_.grad_dtype); }

  // Segments of a row in the Kept buffers: entries at their column, block maxima packed in
  // segment order (both sweeps walk the same segments, so they agree on the packing).
  static int64_t blocks_in(int64_t n) { return (n + kSoftmaxBlock - 1) / kSoftmaxBlock; }

  TileMaxSumExp stats(int64_t r, int64_t c0, int64_t c1, const RowSkip& skip, const Kept* kept = nullptr) const {
    const TileStatsFn fn = ctx_.kernels->tile_stats[int(p_.dtype)][stats_variant(p_.cap > 0, p_.want_lin)];
    MaxSumExp<double> acc = max_sum_exp_empty<double>();
    double lin = 0;
    int64_t bad = -1, block = 0;
    for_each_run(c0, c1, skip, [&](int64_t a, int64_t b) {
      if (bad >= 0) return;
      float* keep = kept ? kept->keep + (a - c0) : nullptr;
      float* bmax = kept ? kept->block_max + block : nullptr;
      block += blocks_in(b - a);
      const TileMaxSumExp t = fn(StatsTile{row_ptr(scores_, p_.dtype, r, a), b - a, p_.scale, p_.cap, p_.colw ? p_.colw + a : nullptr, keep, bmax});
      if (t.first_bad >= 0) { bad = a + t.first_bad; return; }
      merge(acc, MaxSumExp<double>{t.max, t.rest});
      lin += t.lin;
    }, [&](int64_t c) {
      // A skipped column is still checked: NaN/+inf anywhere in the scores is an error.
      const float v = entry_value(r, c);
      if (bad < 0 && (v != v || v == INFINITY)) bad = c;
    });
    return TileMaxSumExp{acc.max, acc.rest, lin, bad};
  }

  float entry_value(int64_t r, int64_t c) const { return entry(r, c).x; }

  double grad_sweep(int64_t r, int64_t c0, int64_t c1, const RowSkip& skip, const DenseTerms& t, const Kept* kept = nullptr) const {
    const TileExpGradFn fn = ctx_.kernels->tile_exp_grad[int(p_.dtype)][grad_variant(p_.cap > 0, p_.grad_dtype)];
    double d = 0;
    int64_t block = 0;
    for_each_run(c0, c1, skip, [&](int64_t a, int64_t b) {
      void* g = grad_ ? static_cast<char*>(grad_) + at(r, a) * grad_esize() : nullptr;
      const float* keep = kept ? kept->keep + (a - c0) : nullptr;
      const float* bmax = kept ? kept->block_max + block : nullptr;
      block += blocks_in(b - a);
      d += fn(ExpGradTile{row_ptr(scores_, p_.dtype, r, a), g, b - a, p_.scale, p_.cap, t.shift, t.coef, t.bias,
                          p_.colw ? p_.colw + a : nullptr, t.colw_coef, keep, bmax, p_.grad_scale, stream_grad()});
    }, [&](int64_t c) { zero_row(r, c, c + 1); });
    return d;
  }

  // A gradient this big cannot stay in cache for the caller, so it is written with
  // non-temporal stores (no read-for-ownership of lines that are about to be overwritten).
  // (A tile of run_tiles() is meant to stay in cache.)
  bool stream_grad() const { return grad_ && ld_ == p_.cols && p_.rows * p_.cols * grad_esize() >= (int64_t(16) << 20); }

  void zero_row(int64_t r, int64_t c0, int64_t c1) const {
    if (!grad_ || c1 <= c0) return;
    std::memset(static_cast<char*>(grad_) + at(r, c0) * grad_esize(), 0, size_t((c1 - c0) * grad_esize()));
  }

  void throw_if_bad(const std::vector<int64_t>& row_bad) const {
    for (int64_t r = 0; r < p_.rows; ++r)
      if (row_bad[size_t(r)] >= 0) fail_non_finite(p_.name, r, row_bad[size_t(r)]);
  }

  Context& ctx_;
  SoftmaxProblem p_;
  // The scores and gradient in hand, holding columns [col0_, col0_ + width_) of each row at row
  // stride ld_: the whole matrix, or in run_tiles() the current tile.
  const void* scores_;
  void* grad_;
  int64_t col0_ = 0, ld_, width_;
  // run_tiles(): the entries each row's loss reads, kept during sweep 1 (offsets per row).
  bool captured_ = false;
  std::vector<int64_t> cap_off_;
  std::vector<int32_t> cap_cols_;
  std::vector<float> cap_x_;
};

}  // namespace fl
