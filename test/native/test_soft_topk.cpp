// Soft top-k (threshold solver, loss, gradient) on every ISA this CPU has, against a
// long-double reference: thresholds, Σp = k, flat rows beyond DEXML's ±10/α bracket,
// saturated rows, exclusions, multi-tile rows, thread counts, in place, errors.
#include <cstring>
#include <vector>

#include "check.h"
#include "lab.h"
#include "reference.h"
#include "native/core/context.h"
#include "native/api/error.h"
#include "native/ops/soft_topk.h"
#include "native/ops/soft_topk_math.h"

using namespace fl;
using namespace fltest;

namespace {

// The root of Σσ(α(x + t)) = k as log L = log R with each term exact (see soft_topk_math.h),
// by bisection in long double: sharp even where the top entries saturate.
inline long double ref_threshold(const float* x, int64_t n, long double k, long double alpha) {
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

// ℓ and dℓ/dx of one row in long double (MATH softTopKLoss, native/ops/soft_topk_math.h; sum reduction, unit weights).
inline void ref_loss_row(const std::vector<float>& x, int64_t N, const std::vector<int32_t>& pos, const std::vector<bool>& out, int32_t k,
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

}  // namespace

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
      SoftTopKProblem p{{x.data(), DType::Float32, c.B, c.N, 1.f}, {c.alpha, c.k, nullptr, 1e-5f, 100, Csr{}}};
      soft_topk(ctx, {p, TopKOutput::Prob, values.data(), t.data(), it.data()});
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
    soft_topk(ctx, {{{x.data(), DType::Float32, 1, N, 1.f}, {1.f, 1, nullptr, 1e-5f, 100, Csr{}}}, TopKOutput::Prob, values.data(), &t, &it});
    const long double want = ref_threshold(x.data(), N, 1, 1);
    FL_CHECK(std::fabs(t - want) <= 1e-5 * std::fabs(want), "%s: t %.9g want %.9Lg (%d passes)", isa_name(isa), double(t), want, it);
  }
}

// The backward divides by V = α·Σp(1 − p) from the solver's last pass (at_t); the gradient sweep
// takes p at the threshold the solver returns. A Newton step taken after that pass moves t away
// from where V was taken, and scales every dense gradient entry by the difference: at the
// default tol 1e-5 up to ~1e-5, against fp32's 6e-8. So V from at_t must be V at the returned
// float threshold. Sums here in double, each term exact (sigmoid_pair_d): only the solver's
// stopping rule is under test.
FL_TEST(backward_sums_are_taken_at_the_returned_threshold) {
  Rng rng(12);
  double worst = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t sizes[] = {15, 31, 129, 1000, 20000};
    const int64_t N = sizes[trial % 5];
    const int32_t k = 1 + int32_t(rng.uniform() * double(std::min<int64_t>(40, N - 2)));
    const double alphas[] = {1, 2, 5}, spreads[] = {0.2, 1, 4};
    const double alpha = alphas[(trial / 5) % 3], spread = spreads[(trial / 15) % 3];
    std::vector<float> z(static_cast<size_t>(N));
    float zmax = -INFINITY, zmin = INFINITY;
    for (auto& v : z) {
      v = float(rng.normal() * spread);
      zmax = std::max(zmax, v);
      zmin = std::min(zmin, v);
    }
    auto sums_at = [&](float t) {
      TopKSums s{};
      for (float v : z) {
        const float a = (v + t) * float(alpha);
        const SigmoidPairD g = sigmoid_pair_d(double(a));
        if (a >= 0) {
          s.m += 1;
          s.q_hi += g.q;
          s.v_hi += g.p * g.q;
        } else {
          s.p_lo += g.p;
          s.v_lo += g.p * g.q;
        }
      }
      return s;
    };
    TopKSolver s = topk_solver_init(double(zmax), double(zmin), k, double(N), alpha, 1e-5);
    while (!s.done) topk_solver_step(s, sums_at(float(s.t)), 100);
    const double V_taken = topk_df(s.at_t), V_at_t = topk_df(sums_at(float(s.t)));
    const double err = std::fabs(V_taken / V_at_t - 1);
    worst = std::max(worst, err);
    FL_CHECK(err == 0, "N=%lld k=%d alpha=%g spread=%g: V from the last pass off by %.3g relative (%d passes)", (long long)N, k, alpha,
             spread, err, s.iterations);
    const long double want = ref_threshold(z.data(), N, k, alpha);
    FL_CHECK(std::fabs(s.t - want) <= 1e-6 / alpha * std::max<long double>(1, std::fabs(want)), "N=%lld k=%d: t %.9g want %.9Lg", (long long)N,
             k, s.t, want);
  }
  std::printf("  V from the last pass vs V at the returned threshold: worst %.3g relative\n", worst);
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
    SoftTopKProblem p{{x.data(), DType::Float32, B, N, 1.f}, {2.f, 5, nullptr, 1e-5f, 100, exclude}};
    const LossResult got = soft_topk_loss(ctx, {{ScoresArgs(p), Reduction::Sum, nullptr, g.data(), DType::Float32, false, rl.data()}, TopKSolve(p), positives});
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
    const LossResult r = soft_topk_loss(ctx, {{{x.data(), DType::Float32, B, N, 1.3f}, Reduction::Mean, nullptr, g.data(), DType::Float32, true, rl.data()}, {2.f, 5, nullptr, 1e-5f, 100, Csr{}}, positives});
    if (first.empty()) { first = g; first_loss = r.loss; }
    FL_CHECK(std::memcmp(first.data(), g.data(), g.size() * 4) == 0 && r.loss == first_loss, "threads=%d differs", threads);
  }
  Context ctx(select_isa(), 2);
  std::vector<float> inplace = x, rl(static_cast<size_t>(B));
  soft_topk_loss(ctx, {{{inplace.data(), DType::Float32, B, N, 1.3f}, Reduction::Mean, nullptr, inplace.data(), DType::Float32, true, rl.data()}, {2.f, 5, nullptr, 1e-5f, 100, Csr{}}, positives});
  FL_CHECK(std::memcmp(first.data(), inplace.data(), inplace.size() * 4) == 0, "in-place gradient differs");
}

