// logSumExp: out[r] = log Σ_c exp(scale · x[r, c]) for every row of a B×N matrix.
// The shared first pass of every softmax-family loss, exposed on its own as a utility.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

struct Context;  // native/core/context.h

// Throws Error("ERR_NON_FINITE") naming the first NaN/+inf. A row that is all −inf gives −inf.
void log_sum_exp(Context& ctx, const LogSumExpArgs& args);

}  // namespace fl
