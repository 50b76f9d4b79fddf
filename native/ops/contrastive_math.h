// The math computed in this file, a section per op (forward, gradient, what 'mean' divides by
// and the numerics): docs/MATH.md §3 says where each loss's section lives, and its §1–2 hold
// the conventions and the stable building blocks every loss shares.
//
// MATH infoNCE
//
// Positives are the diagonal (column i for row i; needs N ≥ B) unless given as CSR.
//
// - One-way: ℓ_i = −(1/n_i)·Σ_{p∈P_i} w_ip·(z_ip − lse_i), the mean over positives of SupCon;
//   with one positive, plain InfoNCE. ∂ℓ_i/∂z_ij = (W_i/n_i)·p_ij − (w_ij/n_i)·[j ∈ P_i].
//   `'mean'`: D = the number of rows with at least one positive; rows without positives add 0.
// - `symmetric: true` (square S, diagonal positives: CLIP): the row loss r_i uses row i's
//   softmax and the column loss c_i uses column i's softmax over the rows; ℓ_i = (r_i + c_i)/2,
//   and entry (i, j) gets gradient from both its row's and its column's softmax. `'mean'`: D = B.
//   Column statistics need the whole matrix before any gradient, so this form makes one
//   statistics sweep (row and column maxima and sums by strips) and one gradient sweep.
//
// MATH decoupledContrastive (DCL, DCLW)
//
// One positive per row p(i) (the diagonal, or CSR with exactly one unweighted column per row).
//
// - ℓ_i = −w_i·z_{i,p(i)} + LSE over j ≠ p(i), j not excluded, of z_ij.
// - Plain DCL: w_i = 1. DCLW (`weighting: { sigma }`, σ default 0.5):
//   w_i = 2 − B·softmax_i(S_{i,p(i)}/σ), a softmax over the rows, held constant (no gradient
//   flows through w), as the reference implementations do.
// - ∂ℓ_i/∂z_{i,p(i)} = −w_i; ∂ℓ_i/∂z_ij = softmax over the negatives otherwise.
// - `'mean'`: D = B.
//
// ----------------------------------------------------------------------------------------------
// Per-row math of InfoNCE (MATH infoNCE, above) and DCL/DCLW (MATH decoupledContrastive, above), shared by the CPU drivers and the
// CUDA kernels (FL_HD).
//
// A softmax row is described by its log-sum-exp and, for an entry z_j, by the two quantities
// that lose precision when z_j holds nearly all the probability:
//   margin_j = lse − z_j   and   p_j − 1.
// When z_j is the row max, both come from the row's `rest` (Σ exp(z − max) − 1, see MaxSumExp
// in native/core/rowmath.h) exactly: margin = log1p(rest), p − 1 = −rest/(1 + rest). Elsewhere
// p_j ≤ ½ and the direct forms lose nothing.
#pragma once
#include <cmath>

#include "../core/hd.h"

namespace fl {

struct SoftmaxEntry {
  double margin;       // lse − z_j (+inf for z_j = −inf)
  double p_minus_one;  // p_j − 1
};

// `is_max`: z is the row max, bitwise as the statistics saw it (the GPU compares in base 2).
FL_HD SoftmaxEntry softmax_entry_at(float z, bool is_max, double rest, double lse) {
  if (z == -INFINITY) return SoftmaxEntry{INFINITY, -1.0};
  if (is_max) return SoftmaxEntry{log1p(rest), -rest / (1.0 + rest)};
  return SoftmaxEntry{lse - double(z), exp(double(z) - lse) - 1.0};
}
FL_HD SoftmaxEntry softmax_entry(float z, float row_max, double rest, double lse) {
  return softmax_entry_at(z, z == row_max, rest, lse);
}

// InfoNCE with positives P (weights w_p, n = |P|, W = Σ w_p) in a row whose softmax is p:
//   ℓ = (1/n) Σ_p w_p (lse − z_p),   dℓ/dz_j = (W/n)·p_j − (w_j/n)·[j ∈ P].
// u is the row's upstream factor. The dense part is u·(W/n)·p_j; a positive's whole
// derivative is u·((W/n)(p_j − 1) + (W − w_j)/n), which keeps p_j − 1 exact.
FL_HD double info_nce_positive_loss(double w, const SoftmaxEntry& e) {
  return w == 0 ? 0.0 : w * e.margin;  // 0·∞ would be NaN; a zero-weight positive adds nothing
}
FL_HD double info_nce_positive_dz(double w, double W, double n, double u, const SoftmaxEntry& e) {
  return u * ((W / n) * e.p_minus_one + (W - w) / n);
}

// DCL: ℓ = −w·z_p + Z, with Z the log-sum-exp of the negatives (the positive and excluded
// columns left out). −w·z_p is taken as 0 for w = 0, and a positive at −∞ costs +∞ even when
// no negative is left (+∞ + −∞ would be NaN).
FL_HD double dcl_row_loss(double w, float z_p, double Z) {
  const double positive = w == 0 ? 0.0 : -w * double(z_p);
  return positive == INFINITY ? positive : positive + Z;
}

// DCLW's weights w_i = 2 − B·softmax_i(a_i) with a_i = S_ip/σ: given a = S_ip/σ (−∞ allowed),
// the max and Σ exp(a − max) over the batch. Every a at −∞: the limit of equal scores, w = 1.
FL_HD double dclw_weight(double a, double a_max, double sum, double batch) {
  if (a_max == -INFINITY) return 1.0;
  return 2.0 - batch * exp(a - a_max) / sum;
}

}  // namespace fl