// The vjp of the operator at given thresholds in long double (MATH softTopK (native/ops/soft_topk_math.h) backward, scale 1): each
// entry's own − v·G/V, and the size of its two terms |own| + |v·G/V| (the result can cancel to
// far below them, e.g. to 0 for a constant upstream on 'prob', so errors are measured against
// the terms; and they can lie below fp32's range, where a float result is 0).
struct RefVjp {
  std::vector<long double> grad, size;
};
static RefVjp ref_vjp_row(const float* x, const float* g, int64_t N, long double t, long double alpha, bool log_output) {
  long double V = 0, G = 0;
  std::vector<long double> v(static_cast<size_t>(N)), own(static_cast<size_t>(N));
  RefVjp r{std::vector<long double>(static_cast<size_t>(N)), std::vector<long double>(static_cast<size_t>(N))};
  for (int64_t j = 0; j < N; ++j) {
    const long double a = alpha * (x[j] + t);
    v[size_t(j)] = alpha * sig(a) * sig(-a);
    own[size_t(j)] = log_output ? alpha * g[j] * sig(-a) : g[j] * v[size_t(j)];
    V += v[size_t(j)];
    G += own[size_t(j)];
  }
  for (int64_t j = 0; j < N; ++j) {
    r.grad[size_t(j)] = own[size_t(j)] - v[size_t(j)] * G / V;
    r.size[size_t(j)] = std::fabs(own[size_t(j)]) + std::fabs(v[size_t(j)] * G / V);
  }
  return r;
}

// ‖got − want‖ / ‖scale‖, with ‖scale‖ floored at 1e-30 (below it the float result may be 0).
static long double rel_l2(const float* got, const std::vector<long double>& want, const std::vector<long double>& scale) {
  long double num = 0, den = 0;
  for (size_t j = 0; j < want.size(); ++j) {
    num += (got[j] - want[j]) * (got[j] - want[j]);
    den += scale[j] * scale[j];
  }
  return std::sqrt(num) / std::max<long double>(std::sqrt(den), 1e-30L);
}
static long double rel_l2(const float* got, const std::vector<long double>& want) { return rel_l2(got, want, want); }

