#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../api/error.h"
#include "../isa/kernels.h"
#include "contrastive.h"
#include "contrastive_math.h"
#include "csr.h"
#include "loss.h"
#include "score_tiles.h"
#include "softmax_rows.h"

namespace fl {

void check_info_nce_shape(const InfoNCEArgs& a) {
  if (a.symmetric && a.rows != a.cols)
    fail(err::kShape, "scores: symmetric InfoNCE expects a square matrix, received " + std::to_string(a.rows) + "x" +
                          std::to_string(a.cols));
  if (a.symmetric && (a.positives || a.exclude))
    fail(err::kArg, "symmetric: expected the diagonal positives and no exclusions (CLIP), received CSR positives or exclude");
  if (!a.positives && a.cols < a.rows)
    fail(err::kShape, "scores: diagonal positives expect at least as many columns as rows, received " +
                          std::to_string(a.rows) + "x" + std::to_string(a.cols));
}

namespace {

// ---------- one-way: the softmax-row engine, positives as sparse corrections ----------

struct OneWayInfoNCE {
  const InfoNCEArgs& a;
  const SoftmaxRows& engine;
  const Csr& pos;
  const SkipLists& excluded;
  double rows_with_positives;
  std::vector<double> loss;      // per row
  std::vector<Entry> positive;   // per positive, read before an in-place sweep overwrites it
  std::vector<float> positive_dz;

  // Rows without positives still run (their NaNs are errors too), with zero terms. The
  // positives stay in the statistics (SupCon); only exclusions are skipped.
  bool active(int64_t) const { return true; }
  RowSkip skip(int64_t r) const { return excluded.row(r); }
  RowSkip reads(int64_t r) const { return {pos.cols + pos.begin(r), pos.size(r)}; }

  DenseTerms terms(int64_t r, const RowStats& st) {
    const int64_t e0 = pos.begin(r), e1 = pos.end(r);
    if (e0 == e1) {
      loss[size_t(r)] = 0;
      return DenseTerms{st.max, 0.f, 0.f, 0.f};
    }
    const double n = double(e1 - e0), u = upstream(a, r, rows_with_positives), lse = st.lse();
    double W = 0;
    for (int64_t e = e0; e < e1; ++e) W += pos.weight(e);
    double l = 0;
    for (int64_t e = e0; e < e1; ++e) {
      const Entry en = engine.entry(r, pos.cols[e]);
      const SoftmaxEntry s = softmax_entry(en.z, st.max, st.rest, lse);
      positive[size_t(e)] = en;
      positive_dz[size_t(e)] = float(info_nce_positive_dz(pos.weight(e), W, n, u, s));
      l += info_nce_positive_loss(pos.weight(e), s);
    }
    loss[size_t(r)] = l / n;
    return DenseTerms{st.max, float(u * W / n * st.inv_sum()), 0.f, 0.f};
  }

