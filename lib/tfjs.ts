/**
 * `fusedloss/tfjs`: the losses as TensorFlow.js functions. Each takes `tf.Tensor` scores and
 * returns a `tf.Scalar` whose gradient (`tf.customGrad`) is the one the fused kernel computed
 * in the forward pass: the backward only hands it over, scaled by the upstream gradient.
 *
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { decoupledSoftmax } from 'fusedloss/tfjs';
 * model.compile({ optimizer: 'adam', loss: (yTrue, yPred) => decoupledSoftmax(yPred, yTrue, { scale: 20 }) });
 * ```
 *
 * Works with any tfjs backend that can read tensors synchronously (cpu, wasm, tfjs-node): the
 * scores are read in place where the backend allows it (the cpu backend's array, the wasm
 * heap; `dataSync()` elsewhere), the loss runs on the CPU addon, and the gradient becomes a
 * tensor only when backpropagation asks for it, so no tensor is left behind. Class ids are
 * used as they are: no B×N one-hot is made. `@tensorflow/tfjs` is an optional peer
 * dependency, loaded only by this entry point (ERR_PEER_MISSING without it).
 *
 * `model.fit` passes targets shaped like the output (B×N); for class ids, train with
 * `optimizer.minimize(() => softmaxCrossEntropy(model.apply(x), ids))` (README, TensorFlow.js).
 *
 * Options are those of the losses in `fusedloss`, except the ones about the gradient's
 * storage (`grad`, `inplace`, `out`, `gradDtype`, `gradScale`, `gradOutput`) and
 * `reduction: 'none'`: the result is always a scalar.
 * @module
 */
import type * as Tfjs from '@tensorflow/tfjs';
import type { Positives } from './csr';
import { makeError } from './errors';
import type { LossOptions, LossResult } from './loss';
import { binaryCrossEntropy as flBinaryCrossEntropy } from './ops/binaryCrossEntropy';
import { decoupledContrastive as flDecoupledContrastive, type DecoupledContrastiveOptions } from './ops/decoupledContrastive';
import { decoupledSoftmax as flDecoupledSoftmax } from './ops/decoupledSoftmax';
import { infoNCE as flInfoNCE, type InfoNCEOptions } from './ops/infoNCE';
import { multiLabelSoftmax as flMultiLabelSoftmax } from './ops/multiLabelSoftmax';
import type { PositivesLossOptions } from './ops/positivesLoss';
import { softmaxCrossEntropy as flSoftmaxCrossEntropy, type SoftmaxCrossEntropyOptions } from './ops/softmaxCrossEntropy';
import { softTopKLoss as flSoftTopKLoss, type SoftTopKLossOptions } from './ops/softTopKLoss';
import { tensor as flTensor, type Tensor as FlTensor } from './tensor';
import { fail, optionsObject } from './validate';

/**
 * @tensorflow/tfjs, an optional peer dependency: its absence is reported as such, with how to
 * install it, rather than as a bare module-not-found.
 */
function loadTfjs(): typeof Tfjs {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('@tensorflow/tfjs') as typeof Tfjs;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code !== 'MODULE_NOT_FOUND' || !err.message?.includes("'@tensorflow/tfjs'")) throw e;
    throw makeError(
      'ERR_PEER_MISSING',
      "fusedloss/tfjs: expected the package @tensorflow/tfjs (an optional peer dependency of fusedloss, needed only by fusedloss/tfjs), received none: install it with `npm install @tensorflow/tfjs`",
    );
  }
}
const tf = loadTfjs();

/** The options every adapter function takes: those of the loss, less the gradient's storage. */
export type AdapterOptions<O extends LossOptions> = Omit<O, 'grad' | 'inplace' | 'out' | 'gradDtype' | 'gradScale' | 'gradOutput' | 'shape' | 'dtype' | 'reduction'> & {
  /** 'mean' (default) or 'sum'; the adapter always returns a scalar. */
  reduction?: 'mean' | 'sum';
};

/** Positives as a CSR object, or as a dense B×N tf.Tensor whose nonzero entries are the positives (their values the weights). */
export type PositivesInput = Positives | Tfjs.Tensor;

const NOT_HERE = ['grad', 'inplace', 'out', 'gradDtype', 'gradScale', 'gradOutput', 'shape', 'dtype'];

/** A tf.Tensor by shape rather than by class, so tensors of another tfjs copy (tfjs-node) pass too. */
function isTfTensor(v: unknown): v is Tfjs.Tensor {
  return typeof v === 'object' && v !== null && typeof (v as Tfjs.Tensor).dataSync === 'function' && Array.isArray((v as Tfjs.Tensor).shape) && typeof (v as Tfjs.Tensor).dtype === 'string';
}

