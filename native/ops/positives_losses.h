// Losses over CSR positives (DEXML's family): decoupledSoftmax (SPEC 3.4), multiLabelSoftmax
// (SPEC 3.2) and binaryCrossEntropy (SPEC 3.6); loss and gradient in one call.
#pragma once
#include <cstdint>

#include "../core/context.h"
#include "../core/dtype.h"
#include "cross_entropy.h"
#include "csr.h"

namespace fl {

struct PositivesLossArgs {
  const void* scores;  // rows × cols of `dtype`
  DType dtype;
  int64_t rows, cols;
  Csr positives;               // weights: per-positive weights (bce: soft targets)
  Csr exclude;                 // entries out of the loss (gradient 0), or empty
  float scale;                 // > 0
  Reduction reduction;
  const float* grad_output;    // rows (reduction None only), or null for ones
  void* grad;                  // rows × cols, or null; may equal `scores` (in place)
  bool grad_float32;           // grad in float32 rather than `dtype`
  bool want_dscale;
  float* row_loss;             // rows: ℓ_i
};

// Each throws ERR_CSR for an exclusion that is also a positive and ERR_NON_FINITE for NaN/+inf
// scores. 'mean' divides by B (decoupled, multi-label) or B·N (bce).
LossResult decoupled_softmax(Context& ctx, const PositivesLossArgs& args);
LossResult multi_label_softmax(Context& ctx, const PositivesLossArgs& args);
LossResult binary_cross_entropy(Context& ctx, const PositivesLossArgs& args);

}  // namespace fl
