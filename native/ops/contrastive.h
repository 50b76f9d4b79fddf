// infoNCE (SPEC 3.3; one-way and symmetric/CLIP) and decoupledContrastive (SPEC 3.5; DCL and
// DCLW): loss and gradient in one call.
#pragma once
#include <cstdint>

#include "../core/context.h"
#include "../core/dtype.h"
#include "cross_entropy.h"  // Reduction, LossResult

namespace fl {

// What both losses share: the scores, the reduction and the outputs.
struct ContrastiveCommon {
  const void* scores;        // rows × cols of `dtype`
  DType dtype;
  int64_t rows, cols;
  float scale;               // > 0
  Reduction reduction;
  const float* grad_output;  // rows (reduction None only), or null for ones
  void* grad;                // rows × cols, or null; may equal `scores` (in place)
  bool grad_float32;         // grad in float32 rather than `dtype`
  bool want_dscale;
  float* row_loss;           // rows
};

struct InfoNCEArgs {
  ContrastiveCommon c;
  // Diagonal positives (row i ↔ column i; needs cols >= rows).
  bool symmetric;            // CLIP: (row-wise + column-wise)/2 on a square matrix
};

struct DecoupledContrastiveArgs {
  ContrastiveCommon c;
  // Diagonal positives (needs cols >= rows).
  float sigma;               // DCLW's σ > 0, or 0 for plain DCL (w = 1)
};

// Throw ERR_SHAPE for diagonal positives with cols < rows (and symmetric on a non-square
// matrix), ERR_NON_FINITE for NaN/+inf scores.
LossResult info_nce(Context& ctx, const InfoNCEArgs& args);
LossResult decoupled_contrastive(Context& ctx, const DecoupledContrastiveArgs& args);

// The shape checks, shared with the CUDA launchers.
void check_info_nce_shape(const InfoNCEArgs& args);
void check_decoupled_contrastive_shape(const DecoupledContrastiveArgs& args);

// DCLW's per-row weights w_i = 2 − B·softmax_i(S_ip/σ) from the B positive scores (host).
void dclw_weights(const float* positive_scores, int64_t rows, float sigma, double* w);

}  // namespace fl