function scoresArg(fn: string, v: unknown): Tfjs.Tensor2D {
  if (!isTfTensor(v)) fail('ERR_TYPE', `${fn}(): scores`, 'a tf.Tensor', v);
  if (v.isDisposed) throw makeError('ERR_DISPOSED', `${fn}(): scores: the tf.Tensor was disposed`);
  if (v.rank !== 2) fail('ERR_SHAPE', `${fn}(): scores`, 'a rank-2 tf.Tensor [B, N]', `#shape [${v.shape.join(', ')}]`);
  if (v.dtype !== 'float32') fail('ERR_DTYPE', `${fn}(): scores`, "a tf.Tensor of dtype 'float32'", v.dtype);
  return v as Tfjs.Tensor2D;
}

function adapterOptions(fn: string, opts: unknown): Record<string, unknown> {
  // The loss it calls rejects unknown keys (ERR_ARG, naming the nearest valid one).
  const o = { ...optionsObject<Record<string, unknown>>(`${fn}(): opts`, opts) };
  for (const k of NOT_HERE)
    if (o[k] !== undefined) fail('ERR_ARG', `${fn}(): opts.${k}`, 'no value (the tfjs adapter manages the gradient)', o[k]);
  if (o.reduction === 'none') fail('ERR_ARG', `${fn}(): opts.reduction`, "'mean' or 'sum' (the adapter returns a scalar)", o.reduction);
  return o;
}

/**
 * A tensor's values without a copy where the backend allows: the cpu backend's own array
 * (dataSync hands it out as it is), a view of the wasm heap (its dataSync would copy).
 * Only read, and only before anything else runs on tfjs: a later wasm allocation may move
 * the heap.
 */
function valuesView(t: Tfjs.Tensor): Tfjs.TypedArray {
  const backend = tf.backend() as Partial<{ typedArrayFromHeap(t: Tfjs.TensorInfo): Tfjs.TypedArray }>;
  if (tf.getBackend() === 'wasm' && typeof backend.typedArrayFromHeap === 'function') return backend.typedArrayFromHeap(t);
  return t.dataSync() as Tfjs.TypedArray;
}

/**
 * The core of every adapter function: the kernel runs in the forward pass and writes the
 * gradient once, into an array that becomes the gradient tensor when backpropagation asks for
 * it (the cpu backend adopts the array as it is; wasm copies it into its heap), so no tensor is
 * left behind when it does not. Outside a gradient computation (tf.grad, valueAndGrad,
 * optimizer.minimize) the kernel computes the loss only. Under a loss that is the result
 * itself the upstream gradient is 1, and the gradient goes back unscaled, with no B×N multiply.
 */
function fused(scores: Tfjs.Tensor2D, run: (s: FlTensor, grad: boolean) => LossResult): Tfjs.Scalar {
  const wantGrad = tf.engine().isTapeOn();
  const f = tf.customGrad((...args: (Tfjs.Tensor | Tfjs.GradSaveFunc)[]) => {
    const s = args[0] as Tfjs.Tensor;
    const shape = s.shape as [number, number];
    const r = run(flTensor(valuesView(s) as Float32Array, shape), wantGrad);
    const g = r.grad?.data as Float32Array | undefined;
    const gradFunc = (dy: Tfjs.Tensor) => {
      if (!g) throw makeError('ERR_INTERNAL', 'fusedloss/tfjs: a gradient was asked for a loss computed outside a gradient computation');
      const grad = tf.tensor(g, shape, 'float32');
      if (dy.size === 1 && dy.dataSync()[0] === 1) return [grad];
      return [tf.mul(grad, dy)];
    };
    return { value: tf.scalar(r.loss), gradFunc };
  });
  return f(scores) as Tfjs.Scalar;
}

/** Class ids from an Int32Array, a 1-D tf.Tensor of ids, or a one-hot B×N tf.Tensor (an all-zero row is ignored). */
function labelsArg(fn: string, v: unknown, rows: number, cols: number, ignoreIndex: number): Int32Array {
  if (v instanceof Int32Array) return v;
  if (!isTfTensor(v)) fail('ERR_TYPE', `${fn}(): labels`, 'an Int32Array or a tf.Tensor (class ids, or one-hot)', v);
  if (v.rank === 1) {
    const ids = v.dataSync();
    return ids instanceof Int32Array ? ids : Int32Array.from(ids as ArrayLike<number>);
  }
  if (v.rank !== 2 || v.shape[0] !== rows || v.shape[1] !== cols)
    fail('ERR_SHAPE', `${fn}(): labels`, `class ids [${rows}] or one-hot [${rows}, ${cols}]`, `#shape [${v.shape.join(', ')}]`);
  const x = valuesView(v);
  const y = new Int32Array(rows).fill(ignoreIndex);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      const t = x[i * cols + j];
      if (t === 0) continue;
      if (t !== 1 || y[i] !== ignoreIndex) fail('ERR_ARG', `${fn}(): labels[${i}]`, 'a one-hot row (a single 1, or all zeros to ignore the row)', `#a row with value ${t} at column ${j}`);
      y[i] = j;
    }
  return y;
}

