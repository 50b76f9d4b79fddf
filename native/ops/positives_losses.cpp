#include "../api/args.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../api/error.h"
#include "../isa/kernels.h"
#include "csr.h"
#include "loss.h"
#include "positives_math.h"
#include "score_tiles.h"
#include "softmax_rows.h"

namespace fl {

namespace {

// What the softmax-family losses over positives share: the skip lists, each positive's entry
// (read in terms(), before an in-place gradient sweep overwrites it) and its exact dℓ/dz.
// Rows without positives stay active with zero terms, so NaN/+inf there is still an error.
struct PositivesSoftmaxLoss {
  const PositivesLossArgs& a;
  const SoftmaxRows& engine;
  SkipLists skips;
  std::vector<double> loss;     // per row
  std::vector<Entry> entry;     // per positive
  std::vector<float> exact_dz;  // per positive, times the row's upstream factor

  PositivesSoftmaxLoss(const PositivesLossArgs& args, const SoftmaxRows& eng, SkipLists s)
      : a(args), engine(eng), skips(std::move(s)), loss(size_t(args.rows)),
        entry(size_t(args.positives.nnz(args.rows))),
        exact_dz(entry.size()) {}

  bool active(int64_t) const { return true; }
  RowSkip skip(int64_t r) const { return skips.row(r); }
  RowSkip reads(int64_t r) const { return {a.positives.cols + a.positives.begin(r), a.positives.size(r)}; }

  void read_positives(int64_t r) {
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) entry[size_t(e)] = engine.entry(r, a.positives.cols[e]);
  }

  // Writes every positive's exact gradient; `skipped`: the sweep left them out (dense part 0).
  double write_positives(int64_t r, const DenseTerms& t, const SoftmaxRows& eng, bool skipped) const {
    double d = 0;
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) {
      const int32_t c = a.positives.cols[e];
      const Entry& en = entry[size_t(e)];
      d += eng.correct(r, c, en, skipped ? 0.f : eng.dense(en, t, c), exact_dz[size_t(e)]);
    }
    return d;
  }
};

// MATH decoupledSoftmax (native/ops/positives_math.h). The statistics skip positives and exclusions, so the engine's row LSE is Z_i, the
// negatives-only LSE. With s_p = σ(Z − z_p) and q_j = e^{z_j − Z}:
//   ℓ = (1/n) Σ_p w_p·softplus(Z − z_p),  dℓ/dz_p = −(w_p/n)·s_p,  dℓ/dz_j = q_j·(1/n)Σ_p w_p s_p,
// so the dense coefficient is (1/n)Σ_p w_p s_p / Σ_j e^{z_j − max} against the row max.
struct DecoupledSoftmaxLoss : PositivesSoftmaxLoss {
  using PositivesSoftmaxLoss::PositivesSoftmaxLoss;

  DenseTerms terms(int64_t r, const RowStats& st) {
    const int64_t n = a.positives.size(r);
    if (n == 0) {
      loss[size_t(r)] = 0;
      return DenseTerms{st.max, 0.f, 0.f, 0.f};
    }
    read_positives(r);
    const double Z = st.lse(), u = upstream(a, r, double(a.rows)), inv_n = 1.0 / double(n);
    double l = 0, neg = 0;
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) {
      const double w = a.positives.weight(e);
      const DecoupledPositive p = decoupled_positive(double(entry[size_t(e)].z), Z, w);
      l += p.loss;
      neg += w * p.s;
      exact_dz[size_t(e)] = float(-u * w * inv_n * p.s);
    }
    loss[size_t(r)] = l * inv_n;
    return DenseTerms{st.max, float(u * neg * inv_n * st.inv_sum()), 0.f, 0.f};
  }

  double corrections(int64_t r, const RowStats&, const DenseTerms& t, const SoftmaxRows& eng) const {
    return write_positives(r, t, eng, true);
  }
};

// MATH multiLabelSoftmax (native/ops/positives_math.h). The statistics skip exclusions only: lse is over positives and negatives. With
// W = Σ_p w_p:  ℓ = Σ_p w_p (lse − z_p),  dℓ/dz_j = W·p_j − w_j·[j ∈ P]. A positive that is the
// row max uses lse − z = log1p(rest) and p − 1 = −rest/(1 + rest), exact where p ≈ 1.
struct MultiLabelSoftmaxLoss : PositivesSoftmaxLoss {
  using PositivesSoftmaxLoss::PositivesSoftmaxLoss;

