// What every CPU loss does alike around its own math: the row's upstream factor, and the
// reduction of the row losses into the result.
#pragma once
#include <cstdint>
#include <vector>

#include "../api/args.h"

namespace fl {

// Row r's upstream factor u, by which its whole gradient is multiplied: 1/mean_divisor for
// 'mean' (0 when the divisor is 0: nothing is averaged), gradOutput_r for 'none' (1 without
// it), 1 for 'sum'. What 'mean' divides by is the loss's own (docs/MATH.md).
inline double upstream(const LossArgs& a, int64_t r, double mean_divisor) {
  if (a.reduction == Reduction::Mean) return mean_divisor > 0 ? 1.0 / mean_divisor : 0.0;
  if (a.reduction == Reduction::None && a.grad_output) return a.grad_output[r];
  return 1.0;
}

// Writes the row losses to a.row_loss and returns their sum, divided by mean_divisor for
// 'mean' (0 when the divisor is 0), with dL/dscale when asked.
inline LossResult reduce_rows(const LossArgs& a, const std::vector<double>& loss, double mean_divisor, double dscale) {
  double total = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    a.row_loss[r] = float(loss[size_t(r)]);
    total += loss[size_t(r)];
  }
  if (a.reduction == Reduction::Mean) total = mean_divisor > 0 ? total / mean_divisor : 0.0;
  return {total, a.grad_scale ? dscale : 0.0};
}

}  // namespace fl
