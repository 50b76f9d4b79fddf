// The pieces every float64 reference shares (each op's reference is in its registry file,
// scripts/ops/<op>.mjs; the types they follow are written out in test/reference/types.ts).
// Plain JS, so that the registry loads under plain node.


/** log(1 + e^x) without overflow for large x or loss of precision for very negative x. */
export function softplus(x) {
  // max(x, 0) + log1p(e^−|x|): the exponent is never positive; softplus(−∞) = 0.
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/** σ(x) = 1/(1 + e^−x), never forming e^x for large |x| (σ(−∞) = 0, σ(∞) = 1). */
export function sigmoid(x) {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** log σ(x) = −softplus(−x): finite (≈ x) far below zero, where log(σ(x)) would be log 0. */
export function logSigmoid(x) {
  return -softplus(-x);
}

/** logit(q) = log(q/(1 − q)) for q in (0, 1). */
export function logit(q) {
  return Math.log(q) - Math.log1p(-q);
}

/**
 * log Σ_j e^{z_j} over z[0..n), two passes (max, then shifted sum). Entries at −∞ are out; a row
 * with none left gives −∞ (the shift would otherwise be −∞ − −∞ = NaN).
 */
export function logSumExp(z, n = z.length) {
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
export function rowCoefficients(reduction, B, denom, gradOutput) {
  const c = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    if (reduction === 'mean') c[i] = denom > 0 ? 1 / denom : 0;
    else if (reduction === 'sum') c[i] = 1;
    else c[i] = gradOutput ? gradOutput[i] : 1;
  }
  return c;
}

/** The reported loss: Σ ℓ_i / denom ('mean'; 0 for denom 0), or Σ ℓ_i ('sum' and 'none'). */
export function reduceRows(rowLoss, reduction, denom) {
  let total = 0;
  for (let i = 0; i < rowLoss.length; i++) total += rowLoss[i];
  if (reduction !== 'mean') return total;
  return denom > 0 ? total / denom : 0;
}


/** Weight of entry e (1 without weights). */
export function entryWeight(c, e) {
  return c.weights ? c.weights[e] : 1;
}

/** The default positives of InfoNCE and DCL: row i's positive is column i. */
export function diagonalPositives(B) {
  return { rowPtr: Array.from({ length: B + 1 }, (_, i) => i), cols: Array.from({ length: B }, (_, i) => i) };
}

/** The transposed CSR (N rows of the B×N matrix's columns), weights carried along. */
export function transposeCsr(c, B, N) {
  const count = new Array(N + 1).fill(0);
  for (let e = 0; e < c.rowPtr[B]; e++) count[c.cols[e] + 1]++;
  for (let j = 0; j < N; j++) count[j + 1] += count[j];
  const rowPtr = count.slice();
  const cols = new Array(c.rowPtr[B]);
  const weights = new Array(c.rowPtr[B]);
  const fill = count.slice(0, N);
  for (let i = 0; i < B; i++)
    for (let e = c.rowPtr[i]; e < c.rowPtr[i + 1]; e++) {
      const at = fill[c.cols[e]]++;
      cols[at] = i;
      weights[at] = entryWeight(c, e);
    }
  return { rowPtr, cols, weights };
}

/**
 * Per-column flags of the row being computed (a Uint8Array of length N, all 0 between rows):
 * OUT for an excluded entry, POSITIVE for a positive. Setting and clearing a row's flags costs
 * O(its entries), not O(N).
 */
export const OUT = 1;
export const POSITIVE = 2;

/** flags[c.cols[e]] = value for every entry of row i (no-op for a missing CSR); value 0 clears. */
export function markRow(flags, c, i, value) {
  if (!c) return;
  for (let e = c.rowPtr[i]; e < c.rowPtr[i + 1]; e++) flags[c.cols[e]] = value;
}

/**
 * z_j = scale·S_ij into `z`, with −∞ for entries that are out: excluded ones (flags[j] === OUT)
 * and scores already at −∞ (kept −∞ explicitly: scale·(−∞) would be NaN for scale 0).
 */
export function scaledRow(S, N, i, scale, z, flags) {
  const base = i * N;
  for (let j = 0; j < N; j++) {
    const x = S[base + j];
    z[j] = x === -Infinity || (flags !== undefined && flags[j] === OUT) ? -Infinity : scale * x;
  }
}