// Rows whose top s ≤ k entries sit a spread D above a standard normal rest, α·D up to 200: at
// the root both sides of Σp − k (the saturated entries' 1 − p and the rest's p) lie below fp32's
// range when s = k, and a positive far below the threshold has log p ≈ α(x + t) ≈ −100. The
// threshold, the loss, its gradient and the operator's vjp ('prob' and 'log', upstream spread
// over the row or on the saturated entries only), against the long-double split-form root.
constexpr int64_t kSaturatedN = 1001;
struct SaturatedRow {
  std::vector<float> x;
  std::vector<int32_t> pos;
  float alpha;
  int32_t k;
  int s;
};
static std::vector<SaturatedRow> saturated_rows(Rng& rng) {
  const int64_t N = kSaturatedN;
  std::vector<SaturatedRow> rows;
  for (float alpha : {1.f, 2.f, 5.f, 10.f})
    for (int32_t k : {1, 2, 5})
      for (int s : {1, 2, 5})
        for (float spread : {20.f, 60.f, 120.f, 200.f}) {
          if (s > k) continue;
          SaturatedRow r{std::vector<float>(static_cast<size_t>(N)), {}, alpha, k, s};
          for (auto& v : r.x) v = float(rng.normal());
          const float D = spread / alpha;
          for (int i = 0; i < s; ++i) r.x[size_t(3 + 97 * i)] = float(D + rng.normal() * 2 / alpha);
          r.x[600] = -D;  // far below everything
          r.pos = {3, 500, 600};  // a saturated entry, one of the rest, the lowest
          rows.push_back(std::move(r));
        }
  return rows;
}

FL_TEST(saturated_rows_every_isa) {
  Rng rng(9);
  const int64_t N = kSaturatedN;
  using Row = SaturatedRow;
  const std::vector<Row> rows = saturated_rows(rng);
  for (Isa isa : isas()) {
    Context ctx(isa, 2);
    double worst_t = 0, worst_loss = 0, worst_grad = 0, worst_vjp = 0;
    for (const Row& r : rows) {
      const int32_t ptr[2] = {0, int32_t(r.pos.size())};
      const Csr positives{ptr, r.pos.data(), nullptr};
      const SoftTopKProblem p{{r.x.data(), DType::Float32, 1, N, 1.f}, {r.alpha, r.k, nullptr, 1e-5f, 100, Csr{}}};
      std::vector<float> g(static_cast<size_t>(N), NAN), values(static_cast<size_t>(N));
      float rl = 0, t = 0;
      int32_t it = 0;
      soft_topk_loss(ctx, {{ScoresArgs(p), Reduction::Sum, nullptr, g.data(), DType::Float32, false, &rl}, TopKSolve(p), positives});
      soft_topk(ctx, {p, TopKOutput::Prob, values.data(), &t, &it});
      long double loss;
      std::vector<long double> grad;
      ref_loss_row(r.x, N, r.pos, std::vector<bool>(static_cast<size_t>(N), false), r.k, r.alpha, loss, grad);
      const long double want_t = ref_threshold(r.x.data(), N, r.k, r.alpha);
      const double et = double(std::fabs(t - want_t) / std::max<long double>(1, std::fabs(want_t)));
      const double el = double(std::fabs(rl - loss) / std::max<long double>(1, std::fabs(loss)));
      const double eg = double(rel_l2(g.data(), grad));
      worst_t = std::max(worst_t, et);
      worst_loss = std::max(worst_loss, el);
      worst_grad = std::max(worst_grad, eg);
      FL_CHECK(et <= 2e-6 && el <= 2e-6 && eg <= 1e-4, "%s α=%g k=%d s=%d top %g: t %.9g want %.9Lg (%d passes), loss %.9g want %.9Lg, grad error %.3g",
               isa_name(isa), double(r.alpha), r.k, r.s, double(r.x[3]), double(t), want_t, it, double(rl), loss, eg);
      for (bool log_output : {false, true})
        for (bool on_top : {false, true}) {
          std::vector<float> up(static_cast<size_t>(N), 0.f), vg(static_cast<size_t>(N), NAN);
          for (int64_t j = 0; j < N; ++j) up[size_t(j)] = on_top ? (r.x[size_t(j)] > r.x[600] + 0.9f * (r.x[3] - r.x[600]) - 5 / r.alpha ? 1.f : 0.f)
                                                                  : float(rng.normal());
          soft_topk_vjp(ctx, {p, log_output ? TopKOutput::Log : TopKOutput::Prob, &t, up.data(), vg.data(), DType::Float32});
          const RefVjp want = ref_vjp_row(r.x.data(), up.data(), N, t, r.alpha, log_output);
          const double ev = double(rel_l2(vg.data(), want.grad, want.size));
          worst_vjp = std::max(worst_vjp, ev);
          FL_CHECK(ev <= 1e-4, "%s α=%g k=%d s=%d top %g %s upstream %s: vjp error %.3g", isa_name(isa), double(r.alpha), r.k, r.s,
                   double(r.x[3]), log_output ? "log" : "prob", on_top ? "on top" : "everywhere", ev);
        }
    }
    std::printf("%s: %zu saturated rows, worst t %.2g, loss %.2g, grad %.2g, vjp %.2g\n", isa_name(isa), rows.size(), worst_t, worst_loss,
                worst_grad, worst_vjp);
  }
}

