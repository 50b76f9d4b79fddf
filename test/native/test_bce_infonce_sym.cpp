// binaryCrossEntropy (native/ops/bce.inl) and symmetric InfoNCE (native/ops/infonce_sym.inl) on
// every ISA this CPU has, against long-double references: loss, row losses, gradient, dScale,
// odd and multi-tile widths, weighted (soft) targets, exclusions, spreads beyond kSymSpread.
#include <cstring>
#include <vector>

#include "check.h"
#include "lab.h"
#include "reference.h"
#include "native/core/context.h"
#include "native/ops/contrastive.h"
#include "native/api/args.h"

using namespace fl;
using namespace fltest;

namespace {

// ---------- symmetric InfoNCE ----------

// MATH infoNCE (native/ops/contrastive_math.h) symmetric (CLIP), diagonal positives, sum reduction: rowLoss_i = (r_i + c_i)/2.
inline Ref sym_reference(const std::vector<float>& x, int64_t n, float scale) {
  Ref r;
  r.row_loss.assign(size_t(n), 0);
  r.grad.assign(size_t(n * n), 0);
  std::vector<long double> row_lse(static_cast<size_t>(n)), col_lse(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    long double mr = -INFINITY, mc = -INFINITY, sr = 0, sc = 0;
    for (int64_t j = 0; j < n; ++j) {
      mr = std::max<long double>(mr, scale * (long double)x[size_t(i * n + j)]);
      mc = std::max<long double>(mc, scale * (long double)x[size_t(j * n + i)]);
    }
    for (int64_t j = 0; j < n; ++j) {
      sr += std::exp(scale * (long double)x[size_t(i * n + j)] - mr);
      sc += std::exp(scale * (long double)x[size_t(j * n + i)] - mc);
    }
    row_lse[size_t(i)] = mr + std::log(sr);
    col_lse[size_t(i)] = mc + std::log(sc);
  }
  for (int64_t i = 0; i < n; ++i) {
    const long double zii = scale * (long double)x[size_t(i * n + i)];
    r.row_loss[size_t(i)] = (row_lse[size_t(i)] - zii + col_lse[size_t(i)] - zii) / 2;
    r.loss += r.row_loss[size_t(i)];
    for (int64_t j = 0; j < n; ++j) {
      const long double s = x[size_t(i * n + j)], z = scale * s;
      const long double d = (std::exp(z - row_lse[size_t(i)]) + std::exp(z - col_lse[size_t(j)]) - (i == j ? 2 : 0)) / 2;
      r.grad[size_t(i * n + j)] = scale * d;
      r.dscale += d * s;
    }
  }
  return r;
}

}  // namespace

static long double softplus(long double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }

// MATH binaryCrossEntropy (native/ops/positives_math.h), sum reduction: ℓ_i = Σ_j softplus(z_ij) − Σ_p y_p z_p over the entries not excluded.
static Ref bce_reference(const std::vector<float>& x, int64_t B, int64_t N, float scale, const std::vector<int32_t>& pos_ptr,
                         const std::vector<int32_t>& pos_cols, const std::vector<float>& w, const std::vector<int32_t>& ex_ptr,
                         const std::vector<int32_t>& ex_cols) {
  Ref r;
  r.row_loss.assign(size_t(B), 0);
  r.grad.assign(size_t(B * N), 0);
  std::vector<long double> y(static_cast<size_t>(N));
  std::vector<bool> out(static_cast<size_t>(N));
  for (int64_t i = 0; i < B; ++i) {
    std::fill(y.begin(), y.end(), 0);
    std::fill(out.begin(), out.end(), false);
    for (int32_t e = pos_ptr[size_t(i)]; e < pos_ptr[size_t(i) + 1]; ++e) y[size_t(pos_cols[size_t(e)])] = w[size_t(e)];
    for (int32_t e = ex_ptr[size_t(i)]; e < ex_ptr[size_t(i) + 1]; ++e) out[size_t(ex_cols[size_t(e)])] = true;
    for (int64_t j = 0; j < N; ++j) {
      if (out[size_t(j)]) continue;
      const long double s = x[size_t(i * N + j)], z = scale * s;
      r.row_loss[size_t(i)] += softplus(z) - y[size_t(j)] * z;
      const long double d = sig(z) - y[size_t(j)];
      r.grad[size_t(i * N + j)] = scale * d;
      r.dscale += d * s;
    }
    r.loss += r.row_loss[size_t(i)];
  }
  return r;
}

