/**
 * Options and results every loss shares, and their one-time normalisation for the addon.
 * @module
 */
import { makeError } from './errors';
import type { NativeInput, NativeLossArgs, NativeProductLossArgs } from './native';
import { outputF32, outputHost } from './outputs';
import { toFloat32 } from './half';
import { asMatrix, asTensor, dtypeCode, emptyDevice, Tensor, toHost, type Device, type DType, type TensorLike } from './tensor';
import { bool, fail, float32Array, oneOf, optionKeys, options, positiveFinite } from './validate';

/** How row losses are combined. What `'mean'` divides by is stated by each loss. */
export type Reduction = 'mean' | 'sum' | 'none';

/** Scores as every loss accepts them: a Tensor, a `{ dtype, shape, data }` object, or a bare array with `shape`. */
export type ScoresInput = Tensor | TensorLike | Float32Array | Uint16Array;

/**
 * Options every loss takes in each of its forms: on scores, and on a matrix product it never holds
 * whole (linearCrossEntropy, `<loss>FromEmbeddings`).
 */
export interface CommonLossOptions {
  /** Multiplies the scores inside the kernel: z = scale·S (a temperature τ is scale = 1/τ, as CLIP's logit scale and DEXML's 1/τ). Default 1. */
  scale?: number;
  /** 'mean' (default), 'sum' or 'none' (per-row losses; the gradient is of Σ_i gradOutput_i·ℓ_i), as torch's `reduction`. What 'mean' divides by is stated by each loss. */
  reduction?: Reduction;
  /** With reduction 'none': each row's upstream gradient (length B), as the `gradient` of torch's `backward()`. Default: all ones. */
  gradOutput?: Float32Array;
  /** Compute the gradient (with respect to the scores, or to the product's operands). Default true; false computes the loss only (on a product: one GEMM instead of three). */
  grad?: boolean;
  /** Also return dScale = dL/dscale, for a learnable temperature or logit scale (CLIP's `logit_scale`). Default false. */
  gradScale?: boolean;
  /**
   * Gradient dtype: the input's dtype (default, as torch autograd: the scores', or on a product
   * the hidden states' or queries') or 'float32' (for fp32 master gradients). The gradients of a
   * product's weights or keys are always float32.
   */
  gradDtype?: DType;
}