// The first row of the table (N = 40009, two tiles: the tiled path on two threads).
FL_TEST(two_saturated_entries_on_a_multi_tile_row) {
  Rng rng(10);
  const int64_t N = 40009;
  std::vector<float> x(static_cast<size_t>(N));
  for (auto& v : x) v = float(rng.normal());
  x[123] = 97.42f;
  x[39000] = 95.70f;
  x[7] = -2.16f;
  const std::vector<int32_t> pos = {7};
  const int32_t ptr[2] = {0, 1};
  for (Isa isa : isas()) {
    Context ctx(isa, 2);
    std::vector<float> g(static_cast<size_t>(N), NAN);
    float rl = 0;
    soft_topk_loss(ctx, {{{x.data(), DType::Float32, 1, N, 1.f}, Reduction::Sum, nullptr, g.data(), DType::Float32, false, &rl}, {2.f, 2, nullptr, 1e-5f, 100, Csr{}}, Csr{ptr, pos.data(), nullptr}});
    long double loss;
    std::vector<long double> grad;
    ref_loss_row(x, N, pos, std::vector<bool>(static_cast<size_t>(N), false), 2, 2, loss, grad);
    FL_CHECK(std::fabs(rl - loss) <= 2e-6 * loss && rel_l2(g.data(), grad) <= 1e-4, "%s: loss %.9g want %.9Lg, grad error %.3Lg",
             isa_name(isa), double(rl), loss, rel_l2(g.data(), grad));
  }
}

