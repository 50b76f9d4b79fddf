// The block reads of the label-sharded losses (native/ops/sharded.cpp, soft_topk.cpp; docs/MATH.md
// §5) on every ISA: a matrix cut into uneven column shards (one empty), each shard's partials
// merged as lib/sharded.ts merges them, against long-double references over the whole row; then
// each shard's finish with the merged statistics. Single- and multi-tile rows, −inf entries,
// skip lists, softcap and class weights; NaN reported (not thrown) with its row and column.
#include <algorithm>
#include <cmath>
#include <vector>

#include "check.h"
#include "native/core/context.h"
#include "native/ops/contrastive.h"
#include "native/api/args.h"
#include "native/ops/soft_topk.h"

using namespace fl;
using fltest::Rng;
using LD = long double;

namespace {

struct Matrix {
  int64_t B, N;
  std::vector<float> x;
  std::vector<std::vector<int32_t>> skip;  // global columns per row, sorted
  std::vector<float> w;                    // class weights
};

Matrix make(Rng& rng, int64_t B, int64_t N) {
  Matrix m{B, N, std::vector<float>(size_t(B * N)), std::vector<std::vector<int32_t>>(static_cast<size_t>(B)), std::vector<float>(size_t(N))};
  for (auto& v : m.x) v = float(rng.normal() * 3);
  for (auto& v : m.w) v = float(0.5 + rng.uniform());
  for (int64_t r = 0; r < B; ++r)
    for (int64_t c = 0; c < N; ++c) {
      if (r == 1 && c % 5 == 2) m.x[size_t(r * N + c)] = -INFINITY;  // masked entries
      if (r == 2 && c != 7) m.x[size_t(r * N + c)] = -INFINITY;      // one entry in
      if (r == 3) m.x[size_t(r * N + c)] = -INFINITY;                // none in
      if (r == 0 && c == 11) m.x[size_t(r * N + c)] = 40.f;          // a dominant entry
      if ((r == 0 || r == 4) && c % 13 == 3) m.skip[size_t(r)].push_back(int32_t(c));
    }
  return m;
}

// Columns [c0, c1) as a block, and its skip lists in local columns.
struct Shard {
  int64_t c0, n;
  std::vector<float> x, w;
  std::vector<int32_t> ptr, cols;
  Csr csr() const { return Csr{ptr.data(), cols.data(), nullptr}; }
};
Shard shard(const Matrix& m, int64_t c0, int64_t c1) {
  Shard s{c0, c1 - c0, std::vector<float>(size_t(m.B * (c1 - c0))), std::vector<float>(m.w.begin() + c0, m.w.begin() + c1), {0}, {}};
  for (int64_t r = 0; r < m.B; ++r) {
    std::copy(m.x.begin() + r * m.N + c0, m.x.begin() + r * m.N + c1, s.x.begin() + r * s.n);
    for (int32_t c : m.skip[size_t(r)])
      if (c >= c0 && c < c1) s.cols.push_back(int32_t(c - c0));
    s.ptr.push_back(int32_t(s.cols.size()));
  }
  return s;
}

std::vector<int64_t> edges(int64_t N) { return {0, N / 3, N / 3, N / 3 + N / 2, N}; }  // 4 shards, one empty

// z as the kernels form it: scale·x rounded to fp32 (MATH §1), then the softcap.
LD zof(float x, float scale, float cap) {
  const LD z = LD(float(scale * x));
  return cap > 0 ? cap * std::tanh(z / cap) : z;
}
LD dzds(float x, float scale, float cap) {  // dz/dscale
  if (!(cap > 0)) return x;
  const LD t = std::tanh(LD(scale) * x / cap);
  return x * (1 - t * t);
}

}  // namespace

