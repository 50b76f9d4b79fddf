/** CSR helpers for positives and exclusions (docs/MATH.md §1), and the per-row scaled scores. */
import type { RefPositives, Scores } from './types.js';

/** Weight of entry e (1 without weights). */
export function entryWeight(c: RefPositives, e: number): number {
  return c.weights ? c.weights[e] : 1;
}

/** The default positives of InfoNCE and DCL: row i's positive is column i. */
export function diagonalPositives(B: number): RefPositives {
  return { rowPtr: Array.from({ length: B + 1 }, (_, i) => i), cols: Array.from({ length: B }, (_, i) => i) };
}

/** The transposed CSR (N rows of the B×N matrix's columns), weights carried along. */
export function transposeCsr(c: RefPositives, B: number, N: number): RefPositives {
  const count = new Array<number>(N + 1).fill(0);
  for (let e = 0; e < c.rowPtr[B]; e++) count[c.cols[e] + 1]++;
  for (let j = 0; j < N; j++) count[j + 1] += count[j];
  const rowPtr = count.slice();
  const cols = new Array<number>(c.rowPtr[B]);
  const weights = new Array<number>(c.rowPtr[B]);
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
export function markRow(flags: Uint8Array, c: RefPositives | undefined, i: number, value: number): void {
  if (!c) return;
  for (let e = c.rowPtr[i]; e < c.rowPtr[i + 1]; e++) flags[c.cols[e]] = value;
}

/**
 * z_j = scale·S_ij into `z`, with −∞ for entries that are out: excluded ones (flags[j] === OUT)
 * and scores already at −∞ (kept −∞ explicitly: scale·(−∞) would be NaN for scale 0).
 */
export function scaledRow(S: Scores, N: number, i: number, scale: number, z: Float64Array, flags?: Uint8Array): void {
  const base = i * N;
  for (let j = 0; j < N; j++) {
    const x = S[base + j];
    z[j] = x === -Infinity || (flags !== undefined && flags[j] === OUT) ? -Infinity : scale * x;
  }
}