FL_TEST(k_range_and_non_finite) {
  Context ctx(select_isa(), 2);
  std::vector<float> x(2 * 6, 0.5f), values(12), t(2);
  std::vector<int32_t> it(2);
  x[7] = -INFINITY;  // row 1 has 5 entries in
  auto code = [&](int32_t k) -> std::string {
    try {
      soft_topk(ctx, {{{x.data(), DType::Float32, 2, 6, 1.f}, {1.f, k, nullptr, 1e-5f, 100, Csr{}}}, TopKOutput::Prob, values.data(), t.data(), it.data()});
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

// The CUDA kernel's soft top-k arithmetic (cuda/soft_topk.cu), run on the host: one block of
// kThreads threads holding the row, each thread striding over the columns with its own
// per-side shifted sums (soft_topk_math.h ShiftedPass, ShiftedVjp), merged in double; the
// dense gradient and the vjp's second pass by scaled_term; the positives in double. The same
// FL_HD functions the kernel calls, on the saturated rows above against the same references:
// the kernels themselves run only on a GPU machine (scripts/gpu/).
namespace cuda_kernel {
constexpr int kThreads = 512;

float arg(float z, float t, float alpha) { return (z + t) * alpha; }

// The threshold (topk_loss_kernel's solver loop; scale 1, so z = x); at_t: its last pass.
float threshold(const std::vector<float>& z, int32_t k, float alpha, TopKSums& at_t, int& passes) {
  float hi = -INFINITY, lo = INFINITY;
  int64_t in = 0;
  for (float v : z)
    if (v != -INFINITY) {
      hi = std::max(hi, v);
      lo = std::min(lo, v);
      ++in;
    }
  TopKSolver s = topk_solver_init(double(hi), double(lo), k, double(in), alpha, 1e-5);
  while (!s.done) {
    TopKSums total{};
    for (int th = 0; th < kThreads; ++th) {
      ShiftedPass pass = shifted_pass_empty();
      for (size_t c = size_t(th); c < z.size(); c += kThreads)
        if (z[c] != -INFINITY) shifted_pass_take(pass, arg(z[c], float(s.t), alpha));
      merge(total, shifted_pass_sums(pass));
    }
    topk_solver_step(s, total, 100);
  }
  at_t = s.at_t;
  passes = s.iterations;
  return float(s.t);
}

// The loss's gradient (sum reduction, unit weights, scale 1).
std::vector<float> loss_grad(const std::vector<float>& z, const std::vector<int32_t>& pos, float alpha, float t, const TopKSums& at_t) {
  const double n = double(pos.size());
  double U = 0;
  for (int32_t j : pos) U += double(alpha) * (-1.0 / n) * sigmoid_pair_d(double(arg(z[size_t(j)], t, alpha))).q;
  const double factor = topk_backward_factor(U, alpha, topk_df(at_t));
  const ScaledFactor c = scaled_factor(double(alpha) * factor, false);
  std::vector<float> g(z.size());
  for (size_t j = 0; j < z.size(); ++j)
    g[j] = z[j] == -INFINITY ? 0.f : -c.sign * scaled_term(std::fabs(arg(z[j], t, alpha)), c.log_c, c.inv_c, c.two_exp).cpq;
  for (int32_t j : pos) {
    const SigmoidPairD s = sigmoid_pair_d(double(arg(z[size_t(j)], t, alpha)));
    const double u = double(alpha) * (-1.0 / n) * s.q;
    g[size_t(j)] = float(u - double(alpha) * s.p * s.q * factor);
  }
  return g;
}

// The operator's vjp at threshold t (scale 1).
std::vector<float> vjp(const std::vector<float>& z, const std::vector<float>& up, float alpha, float t, bool log_output) {
  double V = 0, G = 0;
  for (int th = 0; th < kThreads; ++th) {
    ShiftedVjp s = shifted_vjp_empty();
    for (size_t c = size_t(th); c < z.size(); c += kThreads) shifted_vjp_take(s, arg(z[c], t, alpha), up[c], alpha, log_output);
    double v, g;
    shifted_vjp_totals(s, v, g);
    V += v;
    G += g;
  }
  const ScaledFactor f = scaled_factor(double(alpha) * topk_backward_factor(G, 1.0, V), true);
  std::vector<float> out(z.size());
  for (size_t j = 0; j < z.size(); ++j) out[j] = vjp_term(f, arg(z[j], t, alpha), up[j], alpha, log_output);
  return out;
}
}  // namespace cuda_kernel

FL_TEST(cuda_kernel_arithmetic_on_saturated_rows) {
  Rng rng(9);
  const int64_t N = kSaturatedN;
  double worst_t = 0, worst_grad = 0, worst_vjp = 0;
  for (const SaturatedRow& r : saturated_rows(rng)) {
    TopKSums at_t{};
    int passes = 0;
    const float t = cuda_kernel::threshold(r.x, r.k, r.alpha, at_t, passes);
    const long double want_t = ref_threshold(r.x.data(), N, r.k, r.alpha);
    long double loss;
    std::vector<long double> grad;
    ref_loss_row(r.x, N, r.pos, std::vector<bool>(static_cast<size_t>(N), false), r.k, r.alpha, loss, grad);
    const double et = double(std::fabs(t - want_t) / std::max<long double>(1, std::fabs(want_t)));
    const double eg = double(rel_l2(cuda_kernel::loss_grad(r.x, r.pos, r.alpha, t, at_t).data(), grad));
    worst_t = std::max(worst_t, et);
    worst_grad = std::max(worst_grad, eg);
    FL_CHECK(et <= 2e-6 && eg <= 1e-4, "α=%g k=%d s=%d top %g: t %.9g want %.9Lg (%d passes), grad error %.3g", double(r.alpha), r.k, r.s,
             double(r.x[3]), double(t), want_t, passes, eg);
    for (bool log_output : {false, true})
      for (bool on_top : {false, true}) {
        std::vector<float> up(static_cast<size_t>(N), 0.f);
        for (int64_t j = 0; j < N; ++j) up[size_t(j)] = on_top ? (r.x[size_t(j)] > r.x[600] + 0.9f * (r.x[3] - r.x[600]) - 5 / r.alpha ? 1.f : 0.f)
                                                                : float(rng.normal());
        const RefVjp want = ref_vjp_row(r.x.data(), up.data(), N, t, r.alpha, log_output);
        const double ev = double(rel_l2(cuda_kernel::vjp(r.x, up, r.alpha, t, log_output).data(), want.grad, want.size));
        worst_vjp = std::max(worst_vjp, ev);
        FL_CHECK(ev <= 1e-4, "α=%g k=%d s=%d %s upstream %s: vjp error %.3g", double(r.alpha), r.k, r.s, log_output ? "log" : "prob",
                 on_top ? "on top" : "everywhere", ev);
      }
  }
  std::printf("CUDA kernel arithmetic: worst t %.2g, grad %.2g, vjp %.2g\n", worst_t, worst_grad, worst_vjp);
}

// bench: DEXML's k = 5, α = 2; 1 to 3 distinct positives per row, fp32 normal rows, 'mean'.
FL_BENCH(softTopKLoss)(Context& ctx, int64_t rows, int64_t cols) {
  struct State {
    std::vector<float> x, grad, row_loss;
    std::vector<int32_t> ptr{0}, pos;
  };
  Rng rng(42);
  auto s = std::make_shared<State>();
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t n = std::min<int64_t>(1 + int64_t(rng.next() % 3), cols);
    const auto row = s->pos.end() - s->pos.begin();
    while (int64_t(s->pos.size()) - row < n) {
      const int32_t c = int32_t(rng.next() % uint64_t(cols));
      if (std::find(s->pos.begin() + row, s->pos.end(), c) == s->pos.end()) s->pos.push_back(c);
    }
    s->ptr.push_back(int32_t(s->pos.size()));
  }
  s->x = normal_scores(rng, rows, cols);
  s->grad.assign(s->x.size(), NAN);
  s->row_loss.assign(size_t(rows), NAN);
  auto args = [s, rows, cols](bool dscale) {
    SoftTopKLossArgs a{};
    bench_loss_args(a, s->x.data(), rows, cols, 1.f, s->grad.data(), s->row_loss.data(), dscale);
    a.alpha = 2.f;
    a.k = 5;
    a.tol = 1e-5f;
    a.max_iter = 100;
    a.positives = Csr{s->ptr.data(), s->pos.data(), nullptr};
    return a;
  };
  return {[&ctx, args] { soft_topk_loss(ctx, args(false)); },
          [&ctx, args, s, rows, cols] {
            // The long-double threshold bisects each row 100 times: the first 8 rows (of the
            // same call at the bench shape) keep the check to seconds.
            soft_topk_loss(ctx, args(true));
            const int64_t checked = std::min<int64_t>(8, rows);
            long double worst = 0;
            std::vector<float> got(s->grad.begin(), s->grad.begin() + checked * cols);
            std::vector<long double> grad;
            const std::vector<bool> out(static_cast<size_t>(cols), false);
            for (int64_t r = 0; r < checked; ++r) {
              const std::vector<float> row(s->x.begin() + r * cols, s->x.begin() + (r + 1) * cols);
              const std::vector<int32_t> pos(s->pos.begin() + s->ptr[size_t(r)], s->pos.begin() + s->ptr[size_t(r) + 1]);
              long double l;
              std::vector<long double> g;
              ref_loss_row(row, cols, pos, out, 5, 2, l, g);
              worst = std::max(worst, std::fabs(s->row_loss[size_t(r)] - l) / std::max<long double>(1, std::fabs(l)));
              for (long double v : g) grad.push_back(v / rows);  // 'mean' divides by B
            }
            std::string why = within("row loss", worst, 1e-5);
            if (why.empty()) why = within("grad", rel_l2(got, grad), 1e-5);
            return why;
          }};
}

FL_TEST_MAIN()
