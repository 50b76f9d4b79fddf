/**
 * The per-loss math of the label-sharded losses (docs/MATH.md §5), as "partials / finish" pairs over one
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
 * Every read of the block is one function here; lib/sharded.ts does the rest, which is O(B + nnz)
 * per call (buffer layout, the rounds, row losses from the merged statistics):
 *
 * | loss | phase 1 (partials) | between rounds | phase 2 (finish) |
 * |---|---|---|---|
 * | softmaxCrossEntropy, multiLabelSoftmax, infoNCE, decoupledSoftmax, decoupledContrastive | lsePartials | rescale | softmaxGrad |
 * | infoNCE symmetric | lsePartials, columnPartials (and symmetricGrad's sum for dScale) | rescale | symmetricGrad |
 * | binaryCrossEntropy | bcePartials (gradient included: it is local) | | |
 * | softTopKLoss | rangePartials | topkSums per Newton step | topkGrad |
 *
 * All of them run native (the addon's threads and SIMD, one read of the block each):
 * lsePartials and softmaxGrad on the softmax-row engine with the row statistics given from
 * outside (native/ops/sharded.cpp), columnPartials and symmetricGrad on the CLIP kernels
 * (infonce.cpp), bcePartials as the unsharded binaryCrossEntropy kernel on the block, and
 * rangePartials, topkSums and topkGrad's dense part on soft top-k's row sweeps (soft_topk.cpp).
 * Each takes and returns plain arrays; on a device block the same op runs as a CUDA kernel
 * (cuda/sharded.cu) over the block in its own dtype, and only the per-row arrays cross to the
 * host. binaryCrossEntropy's pass is the unsharded op on either device.
 * @internal
 * @module
 */
import { call, type DeviceBufferHandle, type NativeInput, type NativeLoss, type NativeShape, type Op } from './native';

/** A rank's block: float32 host memory, or a device buffer of any dtype (BlockTypes says which). */
export type Block = Float32Array | DeviceBufferHandle;

/** The dtype codes of a block and of its gradient (a host block is always float32: widened once). */
export interface BlockTypes {
  dtype: number;
  gradDtype: number;
}
export const F32: BlockTypes = { dtype: 0, gradDtype: 0 };

// The addon's sharded block reads (native/api/args.h), added to NativeAddon as each op's file does.
/** A rank's float32 block of a label-sharded softmax-type loss (native/api/args.h ShardedSoftmaxBlock): skip holds sorted local columns per row. */
export interface NativeShardedBlock extends NativeShape {
  localScores: Block;
  softcap: number;
  skip?: { rowPtr: Int32Array; cols: Int32Array } | undefined;
  classWeights?: Float32Array | undefined;
}

/** The partials (ShardedRowStatsArgs): per row max z and rest = Σ e^{z−max} − 1, and the requested sums; bad = [row, column] of a NaN/+∞, or [−1, −1]. */
export interface NativeShardedRowStats extends NativeShardedBlock {
  max: Float64Array;
  rest: Float64Array;
  lin?: Float64Array | undefined;
  expDScale?: Float64Array | undefined;
  linDScale?: Float64Array | undefined;
  bad: Int32Array;
}

/** A float32 block's entries by flat index (ShardedGatherArgs / ShardedScatterArgs). */
export interface NativeShardedGather extends NativeShape {
  localScores: Block;
  count: number;
  index: Float64Array;
  values: Float32Array;
}
export interface NativeShardedScatter extends NativeShape {
  grad: Block;
  count: number;
  index: Float64Array;
  values: Float32Array;
}

/** The finish's dense gradient (ShardedSoftmaxGradArgs): (coef·e^{z−max}/(1 + rest) − lin·w_j)·dz/dS. */
export interface NativeShardedSoftmaxGrad extends NativeShardedBlock {
  max: Float64Array;
  rest: Float64Array;
  coef: Float64Array;
  lin?: Float64Array | undefined;
  grad: Block;
  gradDtype: number;
}

/** infoNCE symmetric's column statistics of a float32 block (ShardedColumnStatsArgs): per column max z and rest = Σ e^{z−max} − 1. */
export interface NativeShardedColumnStats extends NativeShape {
  localScores: Block;
  max: Float64Array;
  rest: Float64Array;
  bad: Int32Array;
}

