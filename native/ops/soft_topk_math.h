// The math computed in this file, a section per op (forward, gradient, what 'mean' divides by
// and the numerics): docs/MATH.md §3 says where each loss's section lives, and its §1–2 hold
// the conventions and the stable building blocks every loss shares.
//
// MATH softTopK (the operator)
//
// For row i and an integer 0 < k_i < N_i (N_i = entries not excluded), the threshold t_i solves
// F(t) = Σ_j σ(α(z_ij + t)) = k_i, α > 0. The output is p_ij = σ(α(z_ij + t_i)) (or log p_ij),
// and t_i.
//
// - **Bracket.** F is strictly increasing, and with s = logit(k/N)/α the root lies in
//   [−max_j z + s, −min_j z + s] over the entries that are in: at the left end every σ is at most
//   k/N, at the right end at least k/N. (A fixed ±10/α bracket fails on wide, flat rows.)
// - **Counting F − k without cancellation.** With a_j = α(z_j + t) and m = #{a_j ≥ 0},
//   F − k = (m − k) + Σ_{a<0} σ(a_j) − Σ_{a≥0} σ(−a_j). Each sum keeps its relative precision
//   (the small side of each sigmoid is computed directly). The root is where
//   L = Σ_{a<0} σ(a) + max(m − k, 0) equals R = Σ_{a≥0} σ(−a) + max(k − m, 0).
// - **Solver.** Newton on h(t) = log L − log R, kept inside the bracket, falling back to
//   bisection. In the tails L and R are sums of exponentials in t, so h is close to linear and
//   Newton converges in a few passes even where the top entries saturate (p rounds to 1 and
//   F − k is the difference of two tiny sums). Once |F − k| ≤ tol·k and the next Newton step is
//   below 1e-3/α, that step is taken with one more pass at the new t (polishing), whose own step,
//   now second order, is taken the same way while it keeps shrinking. The search stops at a t
//   where a pass was made, once the step is below 1e-8/α, leaves t unchanged in float32, or no
//   longer shrinks (the float32 rounding of the sums); also when the bracket is a few ulps of z
//   wide, or at `maxIter`. The number of passes is reported. Why stop where a pass was made: the
//   backward's V (below) comes from the last pass's sums, and V at a t moved by δ differs by up
//   to α·|δ| relative. Taking the final step without a pass, as an earlier version did, left V
//   stale by up to ~1e-5 at the default tol and scaled every dense gradient entry by that: dQ
//   and dK errors 1.7–6.6× PyTorch float32's on the inputs of test/embeddings-vs-torch.test.ts.
//   The polishing pass costs one pass on about a third of the rows (64 × 131072 normal scores,
//   k 5, α 2: 4.00 → 4.34 passes per row).
// - **Backward** (implicit differentiation of F(t) = k), with v_j = α·σ(a_j)·σ(−a_j) and V = Σ v_j:
//   - prob output, upstream g: ∂/∂S_m = g_m·v_m − v_m·(Σ_j g_j v_j)/V;
//   - log output: u_j = α·g_j·σ(−a_j), ∂/∂S_m = u_m − v_m·(Σ_j u_j)/V.
//
//   Both chain through `scale`. The returned object's `vjp(gradOutput)` reuses the saved t_i. A
//   row whose entries are all saturated (V = 0) has a threshold that does not move: the
//   correction term is 0.
//
// MATH softTopKLoss (DEXML "topk")
//
// ℓ_i = −(1/n_i)·Σ_{p∈P_i} w_ip·log p_ip, with p from MATH softTopK (above) on row i's non-excluded entries.
// k is a number, an Int32Array, or `'numPositives'` (k_i = ⌈W_i⌉); defaults k = 5, α = 2.
// The gradient is the log-output vjp of MATH softTopK (above) with g_p = −w_ip/n_i at the positives and 0
// elsewhere, so U = Σ_j u_j runs over the positives only, yet every entry gets a gradient
// through t_i. Threshold search, loss and gradient happen in one call. `'mean'`: D = B.
//
// ----------------------------------------------------------------------------------------------
// Per-row soft top-k math shared by the CPU driver and the CUDA kernel (FL_HD); the math of both is above.
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
// Where one side's terms all underflowed in fp32, t moves by a fixed 80/α towards them; a step
// that leaves the bracket, or a derivative that underflowed, is replaced by bisection.
// It stops when |F − k| ≤ tol·k and the next Newton step is below 1e-3/α, when the bracket is a
// few fp32 ulps of the scores wide, or at maxIter passes. That last Newton step puts t within
// second order of the root, but the backward's V = α·Σp(1 − p) comes from the pass's sums, at
// the t before it: V at the new t differs by up to α·|step| relative (~1e-5 at tol's edge), which
// scales every dense gradient entry, several times fp32's error. So the step is taken with one
// more pass at the new t (polishing), whose own step, now second order, is taken the same way
// while it keeps shrinking; the search stops where a pass was made (t and V agree) once the step
// is negligible (α·|step| ≤ kStaleStep), does not change t in fp32, or has stopped shrinking (the
// fp32 noise of the sums). Only at maxIter is a step taken without a pass.
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