  double corrections(int64_t r, const RowStats&, const DenseTerms& t, const SoftmaxRows& eng) const {
    double d = 0;
    for (int64_t e = pos.begin(r); e < pos.end(r); ++e) {
      const Entry& en = positive[size_t(e)];
      if (en.x == -INFINITY) continue;  // out: the sweep's exact 0 stands
      d += eng.correct(r, pos.cols[e], en, eng.dense(en, t, pos.cols[e]), positive_dz[size_t(e)]);
    }
    return d;
  }
};

LossResult one_way(Context& ctx, const InfoNCEArgs& a, ScoreTiles* tiles) {
  const PositivesOrDiagonal positives(a.positives, a.rows);
  const Csr& pos = positives.csr();
  const SkipLists excluded(a.rows, a.exclude, Csr{});
  int64_t rows_with_positives = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    if (pos.size(r) > 0) ++rows_with_positives;
    const int32_t* x0 = excluded.cols(r);
    const int32_t* x1 = x0 + excluded.size(r);
    for (int64_t e = pos.begin(r); e < pos.end(r); ++e)
      if (std::binary_search(x0, x1, pos.cols[e]))
        fail(err::kCsr, "exclude (row " + std::to_string(r) + "): expected no column that is also a positive, received column " +
                            std::to_string(pos.cols[e]));
  }
  SoftmaxRows engine(ctx, softmax_problem(a));
  const size_t nnz = size_t(pos.nnz(a.rows));
  OneWayInfoNCE loss{a, engine, pos, excluded, double(rows_with_positives), std::vector<double>(size_t(a.rows)),
                     std::vector<Entry>(nnz), std::vector<float>(nnz)};
  const double dscale = tiles ? engine.run_tiles(loss, *tiles) : engine.run(loss);
  return reduce_rows(a, loss.loss, double(rows_with_positives), dscale);
}

// ---------- symmetric (CLIP): row and column statistics from one read ----------

// Column strip width of the statistics pass: depends on n only, so the merge order (and the
// result) does not depend on the thread count. 512 fp32 columns × kSymStatsBlockRows rows
// is 64 KiB, read twice (the second time from L1/L2); 2 KiB stretches of a row keep the
// memory system streaming (256 measured slower, 1024 no faster).
constexpr int64_t kSymStrip = 512;

LossResult symmetric(Context& ctx, const InfoNCEArgs& a) {
  const int64_t n = a.rows;
  if (n == 0) return {0, 0};
  const size_t un = size_t(n);
  const int64_t strips = (n + kSymStrip - 1) / kSymStrip;
  std::vector<float> part_max(size_t(strips * n)), col_max(un);
  std::vector<double> part_rest(size_t(strips * n)), col_rest(un);
  std::vector<int64_t> bad(size_t(strips), -1);
  const SymStatsFn stats = ctx.kernels->sym_stats[int(a.dtype)];
  ctx.pool.parallel_for(strips, [&](int64_t s) {
    const int64_t c0 = s * kSymStrip, c1 = std::min(n, c0 + kSymStrip);
    thread_local std::vector<float> scratch;
    scratch.resize(size_t(5 * (c1 - c0)));
    bad[size_t(s)] = stats(SymStatsStrip{a.scores, n, n, c0, c1, a.scale, part_max.data() + s * n, part_rest.data() + s * n,
                                         col_max.data() + c0, col_rest.data() + c0, scratch.data()});
  });
  int64_t first_bad = -1;
  for (int64_t b : bad)
    if (b >= 0 && (first_bad < 0 || b < first_bad)) first_bad = b;
  if (first_bad >= 0) fail_non_finite("scores", first_bad / n, first_bad % n);

  // Row i's loss r_i and column i's loss c_i share the diagonal entry; rowLoss_i = (r_i + c_i)/2,
  // and gradOutput_i (reduction 'none') weights both. 'mean' divides each half by n.
  std::vector<float> row_shift(un), row_coef(un), col_shift(un), col_coef(un);
  std::vector<float> diag_x(un), diag_dz(un), row_max_z(un);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    MaxSumExp<double> row = max_sum_exp_empty<double>();
    for (int64_t s = 0; s < strips; ++s) merge(row, MaxSumExp<double>{part_max[size_t(s * n + i)], part_rest[size_t(s * n + i)]});
    const MaxSumExp<double> col{col_max[size_t(i)], col_rest[size_t(i)]};
    const float x = load_element(a.scores, a.dtype, i * n + i);
    diag_x[size_t(i)] = x;
    row_max_z[size_t(i)] = row.max;
    const float z = x == -INFINITY ? -INFINITY : a.scale * x;
    const SoftmaxEntry er = softmax_entry(z, row.max, row.rest, log_sum_exp(row));
    const SoftmaxEntry ec = softmax_entry(z, col.max, col.rest, log_sum_exp(col));
    const double l = (er.margin + ec.margin) / 2;
    a.row_loss[i] = float(l);
    total += l;
    const double u = upstream(a, i, double(n)) / 2;
    row_shift[size_t(i)] = row.max == -INFINITY ? 0.f : row.max;
    row_coef[size_t(i)] = row.max == -INFINITY ? 0.f : float(u / (1.0 + row.rest));
    col_shift[size_t(i)] = col.max == -INFINITY ? 0.f : col.max;
    col_coef[size_t(i)] = col.max == -INFINITY ? 0.f : float(u / (1.0 + col.rest));
    diag_dz[size_t(i)] = float(u * (er.p_minus_one + ec.p_minus_one));
  }
  if (a.reduction == Reduction::Mean) total /= double(n);

