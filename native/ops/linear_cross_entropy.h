// linearCrossEntropy (docs/MATH.md §3.9–3.10): softmaxCrossEntropy (docs/MATH.md §3.1) on the scores S = H·Wᵀ (+ b) of a
// linear layer, forward and backward, without a B×N buffer: hidden H (B×D), weight W (N×D, torch
// nn.Linear layout), optional bias b (N). Gradients dH = G·W, dW = Gᵀ·H, db = Σ_i G_i with
// G = dL/dS; dW and db are fp32 whatever the input dtype.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

struct Context;  // native/core/context.h

// The scratch budget when the caller gives none: 32 MiB (a chunk of 256 rows of a
// 32768-class softmax in fp32).
constexpr int64_t kDefaultMemoryBudget = int64_t(32) << 20;


// How a call splits its work (linear_cross_entropy_plan; see linear_cross_entropy.cpp).
struct LinearCrossEntropyPlan {
  int64_t chunk_rows;     // rows taken at once
  int64_t tile_cols;      // columns of S held at once: N (row chunks), or fewer (column tiles)
  int64_t scratch_bytes;  // what the call allocates, at most the budget
};
LinearCrossEntropyPlan linear_cross_entropy_plan(const Context& ctx, const LinearCrossEntropyArgs& args, int64_t active_rows);

// Throws ERR_LABEL_RANGE for a label outside [0, classes) that is not ignore_index,
// ERR_NON_FINITE when a score is NaN or +inf, ERR_MEMORY_BUDGET when one row does not fit.
LossResult linear_cross_entropy(Context& ctx, const LinearCrossEntropyArgs& args);

}  // namespace fl
