/**
 * The per-loss math of the label-sharded losses (SPEC 7), as "partials / finish" pairs over one
 * rank's local block of scores (B × N_r, columns [off, off + N_r) of the full B × N matrix).
 *
 * Each loss is written as the same three kinds of step:
 * - **partials** (phase 1): one pass over the local block gives per-row statistics that merge
 *   across ranks with an elementwise sum or max (row maxima, exp-sums, counts, the raw scores of
 *   the positives this rank owns);
 * - the caller's all-reduce merges them (lib/sharded.ts drives the rounds);
 * - **finish** (phase 2): from the global row statistics, every rank computes the same row
 *   losses and its own gradient block in one more pass.
 *
 * These run in TypeScript over Float32Array blocks (fp32 storage, float64 accumulation). The
 * functions take plain arrays and numbers and return plain arrays, so a native kernel per step
 * can replace each one without changing the protocol (what is exchanged, in which order).
 * @internal
 * @module
 */

/** The largest finite float32. A score of −∞ travels as −FLT_MAX (an all-reduce rejects non-finite values). */
export const FLT_MAX = 3.4028234663852886e38;
const NONE = -FLT_MAX;
export const encodeScore = (s: number): number => (s === -Infinity ? NONE : s);
export const decodeScore = (s: number): number => (s <= NONE ? -Infinity : s);

/** The transformed score z = scale·S (fp32, as the kernels form it), or c·tanh(scale·S/c) under a softcap c > 0. */
export interface ZForm {
  scale: number;
  softcap: number;
}
export function zOf(f: ZForm, s: number): number {
  const x = Math.fround(f.scale * s);
  return f.softcap > 0 ? Math.fround(f.softcap * Math.tanh(x / f.softcap)) : x;
}
/** dz/dS (without the scale) and dz/dscale for one score. */
export function dzOf(f: ZForm, s: number): { dS: number; dScale: number } {
  if (!(f.softcap > 0)) return { dS: f.scale, dScale: s };
  const t = Math.tanh(Math.fround(f.scale * s) / f.softcap);
  const d = 1 - t * t;
  return { dS: f.scale * d, dScale: s * d };
}

/**
 * Per row, the local columns skipped by the row's log-sum-exp (exclusions, and the positives for
 * the losses whose denominator leaves them out), sorted, as CSR over local column indices.
 */
export interface LocalCsr {
  rowPtr: Int32Array;
  cols: Int32Array;
}

/**
 * Rows' positives that fall in this shard: local column, weight, and the positive's index in
 * the global CSR (where the all-reduce gathers its raw score).
 */
export interface LocalPositives {
  rowPtr: Int32Array;
  cols: Int32Array;
  weights: Float64Array;
  entry: Int32Array;
}

/** The first NaN or +∞ score, as [row, local column]. */
export type BadEntry = [number, number] | undefined;

/**
 * Phase 1 of the softmax-type losses: per row, online over the local entries that are in (not
 * skipped, not −∞): the local maximum m (an fp32 value), the count c of entries equal to it,
 * r = Σ_{z<m} e^{z−m} (so the local exp-sum is c + r, and the entries at the maximum keep their
 * exact 1: MATH §2), and, with `dScaleSums`, E = Σ e^{z−m}·dz/dscale. One read of the block.
 */
export function lsePartials(S: Float32Array, rows: number, n: number, f: ZForm, skip: LocalCsr | undefined, dScaleSums: boolean, smooth?: { w: Float32Array | undefined }) {
  const m = new Float64Array(rows).fill(-Infinity);
  const c = new Float64Array(rows);
  const r = new Float64Array(rows);
  const E = dScaleSums ? new Float64Array(rows) : undefined;
  // Cross-entropy's label smoothing: Σ_j w_j·z_ij over the finite entries, and Σ_j w_j·dz/dscale.
  const WZ = smooth ? new Float64Array(rows) : undefined;
  const WS = smooth && dScaleSums ? new Float64Array(rows) : undefined;
  const w = smooth?.w;
  let bad: BadEntry;
  const cap = f.softcap > 0;
  for (let i = 0; i < rows; i++) {
    const base = i * n;
    let mi = -Infinity, ci = 0, ri = 0, ei = 0, wz = 0, ws = 0;
    const q0 = skip ? skip.rowPtr[i] : 0, q1 = skip ? skip.rowPtr[i + 1] : 0;
    let j = 0;
    for (let q = q0; q <= q1; q++) {
      const end = q < q1 ? skip!.cols[q] : n;
      for (; j < end; j++) {
        const s = S[base + j];
        if (!(s < Infinity)) {
          bad ??= [i, j];
          continue;
        }
        const x = Math.fround(f.scale * s);
        const z = cap ? Math.fround(f.softcap * Math.tanh(x / f.softcap)) : x;
        if (z === -Infinity) continue;
        if (z > mi) {
          const back = mi === -Infinity ? 0 : Math.exp(mi - z);
          ri = (ri + ci) * back;
          if (E) ei *= back;
          mi = z;
          ci = 1;
        } else if (z === mi) ci += 1;
        else ri += Math.exp(z - mi);
        if (E || WZ) {
          const t = cap ? Math.tanh(x / f.softcap) : 0;
          const dScale = cap ? s * (1 - t * t) : s;
          if (E) ei += Math.exp(z - mi) * dScale;
          if (WZ) {
            const wj = w ? w[j] : 1;
            wz += wj * z;
            ws += wj * dScale;
          }
        }
      }
      j = end + 1;
    }
    m[i] = mi;
    c[i] = ci;
    r[i] = ri;
    if (E) E[i] = ei;
    if (WZ) WZ[i] = wz;
    if (WS) WS[i] = ws;
  }
  return { m, c, r, E, WZ, WS, bad };
}

