/**
 * Options and results every loss shares, and their one-time normalisation for the addon.
 * @module
 */
import { makeError } from './errors';
import type { NativeInput } from './native';
import { outputF32, outputHost } from './outputs';
import { asMatrix, dtypeCode, emptyDevice, Tensor, type DType, type TensorLike } from './tensor';
import { bool, fail, float32Array, oneOf, optionKeys, options, positiveFinite } from './validate';

/** How row losses are combined. What `'mean'` divides by is stated by each loss. */
export type Reduction = 'mean' | 'sum' | 'none';

/** Scores as every loss accepts them: a Tensor, a `{ dtype, shape, data }` object, or a bare array with `shape`. */
export type ScoresInput = Tensor | TensorLike | Float32Array | Uint16Array;

/** Options common to every loss. */
export interface LossOptions {
  /** Multiplies the scores inside the kernel: z = scale·S (a temperature τ is scale = 1/τ, as CLIP's logit scale and DEXML's 1/τ). Default 1. */
  scale?: number;
  /** 'mean' (default), 'sum' or 'none' (per-row losses; the gradient is of Σ_i gradOutput_i·ℓ_i), as torch's `reduction`. */
  reduction?: Reduction;
  /** With reduction 'none': each row's upstream gradient (length B), as the `gradient` of torch's `backward()`. Default: all ones. */
  gradOutput?: Float32Array;
  /** Compute the gradient with respect to the scores. Default true; false computes the loss only. */
  grad?: boolean;
  /** Also return dScale = dL/dscale, for a learnable temperature or logit scale (CLIP's `logit_scale`). Default false. */
  gradScale?: boolean;
  /** Gradient dtype: the scores' dtype (default, as torch autograd) or 'float32' (for fp32 master gradients). */
  gradDtype?: DType;
  /**
   * Write the gradient over the scores (no B×N allocation). The scores are destroyed: do not
   * read them after the call, and do not pass the same buffer to a concurrent call. Liger-Kernel
   * stores its cross-entropy gradient in the logits the same way. Default false.
   */
  inplace?: boolean;
  /**
   * A preallocated gradient tensor to write into (B×N, of the gradient's dtype, on the scores'
   * device), reused across steps: a training loop then allocates nothing per call (as torch's
   * `out=`). Default: a new tensor per call.
   */
  out?: Tensor;
  /** The shape [B, N], when the scores are a bare typed array (required then). Default: the tensor's shape. */
  shape?: readonly number[];
  /** The dtype, when the scores are a bare Uint16Array (required then). Default: the tensor's dtype, 'float32' for a Float32Array. */
  dtype?: DType;
}

/** What every loss returns. */
export interface LossResult {
  /** The reduced loss. With reduction 'none', the sum of the row losses. */
  loss: number;
  /** Each row's loss ℓ_i (before any reduction or gradOutput weighting). */
  rowLoss: Float32Array;
  /** dL/dS, B×N, on the scores' device (absent with `grad: false`). With `inplace`, the scores tensor itself. */
  grad?: Tensor;
  /** dL/dscale (with `gradScale: true`). */
  dScale?: number;
}

/** @internal The option names every loss takes. */
export const LOSS_OPTION_KEYS = optionKeys<LossOptions>({
  scale: true,
  reduction: true,
  gradOutput: true,
  grad: true,
  gradScale: true,
  gradDtype: true,
  inplace: true,
  out: true,
  shape: true,
  dtype: true,
});

/** Reduction codes of the native layer. */
const REDUCTIONS: readonly Reduction[] = ['mean', 'sum', 'none'];

/** @internal The normalised common part of a loss call. */
export interface PreparedLoss {
  scores: Tensor;
  input: NativeInput;
  rows: number;
  cols: number;
  common: { dtype: number; rows: number; cols: number; scale: number; reduction: number; gradFloat32: boolean; wantDScale: boolean };
  gradOutput: Float32Array | undefined;
  /** Where the gradient goes (undefined: no gradient). */
  gradTarget: NativeInput | undefined;
  grad: Tensor | undefined;
  /** The caller's `out` tensor, if any (never disposed here). */
  out: Tensor | undefined;
  rowLoss: Float32Array;
}

/**
 * @internal Validates the common options once and allocates the outputs. `keys`: every option
 * name the loss takes (LOSS_OPTION_KEYS and its own).
 */
