// The math computed in this file, a section per op (forward, gradient, what 'mean' divides by
// and the numerics): docs/MATH.md §3 says where each loss's section lives, and its §1–2 hold
// the conventions and the stable building blocks every loss shares.
//
// MATH softmaxCrossEntropy
//
// Torch's `F.cross_entropy` with integer labels y_i, plus z-loss and softcap.
// Options: `ignoreIndex` (default −100), label smoothing ε, class weights w (default all 1),
// z-loss λ, softcap c.
//
// - p_ij = e^{z_ij − lse_i}, w̄ = (1/N) Σ_j w_j.
// - ℓ_i = (1 − ε)·w_{y_i}·(lse_i − z_{i,y_i}) + (ε/N)·Σ_j w_j·(lse_i − z_ij) + λ·lse_i².
// - ∂ℓ_i/∂z_ij = ((1 − ε)·w_{y_i} + ε·w̄ + 2λ·lse_i)·p_ij − (1 − ε)·w_{y_i}·[j = y_i] − ε·w_j/N.
// - An ignored row (y_i = ignoreIndex) has loss 0 and gradient 0.
// - `'mean'`: D = Σ over rows not ignored of w_{y_i} (torch). A batch with every row ignored
//   gives loss 0 and a zero gradient, not 0/0.
// - A label whose logit is −∞ makes the row's loss +∞ while its gradient stays finite; a row
//   of all −∞ has loss +∞ and gradient 0. In the smoothing term, Σ_j w_j·z_ij runs over the
//   finite entries: an out column adds 0, not −∞.
// - `returnLse` also returns lse_i.
//
// ----------------------------------------------------------------------------------------------
// Per-row cross-entropy math shared by the CPU driver and the CUDA kernel (FL_HD).
//
// With p_j = exp(z_j − lse), w_y the target's class weight, w̄ the mean class weight, ε the
// smoothing and λ the z-loss weight, row i's loss and gradient are (MATH softmaxCrossEntropy, above)
//   ℓ     = w_y(1−ε)(lse − z_y) + ε(w̄·lse − (1/N)Σ_j w_j z_j) + λ·lse²
//   dℓ/dz_j = (w_y(1−ε) + ε·w̄ + 2λ·lse)·p_j − ε·w_j/N − (1−ε)·w_y·[j = y]
// The first two gradient terms are the engine's dense part (coef·exp(z − lse) + bias or
// colw_coef·w_j); the last is the correction at the label.
#pragma once
#include <cmath>

#include "../core/hd.h"

namespace fl {

struct CrossEntropyRow {
  double loss;        // ℓ (unweighted by the upstream factor)
  double coef;        // u·(w_y(1−ε) + ε·w̄ + 2λ·lse): the factor of p_j
  float smooth;       // u·ε/N: bias −smooth (no class weights) or colw_coef −smooth (with)
  float label_dz;     // the whole dℓ/dz at the label, times u
};

// lse − z_y and p_y − 1 of the label, exact however confident the row: where the label is the
// row max (z_y == max, bitwise as the statistics sweep saw it), log1p(rest) and −rest/(1 + rest)
// with Σexp = 1 + rest; elsewhere p_y ≤ ½ and the direct forms lose nothing.
struct LabelTerms {
  double margin, p_minus_one;
};
FL_HD LabelTerms label_terms(bool label_is_max, double rest, double lse, double z_y) {
  if (label_is_max) return LabelTerms{log1p(rest), -rest / (1.0 + rest)};
  return LabelTerms{lse - z_y, exp(z_y - lse) - 1.0};
}

// u is the row's upstream factor (1/Σw_y for mean, 1 for sum, gradOutput_i for none);
// margin = lse − z_y and p_y_minus_one = p_y − 1, both computed by the caller so that they keep
// their precision when the label holds nearly all the probability (see RowStats);
// lin = Σ_j w_j z_j over the row's finite entries.
FL_HD CrossEntropyRow cross_entropy_row(double lse, double margin, double p_y_minus_one, double lin, double w_label,
                                        double w_mean, double n_cols, double label_smoothing, double z_loss, double u) {
  const double eps = label_smoothing, lambda = z_loss;  // ε and λ of the formulas above
  CrossEntropyRow r;
  // A row whose every logit is −∞ has no probability to put on its label: loss +∞, and every
  // entry is out, so the gradient is 0 (the formulas below would make 0·∞ = NaN of it).
  if (lse == -INFINITY) {
    r.loss = INFINITY;
    r.coef = 0;
    r.smooth = 0;
    r.label_dz = 0;
    return r;
  }
  // The label's term is absent, not 0·∞, when its weight is 0 (ε = 1, or w_y = 0) and its logit is −∞.
  const double w_nll = w_label * (1 - eps);
  r.loss = (w_nll != 0 ? w_nll * margin : 0.0) + lambda * lse * lse;
  if (eps > 0) r.loss += eps * (w_mean * lse - lin / n_cols);
  r.coef = u * (w_label * (1 - eps) + eps * w_mean + 2 * lambda * lse);
  r.smooth = float(u * eps / n_cols);
  // (w_y(1−ε) + εw̄ + 2λ·lse)·p_y − (1−ε)·w_y − ε·w_y/N, with the cancelling part as p_y − 1.
  r.label_dz = float(u * (w_label * (1 - eps) * p_y_minus_one + (eps * w_mean + 2 * lambda * lse) * (1 + p_y_minus_one) -
                          eps * w_label / n_cols));
  return r;
}

}  // namespace fl