FL_TEST(softmax_partials_and_finish_every_isa) {
  Rng rng(17);
  for (fl::Isa isa : fltest::isas()) {
    Context ctx(isa, 3);
    for (int64_t N : {int64_t(61), int64_t(70001)}) {
      for (float cap : {0.f, 15.f}) {
        const Matrix m = make(rng, 5, N);
        const float scale = 1.3f;
        const int64_t B = m.B;
        std::vector<Shard> shards;
        const std::vector<int64_t> e = edges(N);
        for (size_t k = 0; k + 1 < e.size(); ++k) shards.push_back(shard(m, e[k], e[k + 1]));
        // Partials, merged: the max round, then the rescaled sums (lib/shardedMath.ts rescale).
        std::vector<double> M(static_cast<size_t>(B), -INFINITY), cnt(static_cast<size_t>(B)), tail(static_cast<size_t>(B)), E(static_cast<size_t>(B)), lin(static_cast<size_t>(B)), ws(static_cast<size_t>(B));
        std::vector<std::vector<double>> mx, rest, ex;
        for (const Shard& s : shards) {
          std::vector<double> a(static_cast<size_t>(B)), b(static_cast<size_t>(B)), c(static_cast<size_t>(B)), d(static_cast<size_t>(B)), f(static_cast<size_t>(B));
          int32_t bad[2] = {7, 7};
          ShardedRowStatsArgs args{};
          static_cast<ScoresArgs&>(args) = ScoresArgs{s.x.data(), DType::Float32, B, s.n, scale};
          args.softcap = cap;
          args.skip = s.csr();
          args.class_weights = s.w.data();
          args.max = a.data(), args.rest = b.data(), args.lin = c.data(), args.exp_dscale = d.data(), args.lin_dscale = f.data();
          args.bad = bad;
          sharded_row_stats(ctx, args);
          FL_CHECK(bad[0] == -1 && bad[1] == -1, "no bad entry expected, got (%d, %d)", bad[0], bad[1]);
          for (int64_t r = 0; r < B; ++r) {
            M[size_t(r)] = std::max(M[size_t(r)], a[size_t(r)]);
            lin[size_t(r)] += c[size_t(r)];
            ws[size_t(r)] += f[size_t(r)];
          }
          mx.push_back(a), rest.push_back(b), ex.push_back(d);
        }
        for (size_t k = 0; k < shards.size(); ++k)
          for (int64_t r = 0; r < B; ++r) {
            const double m_ = mx[k][size_t(r)];
            if (m_ == -INFINITY) continue;
            if (m_ == M[size_t(r)]) {
              cnt[size_t(r)] += 1, tail[size_t(r)] += rest[k][size_t(r)], E[size_t(r)] += ex[k][size_t(r)];
            } else {
              const double back = std::exp(m_ - M[size_t(r)]);
              tail[size_t(r)] += (1 + rest[k][size_t(r)]) * back, E[size_t(r)] += ex[k][size_t(r)] * back;
            }
          }
        std::vector<double> rTotal(static_cast<size_t>(B)), coef(static_cast<size_t>(B)), linf(static_cast<size_t>(B));
        std::vector<LD> lse_ref(static_cast<size_t>(B));
        double worst = 0;
        for (int64_t r = 0; r < B; ++r) {
          std::vector<char> out(size_t(N), 0);
          for (int32_t c : m.skip[size_t(r)]) out[size_t(c)] = 1;
          LD zmax = -INFINITY, sum = 0, l = 0, esum = 0, wsum = 0, labs = 0, wsabs = 0;
          for (int64_t c = 0; c < N; ++c) {
            const float x = m.x[size_t(r * N + c)];
            if (!out[size_t(c)] && x != -INFINITY) zmax = std::max(zmax, zof(x, scale, cap));
          }
          for (int64_t c = 0; c < N; ++c) {
            const float x = m.x[size_t(r * N + c)];
            if (out[size_t(c)] || x == -INFINITY) continue;
            const LD z = zof(x, scale, cap);
            sum += std::exp(z - zmax);
            esum += std::exp(z - zmax) * dzds(x, scale, cap);
            l += m.w[size_t(c)] * z;
            labs += std::fabs(m.w[size_t(c)] * z);
            wsum += m.w[size_t(c)] * dzds(x, scale, cap);
            wsabs += std::fabs(m.w[size_t(c)] * dzds(x, scale, cap));
          }
          rTotal[size_t(r)] = cnt[size_t(r)] - 1 + tail[size_t(r)];
          coef[size_t(r)] = 0.7 + 0.1 * double(r);
          linf[size_t(r)] = 0.25;
          if (zmax == -INFINITY) {
            FL_CHECK(M[size_t(r)] == -INFINITY && cnt[size_t(r)] == 0, "row %lld: no entry in, max %g", (long long)r, M[size_t(r)]);
            continue;
          }
          lse_ref[size_t(r)] = zmax + std::log(sum);
          const LD lse = M[size_t(r)] + std::log1p(LD(rTotal[size_t(r)]));
          worst = std::max(worst, double(std::fabs(lse - lse_ref[size_t(r)]) / std::max<LD>(1, std::fabs(lse_ref[size_t(r)]))));
          // The sums against exp(z − zmax), zmax = M up to the fp32 transform.
          const LD scaleE = std::exp(LD(M[size_t(r)]) - zmax);
          worst = std::max(worst, double(std::fabs(E[size_t(r)] * scaleE - esum) / std::max<LD>(1, sum * 10)));
          worst = std::max(worst, double(std::fabs(lin[size_t(r)] - l) / std::max<LD>(1, labs)));
          worst = std::max(worst, double(std::fabs(ws[size_t(r)] - wsum) / std::max<LD>(1, wsabs)));
          if (r == 0 && cap == 0) {
            // The dominant entry: rest stays exact (p − 1 = −rest/(1 + rest)), so it is tiny, not 0.
            FL_CHECK(rTotal[0] > 0 && rTotal[0] < 1e-10, "row 0: rest %g", rTotal[0]);
          }
        }
        FL_CHECK(worst < 2e-6, "isa %s N=%lld cap=%g: partials worst error %.3g", isa_name(isa), (long long)N, cap, worst);
        // Finish on every shard, against (coef·p − lin·w)·dz/dx.
        double gworst = 0;
        for (const Shard& s : shards) {
          std::vector<float> g(s.x.size(), NAN);
          ShardedSoftmaxGradArgs args{};
          static_cast<ScoresArgs&>(args) = ScoresArgs{s.x.data(), DType::Float32, B, s.n, scale};
          args.softcap = cap;
          args.skip = s.csr();
          args.class_weights = s.w.data();
          args.max = M.data(), args.rest = rTotal.data(), args.coef = coef.data(), args.lin = linf.data(), args.grad = g.data();
          sharded_softmax_grad(ctx, args);
          for (int64_t r = 0; r < B; ++r)
            for (int64_t c = 0; c < s.n; ++c) {
              const float x = s.x[size_t(r * s.n + c)], got = g[size_t(r * s.n + c)];
              const bool skipped = std::binary_search(s.cols.begin() + s.ptr[size_t(r)], s.cols.begin() + s.ptr[size_t(r + 1)], int32_t(c));
              if (skipped || x == -INFINITY || M[size_t(r)] == -INFINITY) {
                FL_CHECK(got == 0.f, "[%lld, %lld] out: gradient %g", (long long)r, (long long)c, got);
                continue;
              }
              const LD z = zof(x, scale, cap);
              const LD dzdx = cap > 0 ? scale * (1 - std::pow(std::tanh(LD(scale) * x / cap), 2)) : LD(scale);
              const LD want = (coef[size_t(r)] * std::exp(z - lse_ref[size_t(r)]) - linf[size_t(r)] * s.w[size_t(c)]) * dzdx;
              gworst = std::max(gworst, double(std::fabs(got - want) / (std::fabs(want) + 1e-3)));
            }
        }
        // The softcap's tanh and sech² are the kernels' fp32 approximations (softmax_rows.inl vtanh).
        FL_CHECK(gworst < (cap > 0 ? 3e-5 : 1e-5), "isa %s N=%lld cap=%g: gradient worst error %.3g", isa_name(isa), (long long)N, cap, gworst);
      }
    }
  }
}

