// Cross-entropy (and through it the softmax-row engine) on every ISA this CPU has, against a
// long-double reference: options, multi-tile rows, in-place, half dtypes, thread counts.
#include <cstring>
#include <vector>

#include "check.h"
#include "lab.h"
#include "reference.h"
#include "native/core/context.h"
#include "native/core/dtype.h"
#include "native/api/error.h"
#include "native/ops/cross_entropy.h"

using namespace fl;
using namespace fltest;

namespace {

// MATH softmaxCrossEntropy (native/ops/cross_entropy_math.h) in long double, straight from the formulas.
inline Ref cross_entropy_reference(const std::vector<float>& x, int64_t B, int64_t N, const std::vector<int32_t>& y, float scale, float cap,
                     float eps, const float* cw, float lambda, Reduction red) {
  Ref r;
  r.row_loss.assign(size_t(B), 0);
  r.grad.assign(size_t(B * N), 0);
  long double wsum = 0, wmean = 0;
  for (int64_t j = 0; j < N; ++j) wmean += cw ? cw[j] : 1;
  wmean /= N;
  for (int64_t i = 0; i < B; ++i) if (y[size_t(i)] >= 0) wsum += cw ? cw[y[size_t(i)]] : 1;
  for (int64_t i = 0; i < B; ++i) {
    if (y[size_t(i)] < 0) continue;
    std::vector<long double> z(static_cast<size_t>(N)), dzdx(static_cast<size_t>(N)), dzds(static_cast<size_t>(N));
    long double m = -INFINITY;
    for (int64_t j = 0; j < N; ++j) {
      const long double v = x[size_t(i * N + j)];
      if (cap > 0) {
        const long double t = std::tanh(scale * v / cap);
        z[size_t(j)] = cap * t; dzdx[size_t(j)] = scale * (1 - t * t); dzds[size_t(j)] = v * (1 - t * t);
      } else {
        z[size_t(j)] = scale * v; dzdx[size_t(j)] = scale; dzds[size_t(j)] = v;
      }
      m = std::max(m, z[size_t(j)]);
    }
    long double s = 0, lin = 0;
    for (int64_t j = 0; j < N; ++j) { s += std::exp(z[size_t(j)] - m); lin += (cw ? cw[j] : 1) * z[size_t(j)]; }
    const long double lse = m + std::log(s);
    const int32_t t = y[size_t(i)];
    const long double wy = cw ? cw[t] : 1;
    const long double l = wy * (1 - eps) * (lse - z[size_t(t)]) + eps * (wmean * lse - lin / N) + lambda * lse * lse;
    r.row_loss[size_t(i)] = l;
    const long double u = red == Reduction::Mean ? 1 / wsum : 1;
    r.loss += red == Reduction::Mean ? l / wsum : l;
    for (int64_t j = 0; j < N; ++j) {
      const long double p = std::exp(z[size_t(j)] - lse);
      long double d = (wy * (1 - eps) + eps * wmean + 2 * lambda * lse) * p - eps * (cw ? cw[j] : 1) / N;
      if (j == t) d -= (1 - eps) * wy;
      r.grad[size_t(i * N + j)] = u * d * dzdx[size_t(j)];
      r.dscale += u * d * dzds[size_t(j)];
    }
  }
  return r;
}

}  // namespace

