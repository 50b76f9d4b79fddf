// Each op's bench case, kept with its native test (llm.c's dev/ habit: one home per op, where
// the kernel is validated before it is timed). test/native/test_<op>.cpp holds the op's
// long-double reference, its tests on every ISA and
//
//   FL_BENCH(<op's registry name>)(fl::Context& ctx, int64_t rows, int64_t cols) { ... }
//
// which builds the op's inputs at a shape as bench/run.mjs times them and returns the timed call
// and its check against the reference. bench/native/bench_native.cpp (npm run bench:native)
// links every test file that has one and runs each op of the registry (scripts/ops.mjs) at its
// bench sizes; each test file's own run validates its cases at a small shape too (below), so a
// case that drifts from its reference fails in ctest first.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "native/api/args.h"
#include "native/core/context.h"

namespace fltest {

// An op at one shape: `run` is the timed call, `validate` the reason its result is wrong against
// the reference (empty: right).
struct Bench {
  std::function<void()> run;
  std::function<std::string()> validate;
};
using BenchMaker = Bench (*)(fl::Context&, int64_t rows, int64_t cols);

inline std::map<std::string, BenchMaker>& benches() {
  static std::map<std::string, BenchMaker> b;
  return b;
}
struct RegisterBench {
  RegisterBench(const char* op, BenchMaker make) { benches()[op] = make; }
};

// "" when err <= tol, else what is off and by how much.
inline std::string within(const char* what, long double err, long double tol) {
  if (err <= tol) return "";
  char buf[128];
  std::snprintf(buf, sizeof buf, "%s error %.3Lg > %.3Lg", what, err, tol);
  return buf;
}

// ‖got − want‖ / ‖want‖.
inline long double rel_l2(const std::vector<float>& got, const std::vector<long double>& want) {
  long double num = 0, den = 0;
  for (size_t k = 0; k < want.size(); ++k) {
    num += (got[k] - want[k]) * (got[k] - want[k]);
    den += want[k] * want[k];
  }
  return std::sqrt(num / std::max<long double>(den, 1e-300L));
}

inline std::vector<float> normal_scores(Rng& rng, int64_t rows, int64_t cols) {
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (auto& v : x) v = float(rng.normal() * 3);
  return x;
}

// CLIP-like cosine similarities (bench/run.mjs's 'cosine' rows): matched pairs on the diagonal.
inline std::vector<float> cosine_scores(Rng& rng, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      x[size_t(i * n + j)] = i == j ? float(0.3 + 0.6 * rng.uniform()) : float(std::clamp(0.2 * rng.normal(), -1.0, 1.0));
  return x;
}

// A loss's common arguments as the bench times it: fp32 scores, 'mean', the fp32 gradient into
// `grad` (reused across calls, as a training loop reuses it), dScale only when asked.
inline void bench_loss_args(fl::LossArgs& a, const float* scores, int64_t rows, int64_t cols, float scale, float* grad, float* row_loss,
                            bool dscale) {
  a.scores = scores;
  a.dtype = fl::DType::Float32;
  a.rows = rows;
  a.cols = cols;
  a.scale = scale;
  a.reduction = fl::Reduction::Mean;
  a.grad = grad;
  a.grad_dtype = fl::DType::Float32;
  a.grad_scale = dscale;
  a.row_loss = row_loss;
}

}  // namespace fltest

#define FL_BENCH(op)                                                        \
  static fltest::Bench op##_bench(fl::Context&, int64_t, int64_t);          \
  static const fltest::RegisterBench op##_bench_reg(#op, op##_bench);       \
  static fltest::Bench op##_bench

#ifndef FL_BENCH_MAIN
// The bench cases of this test file at a small square shape (infoNCE and decoupledContrastive
// bench square matrices), on this CPU's widest ISA.
FL_TEST(bench_cases_match_their_references) {
  fl::Context ctx;
  FL_CHECK(!fltest::benches().empty(), "no FL_BENCH in this test file, which includes lab.h");
  for (const auto& [op, make] : fltest::benches()) {
    const std::string why = make(ctx, 37, 37).validate();
    FL_CHECK(why.empty(), "FL_BENCH(%s) at 37x37: %s", op.c_str(), why.c_str());
  }
}
#endif