FL_TEST(softmax_partials_report_nan_without_throwing) {
  for (fl::Isa isa : fltest::isas()) {
    Context ctx(isa, 2);
    std::vector<float> x(3 * 40, 1.f);
    x[2 * 40 + 17] = NAN;
    x[2 * 40 + 30] = INFINITY;
    std::vector<double> mx(3), rest(3);
    int32_t bad[2] = {0, 0};
    ShardedRowStatsArgs a{};
    static_cast<ScoresArgs&>(a) = ScoresArgs{x.data(), DType::Float32, 3, 40, 1.f};
    a.max = mx.data(), a.rest = rest.data(), a.bad = bad;
    sharded_row_stats(ctx, a);
    FL_CHECK(bad[0] == 2 && bad[1] == 17, "isa %s: bad (%d, %d), expected (2, 17)", isa_name(isa), bad[0], bad[1]);
  }
}

FL_TEST(topk_range_sums_and_grad_every_isa) {
  Rng rng(23);
  for (fl::Isa isa : fltest::isas()) {
    Context ctx(isa, 3);
    for (int64_t N : {int64_t(57), int64_t(70001)}) {
      const Matrix m = make(rng, 5, N);
      const float scale = 0.9f, alpha = 2.f;
      const int64_t B = m.B;
      const std::vector<int64_t> e = edges(N);
      std::vector<double> t(static_cast<size_t>(B)), coef(static_cast<size_t>(B));
      for (int64_t r = 0; r < B; ++r) t[size_t(r)] = 0.3 * double(r) - 0.5, coef[size_t(r)] = r == 4 ? 0.0 : -0.6 - 0.1 * double(r);
      std::vector<double> zmax(static_cast<size_t>(B), -INFINITY), zmin(static_cast<size_t>(B), INFINITY), count(static_cast<size_t>(B));
      std::vector<double> sums(size_t(5 * B));
      double dscale = 0, worst = 0;
      std::vector<int32_t> all(static_cast<size_t>(B));
      for (int64_t r = 0; r < B; ++r) all[size_t(r)] = int32_t(r);
      std::vector<float> grad(m.x.size(), 0.f);
      for (size_t k = 0; k + 1 < e.size(); ++k) {
        const Shard s = shard(m, e[k], e[k + 1]);
        ShardedTopKBlock blk{};
        static_cast<ScoresArgs&>(blk) = ScoresArgs{s.x.data(), DType::Float32, B, s.n, scale};
        blk.alpha = alpha;
        blk.exclude = s.csr();
        std::vector<double> a(static_cast<size_t>(B)), b(static_cast<size_t>(B)), c(static_cast<size_t>(B));
        int32_t bad[2];
        ShardedTopKRangeArgs ra{};
        static_cast<ShardedTopKBlock&>(ra) = blk;
        ra.max = a.data(), ra.min = b.data(), ra.count = c.data(), ra.bad = bad;
        sharded_topk_range(ctx, ra);
        FL_CHECK(bad[0] == -1, "no bad entry expected");
        for (int64_t r = 0; r < B; ++r) zmax[size_t(r)] = std::max(zmax[size_t(r)], a[size_t(r)]), zmin[size_t(r)] = std::min(zmin[size_t(r)], b[size_t(r)]), count[size_t(r)] += c[size_t(r)];
        std::vector<float> out(size_t(5 * B));
        ShardedTopKSumsArgs sa{};
        static_cast<ShardedTopKBlock&>(sa) = blk;
        sa.rows_at = all.data(), sa.searching = B, sa.t = t.data(), sa.sums = out.data();
        sharded_topk_sums(ctx, sa);
        for (size_t q = 0; q < out.size(); ++q) sums[q] += out[q];
        std::vector<float> g(s.x.size(), 5.f);
        ShardedTopKGradArgs ga{};
        static_cast<ShardedTopKBlock&>(ga) = blk;
        ga.t = t.data(), ga.coef = coef.data(), ga.grad = g.data();
        dscale += sharded_topk_grad(ctx, ga).dscale;
        for (int64_t r = 0; r < B; ++r)
          for (int64_t c2 = 0; c2 < s.n; ++c2) grad[size_t(r * N + s.c0 + c2)] = g[size_t(r * s.n + c2)];
      }
      LD want_dscale = 0;
      for (int64_t r = 0; r < B; ++r) {
        std::vector<char> out(size_t(N), 0);
        for (int32_t c : m.skip[size_t(r)]) out[size_t(c)] = 1;
        LD hi = -INFINITY, lo = INFINITY, n = 0, mm = 0, plo = 0, qhi = 0, vlo = 0, vhi = 0;
        for (int64_t c = 0; c < N; ++c) {
          const float x = m.x[size_t(r * N + c)];
          const float got = grad[size_t(r * N + c)];
          if (out[size_t(c)] || x == -INFINITY) {
            // Out entries: 0 where the row is swept; a row with coef 0 is left as it was.
            FL_CHECK(got == (coef[size_t(r)] == 0 ? 5.f : 0.f), "[%lld, %lld] out: gradient %g", (long long)r, (long long)c, got);
            continue;
          }
          const LD z = LD(float(scale * x));
          hi = std::max(hi, z), lo = std::min(lo, z), n += 1;
          const LD arg = alpha * (z + t[size_t(r)]);
          const LD p = 1 / (1 + std::exp(-arg)), q = 1 / (1 + std::exp(arg));
          if (arg >= 0) mm += 1, qhi += q, vhi += p * q;
          else plo += p, vlo += p * q;
          if (coef[size_t(r)] == 0) continue;
          const LD want = coef[size_t(r)] * p * q * scale;
          worst = std::max(worst, double(std::fabs(got - want) / (std::fabs(want) + 1e-6)));
          want_dscale += coef[size_t(r)] * p * q * x;
        }
        FL_CHECK(zmax[size_t(r)] == double(hi) && zmin[size_t(r)] == double(lo) && count[size_t(r)] == double(n), "row %lld: range (%g, %g, %g) vs (%g, %g, %g)",
                 (long long)r, zmax[size_t(r)], zmin[size_t(r)], count[size_t(r)], double(hi), double(lo), double(n));
        const double* s = &sums[size_t(5 * r)];
        FL_CHECK(s[0] == double(mm), "row %lld: #{a >= 0} %g vs %g", (long long)r, s[0], double(mm));
        const LD ref[4] = {plo, qhi, vlo, vhi};
        for (int q = 0; q < 4; ++q) worst = std::max(worst, double(std::fabs(s[q + 1] - ref[q]) / (std::fabs(ref[q]) + 1e-30L)));
      }
      FL_CHECK(worst < 2e-5, "isa %s N=%lld: worst error %.3g", isa_name(isa), (long long)N, worst);
      FL_CHECK(std::fabs(dscale - double(want_dscale)) < 1e-5 * std::max<double>(1, std::fabs(double(want_dscale))), "dScale %.9g vs %.9g", dscale, double(want_dscale));
    }
  }
}

