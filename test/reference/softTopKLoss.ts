/**
 * docs/MATH.md §3.8, the soft top-k loss (DEXML "topk") in float64:
 *   ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip · log p_ip,  p = softTopK(z, k_i, α) over the columns that
 *   are in (not excluded, not −∞), z = scale·S, n_i = |P_i| (a count, not Σ w).
 * k: a number, one per row, or 'numPositives' (k_i = ceil(Σ_p w_ip)); defaults k = 5, α = 2.
 * The gradient is the 'log' backward of docs/MATH.md §3.7 with upstream −w_ip/n_i on the positives, so
 * it is nonzero everywhere (through t_i); dScale = Σ_ij (∂L/∂z_ij)·S_ij is the total derivative
 * in scale, t_i moving with it. 'mean' divides by B. A row without positives adds 0 (and needs
 * no threshold).
 */
import { entryWeight, markRow, OUT, scaledRow } from './csr.js';
import { logSigmoid, reduceRows, rowCoefficients } from './math.js';
import { softTopKRowVjp, solveThreshold } from './softTopK.js';
import type { RefCommonOptions, RefPositives, RefResult, Scores } from './types.js';

export interface RefSoftTopKLossOptions extends RefCommonOptions {
  /** Default 5. */
  k?: number | Int32Array | number[] | 'numPositives';
  /** Default 2. */
  alpha?: number;
  exclude?: RefPositives;
}

export function refSoftTopKLoss(S: Scores, B: number, N: number, positives: RefPositives, opts: RefSoftTopKLossOptions = {}): RefResult {
  const scale = opts.scale ?? 1;
  const alpha = opts.alpha ?? 2;
  const kOpt = opts.k ?? 5;
  const reduction = opts.reduction ?? 'mean';
  const coef = rowCoefficients(reduction, B, B, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const dz = new Float64Array(N);
  const upstream = new Float64Array(N); // ∂L/∂(log p_ij) of the current row
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    const p0 = positives.rowPtr[i];
    const p1 = positives.rowPtr[i + 1];
    const n = p1 - p0;
    if (n === 0) continue;
    let k: number;
    if (kOpt === 'numPositives') {
      let W = 0;
      for (let e = p0; e < p1; e++) W += entryWeight(positives, e);
      k = Math.ceil(W);
    } else k = typeof kOpt === 'number' ? kOpt : kOpt[i];

    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);
    const t = solveThreshold(z, k, alpha);

    let loss = 0;
    for (let e = p0; e < p1; e++) {
      const j = positives.cols[e];
      const wp = entryWeight(positives, e);
      // log p = −softplus(−α(z + t)): a positive far below the threshold costs ≈ α·distance,
      // finite, where log σ would be log 0.
      if (wp !== 0) loss -= (wp / n) * logSigmoid(alpha * (z[j] + t));
      upstream[j] = (-coef[i] * wp) / n;
    }
    rowLoss[i] = loss;
    softTopKRowVjp(z, t, alpha, true, (j) => upstream[j], dz);
    for (let e = p0; e < p1; e++) upstream[positives.cols[e]] = 0;
    for (let j = 0; j < N; j++) {
      if (dz[j] === 0) continue;
      grad[i * N + j] = scale * dz[j];
      dScale += dz[j] * S[i * N + j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, B), rowLoss, grad, dScale };
}
