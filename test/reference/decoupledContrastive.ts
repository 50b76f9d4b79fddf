/**
 * docs/MATH.md §3.5, decoupled contrastive loss (DCL, Yeh et al. 2022) in float64:
 *   ℓ_i = −w_i·z_ip + LSE_{j ≠ p, j ∉ Excl_i} z_ij,  exactly one positive p per row
 *   (the diagonal by default, or CSR with n_i = 1).
 * DCL: w_i = 1. DCLW (`weighting: { sigma }`, σ default 0.5):
 *   w_i = 2 − B·softmax_i(S_ip / σ)   (softmax over the rows),
 * on the raw scores S, not on z = scale·S: the golden PyTorch case fixes this, and it is what
 * the reference implementation does (cosine similarities, before the temperature). w is a
 * constant: no gradient, and no dScale term, flows through it.
 * Gradient: ∂ℓ_i/∂z_ip = −w_i; ∂ℓ_i/∂z_ij = softmax over the negatives of row i.
 * 'mean' divides by B.
 *
 * Out entries (excluded, or S = −∞) take no part and get gradient 0. A positive at −∞ costs
 * +∞; a row with no negative left has LSE over nothing = −∞ (the caller's problem: exclusions
 * should leave negatives).
 */
import { diagonalPositives, markRow, OUT, scaledRow } from './csr.js';
import { logSumExp, reduceRows, rowCoefficients } from './math.js';
import type { RefCommonOptions, RefPositives, RefResult, Scores } from './types.js';

export interface RefDecoupledContrastiveOptions extends RefCommonOptions {
  /** Default: the diagonal. Exactly one positive per row. */
  positives?: RefPositives;
  exclude?: RefPositives;
  /** DCLW: the von Mises-Fisher weighting, σ default 0.5. */
  weighting?: { sigma?: number };
  /**
   * Reference only (no kernel option): the w_i given outright, overriding `weighting`. With
   * dclwWeights(S) frozen here, finite differences in S see exactly the constant-w loss.
   */
  rowWeights?: ArrayLike<number>;
}

/** Column of each row's single positive. */
function positiveColumns(B: number, positives: RefPositives): Int32Array {
  const col = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    const n = positives.rowPtr[i + 1] - positives.rowPtr[i];
    if (n !== 1) throw new Error(`decoupledContrastive: row ${i} has ${n} positives, expected exactly 1`);
    col[i] = positives.cols[positives.rowPtr[i]];
  }
  return col;
}

/** DCLW's w_i = 2 − B·softmax over rows of (S_ip/σ) (positives default to the diagonal). */
export function dclwWeights(S: Scores, B: number, N: number, sigma = 0.5, positives: RefPositives = diagonalPositives(B)): Float64Array {
  const positiveCol = positiveColumns(B, positives);
  const a = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    const x = S[i * N + positiveCol[i]];
    a[i] = x === -Infinity ? -Infinity : x / sigma;
  }
  const lse = logSumExp(a);
  // Every positive at −∞: take the limit of equal scores, a uniform softmax (w_i = 1).
  if (lse === -Infinity) return new Float64Array(B).fill(1);
  const w = new Float64Array(B);
  for (let i = 0; i < B; i++) w[i] = 2 - B * Math.exp(a[i] - lse);
  return w;
}

export function refDecoupledContrastive(S: Scores, B: number, N: number, opts: RefDecoupledContrastiveOptions = {}): RefResult {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  if (!opts.positives && N < B) throw new Error(`decoupledContrastive: diagonal positives need N >= B, got B=${B}, N=${N}`);
  const positives = opts.positives ?? diagonalPositives(B);
  const positiveCol = positiveColumns(B, positives);
  const w = opts.rowWeights
    ? Float64Array.from(opts.rowWeights)
    : opts.weighting
      ? dclwWeights(S, B, N, opts.weighting.sigma ?? 0.5, positives)
      : new Float64Array(B).fill(1);
  const coef = rowCoefficients(reduction, B, B, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    const p = positiveCol[i];
    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);
    const zp = z[p];
    z[p] = -Infinity; // the positive leaves the denominator (that is the decoupling)
    const Z = logSumExp(z);
    // −w·z_p, with 0·(−∞) taken as 0; a positive at −∞ costs +∞ even if no negative is left
    // (+∞ + −∞ would be NaN).
    const positiveTerm = w[i] === 0 ? 0 : -w[i] * zp;
    rowLoss[i] = positiveTerm === Infinity ? Infinity : positiveTerm + Z;
    if (zp !== -Infinity) {
      const d = coef[i] * -w[i];
      grad[i * N + p] = scale * d;
      dScale += d * S[i * N + p];
    }
    if (Z === -Infinity) continue; // no negatives left
    for (let j = 0; j < N; j++) {
      if (z[j] === -Infinity) continue;
      const d = coef[i] * Math.exp(z[j] - Z);
      grad[i * N + j] = scale * d;
      dScale += d * S[i * N + j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, B), rowLoss, grad, dScale };
}