/**
 * The sum-round part of the softmax-type partials: the local (count at the global maximum M,
 * tail Σ_{z<M} e^{z−M}, E·e^{m−M}) of row i, given the local (m, c, r, E).
 */
export function rescale(M: number, m: number, c: number, r: number, E: number): [number, number, number] {
  if (m === -Infinity) return [0, 0, 0];
  if (m === M) return [c, r, E];
  const back = Math.exp(m - M);
  return [0, (c + r) * back, E * back];
}

/**
 * The global row log-sum-exp from the merged (M, count at M, tail): lse = M + log1p(rTotal) with
 * rTotal = cnt − 1 + tail. `gap(z)` is lse − z written (M − z) + log1p(rTotal), which keeps its
 * relative precision when z is the dominant entry (lse − z ≪ ulp(M)).
 */
export function rowLse(M: number, cnt: number, tail: number): { lse: number; rTotal: number; gap: (z: number) => number } {
  if (M === -Infinity || cnt === 0) return { lse: -Infinity, rTotal: 0, gap: (z) => -Infinity - z };
  const rTotal = cnt - 1 + tail;
  const l1 = Math.log1p(rTotal);
  return { lse: M + l1, rTotal, gap: (z) => M - z + l1 };
}

/** log σ(a), stable (MATH §2): ≈ a far below 0, never log 0. */
export function logSigmoid(a: number): number {
  return a >= 0 ? -Math.log1p(Math.exp(-a)) : a - Math.log1p(Math.exp(a));
}
/** σ(a) and σ(−a), each to full relative precision. */
export function sigmoidPair(a: number): [number, number] {
  const e = Math.exp(-Math.abs(a));
  const r = 1 / (1 + e);
  return a >= 0 ? [r, e * r] : [e * r, r];
}
export function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/**
 * Phase 2 of the softmax-type losses: writes coef_i·p_ij·u_i·dz/dS into the gradient for every
 * local entry of row i that is in (p_ij = e^{z−M}/(1 + rTotal)); skipped and −∞ entries stay 0.
 * The losses then adjust their own columns (labels, positives). One pass over the block.
 */
export function softmaxGrad(
  S: Float32Array,
  G: Float32Array,
  rows: number,
  n: number,
  f: ZForm,
  skip: LocalCsr | undefined,
  M: Float64Array,
  rTotal: Float64Array,
  coef: Float64Array,
  lin?: { factor: Float64Array; w: Float32Array | undefined },
): void {
  const cap = f.softcap > 0;
  for (let i = 0; i < rows; i++) {
    const base = i * n;
    const a = coef[i];
    const b = lin ? lin.factor[i] * f.scale : 0; // minus b·w_j·dz/dS on every entry that is in
    const w = lin?.w;
    if ((a === 0 && b === 0) || M[i] === -Infinity) continue;
    const Mi = M[i];
    const k = (a / (1 + rTotal[i])) * f.scale;
    const q0 = skip ? skip.rowPtr[i] : 0, q1 = skip ? skip.rowPtr[i + 1] : 0;
    let j = 0;
    for (let q = q0; q <= q1; q++) {
      const end = q < q1 ? skip!.cols[q] : n;
      if (cap) {
        for (; j < end; j++) {
          const x = Math.fround(f.scale * S[base + j]);
          const t = Math.tanh(x / f.softcap);
          const z = Math.fround(f.softcap * t);
          if (z !== -Infinity) G[base + j] = (k * Math.exp(z - Mi) - b * (w ? w[j] : 1)) * (1 - t * t);
        }
      } else {
        for (; j < end; j++) {
          const z = Math.fround(f.scale * S[base + j]);
          if (z !== -Infinity) G[base + j] = k * Math.exp(z - Mi) - b * (w ? w[j] : 1);
        }
      }
      j = end + 1;
    }
  }
}