export function prepareLoss(fn: string, scoresArg: ScoresInput, optsArg: unknown, keys: readonly string[], scoresName = 'scores'): { p: PreparedLoss; o: Record<string, unknown> } {
  const o = options<LossOptions & Record<string, unknown>>(`${fn}(): opts`, optsArg, keys) as Record<string, unknown>;
  const { t, rows, cols } = asMatrix(scoresArg, scoresName, o.shape as number[] | undefined, o.dtype as DType | undefined);
  const scale = positiveFinite('opts.scale', o.scale, 1);
  const reduction = oneOf('opts.reduction', o.reduction, REDUCTIONS, 'mean');
  const wantGrad = bool('opts.grad', o.grad, true);
  const wantDScale = bool('opts.gradScale', o.gradScale, false);
  const inplace = bool('opts.inplace', o.inplace, false);
  const gradDtype = oneOf('opts.gradDtype', o.gradDtype, ['float32', 'float16', 'bfloat16'] as const, t.dtype);
  if (gradDtype !== 'float32' && gradDtype !== t.dtype)
    fail('ERR_DTYPE', 'opts.gradDtype', `'float32' or the scores' dtype '${t.dtype}'`, gradDtype);
  let gradOutput: Float32Array | undefined;
  if (o.gradOutput !== undefined) {
    if (reduction !== 'none') fail('ERR_ARG', 'opts.gradOutput', "reduction 'none' (it weights per-row losses)", `#reduction '${reduction}'`);
    gradOutput = float32Array('opts.gradOutput', o.gradOutput, rows);
  }
  const input = t.nativeInput(scoresName);
  let grad: Tensor | undefined;
  let gradTarget: NativeInput | undefined;
  if (inplace) {
    if (!wantGrad) fail('ERR_ARG', 'opts.inplace', 'grad: true (in place means the gradient overwrites the scores)', '#grad: false');
    if (gradDtype !== t.dtype) fail('ERR_ARG', 'opts.inplace', `gradDtype equal to the scores' dtype '${t.dtype}'`, gradDtype);
    grad = t;
    gradTarget = input;
  } else if (wantGrad && o.out !== undefined) {
    const out = o.out;
    if (!(out instanceof Tensor)) fail('ERR_TYPE', 'opts.out', 'a Tensor', out);
    if (out.shape.length !== 2 || out.shape[0] !== rows || out.shape[1] !== cols)
      fail('ERR_SHAPE', 'opts.out', `shape [${rows}, ${cols}]`, `#[${out.shape.join(', ')}]`);
    if (out.dtype !== gradDtype) fail('ERR_DTYPE', 'opts.out', `dtype '${gradDtype}'`, out.dtype);
    if (out.device !== t.device) fail('ERR_DEVICE', 'opts.out', `a tensor on ${t.device}`, `#a tensor on ${out.device}`);
    if (out === t) fail('ERR_ARG', 'opts.out', 'a tensor other than the scores (use inplace: true for that)', '#the scores');
    grad = out;
    gradTarget = out.nativeInput('opts.out');
  } else if (wantGrad) {
    if (t.device === 'cuda') grad = emptyDevice(gradDtype, [rows, cols]);
    else grad = new Tensor(gradDtype, [rows, cols], outputHost(gradDtype, rows * cols), undefined);
    gradTarget = grad.nativeInput('grad');
  }
  return {
    o,
    p: {
      scores: t,
      input,
      rows,
      cols,
      common: { dtype: dtypeCode(t.dtype), rows, cols, scale, reduction: REDUCTIONS.indexOf(reduction), gradFloat32: gradDtype === 'float32' && t.dtype !== 'float32', wantDScale },
      gradOutput,
      gradTarget,
      grad,
      out: o.out instanceof Tensor ? o.out : undefined,
      rowLoss: outputF32(rows),
    },
  };
}

/** @internal Assembles the result; disposes a fresh device gradient if the call failed. */
export function finishLoss(p: PreparedLoss, native: { loss: number; dScale: number }, extra: object = {}): LossResult {
  const r: LossResult = { loss: native.loss, rowLoss: p.rowLoss, ...extra };
  if (p.grad) r.grad = p.grad;
  if (p.common.wantDScale) r.dScale = native.dScale;
  return r;
}

/** @internal Frees a gradient the failed call allocated on the device. */
export function abandonLoss(p: PreparedLoss, out?: unknown): void {
  if (p.grad && p.grad !== p.scores && p.grad !== out) p.grad.dispose();
}

/** @internal Runs a prepared loss sync, cleaning up on failure. */
export function runLoss<T extends { loss: number; dScale: number }>(p: PreparedLoss, fn: () => T, extra?: () => object): LossResult {
  try {
    const r = fn();
    return finishLoss(p, r, extra?.());
  } catch (e) {
    abandonLoss(p, p.out);
    throw e;
  }
}

/** @internal The async twin of runLoss. */
export async function runLossAsync<T extends { loss: number; dScale: number }>(p: PreparedLoss, fn: () => Promise<T>, extra?: () => object): Promise<LossResult> {
  try {
    const r = await fn();
    return finishLoss(p, r, extra?.());
  } catch (e) {
    abandonLoss(p, p.out);
    throw e;
  }
}

export { makeError };