// σ(a) and σ(−a) in double from an fp32 argument: a saturated positive's 1 − p, and the
// p(1 − p) of the backward, lie far below fp32's range on rows whose top entries saturate.
struct SigmoidPairD {
  double p, q;
};
FL_HD SigmoidPairD sigmoid_pair_d(double a) {
  const double e = exp(-fabs(a)), r = 1 / (1 + e);
  return a >= 0 ? SigmoidPairD{r, e * r} : SigmoidPairD{e * r, r};
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
  double polish_step; // α·|step| of the Newton step that led to this pass, once close; 0: none
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
  s.polish_step = 0;
  s.at_t = TopKSums{};
  return s;
}

// How far t moves when every term on one side underflowed: fp32 exp(a) is 0 below a ≈ −87.3
// in the SIMD sweeps (−103 with subnormals on the GPU), so those terms had a < −80.
constexpr double kUnderflowStep = 80.0;

// A Newton step that, once close, is not taken: t then lies within this/α of the root Newton
// points at, far below fp32's resolution of t (6e-8 relative).
constexpr double kStaleStep = 1e-8;

// Takes the sums at s.t; either marks the row done (s.t is the threshold) or moves s.t.
FL_HD void topk_solver_step(TopKSolver& s, const TopKSums& sums, int max_iter) {
  s.iterations += 1;
  s.at_t = sums;
  const double excess = (sums.m - s.k) + sums.p_lo - sums.q_hi;  // F − k
  const double L = sums.p_lo + fmax(sums.m - s.k, 0.0), R = sums.q_hi + fmax(s.k - sums.m, 0.0);
  const double dh = s.alpha * (sums.v_lo / L + sums.v_hi / R);
  const double newton = -(log(L) - log(R)) / dh;  // NaN or ±inf when a sum underflowed
  const bool close = fabs(excess) <= s.tol * s.k;
  const double step = s.alpha * fabs(newton);
  if (close && step <= 1e-3) {
    // Stop here, where V was taken, when the step is negligible (t is then within kStaleStep/α
    // of where Newton puts the root), or does not change t in fp32 (the passes and the sweeps
    // take float(t)), or, polishing, did not shrink to under half the last (it is then the
    // sums' rounding noise). Else take it, with one more pass at the new t (without, at maxIter).
    const bool same_t = float(s.t + newton) == float(s.t);
    if (step <= kStaleStep || same_t || (s.polish_step > 0 && !(step <= 0.5 * s.polish_step))) {
      s.done = true;
      return;
    }
    s.t += newton;
    s.done = s.iterations >= max_iter;
    s.polish_step = step;
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
  // Newton; or, where every term of L (R) underflowed (exp of less than −87 in fp32), a step of
  // kUnderflowStep/α up (down), which brings the nearest of them back into range (a midpoint
  // of a bracket hundreds wide would land far on the other side, and Newton crawls back from
  // there where log L saturates); bisection when that leaves the bracket or the derivative
  // underflowed.
  double next = s.t + newton;
  if (!(L > 0)) next = s.t + kUnderflowStep / s.alpha;
  else if (!(R > 0)) next = s.t - kUnderflowStep / s.alpha;
  s.t = next > s.lo && next < s.hi ? next : s.lo + 0.5 * (s.hi - s.lo);
}

// The backward's per-row factor (MATH softTopK, above): ∂/∂z_m = u_m − v_m·U/V with V = α·df. A row whose
// entries are all saturated (V = 0) has a threshold that does not move: factor 0.
FL_HD double topk_backward_factor(double U, double alpha, double df) {
  const double V = alpha * df;
  return V > 0 ? U / V : 0.0;
}

// A per-row factor c that multiplies p(1 − p) in a sweep, as log|c| and its sign: on a saturated
// row c = U/V is as large as p(1 − p) is small, beyond fp32 (the sweeps form c·p(1 − p) in one
// exp; see scaled_term below and vscaled_term in soft_topk.inl).
struct LogFactor {
  float log_abs, sign;
};
FL_HD LogFactor log_factor(double c) { return {float(log(fabs(c))), c < 0 ? -1.f : 1.f}; }

// c·p(1 − p) takes one exp where |log|c|| is at most this (see scaled_term), two beyond.
constexpr float kOneExpLogRange = 60.f;

// ---------- scalar forms of the sweeps' per-entry terms (the CUDA kernel, cuda/soft_topk.cu) ----------
// The CPU's vector forms are in soft_topk.inl; these compute the same quantities, rounded the same
// way, one entry at a time.

// One side (a < 0, or a ≥ 0) of a pass's sums, each term scaled by the side's largest, e^{−c}, c
// the smallest |a| taken: near the root of a saturated row both sides are sums of e^{−|a|} with
// every |a| beyond fp32's e^{−87}, and what matters is their ratio (soft_topk.inl SideShift, there
// per block of entries in two sweeps; here kept online by one thread, as OnlineSumExp keeps its
// max: a smaller |a| rescales the sums taken so far by e^{|a| − c} ≤ 1).
struct ShiftedSide {
  float c;     // the smallest |a| taken, +inf: none
  float inv;   // e^{−c} in fp32 (0 past 2^{−149}: the e it rebuilds is then negligible)
  float s[2];  // the side's sums, every term scaled by e^{c}
};
FL_HD ShiftedSide shifted_side_empty() { return ShiftedSide{INFINITY, 0.f, {0.f, 0.f}}; }

// An entry's e^{−|a|} scaled by e^{c}, es = e^{c − |a|} ≤ 1, and r = 1/(1 + e^{−|a|}): σ(−|a|) =
// es·r and p(1 − p) = es·r² scaled (soft_topk.inl vscaled_sigmoid).
struct ScaledSigmoid {
  float es, r;
};
// Takes an entry at a finite |a| into the side (lowering c to |a| first when it is smaller) and
// returns its scaled terms.
FL_HD ScaledSigmoid shifted_take(ShiftedSide& side, float abs_a) {
  if (abs_a < side.c) {
    const float f = side.c == INFINITY ? 0.f : expf(abs_a - side.c);
    side.s[0] *= f;
    side.s[1] *= f;
    side.c = abs_a;
    side.inv = expf(-abs_a);
  }
  const float es = expf(side.c - abs_a);
  return ScaledSigmoid{es, 1.f / (1.f + es * side.inv)};
}
// e^{−c}, in double (range e^{−708}): a side's sums times this are their true values.
FL_HD double shifted_back(const ShiftedSide& side) { return side.c == INFINITY ? 0.0 : exp(-double(side.c)); }

// A pass's sums kept by one thread (TopKSums' terms): m = #{a ≥ 0}, and per side s[0] = Σ σ(−|a|)
// (p where a < 0, 1 − p elsewhere) and s[1] = Σ p(1 − p), scaled.
struct ShiftedPass {
  float m;
  ShiftedSide lo, hi;
};
FL_HD ShiftedPass shifted_pass_empty() { return ShiftedPass{0.f, shifted_side_empty(), shifted_side_empty()}; }
// Takes an entry that is in, at a finite a = α(z + t).
FL_HD void shifted_pass_take(ShiftedPass& s, float a) {
  if (a >= 0.f) s.m += 1.f;
  ShiftedSide& side = a < 0.f ? s.lo : s.hi;
  const ScaledSigmoid g = shifted_take(side, fabsf(a));
  const float small = g.es * g.r;
  side.s[0] += small;
  side.s[1] += small * g.r;
}
// The thread's sums at their true scale, in double (merged over threads by adding).
FL_HD TopKSums shifted_pass_sums(const ShiftedPass& s) {
  const double lo = shifted_back(s.lo), hi = shifted_back(s.hi);
  return TopKSums{double(s.m), double(s.lo.s[0]) * lo, double(s.hi.s[0]) * hi, double(s.lo.s[1]) * lo, double(s.hi.s[1]) * hi};
}

// |c|·p(1 − p) = e^{log|c| − |a|}·r² for a per-row factor c = ±e^{log_c} (inv_c = e^{−log_c} in
// fp32), with e = e^{−|a|} and r = 1/(1 + e): one exp (e = e^{log|c| − |a|}·e^{−log|c|}) unless
// two_exp (soft_topk.inl vscaled_term).
struct ScaledTerm {
  float cpq, e, r;
};
FL_HD ScaledTerm scaled_term(float abs_a, float log_c, float inv_c, bool two_exp) {
  const float ec = expf(log_c - abs_a);
  const float e = two_exp ? expf(-abs_a) : ec * inv_c;
  const float r = 1.f / (1.f + e);
  return ScaledTerm{ec * (r * r), e, r};
}

// A per-row factor c for scaled_term: log|c|, its sign, e^{−log|c|}, and whether two exps are
// needed: beyond kOneExpLogRange, or (one_exp_needs_c_ge_1: where e itself is used, as in the
// vjp's own) for |c| < 1, where e = e^{log|c| − |a|}·e^{−log|c|} would underflow before e^{−|a|}.
struct ScaledFactor {
  float log_c, sign, inv_c;
  bool two_exp;
};
FL_HD ScaledFactor scaled_factor(double c, bool one_exp_needs_c_ge_1) {
  const LogFactor f = log_factor(c);
  const bool one_exp = fabsf(f.log_abs) <= kOneExpLogRange && (!one_exp_needs_c_ge_1 || f.log_abs >= 0.f);
  return ScaledFactor{f.log_abs, f.sign, expf(-f.log_abs), !one_exp};
}

// The operator's vjp (MATH softTopK above, backward) one entry at a time (soft_topk.inl topk_vjp_sums and
// topk_vjp_grad): v = α·p(1 − p), own = g·v ('prob') or α·g·(1 − p) ('log'). Pass 1 sums, per
// side, s[0] = Σ v and s[1] = Σ own scaled (ShiftedSide); 'log' on the a < 0 side has own = α·g·r,
// O(g): summed unscaled in g_lo.
struct ShiftedVjp {
  ShiftedSide lo, hi;
  float g_lo;
};
FL_HD ShiftedVjp shifted_vjp_empty() { return ShiftedVjp{shifted_side_empty(), shifted_side_empty(), 0.f}; }
// Takes an entry at a = α(z + t) with upstream g; a = −inf: out, adds nothing.
FL_HD void shifted_vjp_take(ShiftedVjp& s, float a, float g, float alpha, bool log_output) {
  if (a == -INFINITY) return;
  ShiftedSide& side = a < 0.f ? s.lo : s.hi;
  const ScaledSigmoid e = shifted_take(side, fabsf(a));
  const float small = e.es * e.r, v = alpha * (small * e.r);  // σ(−|a|) and v, scaled
  side.s[0] += v;
  if (!log_output) side.s[1] += g * v;
  else if (a < 0.f) s.g_lo += alpha * (g * e.r);
  else side.s[1] += alpha * (g * small);
}
// V = Σ v and G = Σ own of the thread, at their true scale in double.
FL_HD void shifted_vjp_totals(const ShiftedVjp& s, double& V, double& G) {
  const double lo = shifted_back(s.lo), hi = shifted_back(s.hi);
  V = double(s.lo.s[0]) * lo + double(s.hi.s[0]) * hi;
  G = double(s.g_lo) + double(s.lo.s[1]) * lo + double(s.hi.s[1]) * hi;
}
// Pass 2: own − v·G/V at a, with f = scaled_factor(α·G/V, true) (v·G/V = c·p(1 − p)); 0 where out
// (a = −inf). The caller multiplies by scale.
FL_HD float vjp_term(const ScaledFactor& f, float a, float g, float alpha, bool log_output) {
  if (a == -INFINITY) return 0.f;
  const ScaledTerm u = scaled_term(fabsf(a), f.log_c, f.inv_c, f.two_exp);
  const float small = u.e * u.r;  // σ(−|a|)
  const float own = log_output ? alpha * (g * (a < 0.f ? u.r : small)) : g * (alpha * (small * u.r));
  return own - f.sign * u.cpq;
}

}  // namespace fl