/** Options common to every loss on scores. */
export interface LossOptions extends CommonLossOptions {
  /**
   * Write the gradient over the scores (no B×N allocation). The scores are destroyed: do not
   * read them after the call. While an async call in flight writes them, another call that
   * uses them is refused (ERR_BUSY). An async call over scores in your own memory computes on a
   * copy and writes the gradient back when it completes. Liger-Kernel stores its cross-entropy
   * gradient in the logits the same way. Default false.
   */
  inplace?: boolean;
  /**
   * A preallocated gradient tensor to write into (B×N, of the gradient's dtype, on the scores'
   * device), reused across steps (as torch's `out=`), e.g. the previous step's `grad`. Default:
   * a new tensor per call, without a zero fill: for a sync call V8 memory (malloc recycles a dropped
   * gradient's pages), for an async call memory the addon owns and recycles; never memory a later
   * call writes. While an async call in flight writes `out`, another call that uses it is refused (ERR_BUSY); an `out` in
   * your own memory gets the gradient when the async call completes (README: async calls and
   * memory).
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

/**
 * The result type of a loss called with options of type O: `grad` is present exactly when the
 * options do not say `grad: false`, so `const { loss, grad } = loss(...)` needs no `!` under
 * strict TypeScript. It stays optional when O's `grad` is a boolean known only at run time.
 * G is the type of O's `grad` option (undefined when O has none).
 */
export type WithGrad<R extends LossResult, O, G = 'grad' extends keyof O ? O['grad' & keyof O] : undefined> = [G] extends [false]
  ? Omit<R, 'grad'>
  : [G] extends [true | undefined]
    ? Omit<R, 'grad'> & { grad: Tensor }
    : R;

/** @internal The option names of CommonLossOptions. */
export const COMMON_LOSS_KEYS = optionKeys<CommonLossOptions>({ scale: true, reduction: true, gradOutput: true, grad: true, gradScale: true, gradDtype: true });

/** @internal The option names every loss on scores takes. */
export const LOSS_OPTION_KEYS = [
  ...COMMON_LOSS_KEYS,
  ...optionKeys<Omit<LossOptions, keyof CommonLossOptions>>({ inplace: true, out: true, shape: true, dtype: true }),
];

/** Reduction codes of the native layer (the index). */
const REDUCTIONS: readonly Reduction[] = ['mean', 'sum', 'none'];

/**
 * The CommonLossOptions of a call, validated: `rows` is B, `input` the tensor the gradient takes
 * its dtype from and `inputName` how messages name it ("the scores'", "hidden's").
 */
function commonOptions(o: CommonLossOptions, rows: number, input: Tensor, inputName: string) {
  const scale = positiveFinite('opts.scale', o.scale, 1);
  const reduction = oneOf('opts.reduction', o.reduction, REDUCTIONS, 'mean');
  const wantGrad = bool('opts.grad', o.grad, true);
  const gradScale = bool('opts.gradScale', o.gradScale, false);
  const gradDtype = oneOf('opts.gradDtype', o.gradDtype, ['float32', 'float16', 'bfloat16'] as const, input.dtype);
  if (gradDtype !== 'float32' && gradDtype !== input.dtype) fail('ERR_DTYPE', 'opts.gradDtype', `'float32' or ${inputName} dtype '${input.dtype}'`, gradDtype);
  let gradOutput: Float32Array | undefined;
  if (o.gradOutput !== undefined) {
    if (reduction !== 'none') fail('ERR_ARG', 'opts.gradOutput', "reduction 'none' (it weights per-row losses)", `#reduction '${reduction}'`);
    gradOutput = float32Array('opts.gradOutput', o.gradOutput, rows);
  }
  return { scale, reduction: REDUCTIONS.indexOf(reduction), wantGrad, gradScale, gradDtype, gradOutput };
}

/** The scratch a loss on a matrix product may use when `memoryBudget` is not given: 32 MiB. */
export const DEFAULT_MEMORY_BUDGET = 32 * 2 ** 20;

/** Options every loss on a matrix product takes (linearCrossEntropy, `<loss>FromEmbeddings`): the call holds only a bounded chunk of the scores' rows. */
export interface ProductLossOptions extends CommonLossOptions {
  /**
   * Bytes of scratch the call may use (a chunk of the scores' rows and the GEMM's packed panels).
   * Default 32 MiB. It must hold one row of N float32 scores besides about 0.7 MiB per thread
   * (and 4·N bytes of key norms with `normalize`).
   */
  memoryBudget?: number;
  /** Add the gradients into the buffers given for them (gradient accumulation across micro-batches). Default false. */
  accumulate?: boolean;
}

/** @internal The option names of ProductLossOptions. */
export const PRODUCT_LOSS_KEYS = [...COMMON_LOSS_KEYS, ...optionKeys<Omit<ProductLossOptions, keyof CommonLossOptions>>({ memoryBudget: true, accumulate: true })];

/**
 * @internal The ProductLossOptions of a call validated (see commonOptions; `input` is the first
 * operand, B×D) and the row losses allocated: `common` is what every such loss passes to the addon.
 */
export function productOptions(o: ProductLossOptions, input: Tensor, rows: number, dim: number, inputName: string) {
  const { wantGrad, gradDtype, ...c } = commonOptions(o, rows, input, inputName);
  const accumulate = bool('opts.accumulate', o.accumulate, false);
  const memoryBudget = o.memoryBudget === undefined ? DEFAULT_MEMORY_BUDGET : o.memoryBudget;
  if (typeof memoryBudget !== 'number' || !Number.isSafeInteger(memoryBudget) || memoryBudget <= 0)
    fail('ERR_ARG', 'opts.memoryBudget', 'a whole number of bytes > 0', memoryBudget);
  const common: NativeProductLossArgs = { ...c, dtype: dtypeCode(input.dtype), rows, dim, gradDtype: dtypeCode(gradDtype), accumulate, memoryBudget, rowLoss: outputF32(rows) };
  return { common, wantGrad, gradDtype, accumulate };
}

/** @internal The bias options of a loss on a matrix product. */
export interface BiasOptions {
  bias?: Float32Array | Tensor | TensorLike;
  gradBias?: Float32Array;
}

/**
 * @internal A per-column bias b (length N, added to S) and the buffer for dL/db: `bias` is a
 * Float32Array or a 1-D host tensor of any dtype (widened to float32), finite; `gradBias` (host,
 * length N) needs `bias`, and is required with `accumulate`; a new array otherwise. No gradBias
 * without gradients.
 */
export function biasOptions(o: BiasOptions, N: number, wantGrad: boolean, accumulate: boolean) {
  let bias: Float32Array | undefined;
  if (o.bias !== undefined) {
    if (o.bias instanceof Float32Array) bias = float32Array('opts.bias', o.bias, N);
    else {
      const b = asTensor(o.bias, 'opts.bias');
      if (b.size !== N || b.shape.length !== 1) fail('ERR_SHAPE', 'opts.bias', `length ${N} (1-D)`, `#[${b.shape.join(', ')}]`);
      if (b.device !== 'cpu') fail('ERR_DEVICE', 'opts.bias', 'a host (cpu) tensor', `#a tensor on ${b.device}`);
      bias = toFloat32(b.data, b.dtype);
    }
    for (let j = 0; j < N; j++) if (!Number.isFinite(bias[j])) fail('ERR_NON_FINITE', `opts.bias[${j}]`, 'a finite number', bias[j]);
  }
  let gradBias: Float32Array | undefined;
  if (!wantGrad) {
    if (o.gradBias !== undefined) fail('ERR_ARG', 'opts.gradBias', 'no gradient buffers with grad: false', '#gradBias given');
  } else {
    if (o.gradBias !== undefined) {
      if (!bias) fail('ERR_ARG', 'opts.gradBias', 'opts.bias as well (without a bias there is no gradient for it)', o.gradBias);
      gradBias = float32Array('opts.gradBias', o.gradBias, N);
    }
    if (accumulate && bias && !gradBias) fail('ERR_ARG', 'opts.gradBias', 'the buffer to add into (accumulate: true with a bias)', undefined);
    if (bias) gradBias ??= outputF32(N);
  }
  return { bias, gradBias };
}

/** @internal A caller's gradient buffer for a loss on a matrix product: a tensor of the expected shape and dtype on the inputs' device. */
export function gradBuffer(name: string, v: unknown, shape: readonly number[], dtype: DType, device: Device): Tensor {
  if (!(v instanceof Tensor)) fail('ERR_TYPE', name, 'a Tensor', v);
  if (v.device !== device) fail('ERR_DEVICE', name, `a tensor on ${device} (the inputs' device)`, `#a tensor on ${v.device}`);
  if (v.shape.length !== shape.length || v.shape.some((d, i) => d !== shape[i])) fail('ERR_SHAPE', name, `shape [${shape.join(', ')}]`, `#[${v.shape.join(', ')}]`);
  if (v.dtype !== dtype) fail('ERR_DTYPE', name, `dtype '${dtype}'`, v.dtype);
  return v;
}

/** @internal A new gradient tensor on `device` (NaN-poisoned under FUSEDLOSS_POISON_OUTPUTS). */
export function newGrad(dtype: DType, shape: readonly number[], device: Device): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return device === 'cuda' ? emptyDevice(dtype, shape) : new Tensor(dtype, shape, outputHost(dtype, n), undefined);
}

