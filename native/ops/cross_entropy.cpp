#include "cross_entropy.h"

#include <cmath>
#include <string>
#include <vector>

#include "../api/error.h"
#include "cross_entropy_math.h"
#include "loss.h"
#include "softmax_rows.h"

namespace fl {

CrossEntropyTotals cross_entropy_totals(const CrossEntropyArgs& a) {
  double weight_sum = 0, mean_w = 1;
  if (a.class_weights) {
    double s = 0;
    for (int64_t j = 0; j < a.cols; ++j) s += a.class_weights[j];
    mean_w = s / double(a.cols);
  }
  for (int64_t i = 0; i < a.rows; ++i) {
    const int32_t y = a.labels[i];
    if (y == a.ignore_index) continue;
    if (y < 0 || y >= a.cols)
      fail(err::kLabelRange, "labels[" + std::to_string(i) + "]: expected a class in [0, " + std::to_string(a.cols) +
                                  ") or ignoreIndex (" + std::to_string(a.ignore_index) + "), received " + std::to_string(y));
    weight_sum += a.class_weights ? a.class_weights[y] : 1.0;
  }
  return {weight_sum, mean_w};
}

namespace {

struct CrossEntropyLoss {
  const CrossEntropyArgs& a;
  const SoftmaxRows& engine;
  CrossEntropyTotals totals;
  std::vector<double> loss;      // per row
  std::vector<Entry> label;      // the label's entry, read before an in-place sweep overwrites it
  std::vector<float> label_dz;

  bool ignored(int64_t r) const { return a.labels[r] == a.ignore_index; }

  // Ignored rows still run (their NaNs are errors too, and lse is reported), with zero terms.
  bool active(int64_t) const { return true; }
  RowSkip skip(int64_t) const { return {}; }
  RowSkip reads(int64_t r) const { return ignored(r) ? RowSkip{} : RowSkip{a.labels + r, 1}; }

  DenseTerms terms(int64_t r, const RowStats& st) {
    const double lse = st.lse();
    if (a.lse) a.lse[r] = float(lse);
    if (ignored(r)) {
      loss[size_t(r)] = 0;
      return DenseTerms{st.max, 0.f, 0.f, 0.f};
    }
    const int32_t y = a.labels[r];
    const Entry e = engine.entry(r, y);
    label[size_t(r)] = e;
    const double w_y = a.class_weights ? a.class_weights[y] : 1.0;
    const LabelTerms lt = label_terms(e.z == st.max, st.rest, lse, double(e.z));
    const CrossEntropyRow row = cross_entropy_row(lse, lt.margin, lt.p_minus_one, st.lin, w_y, totals.mean_class_weight, double(a.cols),
                                                  a.label_smoothing, a.z_loss, upstream(a, r, totals.weight_sum));
    loss[size_t(r)] = row.loss;
    label_dz[size_t(r)] = row.label_dz;
    DenseTerms t{st.max, float(double(row.coef) * st.inv_sum()), 0.f, 0.f};
    if (a.class_weights) t.colw_coef = -row.smooth;
    else t.bias = -row.smooth;
    return t;
  }

  double corrections(int64_t r, const RowStats&, const DenseTerms& t, const SoftmaxRows& eng) const {
    if (ignored(r)) return 0;
    const int32_t y = a.labels[r];
    const Entry& e = label[size_t(r)];
    // The label's gradient comes whole from terms() and is rounded once (matters for bf16).
    return eng.correct(r, y, e, eng.dense(e, t, y), label_dz[size_t(r)]);
  }
};

}  // namespace

namespace {

LossResult run(Context& ctx, const CrossEntropyArgs& a, ScoreTiles* tiles) {
  const CrossEntropyTotals totals = cross_entropy_totals(a);
  SoftmaxRows engine(ctx, softmax_problem(a, "logits", a.softcap, a.class_weights, a.label_smoothing > 0));
  CrossEntropyLoss loss{a, engine, totals, std::vector<double>(size_t(a.rows)), std::vector<Entry>(size_t(a.rows)),
                        std::vector<float>(size_t(a.rows))};
  const double dscale = tiles ? engine.run_tiles(loss, *tiles) : engine.run(loss);
  return reduce_rows(a, loss.loss, totals.weight_sum, dscale);
}

}  // namespace

LossResult cross_entropy(Context& ctx, const CrossEntropyArgs& a) { return run(ctx, a, nullptr); }
LossResult cross_entropy(Context& ctx, const CrossEntropyArgs& a, ScoreTiles& tiles) { return run(ctx, a, &tiles); }

}  // namespace fl
