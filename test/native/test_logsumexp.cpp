// logSumExp on every ISA this CPU has, against a long-double reference.
#include <cstring>
#include <vector>

#include "check.h"
#include "lab.h"
#include "reference.h"
#include "native/core/context.h"
#include "native/core/dtype.h"
#include "native/api/error.h"
#include "native/api/args.h"

using namespace fl;
using namespace fltest;

namespace {

// log Σ_j exp(scale·x_j) of one row; −∞ when every entry is.
inline long double ref_lse(const float* x, int64_t n, double scale) {
  long double m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max<long double>(m, scale * x[i]);
  if (m == -INFINITY) return m;
  long double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp((long double)scale * x[i] - m);
  return m + std::log(s);
}

}  // namespace

static std::vector<float> scores(Rng& rng, int64_t rows, int64_t cols, const char* kind) {
  std::vector<float> x(size_t(rows * cols));
  for (auto& v : x) v = float(rng.normal() * (kind[0] == 'f' ? 0.05 : 3.0));
  if (kind[0] == 'p')  // peaked: a few large logits per row
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < 3; ++k) x[size_t(r * cols + int64_t(rng.uniform() * cols))] *= 20;
  return x;
}

FL_TEST(matches_reference_on_odd_shapes_every_isa) {
  Rng rng(7);
  struct Shape { int64_t rows, cols; };
  for (Isa isa : isas()) {
    Context ctx(isa, 2);
    for (Shape s : {Shape{1, 1}, Shape{7, 2}, Shape{3, 97}, Shape{5, 50257}, Shape{2, 70001}, Shape{1, 300007}}) {
      for (const char* kind : {"normal", "flat", "peaked"}) {
        for (float scale : {1.0f, 14.285714f}) {
          auto x = scores(rng, s.rows, s.cols, kind);
          std::vector<float> out(size_t(s.rows), NAN);
          log_sum_exp(ctx, {{x.data(), DType::Float32, s.rows, s.cols, scale}, out.data()});
          double worst = 0;
          for (int64_t r = 0; r < s.rows; ++r) {
            const long double ref = ref_lse(&x[size_t(r * s.cols)], s.cols, scale);
            // lse can cross 0, so the error is measured against max(1, |lse|).
            worst = std::max(worst, double(std::fabs(out[size_t(r)] - ref) / std::max<long double>(1, std::fabs(ref))));
          }
          FL_CHECK(worst <= 1e-6, "%s %lldx%lld %s scale %g: rel err %.3g", isa_name(isa), (long long)s.rows,
                   (long long)s.cols, kind, scale, worst);
        }
      }
    }
  }
}

FL_TEST(half_inputs_every_isa) {
  Rng rng(11);
  for (Isa isa : isas()) {
    Context ctx(isa, 2);
    const int64_t rows = 3, cols = 40003;
    auto x = scores(rng, rows, cols, "normal");
    std::vector<f16_t> h(x.size());
    std::vector<bf16_t> b(x.size());
    std::vector<float> xh(x.size()), xb(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      h[i] = to_f16(x[i]); xh[i] = to_float(h[i]);
      b[i] = to_bf16(x[i]); xb[i] = to_float(b[i]);
    }
    std::vector<float> oh(rows), ob(rows);
    log_sum_exp(ctx, {{h.data(), DType::Float16, rows, cols, 1.f}, oh.data()});
    log_sum_exp(ctx, {{b.data(), DType::BFloat16, rows, cols, 1.f}, ob.data()});
    for (int64_t r = 0; r < rows; ++r) {
      const double rh = double(ref_lse(&xh[size_t(r * cols)], cols, 1.0));
      const double rb = double(ref_lse(&xb[size_t(r * cols)], cols, 1.0));
      FL_CHECK(std::fabs(oh[size_t(r)] - rh) <= 1e-6 * std::fabs(rh), "%s f16 row %lld", isa_name(isa), (long long)r);
      FL_CHECK(std::fabs(ob[size_t(r)] - rb) <= 1e-6 * std::fabs(rb), "%s bf16 row %lld", isa_name(isa), (long long)r);
    }
  }
}