  double dscale = 0;
  if (a.grad || a.grad_scale) {
    const SymGradFn grad = ctx.kernels->sym_grad[int(a.dtype)][a.grad_dtype == DType::Float32 ? 0 : 1];
    // One exponential per entry instead of two when every row and column max is within
    // kSymSpread of the largest, K (CLIP's cosines times a logit scale ≤ 20 always are): then
    // e^{K − col max} ≤ e^40 cannot overflow, and a column term the factorisation rounds away
    // (its row exponential below e^-87) is below e^-47 of its column's sum.
    float K = -INFINITY, lowest = INFINITY;
    for (int64_t i = 0; i < n; ++i)
      for (const float m : {row_max_z[size_t(i)], col_max[size_t(i)]})
        if (m != -INFINITY) {
          K = std::max(K, m);
          lowest = std::min(lowest, m);
        }
    std::vector<float> row_delta, col_gamma;
    if (K != -INFINITY && double(K) - double(lowest) <= kSymSpread) {
      row_delta.resize(un);
      col_gamma.resize(un);
      for (int64_t i = 0; i < n; ++i) {
        row_delta[size_t(i)] = row_max_z[size_t(i)] == -INFINITY ? 0.f : float(std::exp(double(row_max_z[size_t(i)]) - K));
        col_gamma[size_t(i)] = col_max[size_t(i)] == -INFINITY ? 0.f : float(col_coef[size_t(i)] * std::exp(double(K) - col_max[size_t(i)]));
      }
    }
    std::vector<double> row_dscale(un);
    const int64_t rows_per_task = std::max<int64_t>(1, 32768 / n);
    ctx.pool.parallel_for((n + rows_per_task - 1) / rows_per_task, [&](int64_t t) {
      for (int64_t r = t * rows_per_task; r < std::min(n, (t + 1) * rows_per_task); ++r)
        row_dscale[size_t(r)] = grad(SymGradRows{a.scores, a.grad, n, r, r + 1, a.scale, row_shift.data(), row_coef.data(),
                                                 col_shift.data(), col_coef.data(), row_delta.empty() ? nullptr : row_delta.data(),
                                                 col_gamma.empty() ? nullptr : col_gamma.data()});
    });
    // The diagonal's whole derivative a_i(p_ii − 1) + b_i(q_ii − 1), rounded once (its p − 1
    // parts are exact; the sweep's dense value there is replaced, also in dScale).
    for (int64_t i = 0; i < n; ++i) {
      const float x = diag_x[size_t(i)];
      if (x != -INFINITY) {
        const double z = double(a.scale * x);
        const double dense = row_coef[size_t(i)] * std::exp(z - row_shift[size_t(i)]) + col_coef[size_t(i)] * std::exp(z - col_shift[size_t(i)]);
        if (a.grad) store_element(a.grad, a.grad_dtype, i * n + i, diag_dz[size_t(i)] * a.scale);
        row_dscale[size_t(i)] += (double(diag_dz[size_t(i)]) - dense) * double(x);
      }
      dscale += row_dscale[size_t(i)];
    }
  }
  return {total, a.grad_scale ? dscale : 0.0};
}

}  // namespace

