// The long-double building blocks the ops' references share (the formulas of docs/MATH.md):
// each op's own reference lives in its test file, test/native/test_<op>.cpp, beside its tests
// on every ISA and its bench case (lab.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "check.h"
#include "native/api/args.h"

namespace fltest {

using ld = long double;
using fl::Csr;
using fl::DType;
using fl::LossResult;
using fl::Reduction;

// A reference's result: the reduced loss, row losses, gradient dL/dS and dScale.
struct Ref {
  std::vector<long double> row_loss, grad;
  long double loss = 0, dscale = 0;
};

inline long double sig(long double a) { return a >= 0 ? 1 / (1 + std::exp(-a)) : std::exp(a) / (1 + std::exp(a)); }
inline ld lse_of(const std::vector<ld>& z) {
  ld m = -INFINITY;
  for (ld v : z) m = std::max(m, v);
  if (m == -INFINITY) return m;
  ld s = 0;
  for (ld v : z) s += std::exp(v - m);
  return m + std::log(s);
}
inline ld log_sigmoid(ld a) { return a >= 0 ? -std::log1p(std::exp(-a)) : a - std::log1p(std::exp(a)); }


}  // namespace fltest
