#include <cmath>
#include <string>
#include <vector>

#include "../api/error.h"
#include "contrastive.h"
#include "contrastive_math.h"
#include "csr.h"
#include "loss.h"
#include "score_tiles.h"
#include "softmax_rows.h"

namespace fl {

void check_decoupled_contrastive_shape(const DecoupledContrastiveArgs& a) {
  if (!a.positives && a.cols < a.rows)
    fail(err::kShape, "scores: diagonal positives expect at least as many columns as rows, received " +
                          std::to_string(a.rows) + "x" + std::to_string(a.cols));
  if (a.positives.weights) fail(err::kArg, "positives.weights: expected none (DCL's positives are unweighted)");
  if (a.positives)
    for (int64_t r = 0; r < a.rows; ++r)
      if (a.positives.size(r) != 1)
        fail(err::kCsr, "positives (row " + std::to_string(r) + "): expected exactly one positive per row, received " +
                            std::to_string(a.positives.size(r)));
}

void dclw_weights(const float* positive_scores, int64_t rows, float sigma, double* w) {
  double a_max = -INFINITY;
  for (int64_t i = 0; i < rows; ++i) {
    const float x = positive_scores[i];
    w[i] = x == -INFINITY ? -INFINITY : double(x) / double(sigma);
    a_max = std::fmax(a_max, w[i]);
  }
  double sum = 0;
  if (a_max != -INFINITY)
    for (int64_t i = 0; i < rows; ++i) sum += std::exp(w[i] - a_max);
  for (int64_t i = 0; i < rows; ++i) w[i] = dclw_weight(w[i], a_max, sum, double(rows));
}

namespace {

// ℓ_i = −w_i·z_ip + LSE over the negatives: the positive is a skipped column (it leaves the
// statistics and gets no dense gradient) whose derivative −u·w_i comes from the correction.
struct DclLoss {
  const DecoupledContrastiveArgs& a;
  const SoftmaxRows& engine;
  const int32_t* positive_col;  // per row
  const SkipLists& skips;       // per row: the positive and the exclusions, sorted
  const std::vector<double>& w; // per row
  std::vector<double> loss;
  std::vector<Entry> positive;

  double upstream(int64_t r) const { return fl::upstream(a, r, double(a.rows)); }

  bool active(int64_t) const { return true; }
  RowSkip skip(int64_t r) const { return skips.row(r); }
  RowSkip reads(int64_t r) const { return {positive_col + r, 1}; }

  DenseTerms terms(int64_t r, const RowStats& st) {
    const Entry e = engine.entry(r, positive_col[r]);
    positive[size_t(r)] = e;
    loss[size_t(r)] = dcl_row_loss(w[size_t(r)], e.z, st.lse());
    return DenseTerms{st.max, float(upstream(r) * st.inv_sum()), 0.f, 0.f};
  }

  double corrections(int64_t r, const RowStats&, const DenseTerms&, const SoftmaxRows& eng) const {
    // The sweep left the skipped positive at 0: its dense part is 0. A positive at −inf is out
    // and keeps that exact 0.
    if (positive[size_t(r)].x == -INFINITY) return 0;
    return eng.correct(r, positive_col[r], positive[size_t(r)], 0.f, float(-upstream(r) * w[size_t(r)]));
  }
};

LossResult run(Context& ctx, const DecoupledContrastiveArgs& a, ScoreTiles* tiles) {
  check_decoupled_contrastive_shape(a);
  SoftmaxRows engine(ctx, softmax_problem(a));
  const PositivesOrDiagonal positives(a.positives, a.rows);
  const Csr& pos = positives.csr();
  const SkipLists skips(a.rows, pos, a.exclude);  // ERR_CSR for an excluded positive
  const int32_t* positive_col = pos.cols;          // one per row (checked above)
  std::vector<double> w(size_t(a.rows), 1.0);
  if (a.row_weights) {
    w.assign(a.row_weights, a.row_weights + a.rows);
  } else if (a.sigma > 0) {
    if (tiles) fail(err::kArg, "sigma: DCLW on column tiles expects the row weights given (row_weights)");
    // On the raw scores S_ip (not z = scale·S), as the reference implementations do.
    std::vector<float> s(size_t(a.rows));
    for (int64_t r = 0; r < a.rows; ++r) s[size_t(r)] = engine.entry(r, positive_col[r]).x;
    dclw_weights(s.data(), a.rows, a.sigma, w.data());
  }
  DclLoss loss{a, engine, positive_col, skips, w, std::vector<double>(size_t(a.rows)), std::vector<Entry>(size_t(a.rows))};
  const double dscale = tiles ? engine.run_tiles(loss, *tiles) : engine.run(loss);
  return reduce_rows(a, loss.loss, double(a.rows), dscale);
}

}  // namespace

LossResult decoupled_contrastive(Context& ctx, const DecoupledContrastiveArgs& a) { return run(ctx, a, nullptr); }
LossResult decoupled_contrastive(Context& ctx, const DecoupledContrastiveArgs& a, ScoreTiles& tiles) { return run(ctx, a, &tiles); }

}  // namespace fl
