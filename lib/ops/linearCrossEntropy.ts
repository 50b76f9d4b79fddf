/**
 * linearCrossEntropy: softmaxCrossEntropy on the scores of a linear layer, S = hidden·weightᵀ
 * (+ bias), forward and backward in one call, without ever holding the B×N score matrix
 * (docs/MATH.md §3.9–3.10; Cut Cross-Entropy's and Liger-Kernel's fused linear cross-entropy, on the CPU).
 * @module
 */
import { biasOptions, FreshGrads, gradBuffer, newGrad, PRODUCT_LOSS_KEYS, settle, settleAsync, productOptions, type LossResult, type ProductLossOptions } from '../loss';
import { CROSS_ENTROPY_KEYS, type CrossEntropyTerms } from './softmaxCrossEntropy';
import { call, callAsync, type NativeInput, type NativeProductLossArgs, type Op, type NativeLoss } from '../native';
import { outputF32, preparingAsync } from '../outputs';
import { asMatrix, Tensor, type TensorLike } from '../tensor';
import { fail, finiteInRange, float32Array, int32Array, nonNegativeFinite, optionKeys, options, positiveFinite } from '../validate';

/** linearCrossEntropy (napi/ops.cpp): hidden, weight, gradHidden and gradWeight on one device, the rest host arrays; gradDtype is gradHidden's dtype code. */
interface NativeLinearCrossEntropy extends NativeProductLossArgs {
  hidden: NativeInput;
  weight: NativeInput;
  labels: Int32Array;
  classes: number;
  bias?: Float32Array | undefined;
  softcap: number;
  ignoreIndex: number;
  labelSmoothing: number;
  classWeights?: Float32Array | undefined;
  zLoss: number;
  gradHidden?: NativeInput | undefined;
  gradWeight?: NativeInput | undefined;
  gradBias?: Float32Array | undefined;
  lse?: Float32Array | undefined;
}

declare module '../native' {
  interface NativeAddon extends Op<'linearCrossEntropy', NativeLinearCrossEntropy, NativeLoss> {}
}

export { DEFAULT_MEMORY_BUDGET } from '../loss';

/** 'mean' divides by Σ w_{y_i} over the rows not ignored, as softmaxCrossEntropy. */
export interface LinearCrossEntropyOptions extends ProductLossOptions, CrossEntropyTerms {
  /** The linear layer's bias b (length N; a Float32Array, or a 1-D tensor of any dtype, widened to float32). Default: none. */
  bias?: Float32Array | Tensor | TensorLike;
  /** Where dL/dhidden goes (B×D, of gradDtype, on hidden's device); with `accumulate`, added into. Default: a new tensor. */
  gradHidden?: Tensor;
  /** Where dL/dweight goes (N×D, float32, on hidden's device); with `accumulate`, added into. Default: a new tensor. */
  gradWeight?: Tensor;
  /** Where dL/dbias goes (length N); with `accumulate`, added into. Default: a new array (with `bias` only). */
  gradBias?: Float32Array;
}

export interface LinearCrossEntropyResult extends Omit<LossResult, 'grad'> {
  /** dL/dhidden, B×D (absent with `grad: false`). */
  gradHidden?: Tensor;
  /** dL/dweight, N×D, float32 (absent with `grad: false`). */
  gradWeight?: Tensor;
  /** dL/dbias, length N (with `bias`, absent with `grad: false`). */
  gradBias?: Float32Array;
  /** log Σ_j exp(z_ij) per row (with `returnLse: true`). */
  lse?: Float32Array;
}

/**
 * The result type for options of type O: `gradHidden` and `gradWeight` are present exactly when
 * O does not say `grad: false` (as WithGrad does for the losses on scores).
 */
export type WithLinearGrad<O, G = 'grad' extends keyof O ? O['grad' & keyof O] : undefined> = [G] extends [false]
  ? Omit<LinearCrossEntropyResult, 'gradHidden' | 'gradWeight' | 'gradBias'>
  : [G] extends [true | undefined]
    ? LinearCrossEntropyResult & { gradHidden: Tensor; gradWeight: Tensor }
    : LinearCrossEntropyResult;

