/**
 * softTopK: the soft top-k operator (MATH softTopK, native/ops/soft_topk_math.h). Per row i it finds the threshold t_i with
 * Σ_j σ(α(S_ij + t_i)) = k_i and returns p_ij = σ(α(S_ij + t_i)) (or log p_ij), with a
 * vector-Jacobian product by implicit differentiation that reuses the thresholds.
 * @module
 */
import { excludeArg, type NativeCsr, type Positives } from '../csr';
import { makeError } from '../errors';
import { call, callAsync, type NativeShape, type NativeTopKSolve, type NativeInput, type Op } from '../native';
import { outputF32, outputHost, preparingAsync } from '../outputs';
import { asMatrix, asTensor, dtypeCode, emptyDevice, Tensor, type DType, type TensorLike } from '../tensor';
import type { ScoresInput } from '../loss';
import { fail, float32Array, oneOf, optionKeys, options, positiveFinite } from '../validate';

/** output: 0 'prob', 1 'log'. */
interface NativeSoftTopK extends NativeShape, NativeTopKSolve {
  scores: NativeInput;
  output: number;
  values: NativeInput;
  threshold: Float32Array;
  iterations: Int32Array;
}

interface NativeSoftTopKVjp extends NativeShape {
  scores: NativeInput;
  alpha: number;
  exclude?: NativeCsr | undefined;
  output: number;
  threshold: Float32Array;
  gradOutput: NativeInput;
  grad: NativeInput;
  gradDtype: number;
}

declare module '../native' {
  interface NativeAddon extends Op<'softTopK', NativeSoftTopK, void>, Op<'softTopKVjp', NativeSoftTopKVjp, void> {}
}

/** How many entries each row keeps: one k for every row, or one per row. */
export type TopK = number | Int32Array;

/** Options of the threshold search, shared by {@link softTopK} and softTopKLoss. */
export interface TopKSolveOptions {
  /** Sharpness α > 0 of σ(α(S + t)). Default 1 for softTopK, 2 for softTopKLoss (DEXML). */
  alpha?: number;
  /** Stop when |Σ_j p_ij − k_i| ≤ tol·k_i. Default 1e-5. */
  tol?: number;
  /** At most this many passes over a row at a trial threshold (Newton steps + 1). Default 100. */
  maxIter?: number;
  /**
   * Entries removed from row i (CSR, no weights): they take no part in Σp, count not towards
   * N_i, and get value 0 (log: −Infinity) and gradient exactly 0. Default: none.
   */
  exclude?: Positives;
}

export interface SoftTopKOptions extends TopKSolveOptions {
  /** 'prob' (default): values are p_ij; 'log': values are log p_ij, finite far below the threshold. */
  output?: 'prob' | 'log';
  /** The shape [B, N], when the scores are a bare typed array. */
  shape?: readonly number[];
  /** The dtype, when the scores are a bare Uint16Array. */
  dtype?: DType;
}

export interface SoftTopKResult {
  /** p_ij or log p_ij, float32, B×N (excluded and −Infinity entries: 0 or −Infinity), on the scores' device (dispose a CUDA one). */
  values: Tensor;
  /** t_i per row. */
  threshold: Float32Array;
  /** Passes the solver made over each row at a trial threshold. */
  iterations: Int32Array;
  /**
   * dL/dS for an upstream gradient dL/dvalues (float32, B×N: a Float32Array, Tensor or
   * `{ dtype, shape, data }`; a float32 CUDA tensor for CUDA scores), in the scores' dtype, on
   * their device. Reads the scores again: do not change them in between. Throws ERR_SHAPE for the wrong size and ERR_DISPOSED after dispose().
   */
  vjp(gradOutput: Float32Array | Tensor | TensorLike): Tensor;
  /** Drops what vjp needs (the scores, exclusions and thresholds). Idempotent. */
  dispose(): void;
}

