/**
 * docs/MATH.md §3.3, InfoNCE in float64.
 *
 * One-way: ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip (z_ip − lse_i), lse_i over every column not excluded
 * (positives included, SupCon-style); n_i = |P_i| (a count, not Σ w). Positives default to
 * the diagonal (row i ↔ column i, needs N ≥ B).
 * 'mean' divides by R, the number of rows with at least one positive.
 *
 * symmetric (CLIP; square S): the column-wise loss is the same formula on Sᵀ with the
 * transposed positives and exclusions, c_j for column j, and
 *   'mean': L = (Σ_i r_i / R + Σ_j c_j / C) / 2  (C: columns with at least one positive),
 *   'sum':  L = (Σ_i r_i + Σ_j c_j) / 2,
 *   rowLoss_i = (r_i + c_i) / 2 for every reduction, so 'none' pairs query i with key i and
 *   Σ_i rowLoss_i equals the 'sum' loss; gradOutput_i weights that pair.
 *
 * Out entries (excluded, or S = −∞) have probability 0 and gradient 0. A positive at −∞ costs
 * +∞; the other entries keep the gradient of the finite part.
 */
import { diagonalPositives, entryWeight, markRow, OUT, scaledRow, transposeCsr } from './csr.js';
import { logSumExp, reduceRows, rowCoefficients } from './math.js';
import type { RefCommonOptions, RefPositives, RefResult, Scores } from './types.js';

export interface RefInfoNCEOptions extends RefCommonOptions {
  /** Default: the diagonal. */
  positives?: RefPositives;
  /** CLIP-style (row-wise + column-wise)/2 on a square S. */
  symmetric?: boolean;
  exclude?: RefPositives;
}

interface OneWay {
  /** ℓ_i per row. */
  rowLoss: Float64Array;
  /** ∂ℓ_i/∂z_ij (B×N): each row's own derivative, unweighted. */
  dz: Float64Array;
  /** Rows with at least one positive. */
  rowsWithPositives: number;
}

/** Row-wise InfoNCE of a B×N matrix: losses and per-row derivatives with respect to z. */
function oneWay(S: Scores, B: number, N: number, scale: number, positives: RefPositives, exclude?: RefPositives): OneWay {
  const rowLoss = new Float64Array(B);
  const dz = new Float64Array(B * N);
  const z = new Float64Array(N);
  const flags = new Uint8Array(N);
  let rowsWithPositives = 0;
  for (let i = 0; i < B; i++) {
    const p0 = positives.rowPtr[i];
    const p1 = positives.rowPtr[i + 1];
    const n = p1 - p0;
    if (n === 0) continue; // no positives: ℓ_i = 0, gradient 0, not counted by 'mean'
    rowsWithPositives++;
    markRow(flags, exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, exclude, i, 0);

    const lse = logSumExp(z);
    if (lse === -Infinity) {
      rowLoss[i] = Infinity; // every column out
      continue;
    }
    let W = 0;
    let loss = 0;
    for (let e = p0; e < p1; e++) {
      const wp = entryWeight(positives, e);
      W += wp;
      if (wp !== 0) loss += wp * (lse - z[positives.cols[e]]); // 0·∞ would be NaN
    }
    rowLoss[i] = loss / n;
    // ∂ℓ_i/∂z_ij = (W/n)·softmax_j − w_ij/n·[j∈P_i]
    for (let j = 0; j < N; j++) if (z[j] !== -Infinity) dz[i * N + j] = (W / n) * Math.exp(z[j] - lse);
    for (let e = p0; e < p1; e++) {
      const j = positives.cols[e];
      if (z[j] !== -Infinity) dz[i * N + j] -= entryWeight(positives, e) / n;
    }
  }
  return { rowLoss, dz, rowsWithPositives };
}

function transposeScores(S: Scores, B: number, N: number): Float64Array {
  const T = new Float64Array(B * N);
  for (let i = 0; i < B; i++) for (let j = 0; j < N; j++) T[j * B + i] = S[i * N + j];
  return T;
}

export function refInfoNCE(S: Scores, B: number, N: number, opts: RefInfoNCEOptions = {}): RefResult {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  if (!opts.positives && N < B) throw new Error(`infoNCE: diagonal positives need N >= B, got B=${B}, N=${N}`);
  const positives = opts.positives ?? diagonalPositives(B);
  const rows = oneWay(S, B, N, scale, positives, opts.exclude);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  // Adds coefficient·∂ℓ/∂z of entry (i, j) to the gradient and to dScale (∂z/∂S = scale, ∂z/∂scale = S).
  const accumulate = (i: number, j: number, d: number) => {
    if (d === 0) return;
    grad[i * N + j] += scale * d;
    dScale += d * S[i * N + j];
  };

  if (!opts.symmetric) {
    const coef = rowCoefficients(reduction, B, rows.rowsWithPositives, opts.gradOutput);
    for (let i = 0; i < B; i++) for (let j = 0; j < N; j++) accumulate(i, j, coef[i] * rows.dz[i * N + j]);
    return { loss: reduceRows(rows.rowLoss, reduction, rows.rowsWithPositives), rowLoss: rows.rowLoss, grad, dScale };
  }

  if (B !== N) throw new Error(`infoNCE: symmetric needs a square S, got ${B}x${N}`);
  const cols = oneWay(transposeScores(S, B, N), N, B, scale, transposeCsr(positives, B, N), opts.exclude && transposeCsr(opts.exclude, B, N));
  const rowLoss = new Float64Array(B);
  for (let i = 0; i < B; i++) rowLoss[i] = (rows.rowLoss[i] + cols.rowLoss[i]) / 2;
  const rowCoef = rowCoefficients(reduction, B, rows.rowsWithPositives, opts.gradOutput);
  const colCoef = rowCoefficients(reduction, N, cols.rowsWithPositives, opts.gradOutput);
  for (let i = 0; i < B; i++)
    for (let j = 0; j < N; j++) {
      // Column j's loss c_j depends on z_ij through entry (j, i) of the transposed problem.
      accumulate(i, j, (rowCoef[i] * rows.dz[i * N + j] + colCoef[j] * cols.dz[j * B + i]) / 2);
    }
  const loss =
    reduction === 'mean'
      ? (reduceRows(rows.rowLoss, 'mean', rows.rowsWithPositives) + reduceRows(cols.rowLoss, 'mean', cols.rowsWithPositives)) / 2
      : reduceRows(rowLoss, 'sum', B);
  return { loss, rowLoss, grad, dScale };
}
