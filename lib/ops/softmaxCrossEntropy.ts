/**
 * softmaxCrossEntropy: cross-entropy over very many classes (10^5 to 10^7), loss and gradient
 * in one call, with torch `F.cross_entropy` semantics (MATH softmaxCrossEntropy, native/ops/cross_entropy_math.h).
 * @module
 */
import { LOSS_OPTION_KEYS, type LossOptions, type LossResult, prepareLoss, runLoss, runLossAsync, type ScoresInput, type WithGrad } from '../loss';
import { call, callAsync, type NativeLossArgs, type NativeInput, type Op, type NativeLoss } from '../native';
import { outputF32, preparingAsync } from '../outputs';
import { fail, finiteInRange, float32Array, int32Array, nonNegativeFinite, optionKeys, positiveFinite } from '../validate';

interface NativeCrossEntropy extends NativeLossArgs {
  logits: NativeInput;
  labels: Int32Array;
  ignoreIndex: number;
  softcap: number;
  labelSmoothing: number;
  classWeights?: Float32Array | undefined;
  zLoss: number;
  lse?: Float32Array | undefined;
}

declare module '../native' {
  interface NativeAddon extends Op<'softmaxCrossEntropy', NativeCrossEntropy, NativeLoss> {}
}

/** The cross-entropy's own options, in each of its forms (softmaxCrossEntropy, linearCrossEntropy). */
export interface CrossEntropyTerms {
  /** A label equal to this marks the row ignored: loss 0, gradient 0, and it leaves the 'mean' denominator. Default −100 (torch). */
  ignoreIndex?: number;
  /** Label smoothing ε in [0, 1] (torch's `label_smoothing`). Default 0. */
  labelSmoothing?: number;
  /** Per-class weights w (Float32Array of length N; torch's `weight`). 'mean' divides by Σ w_{y_i} over rows not ignored. Default: none (every weight 1). */
  classWeights?: Float32Array;
  /** z-loss weight λ: adds λ·lse_i² per row (PaLM; Liger's `lse_square_scale`). Default 0. */
  zLoss?: number;
  /** Softcap c > 0: z = c·tanh(scale·S / c) before the softmax (Gemma 2). Default: none. */
  softcap?: number;
  /** Also return each row's log-sum-exp of z (`lse`), e.g. to log the z-loss. Default false. */
  returnLse?: boolean;
}

export interface SoftmaxCrossEntropyOptions extends LossOptions, CrossEntropyTerms {}

export interface SoftmaxCrossEntropyResult extends LossResult {
  /** log Σ_j exp(z_ij) per row (with `returnLse: true`). */
  lse?: Float32Array;
}

/** @internal The option names of CrossEntropyTerms. */
export const CROSS_ENTROPY_KEYS = optionKeys<CrossEntropyTerms>({ ignoreIndex: true, labelSmoothing: true, classWeights: true, zLoss: true, softcap: true, returnLse: true });

const KEYS = [
  ...LOSS_OPTION_KEYS,
  ...CROSS_ENTROPY_KEYS,
];

function prepare(logits: ScoresInput, labels: Int32Array, opts: SoftmaxCrossEntropyOptions | undefined) {
  const { p, o, own: lse } = prepareLoss('softmaxCrossEntropy', logits, opts, KEYS, 'logits', (o, rows) => (o.returnLse === true ? outputF32(rows) : undefined));
  const lbl = int32Array('labels', labels, p.rows);
  const ignoreIndex = o.ignoreIndex === undefined ? -100 : o.ignoreIndex;
  if (typeof ignoreIndex !== 'number' || !Number.isInteger(ignoreIndex) || ignoreIndex < -(2 ** 31) || ignoreIndex >= 2 ** 31)
    fail('ERR_ARG', 'opts.ignoreIndex', 'a 32-bit integer', ignoreIndex);
  for (let i = 0; i < lbl.length; i++) {
    const y = lbl[i];
    if (y !== ignoreIndex && (y < 0 || y >= p.cols))
      fail('ERR_LABEL_RANGE', `labels[${i}]`, `a class in [0, ${p.cols}) or ignoreIndex (${ignoreIndex})`, y);
  }
  const labelSmoothing = finiteInRange('opts.labelSmoothing', o.labelSmoothing, 0, 1, 0);
  const zLoss = nonNegativeFinite('opts.zLoss', o.zLoss, 0);
  const softcap = o.softcap === undefined ? 0 : positiveFinite('opts.softcap', o.softcap);
  const classWeights = o.classWeights === undefined ? undefined : float32Array('opts.classWeights', o.classWeights, p.cols);
  if (classWeights)
    for (let j = 0; j < classWeights.length; j++)
      if (!(classWeights[j] >= 0 && Number.isFinite(classWeights[j]))) fail('ERR_ARG', `opts.classWeights[${j}]`, 'a finite weight >= 0', classWeights[j]);
  const args: NativeCrossEntropy = { ...p.common, logits: p.input, labels: lbl, ignoreIndex, softcap, labelSmoothing, classWeights, zLoss, lse };
  return { p, args, extra: () => (lse ? { lse } : {}) };
}

/**
 * Cross-entropy of `logits` (B×N) against integer `labels` (Int32Array, length B): the loss and
 * dL/dlogits in one pass over the logits, with no B×N temporary. Semantics are torch's
 * `F.cross_entropy(scale·logits, labels, weight, ignore_index, label_smoothing, reduction)`
 * plus z-loss and softcap, except one: when every row is ignored, 'mean' gives loss 0 and a
 * zero gradient rather than NaN.
 *
 * A logit of −Infinity marks a class out: probability 0, gradient 0. A row whose every logit is
 * −Infinity (and that is not ignored) has loss +Infinity and a zero gradient.
 *
 * Throws ArgumentError (ERR_LABEL_RANGE for a label outside [0, N) that is not ignoreIndex,
 * ERR_SHAPE, ERR_ARG, ...) and NonFiniteError for NaN/+Infinity logits.
 */
export function softmaxCrossEntropy<O extends SoftmaxCrossEntropyOptions | undefined = undefined>(logits: ScoresInput, labels: Int32Array, opts?: O): WithGrad<SoftmaxCrossEntropyResult, O> {
  const { p, args, extra } = prepare(logits, labels, opts);
  return runLoss(p, () => call((a) => a.softmaxCrossEntropy(args)), extra) as WithGrad<SoftmaxCrossEntropyResult, O>;
}

/** {@link softmaxCrossEntropy} on a worker thread, leaving the event loop free. */
export async function softmaxCrossEntropyAsync<O extends SoftmaxCrossEntropyOptions | undefined = undefined>(logits: ScoresInput, labels: Int32Array, opts?: O): Promise<WithGrad<SoftmaxCrossEntropyResult, O>> {
  const { p, args, extra } = preparingAsync(() => prepare(logits, labels, opts));
  return runLossAsync(p, () => callAsync((a) => a.softmaxCrossEntropyAsync(args)), extra) as Promise<WithGrad<SoftmaxCrossEntropyResult, O>>;
}
