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

// Decoupled softmax (docs/MATH.md §3.4), one positive p of a row with negatives' log-sum-exp Z:
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

// Binary cross-entropy (docs/MATH.md §3.6) of one entry with target y (1, or a positive's weight; 0
// for a negative): softplus(z) − y·z and its slope σ(z) − y, each in a form that does not
// cancel: for z > 0, (1 − y)·z + softplus(−z) and (1 − y) − σ(−z).
FL_HD double bce_loss(double z, double y) {
  if (z == -INFINITY) return y > 0 ? INFINITY : 0.0;
  return z > 0 ? (1 - y) * z + softplus_d(-z) : softplus_d(z) - y * z;
}
FL_HD double bce_slope(double z, double y) { return z > 0 ? (1 - y) - sigmoid_d(-z) : sigmoid_d(z) - y; }

}  // namespace fl
