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
// N = 10^7 uses every core) and merged in tile order: results do not depend on the thread count.
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
  SoftmaxRows(Context& ctx, const SoftmaxProblem& p) : ctx_(ctx), p_(p) {}

  const SoftmaxProblem& problem() const { return p_; }

  Entry entry(int64_t r, int64_t c) const {
    const float x = load_element(p_.scores, p_.dtype, r * p_.cols + c);
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
  double correct(int64_t r, int64_t c, const Entry& e, float dense_dz, float exact_dz) const {
    if (p_.grad) store_element(p_.grad, p_.grad_dtype, r * p_.cols + c, exact_dz * e.dzdx);
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
        Kept* kept = nullptr;
        if (sweep && p_.cap == 0) {
          thread_local Kept buffers;
          buffers.keep.resize(size_t(p_.cols));
          // Blocks over all segments: at most one per segment plus one per kSoftmaxBlock columns.
          buffers.block_max.resize(size_t(p_.cols / 2 + p_.cols / kSoftmaxBlock + 2));
          kept = &buffers;
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
      std::vector<RowStats> st(size_t(p_.rows));
      const int64_t bad = row_stats(loss, st.data());
      if (bad >= 0) fail_non_finite(p_.name, bad / p_.cols, bad % p_.cols);
      run_given(loss, st.data(), row_dscale.data());
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
    std::vector<float> keep, block_max;
  };

  const char* row_ptr(const void* base, DType d, int64_t r, int64_t c) const {
    return static_cast<const char*>(base) + (r * p_.cols + c) * dtype_size(d);
  }
  int64_t grad_esize() const { return dtype_size(p_.grad_dtype); }

  // Segments of a row in the Kept buffers: entries at their column, block maxima packed in
  // segment order (both sweeps walk the same segments, so they agree on the packing).
  static int64_t blocks_in(int64_t n) { return (n + kSoftmaxBlock - 1) / kSoftmaxBlock; }

  TileMaxSumExp stats(int64_t r, int64_t c0, int64_t c1, const RowSkip& skip, Kept* kept = nullptr) const {
    const TileStatsFn fn = ctx_.kernels->tile_stats[int(p_.dtype)][stats_variant(p_.cap > 0, p_.want_lin)];
    MaxSumExp<double> acc = max_sum_exp_empty<double>();
    double lin = 0;
    int64_t bad = -1, block = 0;
    for_each_run(c0, c1, skip, [&](int64_t a, int64_t b) {
      if (bad >= 0) return;
      float* keep = kept ? kept->keep.data() + (a - c0) : nullptr;
      float* bmax = kept ? kept->block_max.data() + block : nullptr;
      block += blocks_in(b - a);
      const TileMaxSumExp t = fn(StatsTile{row_ptr(p_.scores, p_.dtype, r, a), b - a, p_.scale, p_.cap, p_.colw ? p_.colw + a : nullptr, keep, bmax});
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
      void* g = p_.grad ? const_cast<char*>(static_cast<const char*>(p_.grad) + (r * p_.cols + a) * grad_esize()) : nullptr;
      const float* keep = kept ? kept->keep.data() + (a - c0) : nullptr;
      const float* bmax = kept ? kept->block_max.data() + block : nullptr;
      block += blocks_in(b - a);
      d += fn(ExpGradTile{row_ptr(p_.scores, p_.dtype, r, a), g, b - a, p_.scale, p_.cap, t.shift, t.coef, t.bias,
                          p_.colw ? p_.colw + a : nullptr, t.colw_coef, keep, bmax, p_.grad_scale, stream_grad()});
    }, [&](int64_t c) { zero_row(r, c, c + 1); });
    return d;
  }

  // A gradient this big cannot stay in cache for the caller, so it is written with
  // non-temporal stores (no read-for-ownership of lines that are about to be overwritten).
  bool stream_grad() const { return p_.grad && p_.rows * p_.cols * grad_esize() >= (int64_t(16) << 20); }

  void zero_row(int64_t r, int64_t c0, int64_t c1) const {
    if (!p_.grad || c1 <= c0) return;
    std::memset(static_cast<char*>(p_.grad) + (r * p_.cols + c0) * grad_esize(), 0, size_t((c1 - c0) * grad_esize()));
  }

  void throw_if_bad(const std::vector<int64_t>& row_bad) const {
    for (int64_t r = 0; r < p_.rows; ++r)
      if (row_bad[size_t(r)] >= 0) fail_non_finite(p_.name, r, row_bad[size_t(r)]);
  }

  Context& ctx_;
  SoftmaxProblem p_;
};

}  // namespace fl