FL_TEST(bitwise_identical_across_thread_counts_and_isas_agree) {
  Rng rng(3);
  const int64_t rows = 3, cols = 200003;
  auto x = scores(rng, rows, cols, "normal");
  std::vector<float> first;
  for (int threads : {1, 2, 5}) {
    Context ctx(select_isa(), threads);
    std::vector<float> out(rows);
    log_sum_exp(ctx, {{x.data(), DType::Float32, rows, cols, 1.f}, out.data()});
    if (first.empty()) first = out;
    FL_CHECK(std::memcmp(first.data(), out.data(), rows * sizeof(float)) == 0, "threads=%d differs", threads);
  }
}

FL_TEST(minus_infinity_and_non_finite) {
  Context ctx(select_isa(), 2);
  std::vector<float> x(3 * 41, -INFINITY);
  x[41 + 5] = 2.f;  // row 1 has one live entry: lse = 2
  std::vector<float> out(3);
  log_sum_exp(ctx, {{x.data(), DType::Float32, 3, 41, 1.f}, out.data()});
  FL_CHECK(out[0] == -INFINITY && out[2] == -INFINITY, "all -inf rows give -inf");
  FL_CHECK(out[1] == 2.f, "single live entry: %g", out[1]);
  for (float bad : {NAN, INFINITY}) {
    x[2 * 41 + 40] = bad;
    bool threw = false;
    try {
      log_sum_exp(ctx, {{x.data(), DType::Float32, 3, 41, 1.f}, out.data()});
    } catch (const Error& e) {
      threw = e.code == "ERR_NON_FINITE" && std::strstr(e.what(), "[2, 40]");
    }
    FL_CHECK(threw, "%g at [2, 40] must throw ERR_NON_FINITE naming the position", bad);
  }
}

// The statistics sweep skips the exp's underflow mask in a block whose scores all lie within 87
// of its max (every exp is then a normal float). Blocks with one score just past that, or far
// past it (whose unmasked exp would be garbage), must take the masked path; blocks just inside
// may take the fast one. Rows of 2·2048 have no tail lanes, so both paths are reachable.
FL_TEST(spread_near_exp_underflow_every_isa) {
  Rng rng(13);
  const int64_t cols = 4096;
  for (Isa isa : isas()) {
    Context ctx(isa, 2);
    for (double low : {-86.9, -87.1, -126.0, -200.0, -1e4}) {
      for (float scale : {1.0f, 0.75f}) {
        std::vector<float> x(size_t(3 * cols));
        for (auto& v : x) v = float(rng.normal());
        for (int64_t r = 0; r < 3; ++r) {
          x[size_t(r * cols + 5)] = 4.f;                                                   // block 0's max
          x[size_t(r * cols + 100 + r)] = float((4 + low) / scale);                       // far below it
          x[size_t(r * cols + 2048 + 7 * r)] = float((4 + low) / scale);                  // in block 1
          for (int64_t c = 2048 + 1000; c < 2048 + 1010; ++c) x[size_t(r * cols + c)] = float((4 + low) / scale);
        }
        std::vector<float> out(3, NAN);
        log_sum_exp(ctx, {{x.data(), DType::Float32, 3, cols, scale}, out.data()});
        for (int64_t r = 0; r < 3; ++r) {
          const long double ref = ref_lse(&x[size_t(r * cols)], cols, scale);
          const double err = double(std::fabs(out[size_t(r)] - ref) / std::max<long double>(1, std::fabs(ref)));
          FL_CHECK(err <= 1e-6, "%s low %g scale %g row %lld: %.9g vs %.9Lg", isa_name(isa), low, scale, (long long)r,
                   out[size_t(r)], ref);
        }
      }
    }
  }
}

// bench: fp32 normal rows at scale 1, every row's lse against the reference.
FL_BENCH(logSumExp)(Context& ctx, int64_t rows, int64_t cols) {
  Rng rng(42);
  auto x = std::make_shared<std::vector<float>>(normal_scores(rng, rows, cols));
  auto out = std::make_shared<std::vector<float>>(size_t(rows), NAN);
  auto run = [&ctx, x, out, rows, cols] { log_sum_exp(ctx, {{x->data(), DType::Float32, rows, cols, 1.f}, out->data()}); };
  return {run, [run, x, out, rows, cols] {
            run();
            long double worst = 0;
            for (int64_t r = 0; r < rows; ++r) {
              const long double want = ref_lse(x->data() + r * cols, cols, 1.0);
              worst = std::max(worst, std::fabs((*out)[size_t(r)] - want) / std::max<long double>(1, std::fabs(want)));
            }
            return within("lse", worst, 1e-5);
          }};
}

FL_TEST_MAIN()
