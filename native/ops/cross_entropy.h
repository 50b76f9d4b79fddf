// softmaxCrossEntropy (SPEC 3.1): torch F.cross_entropy over very many classes, with
// ignore_index, label smoothing, class weights, z-loss and softcap; loss and gradient in one call.
#pragma once
#include <cstdint>

#include "../core/context.h"
#include "../core/dtype.h"

namespace fl {

enum class Reduction : int32_t { Mean = 0, Sum = 1, None = 2 };

struct CrossEntropyArgs {
  const void* logits;  // rows × cols of `dtype`
  DType dtype;
  int64_t rows, cols;
  const int32_t* labels;        // rows
  int32_t ignore_index;
  float scale;                  // > 0
  float softcap;                // > 0, or 0 for none
  float label_smoothing;        // ε in [0, 1]
  const float* class_weights;   // cols, or null
  float z_loss;                 // λ >= 0
  Reduction reduction;
  const float* grad_output;     // rows (reduction None only), or null for ones
  void* grad;                   // rows × cols, or null; may equal `logits` (in place)
  bool grad_float32;            // grad in float32 rather than `dtype`
  bool want_dscale;
  float* row_loss;              // rows: ℓ_i (0 for ignored rows)
  float* lse;                   // rows, or null: log-sum-exp of z per row
};

struct LossResult {
  double loss;    // mean: Σℓ / Σ w_y (0 when every row is ignored); sum and none: Σℓ
  double dscale;  // dL/dscale (0 unless asked)
};

// Throws ERR_LABEL_RANGE for a label outside [0, cols) that is not ignore_index, and
// ERR_NON_FINITE for NaN/+inf logits.
LossResult cross_entropy(Context& ctx, const CrossEntropyArgs& args);

// Shared with the CUDA launcher: validates labels, and returns the 'mean' denominator
// Σ_{i not ignored} w_{y_i} and w̄ = mean of the class weights (1 without them).
struct CrossEntropyTotals {
  double weight_sum;
  double mean_class_weight;
};
CrossEntropyTotals cross_entropy_totals(const CrossEntropyArgs& args);

}  // namespace fl