/** @internal The gradient tensors a call allocated, disposed when the call fails (device memory). */
export class FreshGrads {
  readonly #tensors: Tensor[] = [];
  add(t: Tensor): Tensor {
    this.#tensors.push(t);
    return t;
  }
  abandon(): void {
    for (const t of this.#tensors) t.dispose();
  }
  /** `finish` with `abandon` attached, for {@link settle} and {@link settleAsync}. */
  finisher<R, A>(finish: (r: A) => R): Finish<A, R> {
    return Object.assign(finish, { abandon: () => this.abandon() });
  }
}

/** @internal A result builder that can also free what the call allocated. */
export type Finish<A, R> = ((r: A) => R) & { abandon(): void };

/** @internal finish(fn()), disposing the fresh gradients when fn throws. */
export function settle<A, R>(finish: Finish<A, R>, fn: () => A): R {
  let r: A;
  try {
    r = fn();
  } catch (e) {
    finish.abandon();
    throw e;
  }
  return finish(r);
}

/** @internal The async twin of {@link settle}. */
export async function settleAsync<A, R>(finish: Finish<A, R>, fn: () => Promise<A>): Promise<R> {
  let r: A;
  try {
    r = await fn();
  } catch (e) {
    finish.abandon();
    throw e;
  }
  return finish(r);
}

/** @internal The normalised common part of a loss call. */
export interface PreparedLoss {
  scores: Tensor;
  /** What the caller's API calls the scores ('logits' for cross-entropy), for error messages. */
  scoresName: string;
  input: NativeInput;
  rows: number;
  cols: number;
  /** The options every loss passes to the addon, less the scores (each op adds them under its own name). */
  common: NativeLossArgs;
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
export function prepareLoss<X = undefined>(
  fn: string,
  scoresArg: ScoresInput,
  optsArg: unknown,
  keys: readonly string[],
  scoresName = 'scores',
  rowArrays?: (o: Record<string, unknown>, rows: number, cols: number) => X,
): { p: PreparedLoss; o: Record<string, unknown>; own: X } {
  const o = options<LossOptions & Record<string, unknown>>(`${fn}(): opts`, optsArg, keys) as Record<string, unknown>;
  const { t, rows, cols } = asMatrix(scoresArg, scoresName, o.shape as number[] | undefined, o.dtype as DType | undefined);
  const { scale, reduction, wantGrad, gradScale, gradDtype, gradOutput } = commonOptions(o, rows, t, "the scores'");
  const inplace = bool('opts.inplace', o.inplace, false);
  const input = t.nativeInput(scoresName);
  // Before the gradient: a call's large output is its last new array (lib/outputs.ts, LAST_OUTPUT).
  const rowLoss = outputF32(rows);
  // The loss's own small arrays (and whatever validation allocates) come before the gradient too.
  const own = rowArrays?.(o, rows, cols) as X;
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
    own,
    p: {
      scores: t,
      scoresName,
      input,
      rows,
      cols,
      common: { dtype: dtypeCode(t.dtype), rows, cols, scale, reduction, gradDtype: dtypeCode(gradDtype), gradScale, gradOutput, grad: gradTarget, rowLoss },
      gradOutput,
      gradTarget,
      grad,
      out: o.out instanceof Tensor ? o.out : undefined,
      rowLoss,
    },
  };
}

/** The largest finite float32. */
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * @internal Throws ERR_NON_FINITE naming the first finite entry x of `t` whose scale·x overflows
 * float32 (the kernels compute z = scale·x in float32: an infinite z where x was finite gives
 * NaN or a wrong infinity downstream). Called only after a call gave a non-finite result, so
 * it costs nothing on the normal path. A no-op when no entry overflows.
 */
export function checkScaledOverflow(t: Tensor, name: string, scale: number): void {
  if (scale <= 1) return;
  const raw = (t.device === 'cpu' ? t : toHost(t)).nativeInput(name) as Float32Array | Uint16Array;
  const x = toFloat32(raw, t.dtype);
  const cols = t.shape.length === 2 ? t.shape[1] : t.size;
  const limit = FLOAT32_MAX / scale;
  for (let i = 0; i < x.length; i++)
    if (Math.abs(x[i]) > limit && Number.isFinite(x[i]) && !Number.isFinite(Math.fround(x[i] * scale)))
      throw makeError(
        'ERR_NON_FINITE',
        `${name}[${Math.floor(i / cols)}, ${i % cols}] = ${x[i]}: times the scale ${scale} it overflows float32 (|scale·x| > ${FLOAT32_MAX.toExponential(4)}); lower the scale or the scores`,
      );
}

/** @internal Assembles the result; disposes a fresh device gradient if the call failed. */
export function finishLoss(p: PreparedLoss, native: { loss: number; dScale: number }, extra: object = {}): LossResult {
  // A non-finite loss from finite scores: an overflow of scale·x is refused rather than returned as NaN.
  if (!Number.isFinite(native.loss) || p.rowLoss.some((v) => !Number.isFinite(v))) {
    if (p.grad !== p.scores) checkScaledOverflow(p.scores, p.scoresName, p.common.scale);
    // In place, the scores are gone; a NaN from finite scores can only be such an overflow.
    else if (p.common.scale > 1 && (Number.isNaN(native.loss) || p.rowLoss.some(Number.isNaN)))
      throw makeError(
        'ERR_NON_FINITE',
        `${p.scoresName}: the loss came out NaN: some scale·x overflowed float32 (scale ${p.common.scale}); the call wrote its gradient over the scores (inplace), so the entry cannot be named: repeat it without inplace to find it, and lower the scale or the scores`,
      );
  }
  const r: LossResult = { loss: native.loss, rowLoss: p.rowLoss, ...extra };
  if (p.grad) r.grad = p.grad;
  if (p.common.gradScale) r.dScale = native.dScale;
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