const KEYS = [
  ...PRODUCT_LOSS_KEYS,
  ...CROSS_ENTROPY_KEYS,
  ...optionKeys<Omit<LinearCrossEntropyOptions, keyof ProductLossOptions | keyof CrossEntropyTerms>>({ bias: true, gradHidden: true, gradWeight: true, gradBias: true }),
];

function prepare(hiddenArg: Tensor | TensorLike, weightArg: Tensor | TensorLike, labels: Int32Array, opts: LinearCrossEntropyOptions | undefined) {
  const o = options<LinearCrossEntropyOptions>('linearCrossEntropy(): opts', opts, KEYS);
  const { t: hidden, rows: B, cols: D } = asMatrix(hiddenArg, 'hidden');
  const { t: weight, rows: N, cols: DW } = asMatrix(weightArg, 'weight');
  if (hidden.shape.length !== 2) fail('ERR_SHAPE', 'hidden.shape', 'a 2-D shape [B, D]', `#[${hidden.shape.join(', ')}]`);
  if (weight.shape.length !== 2) fail('ERR_SHAPE', 'weight.shape', 'a 2-D shape [N, D] (torch nn.Linear layout)', `#[${weight.shape.join(', ')}]`);
  if (DW !== D) fail('ERR_SHAPE', 'weight.shape', `[N, ${D}] (hidden's D)`, `#[${weight.shape.join(', ')}]`);
  if (N < 1) fail('ERR_SHAPE', 'weight.shape', 'at least one class', `#[${weight.shape.join(', ')}]`);
  if (weight.dtype !== hidden.dtype) fail('ERR_DTYPE', 'weight.dtype', `hidden's dtype '${hidden.dtype}'`, weight.dtype);
  if (weight.device !== hidden.device) fail('ERR_DEVICE', 'weight', `a tensor on ${hidden.device} (hidden's device)`, `#a tensor on ${weight.device}`);
  const device = hidden.device;
  const fresh = new FreshGrads();
  const lbl = int32Array('labels', labels, B);
  const ignoreIndex = o.ignoreIndex === undefined ? -100 : o.ignoreIndex;
  if (typeof ignoreIndex !== 'number' || !Number.isInteger(ignoreIndex) || ignoreIndex < -(2 ** 31) || ignoreIndex >= 2 ** 31)
    fail('ERR_ARG', 'opts.ignoreIndex', 'a 32-bit integer', ignoreIndex);
  for (let i = 0; i < lbl.length; i++) {
    const y = lbl[i];
    if (y !== ignoreIndex && (y < 0 || y >= N)) fail('ERR_LABEL_RANGE', `labels[${i}]`, `a class in [0, ${N}) or ignoreIndex (${ignoreIndex})`, y);
  }
  const { common, wantGrad, gradDtype, accumulate } = productOptions(o, hidden, B, D, "hidden's");
  const labelSmoothing = finiteInRange('opts.labelSmoothing', o.labelSmoothing, 0, 1, 0);
  const zLoss = nonNegativeFinite('opts.zLoss', o.zLoss, 0);
  const softcap = o.softcap === undefined ? 0 : positiveFinite('opts.softcap', o.softcap);
  const classWeights = o.classWeights === undefined ? undefined : float32Array('opts.classWeights', o.classWeights, N);
  if (classWeights)
    for (let j = 0; j < classWeights.length; j++)
      if (!(classWeights[j] >= 0 && Number.isFinite(classWeights[j]))) fail('ERR_ARG', `opts.classWeights[${j}]`, 'a finite weight >= 0', classWeights[j]);
  const { bias, gradBias } = biasOptions(o, N, wantGrad, accumulate);
  let gradHidden: Tensor | undefined;
  let gradWeight: Tensor | undefined;
  if (wantGrad) {
    gradHidden = o.gradHidden !== undefined ? gradBuffer('opts.gradHidden', o.gradHidden, [B, D], gradDtype, device) : undefined;
    gradWeight = o.gradWeight !== undefined ? gradBuffer('opts.gradWeight', o.gradWeight, [N, D], 'float32', device) : undefined;
    if (accumulate) {
      if (!gradHidden) fail('ERR_ARG', 'opts.gradHidden', 'the buffer to add into (accumulate: true)', undefined);
      if (!gradWeight) fail('ERR_ARG', 'opts.gradWeight', 'the buffer to add into (accumulate: true)', undefined);
    }
    gradHidden ??= fresh.add(newGrad(gradDtype, [B, D], device));
    gradWeight ??= fresh.add(newGrad('float32', [N, D], device));
  } else {
    for (const k of ['gradHidden', 'gradWeight', 'accumulate'] as const)
      if (o[k] !== undefined && o[k] !== false) fail('ERR_ARG', `opts.${k}`, 'no gradient buffers with grad: false', `#${k} given`);
  }
  const lse = o.returnLse === true ? outputF32(B) : undefined;
  const args: NativeLinearCrossEntropy = {
    ...common,
    hidden: hidden.nativeInput('hidden'),
    weight: weight.nativeInput('weight'),
    labels: lbl,
    classes: N,
    bias,
    softcap,
    ignoreIndex,
    labelSmoothing,
    classWeights,
    zLoss,
    gradHidden: gradHidden?.nativeInput('opts.gradHidden'),
    gradWeight: gradWeight?.nativeInput('opts.gradWeight'),
    gradBias,
    lse,
  };
  const finish = fresh.finisher((r: { loss: number; dScale: number }): LinearCrossEntropyResult => {
    const out: LinearCrossEntropyResult = { loss: r.loss, rowLoss: common.rowLoss };
    if (gradHidden) out.gradHidden = gradHidden;
    if (gradWeight) out.gradWeight = gradWeight;
    if (gradBias) out.gradBias = gradBias;
    if (common.gradScale) out.dScale = r.dScale;
    if (lse) out.lse = lse;
    return out;
  });
  return { args, finish };
}