LossResult info_nce(Context& ctx, const InfoNCEArgs& a) {
  check_info_nce_shape(a);
  return a.symmetric ? symmetric(ctx, a) : one_way(ctx, a, nullptr);
}

LossResult info_nce(Context& ctx, const InfoNCEArgs& a, ScoreTiles& tiles) {
  check_info_nce_shape(a);
  if (a.symmetric) fail(err::kArg, "symmetric: InfoNCE's column statistics need whole columns, not column tiles");
  return one_way(ctx, a, &tiles);
}

void sharded_column_stats(Context& ctx, const ShardedColumnStatsArgs& a) {
  const int64_t B = a.rows, n = a.cols;
  const int64_t strips = (n + kSymStrip - 1) / kSymStrip;
  std::vector<float> row_max(size_t(strips * B)), col_max(static_cast<size_t>(n));
  std::vector<double> row_rest(size_t(strips * B));
  std::vector<int64_t> bad(size_t(strips), -1);
  const SymStatsFn stats = ctx.kernels->sym_stats[int(DType::Float32)];
  ctx.pool.parallel_for(strips, [&](int64_t s) {
    const int64_t c0 = s * kSymStrip, c1 = std::min(n, c0 + kSymStrip);
    thread_local std::vector<float> scratch;
    scratch.resize(size_t(5 * (c1 - c0)));
    bad[size_t(s)] = stats(SymStatsStrip{a.scores, n, B, c0, c1, a.scale, row_max.data() + s * B, row_rest.data() + s * B,
                                         col_max.data() + c0, a.rest + c0, scratch.data()});
  });
  int64_t first_bad = -1;
  for (int64_t b : bad)
    if (b >= 0 && (first_bad < 0 || b < first_bad)) first_bad = b;
  a.bad[0] = first_bad < 0 ? -1 : int32_t(first_bad / n);
  a.bad[1] = first_bad < 0 ? -1 : int32_t(first_bad % n);
  for (int64_t j = 0; j < n; ++j) a.max[j] = col_max[size_t(j)];
}

LossResult sharded_symmetric_grad(Context& ctx, const ShardedSymmetricGradArgs& a) {
  const int64_t B = a.rows, n = a.cols;
  if (B == 0 || n == 0) return {0, 0};
  // A row or column with no entry in has max −inf and no gradient: shift 0, coefficient 0.
  std::vector<float> row_shift(static_cast<size_t>(B)), row_coef(static_cast<size_t>(B)), col_shift(static_cast<size_t>(n)), col_coef(static_cast<size_t>(n));
  for (int64_t i = 0; i < B; ++i) {
    const bool in = a.row_max[i] != -INFINITY;
    row_shift[size_t(i)] = in ? float(a.row_max[i]) : 0.f;
    row_coef[size_t(i)] = in ? float(a.row_coef[i]) : 0.f;
  }
  for (int64_t j = 0; j < n; ++j) {
    const bool in = a.col_max[j] != -INFINITY;
    col_shift[size_t(j)] = in ? float(a.col_max[j]) : 0.f;
    col_coef[size_t(j)] = in ? float(a.col_coef[j]) : 0.f;
  }
  const SymGradFn grad = ctx.kernels->sym_grad[int(DType::Float32)][0];
  std::vector<double> row_dscale(static_cast<size_t>(B));
  const int64_t rows_per_task = std::max<int64_t>(1, 32768 / n);
  ctx.pool.parallel_for((B + rows_per_task - 1) / rows_per_task, [&](int64_t t) {
    for (int64_t r = t * rows_per_task; r < std::min(B, (t + 1) * rows_per_task); ++r)
      row_dscale[size_t(r)] = grad(SymGradRows{a.scores, a.grad, n, r, r + 1, a.scale, row_shift.data(), row_coef.data(),
                                               col_shift.data(), col_coef.data(), nullptr, nullptr});
  });
  double dscale = 0;
  for (double d : row_dscale) dscale += d;
  return {0.0, dscale};
}

}  // namespace fl