/** infoNCE symmetric's gradient (ShardedSymmetricGradArgs): (rowCoef·e^{z−rowMax} + colCoef·e^{z−colMax})·scale; dScale: Σ (grad/scale)·S. */
export interface NativeShardedSymmetricGrad extends NativeShape {
  localScores: Block;
  rowMax: Float64Array;
  rowCoef: Float64Array;
  colMax: Float64Array;
  colCoef: Float64Array;
  grad?: Block | undefined;
  gradDtype: number;
}

/** Soft top-k's float32 block (native/api/args.h ShardedTopKBlock): exclude holds local columns. */
export interface NativeShardedTopKBlock extends NativeShape {
  localScores: Block;
  alpha: number;
  exclude?: { rowPtr: Int32Array; cols: Int32Array } | undefined;
}

/** Phase 1 (ShardedTopKRangeArgs): per row max z, min z and the count of the entries that are in; bad as in NativeShardedRowStats. */
export interface NativeShardedTopKRange extends NativeShardedTopKBlock {
  max: Float64Array;
  min: Float64Array;
  count: Float64Array;
  bad: Int32Array;
}

/** One Newton step (ShardedTopKSumsArgs): the split sums of each searching row at its t, 5 per row. */
export interface NativeShardedTopKSums extends NativeShardedTopKBlock {
  searching: number;
  rowsAt: Int32Array;
  t: Float64Array;
  sums: Float32Array;
}

/** The dense gradient coef·p(1 − p)·scale (ShardedTopKGradArgs); the result's dScale is the block's Σ coef·p(1 − p)·S. */
export interface NativeShardedTopKGrad extends NativeShardedTopKBlock {
  t: Float64Array;
  coef: Float64Array;
  grad: Block;
  gradDtype: number;
}

/**
 * The key-embedding form's chunk (native/api/args.h ShardedEmbeddingsChunk): rows [row0, row0 + rows)
 * of the queryRows queries (the host's float32 Q̂, or the device's raw queries of the keys'
 * dtype with queryScale), the rank's keys of keysDtype.
 */
export interface NativeShardedChunk {
  queries: NativeInput;
  queriesDtype: number;
  row0: number;
  queryRows: number;
  keys: NativeInput | undefined;
  keysDtype: number;
  rows: number;
  cols: number;
  dim: number;
  keyScale?: Float32Array | undefined;
  queryScale?: Float32Array | undefined;
}
/** scores = q̂·k̂ᵀ + bias (ShardedScoresArgs), on the queries' device. */
export interface NativeShardedScores extends NativeShardedChunk {
  bias?: Float32Array | undefined;
  scores: NativeInput;
}
/** gradKeys += G'ᵀ·q̂ (= with overwriteKeys), gradBias += Σ_i G, gradQueries rows = G'·K with G' = G·diag(keyScale) (ShardedEmbeddingsGradArgs). */
export interface NativeShardedEmbeddingsGrad extends NativeShardedChunk {
  grad: NativeInput;
  gradQueries: NativeInput;
  gradKeys: NativeInput;
  overwriteKeys?: boolean;
  gradBias?: Float32Array | undefined;
}
/** 1/max(‖x_r‖, 1e-12) per row (ShardedNormsArgs). */
export interface NativeShardedNorms {
  x: NativeInput;
  dtype: number;
  rows: number;
  dim: number;
  inv: Float32Array;
}
/** The device form's chain rule through the normalisation into the gradients (ShardedEmbeddingsFinishArgs). */
export interface NativeShardedEmbeddingsFinish {
  queries: NativeInput;
  keys: NativeInput;
  dtype: number;
  rows: number;
  cols: number;
  dim: number;
  queryScale?: Float32Array | undefined;
  keyScale?: Float32Array | undefined;
  gradQueriesIn: NativeInput;
  gradQueries: NativeInput;
  gradDtype: number;
  gradKeysIn: NativeInput;
  gradKeys: NativeInput;
  accumulate: boolean;
}

declare module './native' {
  interface NativeAddon
    extends Op<'shardedRowStats', NativeShardedRowStats, void>,
      Op<'shardedSoftmaxGrad', NativeShardedSoftmaxGrad, void>,
      Op<'shardedColumnStats', NativeShardedColumnStats, void>,
      Op<'shardedSymmetricGrad', NativeShardedSymmetricGrad, NativeLoss>,
      Op<'shardedTopKRange', NativeShardedTopKRange, void>,
      Op<'shardedTopKSums', NativeShardedTopKSums, void>,
      Op<'shardedTopKGrad', NativeShardedTopKGrad, NativeLoss>,
      Op<'shardedGather', NativeShardedGather, void>,
      Op<'shardedScatter', NativeShardedScatter, void>,
      Op<'shardedScores', NativeShardedScores, void>,
      Op<'shardedEmbeddingsGrad', NativeShardedEmbeddingsGrad, void>,
      Op<'shardedNorms', NativeShardedNorms, void>,
      Op<'shardedEmbeddingsFinish', NativeShardedEmbeddingsFinish, void> {}
}

