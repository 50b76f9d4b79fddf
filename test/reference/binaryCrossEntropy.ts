/**
 * docs/MATH.md §3.6, binary cross-entropy with logits (DEXML "bce") in float64:
 *   ℓ_i = Σ_j softplus(z_ij) − Σ_{p∈P_i} y_ip·z_ip  over entries not excluded,
 *   ∂ℓ_i/∂z_ij = σ(z_ij) − y_ij,
 * with y_ip = 1, or the positive's weight when the CSR has weights (soft targets: docs/MATH.md §3.6
 * names no weights here; this is the one reading under which they mean something).
 * 'mean' divides by B·N, exclusions included, as DEXML's mean over the full matrix does.
 *
 * Out entries (excluded, or S = −∞) add softplus(−∞) = 0 and get gradient 0. A positive at
 * −∞ costs +∞.
 */
import { entryWeight, markRow, OUT, scaledRow } from './csr.js';
import { reduceRows, rowCoefficients, sigmoid, softplus } from './math.js';
import type { RefCommonOptions, RefPositives, RefResult, Scores } from './types.js';

export interface RefBinaryCrossEntropyOptions extends RefCommonOptions {
  exclude?: RefPositives;
}

/**
 * softplus(z) − y·z. For z > 0 it is written (1 − y)·z + softplus(−z): a confident positive
 * (y = 1, z large) then costs softplus(−z) to full precision instead of the difference of two
 * large numbers. For z ≤ 0 both terms are non-negative (y ≥ 0), so nothing cancels.
 */
function bceTerm(z: number, y: number): number {
  if (z === -Infinity) return y === 0 ? 0 : y * Infinity;
  return z > 0 ? (1 - y) * z + softplus(-z) : softplus(z) - y * z;
}

/** σ(z) − y, written (1 − y) − σ(−z) for z > 0 so that σ(z) near 1 does not round away the answer. */
function bceSlope(z: number, y: number): number {
  return z > 0 ? 1 - y - sigmoid(-z) : sigmoid(z) - y;
}

export function refBinaryCrossEntropy(S: Scores, B: number, N: number, positives: RefPositives, opts: RefBinaryCrossEntropyOptions = {}): RefResult {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  const coef = rowCoefficients(reduction, B, B * N, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const y = new Float64Array(N); // targets of the current row
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);
    for (let e = positives.rowPtr[i]; e < positives.rowPtr[i + 1]; e++) y[positives.cols[e]] = entryWeight(positives, e);
    let loss = 0;
    for (let j = 0; j < N; j++) {
      loss += bceTerm(z[j], y[j]);
      if (z[j] === -Infinity) continue;
      const d = coef[i] * bceSlope(z[j], y[j]);
      if (d === 0) continue;
      grad[i * N + j] = scale * d;
      dScale += d * S[i * N + j];
    }
    rowLoss[i] = loss;
    for (let e = positives.rowPtr[i]; e < positives.rowPtr[i + 1]; e++) y[positives.cols[e]] = 0;
  }
  return { loss: reduceRows(rowLoss, reduction, B * N), rowLoss, grad, dScale };
}