FL_TEST(float32_options_and_shapes_every_isa) {
  Rng rng(21);
  struct Case { int64_t B, N; float scale, cap, eps, lambda; bool weights; Reduction red; };
  const Case cases[] = {
      {1, 2, 1, 0, 0, 0, false, Reduction::Mean},       {7, 97, 14.3f, 0, 0.1f, 0, false, Reduction::Mean},
      {5, 1001, 2, 3, 0, 1e-3f, false, Reduction::Sum}, {3, 70001, 1, 0, 0.2f, 0, true, Reduction::Mean},
      {2, 100003, 1.5f, 4, 0.05f, 1e-4f, true, Reduction::Sum},
  };
  for (Isa isa : isas()) {
    Context ctx(isa, 3);
    for (const Case& c : cases) {
      std::vector<float> x(static_cast<size_t>(c.B * c.N)), cw(static_cast<size_t>(c.N));
      for (auto& v : x) v = float(rng.normal() * 3);
      for (auto& w : cw) w = float(0.5 + rng.uniform());
      std::vector<int32_t> y(static_cast<size_t>(c.B));
      for (int64_t i = 0; i < c.B; ++i) y[size_t(i)] = (i == 1 && c.B > 2) ? -100 : int32_t(rng.uniform() * c.N);
      std::vector<float> g(x.size(), NAN), rl(size_t(c.B), NAN), lse(size_t(c.B), NAN);
      CrossEntropyArgs a{{{x.data(), DType::Float32, c.B, c.N, c.scale}, c.red, nullptr, g.data(), DType::Float32, true, rl.data()}, y.data(), -100, c.cap, c.eps, c.weights ? cw.data() : nullptr, c.lambda, lse.data()};
      const LossResult got = cross_entropy(ctx, a);
      const Ref ref = cross_entropy_reference(x, c.B, c.N, y, c.scale, c.cap, c.eps, c.weights ? cw.data() : nullptr, c.lambda, c.red);
      long double num = 0, den = 0;
      for (size_t k = 0; k < g.size(); ++k) { num += (g[k] - ref.grad[k]) * (g[k] - ref.grad[k]); den += ref.grad[k] * ref.grad[k]; }
      const double gerr = double(std::sqrt(num / den));
      const double lerr = double(std::fabs((got.loss - ref.loss) / ref.loss));
      const double derr = double(std::fabs(got.dscale - ref.dscale) / std::max<long double>(1, std::fabs(ref.dscale)));
      FL_CHECK(lerr < 2e-6 && gerr < 2e-6 && derr < 1e-5, "%s %lldx%lld: loss %.2g grad %.2g dscale %.2g", isa_name(isa),
               (long long)c.B, (long long)c.N, lerr, gerr, derr);
    }
  }
}

FL_TEST(in_place_and_thread_counts_are_bitwise_identical) {
  Rng rng(5);
  const int64_t B = 3, N = 70001;
  std::vector<float> x(static_cast<size_t>(B * N));
  for (auto& v : x) v = float(rng.normal());
  std::vector<int32_t> y = {5, 70000, 123};
  std::vector<float> first;
  for (int threads : {1, 2, 7}) {
    Context ctx(select_isa(), threads);
    std::vector<float> g(x.size()), rl(static_cast<size_t>(B));
    cross_entropy(ctx, {{{x.data(), DType::Float32, B, N, 1}, Reduction::Mean, nullptr, g.data(), DType::Float32, false, rl.data()}, y.data(), -100, 0, 0.1f, nullptr, 0, nullptr});
    if (first.empty()) first = g;
    FL_CHECK(std::memcmp(first.data(), g.data(), g.size() * 4) == 0, "threads=%d differs", threads);
  }
  Context ctx(select_isa(), 2);
  std::vector<float> inplace = x, rl(static_cast<size_t>(B));
  cross_entropy(ctx, {{{inplace.data(), DType::Float32, B, N, 1}, Reduction::Mean, nullptr, inplace.data(), DType::Float32, false, rl.data()}, y.data(), -100, 0, 0.1f, nullptr, 0, nullptr});
  FL_CHECK(std::memcmp(first.data(), inplace.data(), inplace.size() * 4) == 0, "in-place gradient differs");
}

