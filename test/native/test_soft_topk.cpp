// Soft top-k (threshold solver, loss, gradient) on every ISA this CPU has, against a
// long-double reference: thresholds, Σp = k, flat rows beyond DEXML's ±10/α bracket,
// saturated rows, exclusions, multi-tile rows, thread counts, in place, errors.
#include <cstring>
#include <vector>

#include "check.h"
#include "native/core/error.h"
#include "native/ops/soft_topk.h"

using namespace fl;
using fltest::Rng;

static std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= int(detect_isa()); ++i) v.push_back(Isa(i));
  return v;
}

static long double sig(long double a) { return a >= 0 ? 1 / (1 + std::exp(-a)) : std::exp(a) / (1 + std::exp(a)); }

// The root of Σσ(α(x + t)) = k as log L = log R with each term exact (see soft_topk_math.h),
// by bisection in long double: sharp even where the top entries saturate.
static long double ref_threshold(const float* x, int64_t n, long double k, long double alpha) {
  auto h = [&](long double t) {
    long double L = 0, R = 0, m = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (x[j] == -INFINITY) continue;
      const long double a = alpha * (x[j] + t);
      if (a < 0) L += sig(a);
      else { R += sig(-a); m += 1; }
    }
    return std::log(L + std::max<long double>(m - k, 0)) - std::log(R + std::max<long double>(k - m, 0));
  };
  long double lo = -1e4, hi = 1e4;
  for (int i = 0; i < 100; ++i) {  // 2e4 / 2^100: far below an ulp of any root here
    const long double mid = (lo + hi) / 2;
    (h(mid) < 0 ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

FL_TEST(threshold_matches_the_root_every_isa) {
  Rng rng(3);
  struct Case { int64_t B, N; int32_t k; float alpha, sigma; };
  const Case cases[] = {{5, 50, 1, 1, 3}, {3, 1001, 5, 2, 3}, {2, 4099, 2000, 5, 1}, {2, 70001, 50, 2, 3}, {1, 300000, 5, 2, 0.05f}};
  for (const Case& c : cases) {
    std::vector<float> x(static_cast<size_t>(c.B * c.N)), values(x.size()), t(static_cast<size_t>(c.B));
    std::vector<int32_t> it(static_cast<size_t>(c.B));
    for (auto& v : x) v = float(rng.normal() * c.sigma);
    std::vector<long double> want(static_cast<size_t>(c.B));
    for (int64_t r = 0; r < c.B; ++r) want[size_t(r)] = ref_threshold(x.data() + r * c.N, c.N, c.k, c.alpha);
    for (Isa isa : isas()) {
      Context ctx(isa, 2);
      SoftTopKProblem p{x.data(), DType::Float32, c.B, c.N, 1.f, c.alpha, c.k, nullptr, Csr{}, 1e-5f, 100};
      soft_topk(ctx, {p, false, values.data(), t.data(), it.data()});
      for (int64_t r = 0; r < c.B; ++r) {
        const long double w = want[size_t(r)];
        long double sum = 0;
        for (int64_t j = 0; j < c.N; ++j) sum += sig(c.alpha * (x[size_t(r * c.N + j)] + (long double)t[size_t(r)]));
        FL_CHECK(std::fabs(t[size_t(r)] - w) <= 2e-6 * std::max<long double>(1, std::fabs(w)) && std::fabs(sum - c.k) <= 2e-5 * c.k,
                 "%s %lldx%lld k=%d: t %.9g want %.9Lg, sum %.9Lg (%d passes)", isa_name(isa), (long long)c.B, (long long)c.N, c.k,
                 double(t[size_t(r)]), w, sum, it[size_t(r)]);
      }
      if (c.N == 300000) FL_CHECK(std::fabs(t[0]) > 10 / c.alpha, "flat row: the root should lie outside ±10/α");
    }
  }
}

FL_TEST(saturated_row_converges_to_the_sharp_root) {
  // Top entry 100 above the rest, k = 1: at the root 1 − p_top ≈ e^-47.
  const int64_t N = 201;
  Rng rng(4);
  std::vector<float> x(static_cast<size_t>(N)), values(x.size());
  for (auto& v : x) v = float(rng.normal());
  x[17] = 100;
  float t = 0;
  int32_t it = 0;
  for (Isa isa : isas()) {
    Context ctx(isa, 1);
    soft_topk(ctx, {{x.data(), DType::Float32, 1, N, 1.f, 1.f, 1, nullptr, Csr{}, 1e-5f, 100}, false, values.data(), &t, &it});
    const long double want = ref_threshold(x.data(), N, 1, 1);
    FL_CHECK(std::fabs(t - want) <= 1e-5 * std::fabs(want), "%s: t %.9g want %.9Lg (%d passes)", isa_name(isa), double(t), want, it);
  }
}

// ℓ and dℓ/dx of one row in long double (SPEC 3.8, sum reduction, unit weights).
static void ref_loss_row(const std::vector<float>& x, int64_t N, const std::vector<int32_t>& pos, const std::vector<bool>& out, int32_t k,
                         long double alpha, long double& loss, std::vector<long double>& grad) {
  std::vector<float> xin(x);
  for (int64_t j = 0; j < N; ++j) if (out[size_t(j)]) xin[size_t(j)] = -INFINITY;
  const long double t = ref_threshold(xin.data(), N, k, alpha);
  const long double n = (long double)pos.size();
  loss = 0;
  grad.assign(static_cast<size_t>(N), 0);
  long double U = 0, V = 0;
  for (int32_t j : pos) {
    const long double a = alpha * (x[size_t(j)] + t);
    loss -= std::log(sig(a)) / n;
    const long double u = alpha * (-1 / n) * sig(-a);
    grad[size_t(j)] = u;
    U += u;
  }
  for (int64_t j = 0; j < N; ++j) if (!out[size_t(j)]) V += alpha * sig(alpha * (x[size_t(j)] + t)) * sig(-alpha * (x[size_t(j)] + t));
  for (int64_t j = 0; j < N; ++j)
    if (!out[size_t(j)]) grad[size_t(j)] -= alpha * sig(alpha * (x[size_t(j)] + t)) * sig(-alpha * (x[size_t(j)] + t)) * U / V;
}

FL_TEST(loss_and_gradient_with_exclusions_every_isa) {
  Rng rng(5);
  const int64_t B = 2, N = 70001;
  std::vector<float> x(static_cast<size_t>(B * N));
  for (auto& v : x) v = float(rng.normal() * 3);
  const std::vector<int32_t> pos_ptr = {0, 2, 3}, pos_cols = {10, 40000, 69999};
  const std::vector<int32_t> ex_ptr = {0, 3, 4}, ex_cols = {50000, 5, 33000, 1};  // any order
  const Csr positives{pos_ptr.data(), pos_cols.data(), nullptr}, exclude{ex_ptr.data(), ex_cols.data(), nullptr};
  for (Isa isa : isas()) {
    Context ctx(isa, 2);
    std::vector<float> g(x.size(), NAN), rl(static_cast<size_t>(B));
    SoftTopKProblem p{x.data(), DType::Float32, B, N, 1.f, 2.f, 5, nullptr, exclude, 1e-5f, 100};
    const LossResult got = soft_topk_loss(ctx, {p, positives, Reduction::Sum, nullptr, g.data(), false, false, rl.data()});
    long double total = 0;
    for (int64_t r = 0; r < B; ++r) {
      std::vector<float> row(x.begin() + r * N, x.begin() + (r + 1) * N);
      std::vector<bool> out(static_cast<size_t>(N), false);
      for (int32_t e = ex_ptr[size_t(r)]; e < ex_ptr[size_t(r) + 1]; ++e) out[size_t(ex_cols[size_t(e)])] = true;
      std::vector<int32_t> pos(pos_cols.begin() + pos_ptr[size_t(r)], pos_cols.begin() + pos_ptr[size_t(r) + 1]);
      long double loss;
      std::vector<long double> grad;
      ref_loss_row(row, N, pos, out, 5, 2, loss, grad);
      total += loss;
      long double num = 0, den = 0;
      for (int64_t j = 0; j < N; ++j) {
        const long double d = g[size_t(r * N + j)] - grad[size_t(j)];
        num += d * d;
        den += grad[size_t(j)] * grad[size_t(j)];
        if (out[size_t(j)]) FL_CHECK(g[size_t(r * N + j)] == 0.f, "excluded entry %lld has gradient %g", (long long)j, double(g[size_t(r * N + j)]));
      }
      FL_CHECK(std::sqrt(num / den) < 1e-5, "%s row %lld: grad error %.3Lg", isa_name(isa), (long long)r, std::sqrt(num / den));
    }
    FL_CHECK(std::fabs(got.loss - total) <= 1e-6 * std::fabs(total), "%s: loss %.9g want %.9Lg", isa_name(isa), got.loss, total);
  }
}

FL_TEST(thread_counts_and_in_place_are_bitwise_identical) {
  Rng rng(6);
  const int64_t B = 3, N = 100003;  // multi-tile rows: few rows take the tiled path on many threads
  std::vector<float> x(static_cast<size_t>(B * N));
  for (auto& v : x) v = float(rng.normal() * 3);
  const std::vector<int32_t> pos_ptr = {0, 1, 3, 4}, pos_cols = {7, 8, 99999, 50000};
  const Csr positives{pos_ptr.data(), pos_cols.data(), nullptr};
  std::vector<float> first;
  double first_loss = 0;
  for (int threads : {1, 2, 7}) {
    Context ctx(select_isa(), threads);
    std::vector<float> g(x.size()), rl(static_cast<size_t>(B));
    const LossResult r = soft_topk_loss(ctx, {{x.data(), DType::Float32, B, N, 1.3f, 2.f, 5, nullptr, Csr{}, 1e-5f, 100}, positives,
                                              Reduction::Mean, nullptr, g.data(), false, true, rl.data()});
    if (first.empty()) { first = g; first_loss = r.loss; }
    FL_CHECK(std::memcmp(first.data(), g.data(), g.size() * 4) == 0 && r.loss == first_loss, "threads=%d differs", threads);
  }
  Context ctx(select_isa(), 2);
  std::vector<float> inplace = x, rl(static_cast<size_t>(B));
  soft_topk_loss(ctx, {{inplace.data(), DType::Float32, B, N, 1.3f, 2.f, 5, nullptr, Csr{}, 1e-5f, 100}, positives, Reduction::Mean, nullptr,
                       inplace.data(), false, true, rl.data()});
  FL_CHECK(std::memcmp(first.data(), inplace.data(), inplace.size() * 4) == 0, "in-place gradient differs");
}

FL_TEST(k_range_and_non_finite) {
  Context ctx(select_isa(), 2);
  std::vector<float> x(2 * 6, 0.5f), values(12), t(2);
  std::vector<int32_t> it(2);
  x[7] = -INFINITY;  // row 1 has 5 entries in
  auto code = [&](int32_t k) -> std::string {
    try {
      soft_topk(ctx, {{x.data(), DType::Float32, 2, 6, 1.f, 1.f, k, nullptr, Csr{}, 1e-5f, 100}, false, values.data(), t.data(), it.data()});
    } catch (const Error& e) {
      return e.code;
    }
    return "";
  };
  FL_CHECK(code(4).empty(), "k=4 is valid");
  FL_CHECK(code(5) == "ERR_K_RANGE", "k=5 = N_1");
  FL_CHECK(code(0) == "ERR_K_RANGE", "k=0");
  x[3] = NAN;
  FL_CHECK(code(2) == "ERR_NON_FINITE", "NaN");
}

FL_TEST_MAIN()