/** Positives from a CSR object (validated by the loss) or a dense B×N tf.Tensor. */
function positivesArg(fn: string, v: unknown, rows: number, cols: number): Positives {
  if (!isTfTensor(v)) {
    if (typeof v === 'object' && v !== null && 'rowPtr' in v) return v as Positives;
    fail('ERR_TYPE', `${fn}(): positives`, 'a tf.Tensor [B, N] (nonzero = positive) or { rowPtr, cols, weights? }', v);
  }
  if (v.rank !== 2 || v.shape[0] !== rows || v.shape[1] !== cols)
    fail('ERR_SHAPE', `${fn}(): positives`, `a tf.Tensor of shape [${rows}, ${cols}]`, `#shape [${v.shape.join(', ')}]`);
  const x = valuesView(v);
  const rowPtr = new Int32Array(rows + 1);
  const idx: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const t = x[i * cols + j];
      if (t === 0) continue;
      idx.push(j);
      w.push(t);
    }
    rowPtr[i + 1] = idx.length;
  }
  const weights = w.every((t) => t === 1) ? undefined : Float32Array.from(w);
  return { rowPtr, cols: Int32Array.from(idx), ...(weights ? { weights } : {}) };
}

/**
 * Cross-entropy over many classes (docs/MATH.md §3.1, torch semantics) as a tfjs loss.
 * `labels`: class ids (Int32Array or 1-D tf.Tensor) or a one-hot B×N tf.Tensor.
 */
export function softmaxCrossEntropy(logits: Tfjs.Tensor, labels: Tfjs.Tensor | Int32Array, opts?: AdapterOptions<SoftmaxCrossEntropyOptions>): Tfjs.Scalar {
  const fn = 'softmaxCrossEntropy';
  const s = scoresArg(fn, logits);
  const o = adapterOptions(fn, opts);
  const y = labelsArg(fn, labels, s.shape[0], s.shape[1], typeof o.ignoreIndex === 'number' ? o.ignoreIndex : -100);
  return fused(s, (t, grad) => flSoftmaxCrossEntropy(t, y, { ...o, grad }));
}

function positivesLoss<O extends LossOptions>(fn: string, loss: (s: FlTensor, p: Positives, o: O) => LossResult) {
  return (scores: Tfjs.Tensor, positives: PositivesInput, opts?: AdapterOptions<O>): Tfjs.Scalar => {
    const s = scoresArg(fn, scores);
    const o = adapterOptions(fn, opts);
    const p = positivesArg(fn, positives, s.shape[0], s.shape[1]);
    return fused(s, (t, grad) => loss(t, p, { ...o, grad } as O));
  };
}

/** DEXML's multi-label softmax (docs/MATH.md §3.2) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const multiLabelSoftmax = positivesLoss<PositivesLossOptions>('multiLabelSoftmax', flMultiLabelSoftmax);
/** DEXML's decoupled softmax (docs/MATH.md §3.4) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const decoupledSoftmax = positivesLoss<PositivesLossOptions>('decoupledSoftmax', flDecoupledSoftmax);
/** One-vs-all binary cross-entropy (docs/MATH.md §3.6) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const binaryCrossEntropy = positivesLoss<PositivesLossOptions>('binaryCrossEntropy', flBinaryCrossEntropy);
/** DEXML's soft top-k loss (docs/MATH.md §3.8: k default 5, α default 2) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const softTopKLoss = positivesLoss<SoftTopKLossOptions>('softTopKLoss', flSoftTopKLoss);

/** Options of the contrastive losses here: `positives` may also be a dense B×N tf.Tensor. */
export type ContrastiveAdapterOptions<O extends LossOptions> = Omit<AdapterOptions<O>, 'positives'> & { positives?: PositivesInput };

function contrastiveLoss<O extends LossOptions>(fn: string, loss: (s: FlTensor, o: O) => LossResult) {
  return (scores: Tfjs.Tensor, opts?: ContrastiveAdapterOptions<O>): Tfjs.Scalar => {
    const s = scoresArg(fn, scores);
    const o = adapterOptions(fn, opts);
    if (o.positives !== undefined) o.positives = positivesArg(fn, o.positives, s.shape[0], s.shape[1]);
    return fused(s, (t, grad) => loss(t, { ...o, grad } as O));
  };
}

/** InfoNCE (docs/MATH.md §3.3) as a tfjs loss: diagonal positives by default, `symmetric: true` for CLIP, or `opts.positives` (CSR or dense). */
export const infoNCE = contrastiveLoss<InfoNCEOptions>('infoNCE', flInfoNCE);
/** Decoupled contrastive loss DCL/DCLW (docs/MATH.md §3.5) as a tfjs loss: diagonal positive by default, or one per row in `opts.positives`. */
export const decoupledContrastive = contrastiveLoss<DecoupledContrastiveOptions>('decoupledContrastive', flDecoupledContrastive);