  DenseTerms terms(int64_t r, const RowStats& st) {
    if (a.positives.size(r) == 0) {
      loss[size_t(r)] = 0;
      return DenseTerms{st.max, 0.f, 0.f, 0.f};
    }
    read_positives(r);
    const double lse = st.lse(), u = upstream(a, r, double(a.rows));
    double W = 0;
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) W += a.positives.weight(e);
    double l = 0;
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) {
      const double w = a.positives.weight(e);
      const float z = entry[size_t(e)].z;
      if (z == -INFINITY) {  // out: costs +∞ (when weighted), gradient 0
        if (w > 0) l = INFINITY;
        exact_dz[size_t(e)] = 0.f;
        continue;
      }
      const bool is_max = z == st.max;
      l += w * (is_max ? std::log1p(st.rest) : lse - double(z));
      const double dz = is_max ? (W - w) + W * st.p_max_minus_one() : W * std::exp(double(z) - lse) - w;
      exact_dz[size_t(e)] = float(u * dz);
    }
    loss[size_t(r)] = l;
    // Every column out (lse = −∞): nothing to spread, the row's loss is +∞.
    if (lse == -INFINITY) return DenseTerms{st.max, 0.f, 0.f, 0.f};
    return DenseTerms{st.max, float(u * W * st.inv_sum()), 0.f, 0.f};
  }

  double corrections(int64_t r, const RowStats&, const DenseTerms& t, const SoftmaxRows& eng) const {
    return write_positives(r, t, eng, false);
  }
};

template <class Loss>
LossResult run_softmax_loss(Context& ctx, const PositivesLossArgs& a, SkipLists skips, ScoreTiles* tiles) {
  SoftmaxRows engine(ctx, softmax_problem(a));
  Loss loss(a, engine, std::move(skips));
  const double dscale = tiles ? engine.run_tiles(loss, *tiles) : engine.run(loss);
  return reduce_rows(a, loss.loss, double(a.rows), dscale);
}

}  // namespace

// MATH binaryCrossEntropy (native/ops/positives_math.h), elementwise. Per tile, the runs between skipped columns (positives ∪ exclusions)
// go through the SIMD kernel as negatives (target 0); skipped columns get 0, and then each
// positive (target y = 1 or its weight) is computed and written in double: O(nnz).
LossResult binary_cross_entropy(Context& ctx, const PositivesLossArgs& a) {
  const SkipLists skips(a.rows, a.positives, a.exclude);
  const double mean_divisor = double(a.rows) * double(a.cols);
  const BceNegFn negatives = ctx.kernels->bce_negatives[int(a.dtype)][a.grad_dtype == DType::Float32 ? 0 : 1];
  const int64_t esize = dtype_size(a.grad_dtype);
  // The positives' scores, read before an in-place sweep overwrites them.
  std::vector<float> pos_x(size_t(a.positives.nnz(a.rows)));
  ctx.pool.parallel_for(a.rows, [&](int64_t r) {
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) pos_x[size_t(e)] = load_element(a.scores, a.dtype, r * a.cols + a.positives.cols[e]);
  });
  const int64_t tiles = tiles_per_row(a.cols);
  std::vector<BceSums> parts(size_t(a.rows * tiles), BceSums{0.0, 0.0, -1});
  for_each_row_tile(ctx.pool, a.rows, a.cols, [&](int64_t r, int64_t k, int64_t c0, int64_t c1) {
    const float u = float(upstream(a, r, mean_divisor));
    BceSums& t = parts[size_t(r * tiles + k)];
    for_each_run(c0, c1, skips.row(r), [&](int64_t b, int64_t e) {
      const int64_t i = r * a.cols + b;
      const BceSums s = negatives(BceNegTile{static_cast<const char*>(a.scores) + i * dtype_size(a.dtype),
                                             a.grad ? static_cast<char*>(a.grad) + i * esize : nullptr, e - b, a.scale, u, a.grad_scale});
      if (s.first_bad >= 0 && t.first_bad < 0) t.first_bad = b + s.first_bad;
      t.loss += s.loss;
      t.dscale += s.dscale;
    }, [&](int64_t c) {
      const float v = load_element(a.scores, a.dtype, r * a.cols + c);  // a skipped column is still checked
      if ((v != v || v == INFINITY) && t.first_bad < 0) t.first_bad = c;
      if (a.grad) store_element(a.grad, a.grad_dtype, r * a.cols + c, 0.f);  // exclusions stay 0; positives are written below
    });
  });
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t k = 0; k < tiles; ++k)
      if (parts[size_t(r * tiles + k)].first_bad >= 0) fail_non_finite("scores", r, parts[size_t(r * tiles + k)].first_bad);
  std::vector<double> row_loss(size_t(a.rows)), row_dscale(size_t(a.rows));
  ctx.pool.parallel_for(a.rows, [&](int64_t r) {
    double l = 0, d = 0;
    for (int64_t k = 0; k < tiles; ++k) {
      l += parts[size_t(r * tiles + k)].loss;
      d += parts[size_t(r * tiles + k)].dscale;
    }
    const double u = upstream(a, r, mean_divisor);
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) {
      const float v = pos_x[size_t(e)];
      const float z = a.scale * v;  // as the SIMD kernel rounds it
      const double y = a.positives.weight(e);
      l += bce_loss(double(z), y);
      if (v == -INFINITY) continue;  // out: gradient 0 (already written)
      const double dz = u * bce_slope(double(z), y);
      if (a.grad) store_element(a.grad, a.grad_dtype, r * a.cols + a.positives.cols[e], float(dz * double(a.scale)));
      d += dz * double(v);
    }
    row_loss[size_t(r)] = l;
    row_dscale[size_t(r)] = d;
  });
  double dscale = 0;
  for (double d : row_dscale) dscale += d;
  return reduce_rows(a, row_loss, mean_divisor, dscale);
}

