// Per-row soft top-k math shared by the CPU driver and the CUDA kernel (FL_HD), SPEC 3.7/3.8.
//
// Row i's threshold t is the root of F(t) = Σ_j σ(α(z_j + t)) = k over the N_i entries that
// are in. F is strictly increasing, and F(lo) ≤ k ≤ F(hi) for
//   lo = −max z + logit(k/N_i)/α,   hi = −min z + logit(k/N_i)/α
// (at lo every σ is ≤ k/N_i, at hi every σ is ≥ k/N_i), whatever N_i and the spread of z.
//
// The solver is Newton on a logarithm of the count, kept inside that bracket. One pass over
// the row at the current t gives F = Σp, Q = Σ(1 − p) (summed directly, not as N_i − F) and
// F' = α·Σ p(1 − p). When k ≤ N_i/2 it solves log F = log k: where only the row's head
// matters F is a sum of exponentials in t, so log F is nearly linear and one step lands close.
// When k > N_i/2 it solves log Q = log(N_i − k), the same picture mirrored. A step that
// leaves the bracket, or a derivative that underflowed, is replaced by bisection. It stops
// when |F − k| ≤ tol·k, when the bracket is an ulp of the scores wide, or at maxIter passes.
#pragma once
#include <cmath>

#include "../core/hd.h"

namespace fl {

// σ(a) and σ(−a) = 1 − σ(a), each to full relative precision, from e = exp(−|a|) ∈ [0, 1].
struct SigmoidPair {
  float p, q;
};
FL_HD SigmoidPair sigmoid_pair(float a) {
  const float e = expf(-fabsf(a));
  const float r = 1.f / (1.f + e);
  return a >= 0.f ? SigmoidPair{r, e * r} : SigmoidPair{e * r, r};
}

// log σ(a) = −softplus(−a): ≈ a (finite) far below the threshold, never log 0.
FL_HD double log_sigmoid_d(double a) { return a >= 0 ? -log1p(exp(-a)) : a - log1p(exp(a)); }

// One pass's sums over a row (or a tile of it) at the current t.
struct TopKSums {
  double f;   // Σ p_j
  double q;   // Σ (1 − p_j)
  double df;  // Σ p_j (1 − p_j); F' = α·df
};
FL_HD void merge(TopKSums& a, const TopKSums& b) {
  a.f += b.f;
  a.q += b.q;
  a.df += b.df;
}

struct TopKSolver {
  double t, lo, hi;
  double k, n;       // k_i and N_i
  double alpha, tol;
  double resolution;  // a bracket this narrow cannot be split at the precision of z + t
  int iterations;     // passes made at a t (the first included)
  bool done;
  TopKSums at_t;      // the sums at the final t (V = α·df is the backward's denominator)
};

// zmax, zmin: the extremes of z over the entries that are in. Requires 0 < k < n.
FL_HD TopKSolver topk_solver_init(double zmax, double zmin, double k, double n, double alpha, double tol) {
  TopKSolver s;
  const double shift = log(k / (n - k)) / alpha;
  s.lo = -zmax + shift;
  s.hi = -zmin + shift;
  s.k = k;
  s.n = n;
  s.alpha = alpha;
  s.tol = tol;
  const double big = fmax(fmax(fabs(zmax), fabs(zmin)), fmax(fabs(s.lo), fabs(s.hi)));
  s.resolution = 4 * 1.1920928955078125e-07 * big;  // a few fp32 ulps: z + t is formed in fp32
  // Start at the end whose side of the count is the small one: there the log is near linear.
  s.t = 2 * k <= n ? s.lo : s.hi;
  s.iterations = 0;
  s.done = false;  // even a flat row (lo = hi) takes one pass: the backward needs its sums
  s.at_t = TopKSums{0, 0, 0};
  return s;
}

// Takes the sums at s.t; either marks the row done (s.t is the threshold) or moves s.t.
FL_HD void topk_solver_step(TopKSolver& s, const TopKSums& sums, int max_iter) {
  s.iterations += 1;
  s.at_t = sums;
  const double f = 2 * s.k <= s.n ? sums.f : s.n - sums.q;
  if (fabs(f - s.k) <= s.tol * s.k || s.iterations >= max_iter) {
    s.done = true;
    return;
  }
  if (f < s.k) s.lo = fmax(s.lo, s.t);
  else s.hi = fmin(s.hi, s.t);
  if (s.hi - s.lo <= s.resolution) {
    s.done = true;
    return;
  }
  const double dlog = 2 * s.k <= s.n ? s.alpha * sums.df / sums.f : s.alpha * sums.df / sums.q;
  double next;
  if (2 * s.k <= s.n) next = s.t - (log(sums.f) - log(s.k)) / dlog;
  else next = s.t + (log(sums.q) - log(s.n - s.k)) / dlog;
  // Outside the bracket, or not a number (F or Q or F' underflowed to 0): bisect.
  if (!(next > s.lo && next < s.hi)) next = s.lo + 0.5 * (s.hi - s.lo);
  s.t = next;
}

// The backward's per-row factor (SPEC 3.7): ∂/∂z_m = u_m − v_m·U/V with V = α·df. A row whose
// entries are all saturated (V = 0) has a threshold that does not move: factor 0.
FL_HD double topk_backward_factor(double U, double alpha, double df) {
  const double V = alpha * df;
  return V > 0 ? U / V : 0.0;
}

}  // namespace fl