/** @internal Validates alpha, tol, maxIter and exclude. */
export function solveOptions(o: Record<string, unknown>, rows: number, cols: number, alphaDefault: number, positives?: NativeCsr) {
  const alpha = positiveFinite('opts.alpha', o.alpha, alphaDefault);
  const tol = positiveFinite('opts.tol', o.tol, 1e-5);
  if (tol >= 1) fail('ERR_ARG', 'opts.tol', 'a number in (0, 1)', tol);
  const maxIter = o.maxIter === undefined ? 100 : o.maxIter;
  if (typeof maxIter !== 'number' || !Number.isInteger(maxIter) || maxIter < 1 || maxIter > 10000) fail('ERR_ARG', 'opts.maxIter', 'an integer in [1, 10000]', maxIter);
  const exclude = excludeArg(o.exclude, rows, cols, positives);
  return { alpha, tol, maxIter, exclude };
}

/**
 * @internal Validates k (a number or an Int32Array of length rows) against each row's
 * N_i ≤ cols − (excluded entries); rows where `skipRow(i)` are not checked. −Infinity
 * entries are counted by the kernel, which throws ERR_K_RANGE itself when k_i ≥ N_i.
 */
export function kArg(name: string, k: unknown, rows: number, cols: number, exclude: NativeCsr | undefined, skipRow?: (i: number) => boolean): { k: number; kRows: Int32Array | undefined } {
  const limit = (i: number) => cols - (exclude ? exclude.rowPtr[i + 1] - exclude.rowPtr[i] : 0);
  const check = (v: number, i: number, label: string) => {
    if (skipRow?.(i)) return;
    if (!(v > 0 && v < limit(i))) fail('ERR_K_RANGE', label, `0 < k < N_i = ${limit(i)} (row ${i}'s entries that are not excluded)`, v);
  };
  if (typeof k === 'number') {
    if (!Number.isInteger(k)) fail('ERR_ARG', name, 'an integer, an Int32Array of length B, or (loss) "numPositives"', k);
    for (let i = 0; i < rows; i++) check(k, i, name);
    return { k, kRows: undefined };
  }
  if (k instanceof Int32Array) {
    if (k.length !== rows) fail('ERR_SHAPE', name, `an Int32Array of length ${rows} (one k per row)`, `#length ${k.length}`);
    for (let i = 0; i < rows; i++) check(k[i], i, `${name}[${i}]`);
    return { k: 0, kRows: k };
  }
  return fail('ERR_TYPE', name, 'an integer or an Int32Array of length B', k);
}

const KEYS = optionKeys<SoftTopKOptions>({ alpha: true, tol: true, maxIter: true, exclude: true, output: true, shape: true, dtype: true });

