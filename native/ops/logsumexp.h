// logSumExp: out[r] = log Σ_c exp(scale · x[r, c]) for every row of a B×N matrix.
// The shared first pass of every softmax-family loss, exposed on its own as a utility.
#pragma once
#include <cstdint>

#include "../core/context.h"
#include "../core/dtype.h"

namespace fl {

struct LogSumExpArgs {
  const void* x;  // rows × cols, row-major, of `dtype`
  DType dtype;
  int64_t rows, cols;
  float scale;    // > 0
  float* out;     // rows
};

// Throws Error("ERR_NON_FINITE") naming the first NaN/+inf. A row that is all −inf gives −inf.
void log_sum_exp(Context& ctx, const LogSumExpArgs& args);

}  // namespace fl