/**
 * Cross-entropy of the linear layer's scores S = hidden·weightᵀ (+ bias) against integer
 * `labels`, with the gradients for hidden (B×D), weight (N×D, float32) and bias, in one call
 * that never holds S for all rows: it works through bounded chunks of rows (as many as
 * `memoryBudget` allows), each computing its scores, their softmax statistics and dL/dS in
 * place, then dhidden and dweight by GEMMs. Equal to `softmaxCrossEntropy(hidden·weightᵀ + bias,
 * labels, opts)` chained through the product, with every option of it; rows whose label is
 * `ignoreIndex` cost no matrix work. `hidden` and `weight` are tensors of one dtype (float32,
 * float16 or bfloat16) on one device: host tensors run on the CPU (half inputs widened to
 * float32 inside the GEMMs), CUDA tensors on their GPU (tensor-core GEMMs for half inputs, exact
 * fp32 for float32), with gradHidden and gradWeight on that device; bias, gradBias, labels and
 * lse are host arrays either way.
 *
 * Throws ArgumentError (ERR_SHAPE, ERR_DTYPE, ERR_LABEL_RANGE, ERR_ARG for a memoryBudget below
 * one row of scores, ...) and NonFiniteError when a score is NaN or +Infinity.
 */
export function linearCrossEntropy<O extends LinearCrossEntropyOptions | undefined = undefined>(
  hidden: Tensor | TensorLike,
  weight: Tensor | TensorLike,
  labels: Int32Array,
  opts?: O,
): WithLinearGrad<O> {
  const { args, finish } = prepare(hidden, weight, labels, opts);
  return settle(finish, () => call((a) => a.linearCrossEntropy(args))) as WithLinearGrad<O>;
}

/** {@link linearCrossEntropy} on a worker thread, leaving the event loop free. */
export async function linearCrossEntropyAsync<O extends LinearCrossEntropyOptions | undefined = undefined>(
  hidden: Tensor | TensorLike,
  weight: Tensor | TensorLike,
  labels: Int32Array,
  opts?: O,
): Promise<WithLinearGrad<O>> {
  const { args, finish } = preparingAsync(() => prepare(hidden, weight, labels, opts));
  return (await settleAsync(finish, () => callAsync((a) => a.linearCrossEntropyAsync(args)))) as WithLinearGrad<O>;
}