FL_TEST(bfloat16_label_gradient_rounded_once) {
  // A peaked row: p_y ≈ 1, so dL/dz_y = p_y − 1 is tiny; computing it in bf16 arithmetic would
  // lose it entirely. The kernel computes it in fp32 and rounds once.
  for (Isa isa : isas()) {
    Context ctx(isa, 1);
    const int64_t N = 37;
    std::vector<bf16_t> x(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; ++j) x[size_t(j)] = to_bf16(j == 4 ? 12.f : 0.f);
    std::vector<bf16_t> g(static_cast<size_t>(N));
    std::vector<float> rl(1);
    int32_t y = 4;
    cross_entropy(ctx, {{{x.data(), DType::BFloat16, 1, N, 1}, Reduction::Sum, nullptr, g.data(), DType::BFloat16, false, rl.data()}, &y, -100, 0, 0, nullptr, 0, nullptr});
    const double p_other = 1.0 / (std::exp(12.0) + 36.0);
    const double want = -36.0 * p_other;  // p_y − 1
    const float got = to_float(g[4]);
    FL_CHECK(std::fabs(got - want) <= std::fabs(want) * 0.008, "%s: label gradient %.6g, want %.6g", isa_name(isa), got, double(want));
  }
}

FL_TEST(bad_labels_and_non_finite) {
  Context ctx(select_isa(), 2);
  std::vector<float> x(2 * 5, 0.5f), g(10), rl(2);
  std::vector<int32_t> y = {0, 5};
  bool threw = false;
  try {
    cross_entropy(ctx, {{{x.data(), DType::Float32, 2, 5, 1}, Reduction::Mean, nullptr, g.data(), DType::Float32, false, rl.data()}, y.data(), -100, 0, 0, nullptr, 0, nullptr});
  } catch (const Error& e) {
    threw = e.code == "ERR_LABEL_RANGE";
  }
  FL_CHECK(threw, "label 5 of 5 classes must throw ERR_LABEL_RANGE");
  y[1] = 4;
  x[7] = NAN;
  threw = false;
  try {
    cross_entropy(ctx, {{{x.data(), DType::Float32, 2, 5, 1}, Reduction::Mean, nullptr, g.data(), DType::Float32, false, rl.data()}, y.data(), -100, 0, 0, nullptr, 0, nullptr});
  } catch (const Error& e) {
    threw = e.code == "ERR_NON_FINITE" && std::strstr(e.what(), "[1, 2]");
  }
  FL_CHECK(threw, "NaN at [1, 2] must throw ERR_NON_FINITE naming it");
}

// bench: fp32 normal logits, one label per row, no options, 'mean'.
FL_BENCH(softmaxCrossEntropy)(Context& ctx, int64_t rows, int64_t cols) {
  struct State {
    std::vector<float> x, grad, row_loss;
    std::vector<int32_t> labels;
  };
  Rng rng(42);
  auto s = std::make_shared<State>();
  s->x = normal_scores(rng, rows, cols);
  for (int64_t i = 0; i < rows; ++i) s->labels.push_back(int32_t(rng.next() % uint64_t(cols)));
  s->grad.assign(s->x.size(), NAN);
  s->row_loss.assign(size_t(rows), NAN);
  auto args = [s, rows, cols](bool dscale) {
    CrossEntropyArgs a{};
    bench_loss_args(a, s->x.data(), rows, cols, 1.f, s->grad.data(), s->row_loss.data(), dscale);
    a.labels = s->labels.data();
    a.ignore_index = -100;
    return a;
  };
  return {[&ctx, args] { cross_entropy(ctx, args(false)); },
          [&ctx, args, s, rows, cols] {
            const LossResult got = cross_entropy(ctx, args(true));
            const Ref want = cross_entropy_reference(s->x, rows, cols, s->labels, 1.f, 0.f, 0.f, nullptr, 0.f, Reduction::Mean);
            std::string why = within("loss", std::fabs(got.loss - want.loss) / std::fabs(want.loss), 1e-5);
            if (why.empty()) why = within("grad", rel_l2(s->grad, want.grad), 1e-5);
            return why;
          }};
}

FL_TEST_MAIN()