/** The largest finite float32. A score of −∞ travels as −FLT_MAX (an all-reduce rejects non-finite values). */
const FLT_MAX = 3.4028234663852886e38;
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
 * Phase 1 of the softmax-type losses (native: shardedRowStats, native/ops/sharded.cpp): per
 * row, over the local entries that are in (not skipped, not −∞): the local maximum m (an fp32
 * value), rest = Σ e^{z−m} − 1 (the entries at the maximum keep their exact 1: MATH §2) and,
 * with `dScaleSums`, E = Σ e^{z−m}·dz/dscale; with `smooth` (cross-entropy's label smoothing),
 * WZ = Σ_j w_j·z_j over the finite entries and, with `dScaleSums`, WS = Σ_j w_j·dz_j/dscale.
 */
export function lsePartials(S: Block, rows: number, n: number, f: ZForm, skip: LocalCsr | undefined, dScaleSums: boolean, smooth?: { w: Float32Array | undefined }, bt: BlockTypes = F32) {
  const m = new Float64Array(rows), rest = new Float64Array(rows), bad = new Int32Array(2);
  const E = dScaleSums ? new Float64Array(rows) : undefined;
  const WZ = smooth ? new Float64Array(rows) : undefined;
  const WS = smooth && dScaleSums ? new Float64Array(rows) : undefined;
  call((a) => a.shardedRowStats({ ...block(S, rows, n, f, skip, smooth?.w, bt), max: m, rest, lin: WZ, expDScale: E, linDScale: WS, bad }));
  return { m, rest, E, WZ, WS, bad: (bad[0] >= 0 ? [bad[0], bad[1]] : undefined) as BadEntry };
}

function block(S: Block, rows: number, n: number, f: ZForm, skip: LocalCsr | undefined, classWeights: Float32Array | undefined, bt: BlockTypes): NativeShardedBlock {
  return { localScores: S, dtype: bt.dtype, rows, cols: n, scale: f.scale, softcap: f.softcap > 0 ? f.softcap : 0, skip, classWeights };
}

/**
 * The sum-round part of the softmax-type partials: the local (count of ranks at the global
 * maximum M, tail Σ_j e^{z_j−M} − [m = M], E·e^{m−M}) of row i, given the local (m, rest, E).
 * Summed over ranks, cnt − 1 + tail is the global rest (rowLse).
 */
export function rescale(M: number, m: number, rest: number, E: number): [number, number, number] {
  if (m === -Infinity) return [0, 0, 0];
  if (m === M) return [1, rest, E];
  const back = Math.exp(m - M);
  return [0, (1 + rest) * back, E * back];
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

/**
 * Phase 2 of the softmax-type losses (native: shardedSoftmaxGrad): writes
 * (coef_i·p_ij − lin_i·w_j)·u_i·dz/dS into the gradient for every local entry of row i that is
 * in (p_ij = e^{z−M}/(1 + rTotal)); skipped and −∞ entries, and rows with M = −∞, get 0. The
 * losses then write their own columns (labels, positives). One pass over the block.
 */
export function softmaxGrad(
  S: Block,
  G: Block,
  rows: number,
  n: number,
  f: ZForm,
  skip: LocalCsr | undefined,
  M: Float64Array,
  rTotal: Float64Array,
  coef: Float64Array,
  lin?: { factor: Float64Array; w: Float32Array | undefined },
  bt: BlockTypes = F32,
): void {
  call((a) => a.shardedSoftmaxGrad({ ...block(S, rows, n, f, skip, lin?.w, bt), max: M, rest: rTotal, coef, lin: lin?.factor, grad: G, gradDtype: bt.gradDtype }));
}

/** p − 1 for an entry of transformed score z in a row with maximum M and r = Σ e^{z−M} − 1, exact near p = 1 (MATH §2). */
export function pMinusOne(z: number, M: number, lse: number, rTotal: number): number {
  return z === M ? -rTotal / (1 + rTotal) : Math.exp(z - lse) - 1;
}

/**
 * Soft top-k threshold solver state of one row, the math of native/ops/soft_topk_math.h in
 * float64: the bracket [−max z + s, −min z + s] with s = logit(k/N)/α, Newton on
 * h(t) = log L − log R (the split count, cancellation-free), kept inside the bracket,
 * bisection otherwise, a fixed step of 80/α where one side's sums underflowed; once close, the
 * last Newton step is followed by one more pass (polishing) unless it is too small to leave the
 * backward's V = α·Σp(1 − p) behind.
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
  /** α·|step| of the Newton step that led to this pass, once close; 0: none. */
  polishStep: number;
  /** The merged sums of the last pass: [m, pLo, qHi, vLo, vHi]. */
  sums: number[];
}

export function topkSolverInit(zmax: number, zmin: number, k: number, n: number, alpha: number, tol: number): TopKSolver {
  const shift = Math.log(k / (n - k)) / alpha;
  const lo = -zmax + shift, hi = -zmin + shift;
  const big = Math.max(Math.abs(zmax), Math.abs(zmin), Math.abs(lo), Math.abs(hi));
  return { t: 2 * k <= n ? lo : hi, lo, hi, k, n, alpha, tol, resolution: 4 * 1.1920928955078125e-7 * big, iterations: 0, done: false, polishStep: 0, sums: [0, 0, 0, 0, 0] };
}

const UNDERFLOW_STEP = 80;
/** A Newton step small enough not to take once close (soft_topk_math.h kStaleStep). */
const STALE_STEP = 1e-8;

export function topkSolverStep(s: TopKSolver, m: number, pLo: number, qHi: number, vLo: number, vHi: number, maxIter: number): void {
  s.iterations += 1;
  s.sums = [m, pLo, qHi, vLo, vHi];
  const excess = m - s.k + pLo - qHi;
  const L = pLo + Math.max(m - s.k, 0), R = qHi + Math.max(s.k - m, 0);
  const dh = s.alpha * (vLo / L + vHi / R);
  const newton = -(Math.log(L) - Math.log(R)) / dh;
  const step = s.alpha * Math.abs(newton);
  if (Math.abs(excess) <= s.tol * s.k && step <= 1e-3) {
    // The backward's V comes from this pass: stop here when the step is negligible, does not
    // change t in fp32, or, polishing, no longer shrinks (rounding noise); else take it with
    // one more pass at the new t (without, at maxIter). See soft_topk_math.h.
    const sameT = Math.fround(s.t + newton) === Math.fround(s.t);
    if (step <= STALE_STEP || sameT || (s.polishStep > 0 && !(step <= 0.5 * s.polishStep))) {
      s.done = true;
      return;
    }
    s.t += newton;
    s.done = s.iterations >= maxIter;
    s.polishStep = step;
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
 * Soft top-k phase 1 of a Newton step (native: shardedTopKSums): per row in `rowsAt`, the local
 * split sums at its trial threshold over the entries that are in, written as
 * [m, pLo, qHi, vLo, vHi] per row into out.
 */
export function topkSums(S: Block, rows: number, n: number, scale: number, exclude: LocalCsr | undefined, alpha: number, rowsAt: Int32Array, t: Float64Array, out: Float32Array, bt: BlockTypes = F32): void {
  call((a) => a.shardedTopKSums({ ...topkBlock(S, rows, n, scale, exclude, alpha, bt), searching: rowsAt.length, rowsAt, t, sums: out }));
}

function topkBlock(S: Block, rows: number, n: number, scale: number, exclude: LocalCsr | undefined, alpha: number, bt: BlockTypes): NativeShardedTopKBlock {
  return { localScores: S, dtype: bt.dtype, rows, cols: n, scale, alpha, exclude };
}

/**
 * binaryCrossEntropy's one pass (its gradient is local): the unsharded native kernel on the
 * block with the local positives (y = their weights, soft targets) and exclusions, reduction
 * 'none' and each row's upstream factor u as gradOutput. Per row: the loss part over the
 * entries that are in, except that a row with a positive at −∞ and y > 0 (loss +∞) counts in
 * `inf` instead (+∞ cannot travel through the all-reduce); with G, the gradient
 * u_i·(σ(z) − y)·scale and this rank's share of dScale. On a device block the op is the CUDA
 * binaryCrossEntropy, and the NaN/+∞ that it refused is found by rangePartials' sweep.
 */
export function bcePartials(S: Block, rows: number, n: number, scale: number, exclude: LocalCsr | undefined, lp: LocalPositives, u: Float32Array, G: Block | undefined, wantDScale: boolean, bt: BlockTypes = F32) {
  const rowLoss = new Float32Array(rows), loss = new Float64Array(rows), inf = new Float64Array(rows);
  const positives = { rowPtr: lp.rowPtr, cols: lp.cols, weights: Float32Array.from(lp.weights) };
  let dScale = 0;
  if (rows * n === 0) return { loss, inf, dScale, bad: undefined as BadEntry }; // an empty shard adds nothing
  try {
    dScale = call((a) => a.binaryCrossEntropy({ scores: S, dtype: bt.dtype, rows, cols: n, scale, reduction: 2, gradDtype: bt.gradDtype, gradScale: wantDScale, gradOutput: u, grad: G, rowLoss, positives, exclude })).dScale;
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_NON_FINITE') throw e;
    return { loss, inf, dScale, bad: S instanceof Float32Array ? firstNonFinite(S, rows, n) : rangePartials(S, rows, n, scale, 1, undefined, bt).bad };
  }
  for (let i = 0; i < rows; i++) {
    if (rowLoss[i] === Infinity) inf[i] = 1;
    else loss[i] = rowLoss[i];
  }
  return { loss, inf, dScale, bad: undefined as BadEntry };
}

/** The first NaN or +∞ of the block in row order (after a kernel refused it: the error path only). */
function firstNonFinite(S: Float32Array, rows: number, n: number): BadEntry {
  for (let k = 0; k < rows * n; k++) if (!(S[k] < Infinity)) return [Math.floor(k / n), k % n];
  return undefined;
}

/** Soft top-k phase 1 (native: shardedTopKRange): per row, max z, min z and the count of the entries that are in (not excluded, not −∞). */
export function rangePartials(S: Block, rows: number, n: number, scale: number, alpha: number, exclude: LocalCsr | undefined, bt: BlockTypes = F32) {
  const zmax = new Float64Array(rows), zmin = new Float64Array(rows), count = new Float64Array(rows), bad = new Int32Array(2);
  call((a) => a.shardedTopKRange({ ...topkBlock(S, rows, n, scale, exclude, alpha, bt), max: zmax, min: zmin, count, bad }));
  return { zmax, zmin, count, bad: (bad[0] >= 0 ? [bad[0], bad[1]] : undefined) as BadEntry };
}

/**
 * Soft top-k phase 2 (MATH softTopK and softTopKLoss, native/ops/soft_topk_math.h): for the rows with `solved[i]`, at threshold t[i],
 * ∂ℓ/∂z_m = u_m − v_m·factor[i] with v = α·σ(a)·σ(−a), a = α(z + t), and u_m = α·g_m·σ(−a_m)
 * at the positives (g = −w/n_i); times up[i] (the upstream factor) and the scale. The dense
 * part −v·factor runs native (shardedTopKGrad), the positives' terms here: their raw scores
 * `lpS` (picked in phase 1, per local positive of these rows), their dense value read back
 * (from a device block by a gather) and the sum written by `set`. Returns this rank's share of
 * dScale.
 */
export function topkGrad(S: Block, G: Block, rows: number, n: number, scale: number, exclude: LocalCsr | undefined, lp: LocalPositives, lpS: Float32Array, nPos: Int32Array, alpha: number, solved: Uint8Array, t: Float64Array, factor: Float64Array, up: Float64Array, set: (k: number, v: number) => void, bt: BlockTypes = F32): number {
  const coef = Float64Array.from({ length: rows }, (_, i) => (solved[i] ? -up[i] * alpha * factor[i] : 0));
  let dScale = call((a) => a.shardedTopKGrad({ ...topkBlock(S, rows, n, scale, exclude, alpha, bt), t, coef, grad: G, gradDtype: bt.gradDtype })).dScale;
  const at = new Float64Array(lp.cols.length);
  for (let i = 0; i < rows; i++) for (let q = lp.rowPtr[i]; q < lp.rowPtr[i + 1]; q++) at[q] = i * n + lp.cols[q];
  let dense: Float32Array;
  if (G instanceof Float32Array) dense = Float32Array.from(at, (j) => G[j]);
  else gatherEntries(G, rows, n, at, (dense = new Float32Array(at.length)), bt.gradDtype);
  for (let i = 0; i < rows; i++) {
    if (!solved[i]) continue;
    const ui = up[i] * scale;
    for (let q = lp.rowPtr[i]; q < lp.rowPtr[i + 1]; q++) {
      const s = lpS[q];
      const z = Math.fround(scale * s);
      if (z === -Infinity) continue;
      const add = ui * alpha * (-lp.weights[q] / nPos[i]) * sigmoidPair(alpha * (z + t[i]))[1];
      set(at[q], Math.fround(dense[q] + add));
      dScale += (add / scale) * s;
    }
  }
  return dScale;
}

/**
 * infoNCE symmetric (native: shardedColumnStats): each local column's softmax over the rows (a
 * rank holds whole columns): the maximum and rest = Σ_i e^{z−max} − 1, as the rows' (MATH §2).
 */
export function columnPartials(S: Block, rows: number, n: number, scale: number, bt: BlockTypes = F32) {
  const max = new Float64Array(n), rest = new Float64Array(n), bad = new Int32Array(2);
  call((a) => a.shardedColumnStats({ localScores: S, dtype: bt.dtype, rows, cols: n, scale, max, rest, bad }));
  return { max, rest, bad: (bad[0] >= 0 ? [bad[0], bad[1]] : undefined) as BadEntry };
}

/**
 * infoNCE symmetric's dense gradient (native: shardedSymmetricGrad), both softmaxes in one read:
 * G_ij = (rowCoef_i·e^{z−rowMax_i} + colCoef_j·e^{z−colMax_j})·scale at the entries that are in
 * (with G undefined, nothing is written). Returns Σ_ij (G_ij/scale)·S_ij.
 */
export function symmetricGrad(S: Block, G: Block | undefined, rows: number, n: number, scale: number, rowMax: Float64Array, rowCoef: Float64Array, colMax: Float64Array, colCoef: Float64Array, bt: BlockTypes = F32): number {
  return call((a) => a.shardedSymmetricGrad({ localScores: S, dtype: bt.dtype, rows, cols: n, scale, rowMax, rowCoef, colMax, colCoef, grad: G, gradDtype: bt.gradDtype })).dScale;
}

/** The key-embedding form's score chunk (native: shardedScores, the GEMM core): S = Q̂_chunk·k̂ᵀ + b. */
export function embeddingScores(chunk: NativeShardedChunk, bias: Float32Array | undefined, out: NativeInput): void {
  call((a) => a.shardedScores({ ...chunk, bias, scores: out }));
}

/**
 * The key-embedding form's fold of a chunk's G = dL/dS (native: shardedEmbeddingsGrad, two GEMMs
 * and a column sum): gradKeys += (G·diag(keyScale))ᵀ·Q̂, gradBias += Σ_i G_ij and
 * gradQueries = G·diag(keyScale)·K. G is scaled in place.
 */
export function embeddingGrad(chunk: NativeShardedChunk, G: NativeInput, gradQueries: NativeInput, gradKeys: NativeInput, gradBias: Float32Array | undefined, overwriteKeys = false): void {
  call((a) => a.shardedEmbeddingsGrad({ ...chunk, grad: G, gradQueries, gradKeys, gradBias, overwriteKeys }));
}

/** 1/max(‖x_r‖, 1e-12) of each row of a device matrix (native: shardedNorms), to the host. */
export function rowInvNorms(x: NativeInput, dtype: number, rows: number, dim: number): Float32Array {
  const inv = new Float32Array(rows);
  if (rows > 0) call((a) => a.shardedNorms({ x, dtype, rows, dim, inv }));
  return inv;
}

/** The device form's end (native: shardedEmbeddingsFinish). */
export function embeddingFinish(f: NativeShardedEmbeddingsFinish): void {
  call((a) => a.shardedEmbeddingsFinish(f));
}

/** Entries of a block (float32 on the host, `dtype` on the device) by flat index, widened to float32 (native: shardedGather). */
export function gatherEntries(S: Block, rows: number, n: number, index: Float64Array, values: Float32Array, dtype = 0): void {
  call((a) => a.shardedGather({ localScores: S, dtype, rows, cols: n, scale: 1, count: index.length, index, values }));
}
/** Writes entries of a block (float32 on the host, `dtype` on the device) by flat index, each rounded once (native: shardedScatter). */
export function scatterEntries(G: Block, rows: number, n: number, index: Float64Array, values: Float32Array, dtype = 0): void {
  call((a) => a.shardedScatter({ grad: G, dtype, rows, cols: n, scale: 1, count: index.length, index, values }));
}
