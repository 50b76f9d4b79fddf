/**
 * Seeded random inputs for tests, so that every failure reproduces from its seed.
 * The generator is Marsaglia's xorshift on two 32-bit words (period 2^64 − 1), plenty for test
 * data; its sequence is part of the tests' identity, so do not change it.
 */
import type { RefPositives } from './types.js';

export interface Rng {
  /** Uniform in the open interval (0, 1) (never 0, so log(uniform()) is finite). */
  uniform(): number;
  /** Standard normal (Box-Muller). */
  normal(): number;
  /** An integer in [lo, hi). */
  int(lo: number, hi: number): number;
}

export function makeRng(seed: number): Rng {
  let s0 = (seed * 0x9e3779b1) >>> 0 || 1;
  let s1 = (seed ^ 0x85ebca6b) >>> 0 || 2;
  const next = () => {
    let t = s0;
    const s = s1;
    s0 = s;
    t ^= t << 11;
    t ^= t >>> 8;
    s1 = (t ^ s ^ (s >>> 19)) >>> 0;
    return s1;
  };
  for (let i = 0; i < 8; i++) next(); // let nearby seeds drift apart
  const uniform = () => (next() + 0.5) / 4294967296;
  return {
    uniform,
    normal: () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()),
    int: (lo, hi) => lo + Math.floor(uniform() * (hi - lo)),
  };
}

export type ScoreKind = 'normal' | 'flat' | 'peaked';

/**
 * B×N scores as fp32 (so every kernel dtype path and the float64 references see the same
 * numbers): 'normal' (σ = 3, or `sigma`), 'flat' (σ = 0.05: near-uniform rows, the hard case for
 * thresholds and sums), 'peaked' (normal with 3 distinct entries per row ×20: near-one-hot rows;
 * distinct, since one entry scaled twice would leave float16's range).
 */
export function randomScores(rng: Rng, B: number, N: number, o: { kind?: ScoreKind; sigma?: number } = {}): Float32Array {
  const kind = o.kind ?? 'normal';
  const sigma = o.sigma ?? (kind === 'flat' ? 0.05 : 3);
  const x = new Float32Array(B * N);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal() * sigma;
  if (kind === 'peaked') for (let r = 0; r < B; r++) for (const c of distinctIndices(rng, N, Math.min(3, N))) x[r * N + c] *= 20;
  return x;
}

/** CSR in the API's typed-array form (docs/MATH.md §1); also a valid RefPositives. */
export interface CsrArrays {
  rowPtr: Int32Array;
  cols: Int32Array;
  weights?: Float32Array;
}

/**
 * `count` distinct indices of [0, n), sorted, by Floyd's algorithm: O(count) draws and memory,
 * whatever n is.
 */
function distinctIndices(rng: Rng, n: number, count: number): number[] {
  const chosen = new Set<number>();
  for (let j = n - count; j < n; j++) {
    const t = rng.int(0, j + 1);
    chosen.add(chosen.has(t) ? j : t);
  }
  return Array.from(chosen).sort((x, y) => x - y);
}

/** Rows of columns as CSR; with `weightRng`, fp32 weights uniform in [0.5, 1.5) (never near 0). */
function toCsr(rows: number[][], weightRng?: Rng): CsrArrays {
  const rowPtr = new Int32Array(rows.length + 1);
  rows.forEach((r, i) => (rowPtr[i + 1] = rowPtr[i] + r.length));
  const cols = Int32Array.from(rows.flat());
  if (!weightRng) return { rowPtr, cols };
  return { rowPtr, cols, weights: Float32Array.from(cols, () => 0.5 + weightRng.uniform()) };
}

/**
 * Positives for B rows of N columns: n_i uniform in [min, max] (capped at N), unique sorted
 * columns per row; with `weighted`, fp32 weights uniform in [0.5, 1.5).
 */
export function randomPositives(rng: Rng, B: number, N: number, o: { min: number; max: number; weighted?: boolean }): CsrArrays {
  const rows: number[][] = [];
  for (let i = 0; i < B; i++) rows.push(distinctIndices(rng, N, Math.min(N, rng.int(o.min, o.max + 1))));
  return toCsr(rows, o.weighted ? rng : undefined);
}

/**
 * Exclusions disjoint from `positives`: per row uniform in [0, max], capped so that at least
 * half of the row's non-positive columns stay in (every loss keeps negatives to work with).
 */
export function randomExclude(rng: Rng, B: number, N: number, positives: RefPositives | undefined, o: { max: number }): CsrArrays {
  const rows: number[][] = [];
  for (let i = 0; i < B; i++) {
    const taken = new Set<number>();
    if (positives) for (let e = positives.rowPtr[i]; e < positives.rowPtr[i + 1]; e++) taken.add(positives.cols[e]);
    const free: number[] = [];
    for (let j = 0; j < N; j++) if (!taken.has(j)) free.push(j);
    const count = Math.min(Math.floor(free.length / 2), rng.int(0, o.max + 1));
    rows.push(distinctIndices(rng, free.length, count).map((f) => free[f])); // free is sorted, so this is too
  }
  return toCsr(rows);
}