FL_TEST(symmetric_column_stats_and_grad_every_isa) {
  Rng rng(29);
  for (fl::Isa isa : fltest::isas()) {
    Context ctx(isa, 3);
    // A B × n block, n over one column strip of the CLIP kernels (512).
    const int64_t B = 37, n = 600;
    const float scale = 2.5f;
    std::vector<float> x(size_t(B * n));
    for (auto& v : x) v = float(rng.normal());
    for (int64_t i = 0; i < B; ++i) x[size_t(i * n + 5)] = -INFINITY;  // column 5: nothing in
    x[size_t(3 * n + 9)] = -INFINITY;
    std::vector<double> cmax(static_cast<size_t>(n)), crest(static_cast<size_t>(n));
    int32_t bad[2];
    ShardedColumnStatsArgs ca{};
    static_cast<ScoresArgs&>(ca) = ScoresArgs{x.data(), DType::Float32, B, n, scale};
    ca.max = cmax.data(), ca.rest = crest.data(), ca.bad = bad;
    sharded_column_stats(ctx, ca);
    FL_CHECK(bad[0] == -1, "no bad entry expected");
    std::vector<double> rmax(static_cast<size_t>(B)), rcoef(static_cast<size_t>(B)), ccoef(static_cast<size_t>(n));
    std::vector<LD> rlse(static_cast<size_t>(B)), clse(static_cast<size_t>(n));
    double worst = 0;
    for (int64_t j = 0; j < n; ++j) {
      LD m = -INFINITY, s = 0;
      for (int64_t i = 0; i < B; ++i) if (x[size_t(i * n + j)] != -INFINITY) m = std::max(m, LD(float(scale * x[size_t(i * n + j)])));
      for (int64_t i = 0; i < B; ++i) if (x[size_t(i * n + j)] != -INFINITY) s += std::exp(LD(float(scale * x[size_t(i * n + j)])) - m);
      clse[size_t(j)] = m == -INFINITY ? m : m + std::log(s);
      if (m == -INFINITY) {
        FL_CHECK(cmax[size_t(j)] == -INFINITY && crest[size_t(j)] == 0, "column %lld: nothing in, got (%g, %g)", (long long)j, cmax[size_t(j)], crest[size_t(j)]);
        continue;
      }
      const LD got = cmax[size_t(j)] + std::log1p(LD(crest[size_t(j)]));
      worst = std::max(worst, double(std::fabs(got - clse[size_t(j)]) / std::max<LD>(1, std::fabs(clse[size_t(j)]))));
      ccoef[size_t(j)] = 0.3 / (1 + crest[size_t(j)]);
    }
    for (int64_t i = 0; i < B; ++i) {
      LD m = -INFINITY, s = 0;
      for (int64_t j = 0; j < n; ++j) if (x[size_t(i * n + j)] != -INFINITY) m = std::max(m, LD(float(scale * x[size_t(i * n + j)])));
      for (int64_t j = 0; j < n; ++j) if (x[size_t(i * n + j)] != -INFINITY) s += std::exp(LD(float(scale * x[size_t(i * n + j)])) - m);
      rmax[size_t(i)] = double(m);
      rlse[size_t(i)] = m + std::log(s);
      rcoef[size_t(i)] = 0.2 / double(s);
    }
    FL_CHECK(worst < 2e-6, "isa %s: column lse worst error %.3g", isa_name(isa), worst);
    std::vector<float> g(x.size(), NAN);
    ShardedSymmetricGradArgs ga{};
    static_cast<ScoresArgs&>(ga) = ScoresArgs{x.data(), DType::Float32, B, n, scale};
    ga.row_max = rmax.data(), ga.row_coef = rcoef.data(), ga.col_max = cmax.data(), ga.col_coef = ccoef.data(), ga.grad = g.data();
    const double dscale = sharded_symmetric_grad(ctx, ga).dscale;
    LD want_dscale = 0;
    double gworst = 0;
    for (int64_t i = 0; i < B; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const float xv = x[size_t(i * n + j)], got = g[size_t(i * n + j)];
        if (xv == -INFINITY) {
          FL_CHECK(got == 0.f, "[%lld, %lld] out: gradient %g", (long long)i, (long long)j, got);
          continue;
        }
        const LD z = LD(float(scale * xv));
        const LD dz = 0.2L * std::exp(z - rlse[size_t(i)]) + 0.3L * std::exp(z - clse[size_t(j)]);
        gworst = std::max(gworst, double(std::fabs(got - dz * scale) / (dz * scale)));
        want_dscale += dz * xv;
      }
    FL_CHECK(gworst < 1e-5, "isa %s: gradient worst error %.3g", isa_name(isa), gworst);
    FL_CHECK(std::fabs(dscale - double(want_dscale)) < 1e-5 * std::max<double>(1, std::fabs(double(want_dscale))), "dScale %.9g vs %.9g", dscale, double(want_dscale));
  }
}

FL_TEST_MAIN()
