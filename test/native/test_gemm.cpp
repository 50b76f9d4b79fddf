// The GEMM core on every ISA this CPU has, against a float64 reference: odd sizes, every
// transposition, fp16/bf16 B, leading dimensions wider than the matrix, accumulate, and
// bitwise-equal results on 1 and 3 threads.
#include <cstring>
#include <vector>

#include "check.h"
#include "native/gemm/gemm.h"

using namespace fl;
using fltest::isas;
using fltest::Rng;

namespace {

template <class T>
std::vector<T> to_dtype(const std::vector<float>& x) {
  std::vector<T> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = from_float<T>(x[i]);
  return out;
}

struct Problem {
  int64_t m, n, k;
  bool at, bt;
};

// Runs one problem with B stored as T; returns max |C − ref| / (max |ref| + tiny).
template <class T>
double check(Context& ctx, const Problem& pr, Rng& rng, bool accumulate, std::vector<float>* out = nullptr) {
  const int64_t pad = 3;  // leading dimensions wider than the rows: strides are honoured
  const int64_t lda = (pr.at ? pr.m : pr.k) + pad, ldb = (pr.bt ? pr.k : pr.n) + pad, ldc = pr.n + pad;
  std::vector<float> a(size_t((pr.at ? pr.k : pr.m) * lda)), b(size_t((pr.bt ? pr.n : pr.k) * ldb));
  for (auto& v : a) v = float(rng.normal());
  for (auto& v : b) v = to_float(from_float<T>(float(rng.normal())));  // representable in T
  std::vector<float> c(size_t(pr.m * ldc));
  for (auto& v : c) v = float(rng.normal());
  const std::vector<float> c0 = c;
  const std::vector<T> bt = to_dtype<T>(b);
  constexpr DType dt = std::is_same_v<T, float> ? DType::Float32 : std::is_same_v<T, f16_t> ? DType::Float16 : DType::BFloat16;
  gemm(ctx, pr.m, pr.n, pr.k, GemmOperand{a.data(), DType::Float32, lda, pr.at}, GemmOperand{bt.data(), dt, ldb, pr.bt}, c.data(), ldc,
       accumulate);
  double err = 0, scale = 1e-300;
  for (int64_t i = 0; i < pr.m; ++i)
    for (int64_t j = 0; j < pr.n; ++j) {
      double r = accumulate ? double(c0[size_t(i * ldc + j)]) : 0.0, mag = std::fabs(r);
      for (int64_t q = 0; q < pr.k; ++q) {
        const double x = a[size_t(pr.at ? q * lda + i : i * lda + q)], y = b[size_t(pr.bt ? j * ldb + q : q * ldb + j)];
        r += x * y;
        mag += std::fabs(x * y);
      }
      err = std::max(err, std::fabs(double(c[size_t(i * ldc + j)]) - r) / (mag + 1e-30));
      scale = std::max(scale, mag);
    }
  // Padding columns of C are untouched.
  for (int64_t i = 0; i < pr.m; ++i)
    for (int64_t j = pr.n; j < ldc; ++j)
      if (std::memcmp(&c[size_t(i * ldc + j)], &c0[size_t(i * ldc + j)], 4) != 0) err = 1;
  if (out) *out = c;
  return err;
}

}  // namespace

FL_TEST(gemm_matches_float64_every_isa_and_layout) {
  const Problem shapes[] = {{1, 1, 1, false, true},   {7, 13, 5, false, true},   {37, 101, 67, false, false}, {97, 33, 300, true, false},
                            {13, 1029, 258, false, true}, {200, 70, 513, false, false}, {5, 3, 1024, true, true}, {130, 517, 1, true, false}};
  for (Isa isa : isas()) {
    Context ctx(isa, 3);
    Rng rng(7);
    for (const Problem& p : shapes)
      for (bool acc : {false, true}) {
        // Each product term is exact in double; fp32 accumulation over k terms costs ≤ k·2^-24
        // of Σ|terms| (bound), far less in practice.
        const double tol = 4e-7 * double(p.k) + 1e-6;
        const double e = check<float>(ctx, p, rng, acc);
        FL_CHECK(e <= tol, "%s %lldx%lldx%lld at=%d bt=%d acc=%d: error %.3g", isa_name(isa), (long long)p.m, (long long)p.n,
                 (long long)p.k, p.at, p.bt, acc, e);
      }
  }
}

FL_TEST(gemm_half_b_widened_while_packing) {
  for (Isa isa : isas()) {
    Context ctx(isa, 2);
    Rng rng(8);
    for (const Problem& p : {Problem{29, 45, 131, false, true}, Problem{17, 66, 300, false, false}, Problem{40, 19, 77, true, false}}) {
      const double tol = 4e-7 * double(p.k) + 1e-6;
      const double e16 = check<f16_t>(ctx, p, rng, false), eb16 = check<bf16_t>(ctx, p, rng, true);
      FL_CHECK(e16 <= tol && eb16 <= tol, "%s %lldx%lldx%lld: f16 %.3g bf16 %.3g", isa_name(isa), (long long)p.m, (long long)p.n,
               (long long)p.k, e16, eb16);
    }
  }
}

FL_TEST(gemm_bitwise_same_on_any_thread_count) {
  const Problem p{301, 777, 700, false, true};
  for (Isa isa : isas()) {
    std::vector<float> one, three;
    Context c1(isa, 1), c3(isa, 3);
    Rng r1(9), r3(9);
    check<float>(c1, p, r1, true, &one);
    check<float>(c3, p, r3, true, &three);
    FL_CHECK(one.size() == three.size() && std::memcmp(one.data(), three.data(), one.size() * 4) == 0, "%s: results differ by thread count",
             isa_name(isa));
  }
}

FL_TEST(gemm_k_zero_clears_or_keeps) {
  Context ctx(detect_isa(), 2);
  std::vector<float> a(4, 1.f), b(4, 1.f), c(6, 5.f);
  gemm(ctx, 2, 3, 0, GemmOperand{a.data(), DType::Float32, 1, false}, GemmOperand{b.data(), DType::Float32, 3, false}, c.data(), 3, true);
  FL_CHECK(c[0] == 5.f && c[5] == 5.f, "accumulate with k = 0 changed C");
  gemm(ctx, 2, 3, 0, GemmOperand{a.data(), DType::Float32, 1, false}, GemmOperand{b.data(), DType::Float32, 3, false}, c.data(), 3, false);
  FL_CHECK(c[0] == 0.f && c[5] == 0.f, "k = 0 did not clear C");
}

FL_TEST_MAIN()
