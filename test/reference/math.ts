/**
 * Scalar helpers shared by the references, each in its numerically stable form (docs/MATH.md §1: every
 * log σ, log-sum-exp and softplus is stable). −Infinity is a legal input everywhere and never
 * produces NaN.
 */
import type { Reduction } from './types.js';

/** log(1 + e^x) without overflow for large x or loss of precision for very negative x. */
export function softplus(x: number): number {
  // max(x, 0) + log1p(e^−|x|): the exponent is never positive; softplus(−∞) = 0.
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/** σ(x) = 1/(1 + e^−x), never forming e^x for large |x| (σ(−∞) = 0, σ(∞) = 1). */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** log σ(x) = −softplus(−x): finite (≈ x) far below zero, where log(σ(x)) would be log 0. */
export function logSigmoid(x: number): number {
  return -softplus(-x);
}

/** logit(q) = log(q/(1 − q)) for q in (0, 1). */
export function logit(q: number): number {
  return Math.log(q) - Math.log1p(-q);
}

/**
 * log Σ_j e^{z_j} over z[0..n), two passes (max, then shifted sum). Entries at −∞ are out; a row
 * with none left gives −∞ (the shift would otherwise be −∞ − −∞ = NaN).
 */
export function logSumExp(z: ArrayLike<number>, n = z.length): number {
  let m = -Infinity;
  for (let j = 0; j < n; j++) if (z[j] > m) m = z[j];
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (let j = 0; j < n; j++) s += Math.exp(z[j] - m);
  return m + Math.log(s);
}

/**
 * Coefficient of each row's loss in the reduced loss L: 1/denom for 'mean' (0 when denom is 0,
 * so an empty batch gives a zero gradient, not NaN), 1 for 'sum', gradOutput_i (default 1)
 * for 'none'. Row gradients are the per-row derivatives times this.
 */
export function rowCoefficients(reduction: Reduction, B: number, denom: number, gradOutput?: ArrayLike<number>): Float64Array {
  const c = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    if (reduction === 'mean') c[i] = denom > 0 ? 1 / denom : 0;
    else if (reduction === 'sum') c[i] = 1;
    else c[i] = gradOutput ? gradOutput[i] : 1;
  }
  return c;
}

/** The reported loss: Σ ℓ_i / denom ('mean'; 0 for denom 0), or Σ ℓ_i ('sum' and 'none'). */
export function reduceRows(rowLoss: ArrayLike<number>, reduction: Reduction, denom: number): number {
  let total = 0;
  for (let i = 0; i < rowLoss.length; i++) total += rowLoss[i];
  if (reduction !== 'mean') return total;
  return denom > 0 ? total / denom : 0;
}