/** p − 1 for an entry of transformed score z in a row with maximum M and r = Σ e^{z−M} − 1, exact near p = 1 (MATH §2). */
export function pMinusOne(z: number, M: number, lse: number, rTotal: number): number {
  return z === M ? -rTotal / (1 + rTotal) : Math.exp(z - lse) - 1;
}

/**
 * Soft top-k threshold solver state of one row, the math of native/ops/soft_topk_math.h in
 * float64: the bracket [−max z + s, −min z + s] with s = logit(k/N)/α, Newton on
 * h(t) = log L − log R (the split count, cancellation-free), kept inside the bracket,
 * bisection otherwise, a fixed step of 80/α where one side's sums underflowed.
 */
export interface TopKSolver {
  t: number;
  lo: number;
  hi: number;
  k: number;
  n: number;
  alpha: number;
  tol: number;
  resolution: number;
  iterations: number;
  done: boolean;
  /** The merged sums of the last pass: [m, pLo, qHi, vLo, vHi]. */
  sums: number[];
}

export function topkSolverInit(zmax: number, zmin: number, k: number, n: number, alpha: number, tol: number): TopKSolver {
  const shift = Math.log(k / (n - k)) / alpha;
  const lo = -zmax + shift, hi = -zmin + shift;
  const big = Math.max(Math.abs(zmax), Math.abs(zmin), Math.abs(lo), Math.abs(hi));
  return { t: 2 * k <= n ? lo : hi, lo, hi, k, n, alpha, tol, resolution: 4 * 1.1920928955078125e-7 * big, iterations: 0, done: false, sums: [0, 0, 0, 0, 0] };
}

const UNDERFLOW_STEP = 80;

export function topkSolverStep(s: TopKSolver, m: number, pLo: number, qHi: number, vLo: number, vHi: number, maxIter: number): void {
  s.iterations += 1;
  s.sums = [m, pLo, qHi, vLo, vHi];
  const excess = m - s.k + pLo - qHi;
  const L = pLo + Math.max(m - s.k, 0), R = qHi + Math.max(s.k - m, 0);
  const dh = s.alpha * (vLo / L + vHi / R);
  const newton = -(Math.log(L) - Math.log(R)) / dh;
  if (Math.abs(excess) <= s.tol * s.k && s.alpha * Math.abs(newton) <= 1e-3) {
    s.t += newton;
    s.done = true;
    return;
  }
  if (s.iterations >= maxIter) {
    s.done = true;
    return;
  }
  if (excess < 0) s.lo = Math.max(s.lo, s.t);
  else s.hi = Math.min(s.hi, s.t);
  if (s.hi - s.lo <= s.resolution) {
    s.done = true;
    return;
  }
  let next = s.t + newton;
  if (!(L > 0)) next = s.t + UNDERFLOW_STEP / s.alpha;
  else if (!(R > 0)) next = s.t - UNDERFLOW_STEP / s.alpha;
  s.t = next > s.lo && next < s.hi ? next : s.lo + 0.5 * (s.hi - s.lo);
}

/**
 * Soft top-k phase 1 of a Newton step: per row in `rowsAt`, the local split sums at its trial
 * threshold over the entries that are in, written as [m, pLo, qHi, vLo, vHi] per row into out.
 */
export function topkSums(S: Float32Array, n: number, f: ZForm, skip: LocalCsr | undefined, alpha: number, rowsAt: Int32Array, t: Float64Array, out: Float32Array): void {
  for (let a = 0; a < rowsAt.length; a++) {
    const i = rowsAt[a];
    const base = i * n;
    const ti = t[a];
    let m = 0, pLo = 0, qHi = 0, vLo = 0, vHi = 0;
    const q0 = skip ? skip.rowPtr[i] : 0, q1 = skip ? skip.rowPtr[i + 1] : 0;
    let j = 0;
    for (let q = q0; q <= q1; q++) {
      const end = q < q1 ? skip!.cols[q] : n;
      for (; j < end; j++) {
        const z = Math.fround(f.scale * S[base + j]);
        if (z === -Infinity) continue;
        const x = alpha * (z + ti);
        const e = Math.exp(-Math.abs(x));
        const r = 1 / (1 + e);
        const pq = e * r * r;
        if (x >= 0) {
          m += 1;
          qHi += e * r;
          vHi += pq;
        } else {
          pLo += e * r;
          vLo += pq;
        }
      }
      j = end + 1;
    }
    out[5 * a] = m;
    out[5 * a + 1] = pLo;
    out[5 * a + 2] = qHi;
    out[5 * a + 3] = vLo;
    out[5 * a + 4] = vHi;
  }
}
