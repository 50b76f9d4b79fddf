// The softmax-row engine with skip lists: skipped columns leave the statistics and get a zero
// gradient, on single-tile and multi-tile rows, on every ISA, fp32 and bf16, in place or not.
#include <cstring>
#include <vector>

#include "check.h"
#include "native/ops/softmax_rows.h"

using namespace fl;
using fltest::Rng;

// A test loss: ℓ_i = lse over the kept columns; dℓ/dz_j = p_j (softmax over kept columns).
struct LseLoss {
  std::vector<std::vector<int32_t>> skips;
  std::vector<double> lse;
  bool active(int64_t) const { return true; }
  RowSkip skip(int64_t r) const { return {skips[size_t(r)].data(), int64_t(skips[size_t(r)].size())}; }
  DenseTerms terms(int64_t r, const RowStats& st) {
    lse[size_t(r)] = st.lse();
    return DenseTerms{float(st.lse()), 1.f, 0.f, 0.f};
  }
  double corrections(int64_t, const RowStats&, const DenseTerms&, const SoftmaxRows&) const { return 0; }
};

FL_TEST(skip_lists_single_and_multi_tile_every_isa) {
  Rng rng(31);
  for (int isa = 0; isa <= int(detect_isa()); ++isa) {
    Context ctx(Isa(isa), 3);
    for (int64_t N : {int64_t(53), int64_t(4099), int64_t(70001)}) {
      for (DType dt : {DType::Float32, DType::BFloat16}) {
        const int64_t B = 4;
        std::vector<float> xf(size_t(B * N));
        for (auto& v : xf) v = float(rng.normal() * 2);
        std::vector<bf16_t> xb(xf.size());
        for (size_t i = 0; i < xf.size(); ++i) { xb[i] = to_bf16(xf[i]); xf[i] = to_float(xb[i]); }
        LseLoss loss;
        loss.lse.assign(size_t(B), 0);
        loss.skips.resize(size_t(B));
        for (int64_t r = 0; r < B; ++r) {
          // Row 0: nothing; row 1: a few; row 2: every other column; row 3: a dense run + the ends.
          std::vector<int32_t>& s = loss.skips[size_t(r)];
          for (int64_t c = 0; c < N; ++c) {
            const bool out = r == 1 ? (c % 97 == 5) : r == 2 ? (c % 2 == 1) : r == 3 ? (c < 3000 || c == N - 1) : false;
            if (out) s.push_back(int32_t(c));
          }
        }
        std::vector<float> g(xf.size(), NAN);
        const void* x = dt == DType::Float32 ? static_cast<const void*>(xf.data()) : static_cast<const void*>(xb.data());
        SoftmaxRows engine(ctx, SoftmaxProblem{{x, dt, B, N, 1.3f}, 0.f, nullptr, false, g.data(), DType::Float32, true, "scores"});
        const double dscale = engine.run(loss);
        double want_dscale = 0, worst = 0;
        for (int64_t r = 0; r < B; ++r) {
          const auto& s = loss.skips[size_t(r)];
          std::vector<char> out(size_t(N), 0);
          for (int32_t c : s) out[size_t(c)] = 1;
          long double m = -INFINITY, sum = 0;
          for (int64_t c = 0; c < N; ++c) if (!out[size_t(c)]) m = std::max<long double>(m, 1.3L * xf[size_t(r * N + c)]);
          for (int64_t c = 0; c < N; ++c) if (!out[size_t(c)]) sum += std::exp(1.3L * xf[size_t(r * N + c)] - m);
          const long double lse = m + std::log(sum);
          worst = std::max(worst, double(std::fabs(loss.lse[size_t(r)] - lse) / std::max<long double>(1, std::fabs(lse))));
          for (int64_t c = 0; c < N; ++c) {
            const long double p = out[size_t(c)] ? 0 : std::exp(1.3L * xf[size_t(r * N + c)] - lse);
            const float got = g[size_t(r * N + c)];
            if (out[size_t(c)]) FL_CHECK(got == 0.f, "skipped [%lld, %lld] has gradient %g", (long long)r, (long long)c, got);
            else worst = std::max(worst, double(std::fabs(got - 1.3L * p) / (1.3L * p + 1e-6L)));
            want_dscale += double(p * xf[size_t(r * N + c)]);
          }
        }
        FL_CHECK(worst < 5e-5, "isa %s N=%lld %s: worst error %.3g", isa_name(Isa(isa)), (long long)N, dtype_name(dt), worst);
        FL_CHECK(std::fabs(dscale - want_dscale) < 1e-4 * std::max(1.0, std::fabs(want_dscale)), "dScale %.9g vs %.9g", dscale,
                 want_dscale);
      }
    }
  }
}

FL_TEST_MAIN()
