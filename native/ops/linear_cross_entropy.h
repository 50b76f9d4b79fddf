// linearCrossEntropy (SPEC 6): softmaxCrossEntropy (SPEC 3.1) on the scores S = H·Wᵀ (+ b) of a
// linear layer, forward and backward, without a B×N buffer: hidden H (B×D), weight W (N×D, torch
// nn.Linear layout), optional bias b (N). Gradients dH = G·W, dW = Gᵀ·H, db = Σ_i G_i with
// G = dL/dS; dW and db are fp32 whatever the input dtype.
#pragma once
#include <cstdint>

#include "../core/context.h"
#include "../core/dtype.h"
#include "cross_entropy.h"

namespace fl {

// The scratch budget when the caller gives none: 32 MiB (a chunk of 256 rows of a
// 32768-class softmax in fp32).
constexpr int64_t kDefaultMemoryBudget = int64_t(32) << 20;

struct LinearCrossEntropyArgs {
  const void* hidden;  // rows × dim of `dtype`
  const void* weight;  // classes × dim of `dtype`
  const float* bias;   // classes, or null
  DType dtype;
  int64_t rows, dim, classes;
  const int32_t* labels;  // rows
  int32_t ignore_index;
  float scale;            // > 0
  float softcap;          // > 0, or 0 for none
  float label_smoothing;  // ε in [0, 1]
  const float* class_weights;  // classes, or null
  float z_loss;                // λ ≥ 0
  Reduction reduction;
  const float* grad_output;  // rows (reduction None only), or null for ones
  void* grad_hidden;         // rows × dim, or null; float32 or `dtype` (grad_hidden_float32)
  bool grad_hidden_float32;
  float* grad_weight;  // classes × dim, or null
  float* grad_bias;    // classes, or null
  bool accumulate;     // add into grad_hidden / grad_weight / grad_bias instead of overwriting
  bool want_dscale;
  float* row_loss;  // rows: ℓ_i (0 for ignored rows)
  float* lse;       // rows, or null (NaN for ignored rows: they are not computed)
  int64_t memory_budget;  // bytes of scratch, > 0
};

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
