// Per-row soft top-k math shared by the CPU driver and the CUDA kernel (FL_HD), SPEC 3.7/3.8.
//
// Row i's threshold t is the root of F(t) = Σ_j σ(α(z_j + t)) = k over the N_i entries that
// are in. F is strictly increasing, and F(lo) ≤ k ≤ F(hi) for
//   lo = −max z + logit(k/N_i)/α,   hi = −min z + logit(k/N_i)/α
// (at lo every σ is ≤ k/N_i, at hi every σ is ≥ k/N_i), whatever N_i and the spread of z.
//
// Counting F − k accurately. With m = #{j : a_j ≥ 0} (a_j = α(z_j + t)),
//   F − k = (m − k) + Σ_{a<0} p_j − Σ_{a≥0} (1 − p_j),
// where every term keeps its relative precision (p is small where a < 0, 1 − p where a ≥ 0,
// each computed directly). So the root is where L = R with
//   L = Σ_{a<0} p + max(m − k, 0),   R = Σ_{a≥0} (1 − p) + max(k − m, 0),
// L increasing in t, R decreasing. The solver is Newton on h(t) = log L − log R, kept inside
// the bracket. In the tails, L and R are sums of exponentials in t, so h is nearly linear and
// Newton nearly exact; this stays true on a peaked row whose top k entries saturate (p ≈ 1),
// where F − k itself is a difference of two tiny sums and F barely moves with t: solving
// F = k to a tolerance there leaves t far from the root, and a positive's log p with it.
// A step that leaves the bracket, or a derivative that underflowed, is replaced by bisection.
// It stops when |F − k| ≤ tol·k and the next Newton step is below 1e-3/α (then that step is
// taken without another pass: t is then within ~1e-6/α of the root), when the bracket is a few
// fp32 ulps of the scores wide, or at maxIter passes.
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

// One pass's sums over a row (or a tile of it) at the current t, split by the sign of a.
struct TopKSums {
  double m;     // #{a ≥ 0}
  double p_lo;  // Σ_{a<0} p
  double q_hi;  // Σ_{a≥0} (1 − p)
  double v_lo;  // Σ_{a<0} p(1 − p)
  double v_hi;  // Σ_{a≥0} p(1 − p)
};
// Σ p(1 − p) over the row: F' = α·topk_df.
FL_HD double topk_df(const TopKSums& s) { return s.v_lo + s.v_hi; }
FL_HD void merge(TopKSums& a, const TopKSums& b) {
  a.m += b.m;
  a.p_lo += b.p_lo;
  a.q_hi += b.q_hi;
  a.v_lo += b.v_lo;
  a.v_hi += b.v_hi;
}

struct TopKSolver {
  double t, lo, hi;
  double k, n;        // k_i and N_i
  double alpha, tol;
  double resolution;  // a bracket this narrow cannot be split at the precision of z + t
  int iterations;     // passes made at a trial t
  bool done;
  TopKSums at_t;      // the sums of the last pass (V = α·topk_df is the backward's denominator)
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
  s.at_t = TopKSums{};
  return s;
}

// Takes the sums at s.t; either marks the row done (s.t is the threshold) or moves s.t.
FL_HD void topk_solver_step(TopKSolver& s, const TopKSums& sums, int max_iter) {
  s.iterations += 1;
  s.at_t = sums;
  const double excess = (sums.m - s.k) + sums.p_lo - sums.q_hi;  // F − k
  const double L = sums.p_lo + fmax(sums.m - s.k, 0.0), R = sums.q_hi + fmax(s.k - sums.m, 0.0);
  const double dh = s.alpha * (sums.v_lo / L + sums.v_hi / R);
  const double newton = -(log(L) - log(R)) / dh;  // NaN or ±inf when a sum underflowed
  const bool close = fabs(excess) <= s.tol * s.k;
  if (close && s.alpha * fabs(newton) <= 1e-3) {
    s.t += newton;
    s.done = true;
    return;
  }
  if (s.iterations >= max_iter) {
    s.done = true;
    return;
  }
  if (excess < 0) s.lo = fmax(s.lo, s.t);
  else s.hi = fmin(s.hi, s.t);
  if (s.hi - s.lo <= s.resolution) {
    s.done = true;
    return;
  }
  const double next = s.t + newton;
  // Outside the bracket, or not a number (a sum or the derivative underflowed): bisect.
  s.t = next > s.lo && next < s.hi ? next : s.lo + 0.5 * (s.hi - s.lo);
}

// The backward's per-row factor (SPEC 3.7): ∂/∂z_m = u_m − v_m·U/V with V = α·df. A row whose
// entries are all saturated (V = 0) has a threshold that does not move: factor 0.
FL_HD double topk_backward_factor(double U, double alpha, double df) {
  const double V = alpha * df;
  return V > 0 ? U / V : 0.0;
}

}  // namespace fl
