/**
 * docs/MATH.md §3.7, the soft top-k operator in float64.
 *
 * Row i: find t_i with Σ_j σ(α(x_ij + t_i)) = k_i over the columns that are in (not excluded,
 * not −∞), x = scale·S (scale default 1, so x = S). Output p_ij = σ(α(x_ij + t_i)) ('prob')
 * or log p_ij = −softplus(−α(x_ij + t_i)) ('log'); out entries give 0 or −∞ and gradient 0.
 *
 * The root is found by bisection inside the bracket of docs/MATH.md §3.7, run until the bracket is an
 * ulp of the scores wide (≈ 55 halvings), so no tolerance on Σp − k is involved; the sign of
 * Σp − k is taken in the split form (softExcess), which resolves rows whose top entries
 * saturate (checked against 60-digit roots in test/fixtures/soft-topk-saturated.json).
 *
 * Backward (implicit differentiation, ∂t/∂x_m = −v_m/V), v_j = α p_j(1 − p_j), V = Σ_j v_j:
 *   'prob', upstream g: ∂/∂x_m = g_m v_m − v_m·(Σ_j g_j v_j)/V
 *   'log',  upstream g: u_j = α g_j (1 − p_j);  ∂/∂x_m = u_m − v_m·(Σ_j u_j)/V
 * and ∂/∂S = scale·∂/∂x.
 */
import { markRow, OUT, scaledRow } from './csr.js';
import { logit, logSigmoid, sigmoid } from './math.js';
import type { RefPositives, RefSoftTopKResult, Scores } from './types.js';

export interface RefSoftTopKOptions {
  /** α > 0 (default 1). */
  alpha?: number;
  /** Default 'prob'. */
  output?: 'prob' | 'log';
  exclude?: RefPositives;
  /** x = scale·S (default 1). */
  scale?: number;
}

export type TopK = number | Int32Array | number[];

export const kOfRow = (k: TopK, i: number): number => (typeof k === 'number' ? k : k[i]);

/**
 * Σ_j σ(α(x_j + t)) − k over the entries that are in (σ(−∞) = 0 drops the rest), in the split
 * form (m − k) + Σ_{a<0} p − Σ_{a≥0} (1 − p), m = #{a ≥ 0}, each term to full relative precision:
 * on a row whose top entries saturate, Σσ − k summed plainly is pinned where σ rounds to 1,
 * units of t away from the root, while here the two tiny sides are compared exactly (to e^−708).
 */
function softExcess(x: Float64Array, alpha: number, t: number, k: number): number {
  let m = 0;
  let lo = 0;
  let hi = 0;
  for (let j = 0; j < x.length; j++) {
    const a = alpha * (x[j] + t);
    if (a < 0) lo += sigmoid(a);
    else {
      m++;
      hi += sigmoid(-a);
    }
  }
  return m - k + (lo - hi);
}

/**
 * The threshold t with Σ_j σ(α(x_j + t)) = k, entries at −∞ being out. Requires
 * 0 < k < (number of entries that are in).
 */
export function solveThreshold(x: Float64Array, k: number, alpha: number): number {
  let n = 0;
  let max = -Infinity;
  let min = Infinity;
  for (let j = 0; j < x.length; j++) {
    if (x[j] === -Infinity) continue;
    n++;
    if (x[j] > max) max = x[j];
    if (x[j] < min) min = x[j];
  }
  if (!(k > 0 && k < n)) throw new Error(`softTopK: need 0 < k < N_i, got k=${k}, N_i=${n}`);
  // At lo every σ is ≤ σ(α(max + lo)) = k/n, so the count is ≤ k; at hi every σ is ≥ k/n.
  const shift = logit(k / n) / alpha;
  let lo = -max + shift;
  let hi = -min + shift;
  // x_j + t is only resolved to an ulp of the larger of the two, so t needs no finer bracket
  // than that (a root near 0 would otherwise take ~1000 halvings down to subnormals).
  const resolution = Number.EPSILON * Math.max(Math.abs(max), Math.abs(min), Math.abs(lo), Math.abs(hi));
  while (hi - lo > resolution) {
    const mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) break; // lo and hi are adjacent doubles
    if (softExcess(x, alpha, mid, k) < 0) lo = mid;
    else hi = mid;
  }
  // Of the two ends of the final bracket, the one whose count is closer to k.
  return Math.abs(softExcess(x, alpha, lo, k)) <= Math.abs(softExcess(x, alpha, hi, k)) ? lo : hi;
}

