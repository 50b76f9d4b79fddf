/**
 * logSumExp: the per-row log-sum-exp of a score matrix, `lse[i] = log Σ_j exp(scale·S[i,j])`,
 * in one read of the scores (the first pass every softmax loss makes).
 * @module
 */
import { checkScaledOverflow } from '../loss';
import { call, callAsync, type NativeShape, type NativeInput, type Op } from '../native';
import { outputF32, preparingAsync } from '../outputs';
import { asMatrix, dtypeCode, type DType, type Tensor, type TensorLike } from '../tensor';
import { optionKeys, options, positiveFinite } from '../validate';

interface NativeLogSumExp extends NativeShape {
  scores: NativeInput;
  out: Float32Array;
}

declare module '../native' {
  interface NativeAddon extends Op<'logSumExp', NativeLogSumExp, void> {}
}

export interface LogSumExpOptions {
  /** Multiplies the scores first (1/temperature). Default 1. */
  scale?: number;
  /** The shape, when `scores` is a bare typed array. */
  shape?: readonly number[];
  /** The dtype, when `scores` is a bare Uint16Array. */
  dtype?: DType;
}

const KEYS = optionKeys<LogSumExpOptions>({ scale: true, shape: true, dtype: true });

function prepare(scores: Tensor | TensorLike | Float32Array | Uint16Array, opts: LogSumExpOptions | undefined) {
  const o = options<LogSumExpOptions>('logSumExp(): opts', opts, KEYS);
  const { t, rows, cols } = asMatrix(scores, 'scores', o.shape, o.dtype);
  const scale = positiveFinite('opts.scale', o.scale, 1);
  const out = outputF32(rows);
  const args: NativeLogSumExp = { scores: t.nativeInput('scores'), dtype: dtypeCode(t.dtype), rows, cols, scale, out };
  // An overflow of scale·x gives NaN rows: refused with the entry named (checkScaledOverflow).
  const checked = () => {
    if (out.some(Number.isNaN)) checkScaledOverflow(t, 'scores', scale);
    return out;
  };
  return { args, checked };
}

/**
 * Row-wise log-sum-exp of `scale·scores` (B×N, or a 1-D row). Rows that are all −Infinity give
 * −Infinity. Throws NonFiniteError (ERR_NON_FINITE) on NaN or +Infinity. Runs where the scores
 * live (CPU or CUDA) and returns a Float32Array of length B on the host.
 */
export function logSumExp(scores: Tensor | TensorLike | Float32Array | Uint16Array, opts?: LogSumExpOptions): Float32Array {
  const p = prepare(scores, opts);
  call((a) => a.logSumExp(p.args));
  return p.checked();
}

/** {@link logSumExp} on a worker thread; the event loop stays free. */
export async function logSumExpAsync(scores: Tensor | TensorLike | Float32Array | Uint16Array, opts?: LogSumExpOptions): Promise<Float32Array> {
  const p = preparingAsync(() => prepare(scores, opts));
  await callAsync((a) => a.logSumExpAsync(p.args));
  return p.checked();
}
