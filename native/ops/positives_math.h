// The math computed in this file, a section per op (forward, gradient, what 'mean' divides by
// and the numerics): docs/MATH.md §3 says where each loss's section lives, and its §1–2 hold
// the conventions and the stable building blocks every loss shares.
//
// MATH multiLabelSoftmax (DEXML "softmax")
//
// ℓ_i = Σ_{p∈P_i} w_ip·(lse_i − z_ip), lse over every column not excluded.
// ∂ℓ_i/∂z_ij = W_i·p_ij − w_ij·[j ∈ P_i]. `'mean'`: D = B.
//
// MATH decoupledSoftmax (DEXML)
//
// Each positive competes against the negatives only. With Z_i = LSE over columns that are neither
// positive nor excluded:
//
// - ℓ_i = −(1/n_i)·Σ_{p∈P_i} w_ip·log σ(z_ip − Z_i).
// - positive p: ∂ℓ_i/∂z_ip = −(w_ip/n_i)·σ(Z_i − z_ip).
// - negative j: ∂ℓ_i/∂z_ij = (1/n_i)·Σ_p w_ip·e^{z_ij}/(e^{z_ip} + e^{Z_i}), computed as
//   e^{z_ij − Z_i}·Σ_p w_ip·σ(Z_i − z_ip)/n_i, which never overflows.
// - A row without positives adds 0. `'mean'`: D = B (DEXML's reference).
//
// MATH binaryCrossEntropy (DEXML "bce")
//
// Every entry is an independent logistic problem with target [j ∈ P_i]:
// ℓ_i = Σ_j softplus(z_ij) − Σ_{p∈P_i} z_ip over entries not excluded, and
// ∂ℓ_i/∂z_ij = σ(z_ij) − [j ∈ P_i]. `'mean'`: D = B·N.
//
// ----------------------------------------------------------------------------------------------
// Per-row and per-entry math of the CSR-positives losses, shared by the CPU drivers
// (native/ops/positives_losses.cpp) and the CUDA kernels (FL_HD). Double precision: these run
// O(nnz) times per call, never per score.
#pragma once
#include <cmath>

#include "../core/hd.h"

namespace fl {

// softplus(x) = log(1 + e^x) and σ(x), stable for any x, +∞ and −∞ included.
FL_HD double softplus_d(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
FL_HD double sigmoid_d(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}

// Decoupled softmax (MATH decoupledSoftmax, above), one positive p of a row with negatives' log-sum-exp Z:
//   loss term  −w·log σ(z_p − Z) = w·softplus(Z − z_p)
//   s          σ(Z − z_p): the positive's dℓ/dz is −(w/n)·s and every negative's coefficient
//              gains (w/n)·s.
// z_p = −∞ (an entry out) costs +∞ and has s = 1; Z = −∞ (no negatives) costs 0 and has s = 0.
struct DecoupledPositive {
  double loss;  // w·softplus(Z − z_p) (0 when w = 0, never 0·∞)
  double s;     // σ(Z − z_p)
};
FL_HD DecoupledPositive decoupled_positive(double z_p, double Z, double w) {
  if (z_p == -INFINITY) return {w > 0 ? INFINITY : 0.0, 1.0};
  if (Z == -INFINITY) return {0.0, 0.0};
  const double d = Z - z_p;
  return {w > 0 ? w * softplus_d(d) : 0.0, sigmoid_d(d)};
}

// Binary cross-entropy (MATH binaryCrossEntropy, above) of one entry with target y (1, or a positive's weight; 0
// for a negative): softplus(z) − y·z and its slope σ(z) − y, each in a form that does not
// cancel: for z > 0, (1 − y)·z + softplus(−z) and (1 − y) − σ(−z).
FL_HD double bce_loss(double z, double y) {
  if (z == -INFINITY) return y > 0 ? INFINITY : 0.0;
  return z > 0 ? (1 - y) * z + softplus_d(-z) : softplus_d(z) - y * z;
}
FL_HD double bce_slope(double z, double y) { return z > 0 ? (1 - y) - sigmoid_d(-z) : sigmoid_d(z) - y; }

}  // namespace fl
