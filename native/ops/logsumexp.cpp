// The math computed in this file, a section per op (forward, gradient, what 'mean' divides by
// and the numerics): docs/MATH.md §3 says where each loss's section lives, and its §1–2 hold
// the conventions and the stable building blocks every loss shares.
//
// MATH logSumExp
//
// lse_i = log Σ_j e^{z_ij}, one read of the row (docs/MATH.md §2). A row of −∞ gives −∞.
//
// ----------------------------------------------------------------------------------------------
#include "../api/args.h"

#include <cmath>
#include <string>
#include <vector>

#include "../api/error.h"
#include "../core/context.h"
#include "../isa/kernels.h"
#include "../core/parallel.h"
#include "../core/rowmath.h"

namespace fl {

void log_sum_exp(Context& ctx, const LogSumExpArgs& a) {
  const int64_t tiles = tiles_per_row(a.cols);
  std::vector<TileMaxSumExp> parts(size_t(a.rows * tiles));
  const auto kernel = ctx.kernels->tile_max_sum_exp[int(a.dtype)];
  const int64_t esize = dtype_size(a.dtype);
  for_each_row_tile(ctx.pool, a.rows, a.cols, [&](int64_t r, int64_t k, int64_t c0, int64_t c1) {
    const char* row = static_cast<const char*>(a.scores) + (r * a.cols + c0) * esize;
    TileMaxSumExp p = kernel(row, c1 - c0, a.scale);
    if (p.first_bad >= 0) p.first_bad += c0;
    parts[size_t(r * tiles + k)] = p;
  });
  for (int64_t r = 0; r < a.rows; ++r) {
    MaxSumExp<double> acc = max_sum_exp_empty<double>();
    for (int64_t k = 0; k < tiles; ++k) {
      const TileMaxSumExp& p = parts[size_t(r * tiles + k)];
      if (p.first_bad >= 0) fail_non_finite("scores", r, p.first_bad);
      merge(acc, MaxSumExp<double>{p.max, p.rest});
    }
    a.out[r] = float(log_sum_exp(acc));
  }
}

}  // namespace fl