/** x = scale·S of row i with out entries (excluded or −∞) at −∞. */
function rowScores(S: Scores, N: number, i: number, scale: number, x: Float64Array, flags: Uint8Array, exclude?: RefPositives): void {
  markRow(flags, exclude, i, OUT);
  scaledRow(S, N, i, scale, x, flags);
  markRow(flags, exclude, i, 0);
}

export function refSoftTopK(S: Scores, B: number, N: number, k: TopK, opts: RefSoftTopKOptions = {}): RefSoftTopKResult {
  const alpha = opts.alpha ?? 1;
  const scale = opts.scale ?? 1;
  const log = opts.output === 'log';
  const values = new Float64Array(B * N);
  const threshold = new Float64Array(B);
  const x = new Float64Array(N);
  const flags = new Uint8Array(N);
  for (let i = 0; i < B; i++) {
    rowScores(S, N, i, scale, x, flags, opts.exclude);
    const t = solveThreshold(x, kOfRow(k, i), alpha);
    threshold[i] = t;
    // −softplus(−a) keeps log p finite (≈ a) far below the threshold, where log σ(a) is log 0.
    for (let j = 0; j < N; j++) values[i * N + j] = log ? logSigmoid(alpha * (x[j] + t)) : sigmoid(alpha * (x[j] + t));
  }
  return { values, threshold };
}

/**
 * ∂x of Σ_j (upstream-weighted output) for one row, given the row (out entries −∞), its
 * threshold and the upstream gradient g of the outputs ('prob' or 'log'). Writes dx (0 at out
 * entries).
 */
export function softTopKRowVjp(x: Float64Array, t: number, alpha: number, log: boolean, g: (j: number) => number, dx: Float64Array): void {
  let V = 0;
  let G = 0; // Σ g_j v_j ('prob') or Σ u_j ('log')
  for (let j = 0; j < x.length; j++) {
    dx[j] = 0;
    if (x[j] === -Infinity) continue;
    const a = alpha * (x[j] + t);
    // p(1 − p) as σ(a)σ(−a): 1 − σ(a) would lose everything once σ(a) rounds to 1.
    const v = alpha * sigmoid(a) * sigmoid(-a);
    V += v;
    const gj = g(j);
    if (log) {
      const u = alpha * gj * sigmoid(-a);
      dx[j] = u;
      G += u;
    } else {
      dx[j] = gj * v;
      G += gj * v;
    }
  }
  if (V === 0) return; // every entry saturated: t does not move
  for (let j = 0; j < x.length; j++) {
    if (x[j] === -Infinity) continue;
    const a = alpha * (x[j] + t);
    dx[j] -= (alpha * sigmoid(a) * sigmoid(-a) * G) / V;
  }
}

/** dL/dS for L = Σ_ij upstream_ij · values_ij (B×N, row-major). */
export function refSoftTopKVjp(S: Scores, B: number, N: number, k: TopK, opts: RefSoftTopKOptions, upstream: ArrayLike<number>): Float64Array {
  const alpha = opts.alpha ?? 1;
  const scale = opts.scale ?? 1;
  const { threshold } = refSoftTopK(S, B, N, k, opts);
  const grad = new Float64Array(B * N);
  const x = new Float64Array(N);
  const dx = new Float64Array(N);
  const flags = new Uint8Array(N);
  for (let i = 0; i < B; i++) {
    rowScores(S, N, i, scale, x, flags, opts.exclude);
    softTopKRowVjp(x, threshold[i], alpha, opts.output === 'log', (j) => upstream[i * N + j], dx);
    for (let j = 0; j < N; j++) grad[i * N + j] = scale * dx[j];
  }
  return grad;
}