namespace {

LossResult multi_label_softmax_on(Context& ctx, const PositivesLossArgs& a, ScoreTiles* tiles) {
  // The skip lists hold the exclusions only; building positives ∪ exclusions first rejects an
  // exclusion that is also a positive.
  SkipLists skips(a.rows, a.positives, a.exclude);
  skips = SkipLists(a.rows, a.exclude, Csr{});
  return run_softmax_loss<MultiLabelSoftmaxLoss>(ctx, a, std::move(skips), tiles);
}

// A CSR's entries in columns [c0, c0 + w), re-based at c0.
struct CsrSlice {
  std::vector<int32_t> row_ptr, cols;
  std::vector<float> weights;
  CsrSlice(const Csr& c, int64_t rows, int64_t c0, int64_t w) {
    if (!c) return;
    row_ptr.assign(size_t(rows + 1), 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t e = c.begin(r); e < c.end(r); ++e)
        if (c.cols[e] >= c0 && c.cols[e] < c0 + w) {
          cols.push_back(int32_t(c.cols[e] - c0));
          if (c.weights) weights.push_back(c.weights[e]);
        }
      row_ptr[size_t(r + 1)] = int32_t(cols.size());
    }
  }
  Csr view() const { return row_ptr.empty() ? Csr{} : Csr{row_ptr.data(), cols.data(), weights.empty() ? nullptr : weights.data()}; }
};

}  // namespace

LossResult decoupled_softmax(Context& ctx, const PositivesLossArgs& a) {
  return run_softmax_loss<DecoupledSoftmaxLoss>(ctx, a, SkipLists(a.rows, a.positives, a.exclude), nullptr);
}
LossResult decoupled_softmax(Context& ctx, const PositivesLossArgs& a, ScoreTiles& tiles) {
  return run_softmax_loss<DecoupledSoftmaxLoss>(ctx, a, SkipLists(a.rows, a.positives, a.exclude), &tiles);
}

LossResult multi_label_softmax(Context& ctx, const PositivesLossArgs& a) { return multi_label_softmax_on(ctx, a, nullptr); }
LossResult multi_label_softmax(Context& ctx, const PositivesLossArgs& a, ScoreTiles& tiles) { return multi_label_softmax_on(ctx, a, &tiles); }

// bce is elementwise: each tile is a matrix of its own (its positives and exclusions re-based),
// and the row losses and dScale add up over the tiles in order. 'mean' is applied at the end.
LossResult binary_cross_entropy(Context& ctx, const PositivesLossArgs& a, ScoreTiles& tiles) {
  SkipLists(a.rows, a.positives, a.exclude);  // ERR_CSR for an excluded positive, as the whole matrix would
  std::vector<double> loss(size_t(a.rows), 0.0);
  std::vector<float> tile_loss(size_t(a.rows));
  const std::vector<float> mean_u(a.reduction == Reduction::Mean ? size_t(a.rows) : 0, float(1.0 / (double(a.rows) * double(a.cols))));
  double dscale = 0;
  const int64_t T = tiles.tile_cols();
  for (int64_t c0 = 0; c0 < a.cols; c0 += T) {
    const int64_t w = std::min(T, a.cols - c0);
    const CsrSlice pos(a.positives, a.rows, c0, w), ex(a.exclude, a.rows, c0, w);
    PositivesLossArgs t = a;
    t.scores = tiles.scores(c0, w);
    t.dtype = DType::Float32;
    t.cols = w;
    t.grad = a.grad ? const_cast<void*>(t.scores) : nullptr;
    t.grad_dtype = DType::Float32;
    t.positives = pos.view();
    t.exclude = ex.view();
    t.row_loss = tile_loss.data();
    if (a.reduction == Reduction::Mean) {  // the whole matrix's factor 1/(B·N), as gradOutput
      t.reduction = Reduction::None;
      t.grad_output = mean_u.data();
    }
    LossResult part;
    try {
      part = binary_cross_entropy(ctx, t);
    } catch (const Error& e) {
      if (e.code != err::kNonFinite) throw;
      long long r = 0, c = 0;
      const size_t at = std::string(e.what()).rfind('[');
      if (at != std::string::npos) std::sscanf(e.what() + at, "[%lld, %lld]", &r, &c);
      fail_non_finite("scores", r, c0 + c);
    }
    for (int64_t r = 0; r < a.rows; ++r) loss[size_t(r)] += double(tile_loss[size_t(r)]);
    dscale += part.dscale;
    if (a.grad) tiles.gradient(c0, w);
  }
  return reduce_rows(a, loss, double(a.rows) * double(a.cols), dscale);
}

}  // namespace fl
