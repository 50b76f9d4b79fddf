/**
 * docs/MATH.md §3.1 in float64, straight from the formulas (torch F.cross_entropy semantics plus z-loss
 * and softcap).
 *
 * A score of −∞ is out: probability 0, gradient 0 and no dScale term. In the label-smoothing
 * term ε·(1/N)Σ_j w_j(lse − z_j) an out entry keeps its w_j·lse part and drops its −w_j·z_j
 * part (z_j is taken as 0 there, as the kernels do), so the smoothing loss stays finite and
 * w̄ stays the mean over all N classes. An ignored row still reports its lse. A row whose
 * every logit is −∞ (and that is not ignored) has loss +∞ and gradient 0.
 */
import { rowCoefficients, reduceRows } from './math.js';
import type { RefCommonOptions, RefResult, Scores } from './types.js';

export interface RefCrossEntropyOptions extends RefCommonOptions {
  /** Label marking an ignored row (default −100). */
  ignoreIndex?: number;
  /** ε in [0, 1]. */
  labelSmoothing?: number;
  /** w, length N (default all 1). */
  classWeights?: ArrayLike<number>;
  /** λ of the z-loss λ·lse². */
  zLoss?: number;
  /** c of the softcap z = c·tanh(scale·S/c). */
  softcap?: number;
}

export function refSoftmaxCrossEntropy(S: Scores, B: number, N: number, labels: ArrayLike<number>, opts: RefCrossEntropyOptions = {}): RefResult {
  const scale = opts.scale ?? 1;
  const eps = opts.labelSmoothing ?? 0;
  const lambda = opts.zLoss ?? 0;
  const cap = opts.softcap;
  const ignore = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  const cw = opts.classWeights;
  const w = (j: number) => (cw ? cw[j] : 1);

  let wMean = 0;
  for (let j = 0; j < N; j++) wMean += w(j);
  wMean /= N;
  // torch's 'mean' divides by the total weight of the rows that count.
  let wSum = 0;
  for (let i = 0; i < B; i++) if (labels[i] !== ignore) wSum += w(labels[i]);
  const coef = rowCoefficients(reduction, B, wSum, opts.gradOutput);

  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  const lseOut = new Float64Array(B);
  let dScale = 0;
  const z = new Float64Array(N);
  const dzdx = new Float64Array(N); // ∂z/∂S (chain through softcap and scale)
  const dzds = new Float64Array(N); // ∂z/∂scale
  for (let i = 0; i < B; i++) {
    let m = -Infinity;
    for (let j = 0; j < N; j++) {
      const x = S[i * N + j];
      if (x === -Infinity) {
        // The softcap would map −∞ to −c, a finite logit; out entries must stay out.
        z[j] = -Infinity;
        dzdx[j] = 0;
        dzds[j] = 0;
        continue;
      }
      if (cap !== undefined) {
        const u = (scale * x) / cap;
        // sech² as 1/cosh², not 1 − tanh²: the latter is exactly 0 once tanh rounds to ±1.
        const sech2 = 1 / Math.cosh(u) ** 2;
        z[j] = cap * Math.tanh(u);
        dzdx[j] = scale * sech2;
        dzds[j] = x * sech2;
      } else {
        z[j] = scale * x;
        dzdx[j] = scale;
        dzds[j] = x;
      }
      if (z[j] > m) m = z[j];
    }
    // Two-pass stable log-sum-exp; −∞ entries contribute exp(−∞) = 0. The sum is kept as
    // 1 + rest, rest summed without the first maximal entry: in a confident row (rest ~ 1e-12)
    // 1 + rest in float64 would keep only 4 digits of rest, and so would lse − z_y and p_y − 1.
    let rest = 0;
    let lin = 0; // Σ_j w_j z_j over entries that are in
    let jmax = -1;
    if (m !== -Infinity)
      for (let j = 0; j < N; j++) {
        if (z[j] === -Infinity) continue;
        if (jmax < 0 && z[j] === m) jmax = j;
        else rest += Math.exp(z[j] - m);
        lin += w(j) * z[j];
      }
    const lse = m === -Infinity ? -Infinity : m + Math.log1p(rest);
    lseOut[i] = lse;
    const y = labels[i];
    if (y === ignore) continue;
    if (lse === -Infinity) {
      rowLoss[i] = Infinity; // nothing left to put probability on
      continue;
    }
    const wy = w(y);
    // lse − z_y and p_y − 1, exact also where p_y ≈ 1.
    const margin = m - z[y] + Math.log1p(rest);
    const pyMinusOne = z[y] === m ? -rest / (1 + rest) : Math.expm1(-margin);
    // A label term of weight 0 (ε = 1 or w_y = 0) is absent, also where its logit is −∞ (not 0·∞).
    const wNll = wy * (1 - eps);
    rowLoss[i] = (wNll !== 0 ? wNll * margin : 0) + (eps > 0 ? eps * (wMean * lse - lin / N) : 0) + lambda * lse * lse;
    const u = coef[i];
    const pCoef = wy * (1 - eps) + eps * wMean + 2 * lambda * lse;
    for (let j = 0; j < N; j++) {
      if (z[j] === -Infinity) continue;
      // exp(z − m)/(1 + rest) ≤ 1 always; it underflows to 0 rather than overflowing.
      const p = Math.exp(z[j] - m) / (1 + rest);
      let d = pCoef * p - (eps * w(j)) / N;
      // At the label, (1−ε)w_y(p_y − 1) keeps its digits when p_y ≈ 1.
      if (j === y) d = (1 - eps) * wy * pyMinusOne + (eps * wMean + 2 * lambda * lse) * p - (eps * w(j)) / N;
      grad[i * N + j] = u * d * dzdx[j];
      dScale += u * d * dzds[j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, wSum), rowLoss, grad, dScale, lse: lseOut };
}