FL_TEST(binary_cross_entropy_every_isa) {
  Rng rng(11);
  struct Case { int64_t B, N; float scale, sigma; };
  for (const Case c : {Case{3, 1001, 1.f, 3.f}, Case{2, 70001, 2.5f, 4.f}, Case{4, 37, 20.f, 2.f}}) {
    std::vector<float> x(static_cast<size_t>(c.B * c.N));
    for (auto& v : x) v = float(rng.normal() * c.sigma);
    std::vector<int32_t> pos_ptr{0}, pos_cols, ex_ptr{0}, ex_cols;
    std::vector<float> w;
    for (int64_t i = 0; i < c.B; ++i) {
      for (int64_t e = 0; e < 3; ++e) {
        pos_cols.push_back(int32_t((i * 7 + e * (c.N / 3 + 1)) % c.N));
        w.push_back(e == 2 ? 0.25f : 1.f);  // a soft target
      }
      pos_ptr.push_back(int32_t(pos_cols.size()));
      ex_cols.push_back(int32_t((i * 11 + c.N / 2 + 1) % c.N));
      ex_ptr.push_back(int32_t(ex_cols.size()));
    }
    const Ref want = bce_reference(x, c.B, c.N, c.scale, pos_ptr, pos_cols, w, ex_ptr, ex_cols);
    for (Isa isa : isas()) {
      Context ctx(isa, 2);
      std::vector<float> g(x.size(), NAN), rl(static_cast<size_t>(c.B));
      const LossResult got = binary_cross_entropy(ctx, {{{x.data(), DType::Float32, c.B, c.N, c.scale}, Reduction::Sum, nullptr, g.data(), DType::Float32, true, rl.data()}, Csr{pos_ptr.data(), pos_cols.data(), w.data()}, Csr{ex_ptr.data(), ex_cols.data(), nullptr}});
      long double rows_err = 0;
      for (int64_t i = 0; i < c.B; ++i)
        rows_err = std::max(rows_err, std::fabs(rl[size_t(i)] - want.row_loss[size_t(i)]) / std::fabs(want.row_loss[size_t(i)]));
      FL_CHECK(std::fabs(got.loss - want.loss) <= 1e-6 * std::fabs(want.loss) && rows_err <= 1e-6 && rel_l2(g, want.grad) <= 1e-6 &&
                   std::fabs(got.dscale - want.dscale) <= 1e-5 * std::max<long double>(1, std::fabs(want.dscale)),
               "%s %lldx%lld: loss %.9g want %.9Lg, rows %.3Lg, grad %.3Lg, dscale %.9g want %.9Lg", isa_name(isa), (long long)c.B,
               (long long)c.N, got.loss, want.loss, rows_err, rel_l2(g, want.grad), got.dscale, want.dscale);
    }
  }
}

FL_TEST(symmetric_infonce_every_isa) {
  Rng rng(12);
  struct Case { int64_t n; float scale, sigma; };
  // scale·spread beyond kSymSpread (40) takes the two-exponential path.
  for (const Case c : {Case{301, 1.f, 2.f}, Case{1037, 14.f, 1.f}, Case{67, 50.f, 3.f}}) {
    std::vector<float> x(static_cast<size_t>(c.n * c.n));
    for (auto& v : x) v = float(rng.normal() * c.sigma);
    const Ref want = sym_reference(x, c.n, c.scale);
    for (Isa isa : isas()) {
      Context ctx(isa, 2);
      std::vector<float> g(x.size(), NAN), rl(static_cast<size_t>(c.n));
      const LossResult got = info_nce(ctx, {{{x.data(), DType::Float32, c.n, c.n, c.scale}, Reduction::Sum, nullptr, g.data(), DType::Float32, true, rl.data()}, Csr{}, Csr{}, true});
      long double rows_err = 0;
      for (int64_t i = 0; i < c.n; ++i)
        rows_err = std::max(rows_err, std::fabs(rl[size_t(i)] - want.row_loss[size_t(i)]) / std::max<long double>(1, std::fabs(want.row_loss[size_t(i)])));
      FL_CHECK(std::fabs(got.loss - want.loss) <= 1e-6 * std::fabs(want.loss) && rows_err <= 1e-5 && rel_l2(g, want.grad) <= 1e-5 &&
                   std::fabs(got.dscale - want.dscale) <= 1e-5 * std::max<long double>(1, std::fabs(want.dscale)),
               "%s n=%lld scale %g: loss %.9g want %.9Lg, rows %.3Lg, grad %.3Lg, dscale %.9g want %.9Lg", isa_name(isa), (long long)c.n,
               double(c.scale), got.loss, want.loss, rows_err, rel_l2(g, want.grad), got.dscale, want.dscale);
    }
  }
}

// bench: CLIP, symmetric over rows×rows cosine scores at logit scale 20 ('mean' is the 'sum'
// loss over n).
FL_BENCH(infoNCE)(Context& ctx, int64_t rows, int64_t) {
  struct State {
    std::vector<float> x, grad, row_loss;
  };
  Rng rng(42);
  auto s = std::make_shared<State>();
  s->x = cosine_scores(rng, rows);
  s->grad.assign(s->x.size(), NAN);
  s->row_loss.assign(size_t(rows), NAN);
  auto args = [s, rows](bool dscale) {
    InfoNCEArgs a{};
    bench_loss_args(a, s->x.data(), rows, rows, 20.f, s->grad.data(), s->row_loss.data(), dscale);
    a.symmetric = true;
    return a;
  };
  return {[&ctx, args] { info_nce(ctx, args(false)); },
          [&ctx, args, s, rows] {
            const LossResult got = info_nce(ctx, args(true));
            Ref want = sym_reference(s->x, rows, 20.f);
            for (auto& g : want.grad) g /= rows;
            std::string why = within("loss", std::fabs(got.loss - want.loss / rows) / std::fabs(want.loss / rows), 1e-5);
            if (why.empty()) why = within("grad", rel_l2(s->grad, want.grad), 1e-5);
            return why;
          }};
}

FL_TEST_MAIN()