function prepare(scoresArg: ScoresInput, kArg_: TopK, optsArg: SoftTopKOptions | undefined) {
  const o = options<SoftTopKOptions & Record<string, unknown>>('softTopK(): opts', optsArg, KEYS) as Record<string, unknown>;
  const { t, rows, cols } = asMatrix(scoresArg, 'scores', o.shape as number[] | undefined, o.dtype as DType | undefined);
  const output = oneOf('opts.output', o.output, ['prob', 'log'] as const, 'prob');
  const { alpha, tol, maxIter, exclude } = solveOptions(o, rows, cols, 1);
  const { k, kRows } = kArg('k', kArg_, rows, cols, exclude);
  const input = t.nativeInput('scores');
  const onDevice = t.device === 'cuda';
  // The small outputs first: the large one is the call's last new array (lib/outputs.ts, LAST_OUTPUT).
  const threshold = outputF32(rows);
  const iterations = new Int32Array(rows);
  const vjpThreshold = new Float32Array(rows); // the vjp's own copy, filled after the call
  const values = onDevice ? emptyDevice('float32', [rows, cols]) : new Tensor('float32', [rows, cols], outputHost('float32', rows * cols), undefined);
  // softTopK has no scale: z = S.
  const shape = { dtype: dtypeCode(t.dtype), rows, cols, scale: 1, output: output === 'log' ? 1 : 0 };
  const args: NativeSoftTopK = { ...shape, scores: input, alpha, k: kRows ?? k, tol, maxIter, exclude, values: values.nativeInput('values'), threshold, iterations };
  const result = (): SoftTopKResult => {
    let live: { t: Tensor; threshold: Float32Array; exclude: NativeCsr | undefined } | undefined = { t, threshold: (vjpThreshold.set(threshold), vjpThreshold), exclude };
    return {
      values,
      threshold,
      iterations,
      vjp(gradOutputArg) {
        if (!live) throw makeError('ERR_DISPOSED', 'softTopK().vjp: the result was disposed');
        const gradOutput = upstream(gradOutputArg, rows, cols, live.t.device);
        const grad = onDevice ? emptyDevice(live.t.dtype, [rows, cols]) : new Tensor(live.t.dtype, [rows, cols], outputHost(live.t.dtype, rows * cols), undefined);
        const vjpArgs: NativeSoftTopKVjp = { ...shape, scores: live.t.nativeInput('scores'), alpha, exclude: live.exclude, threshold: live.threshold, gradOutput, grad: grad.nativeInput('grad'), gradDtype: shape.dtype };
        try {
          call((a) => a.softTopKVjp(vjpArgs));
        } catch (e) {
          if (onDevice) grad.dispose();
          throw e;
        }
        return grad;
      },
      dispose() {
        live = undefined;
      },
    };
  };
  // Frees device values the failed call allocated.
  const abandon = () => {
    if (onDevice) values.dispose();
  };
  return { args, result, abandon };
}

/** The upstream gradient of vjp: float32, B×N, on the scores' device. */
function upstream(g: unknown, rows: number, cols: number, device: string) {
  if (g instanceof Float32Array && device === 'cpu') return float32Array('gradOutput', g, rows * cols);
  const t = asTensor(g, 'gradOutput');
  if (t.dtype !== 'float32') fail('ERR_DTYPE', 'gradOutput', "dtype 'float32'", t.dtype);
  if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) fail('ERR_SHAPE', 'gradOutput', `shape [${rows}, ${cols}]`, `#[${t.shape.join(', ')}]`);
  if (t.device !== device) fail('ERR_DEVICE', 'gradOutput', `a tensor on ${device}`, `#a tensor on ${t.device}`);
  return device === 'cpu' ? (t.data as Float32Array) : t.nativeInput('gradOutput');
}

/**
 * The soft top-k operator of MATH softTopK (native/ops/soft_topk_math.h) on B×N scores (CPU or CUDA; values and vjp gradient on the scores' device): per row, the threshold t_i with
 * Σ_j σ(α(S_ij + t_i)) = k_i over the entries that are in (not excluded, not −Infinity),
 * found by safeguarded Newton inside a bracket that always holds, and p_ij = σ(α(S_ij + t_i)).
 * The result's `vjp` gives dL/dS by implicit differentiation.
 *
 * Throws ERR_K_RANGE unless 0 < k_i < N_i, ERR_ARG for α ≤ 0 or non-finite, ERR_SHAPE for a
 * k array of the wrong length, ERR_CSR for bad exclusions, ERR_NON_FINITE for NaN/+Infinity.
 */
export function softTopK(scores: ScoresInput, k: TopK, opts?: SoftTopKOptions): SoftTopKResult {
  const { args, result, abandon } = prepare(scores, k, opts);
  try {
    call((a) => a.softTopK(args));
  } catch (e) {
    abandon();
    throw e;
  }
  return result();
}

/** {@link softTopK} on a worker thread, leaving the event loop free (its vjp is synchronous). */
export async function softTopKAsync(scores: ScoresInput, k: TopK, opts?: SoftTopKOptions): Promise<SoftTopKResult> {
  const { args, result, abandon } = preparingAsync(() => prepare(scores, k, opts));
  try {
    await callAsync((a) => a.softTopKAsync(args));
  } catch (e) {
    abandon();
    throw e;
  }
  return result();
}
