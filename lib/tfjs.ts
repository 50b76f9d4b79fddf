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
 * scores are read once with `dataSync()`, the loss runs on the CPU addon, and the gradient
 * becomes a tensor only when backpropagation asks for it, so no tensor is left behind.
 * `@tensorflow/tfjs` is an optional peer dependency, loaded only by this entry point.
 *
 * Options are those of the losses in `fusedloss`, except the ones about the gradient's
 * storage (`grad`, `inplace`, `out`, `gradDtype`, `gradScale`, `gradOutput`) and
 * `reduction: 'none'`: the result is always a scalar.
 * @module
 */
import * as tf from '@tensorflow/tfjs';
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

/** The options every adapter function takes: those of the loss, less the gradient's storage. */
export type AdapterOptions<O extends LossOptions> = Omit<O, 'grad' | 'inplace' | 'out' | 'gradDtype' | 'gradScale' | 'gradOutput' | 'shape' | 'dtype' | 'reduction'> & {
  /** 'mean' (default) or 'sum'; the adapter always returns a scalar. */
  reduction?: 'mean' | 'sum';
};

/** Positives as a CSR object, or as a dense B×N tf.Tensor whose nonzero entries are the positives (their values the weights). */
export type PositivesInput = Positives | tf.Tensor;

const NOT_HERE = ['grad', 'inplace', 'out', 'gradDtype', 'gradScale', 'gradOutput', 'shape', 'dtype'];

/** A tf.Tensor by shape rather than by class, so tensors of another tfjs copy (tfjs-node) pass too. */
function isTfTensor(v: unknown): v is tf.Tensor {
  return typeof v === 'object' && v !== null && typeof (v as tf.Tensor).dataSync === 'function' && Array.isArray((v as tf.Tensor).shape) && typeof (v as tf.Tensor).dtype === 'string';
}

function scoresArg(fn: string, v: unknown): tf.Tensor2D {
  if (!isTfTensor(v)) fail('ERR_TYPE', `${fn}(): scores`, 'a tf.Tensor', v);
  if (v.isDisposed) throw makeError('ERR_DISPOSED', `${fn}(): scores: the tf.Tensor was disposed`);
  if (v.rank !== 2) fail('ERR_SHAPE', `${fn}(): scores`, 'a rank-2 tf.Tensor [B, N]', `#shape [${v.shape.join(', ')}]`);
  if (v.dtype !== 'float32') fail('ERR_DTYPE', `${fn}(): scores`, "a tf.Tensor of dtype 'float32'", v.dtype);
  return v as tf.Tensor2D;
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
 * The core of every adapter function: the kernel runs in the forward pass, and the gradient
 * it returned is handed to the backward pass as plain data.
 */
function fused(scores: tf.Tensor2D, run: (s: FlTensor) => LossResult): tf.Scalar {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const s = args[0] as tf.Tensor;
    const shape = s.shape as [number, number];
    // The backend's values (cpu) or a copy (wasm, node); the kernel only reads them.
    const r = run(flTensor(s.dataSync() as Float32Array, shape));
    const g = r.grad!.data() as Float32Array;
    return { value: tf.scalar(r.loss), gradFunc: (dy: tf.Tensor) => [tf.mul(tf.tensor(g, shape, 'float32'), dy)] };
  });
  return f(scores) as tf.Scalar;
}

/** Class ids from an Int32Array, a 1-D tf.Tensor of ids, or a one-hot B×N tf.Tensor (an all-zero row is ignored). */
function labelsArg(fn: string, v: unknown, rows: number, cols: number, ignoreIndex: number): Int32Array {
  if (v instanceof Int32Array) return v;
  if (!isTfTensor(v)) fail('ERR_TYPE', `${fn}(): labels`, 'an Int32Array or a tf.Tensor (class ids, or one-hot)', v);
  if (v.rank === 1) return Int32Array.from(v.dataSync() as ArrayLike<number>);
  if (v.rank !== 2 || v.shape[0] !== rows || v.shape[1] !== cols)
    fail('ERR_SHAPE', `${fn}(): labels`, `class ids [${rows}] or one-hot [${rows}, ${cols}]`, `#shape [${v.shape.join(', ')}]`);
  const x = v.dataSync();
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
  const x = v.dataSync();
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
 * Cross-entropy over many classes (SPEC 3.1, torch semantics) as a tfjs loss.
 * `labels`: class ids (Int32Array or 1-D tf.Tensor) or a one-hot B×N tf.Tensor.
 */
export function softmaxCrossEntropy(logits: tf.Tensor, labels: tf.Tensor | Int32Array, opts?: AdapterOptions<SoftmaxCrossEntropyOptions>): tf.Scalar {
  const fn = 'softmaxCrossEntropy';
  const s = scoresArg(fn, logits);
  const o = adapterOptions(fn, opts);
  const y = labelsArg(fn, labels, s.shape[0], s.shape[1], typeof o.ignoreIndex === 'number' ? o.ignoreIndex : -100);
  return fused(s, (t) => flSoftmaxCrossEntropy(t, y, o));
}

function positivesLoss<O extends LossOptions>(fn: string, loss: (s: FlTensor, p: Positives, o: O) => LossResult) {
  return (scores: tf.Tensor, positives: PositivesInput, opts?: AdapterOptions<O>): tf.Scalar => {
    const s = scoresArg(fn, scores);
    const o = adapterOptions(fn, opts);
    const p = positivesArg(fn, positives, s.shape[0], s.shape[1]);
    return fused(s, (t) => loss(t, p, o as O));
  };
}

/** DEXML's multi-label softmax (SPEC 3.2) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const multiLabelSoftmax = positivesLoss<PositivesLossOptions>('multiLabelSoftmax', flMultiLabelSoftmax);
/** DEXML's decoupled softmax (SPEC 3.4) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const decoupledSoftmax = positivesLoss<PositivesLossOptions>('decoupledSoftmax', flDecoupledSoftmax);
/** One-vs-all binary cross-entropy (SPEC 3.6) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const binaryCrossEntropy = positivesLoss<PositivesLossOptions>('binaryCrossEntropy', flBinaryCrossEntropy);
/** DEXML's soft top-k loss (SPEC 3.8: k default 5, α default 2) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const softTopKLoss = positivesLoss<SoftTopKLossOptions>('softTopKLoss', flSoftTopKLoss);

/** Options of the contrastive losses here: `positives` may also be a dense B×N tf.Tensor. */
export type ContrastiveAdapterOptions<O extends LossOptions> = Omit<AdapterOptions<O>, 'positives'> & { positives?: PositivesInput };

function contrastiveLoss<O extends LossOptions>(fn: string, loss: (s: FlTensor, o: O) => LossResult) {
  return (scores: tf.Tensor, opts?: ContrastiveAdapterOptions<O>): tf.Scalar => {
    const s = scoresArg(fn, scores);
    const o = adapterOptions(fn, opts);
    if (o.positives !== undefined) o.positives = positivesArg(fn, o.positives, s.shape[0], s.shape[1]);
    return fused(s, (t) => loss(t, o as O));
  };
}

/** InfoNCE (SPEC 3.3) as a tfjs loss: diagonal positives by default, `symmetric: true` for CLIP, or `opts.positives` (CSR or dense). */
export const infoNCE = contrastiveLoss<InfoNCEOptions>('infoNCE', flInfoNCE);
/** Decoupled contrastive loss DCL/DCLW (SPEC 3.5) as a tfjs loss: diagonal positive by default, or one per row in `opts.positives`. */
export const decoupledContrastive = contrastiveLoss<DecoupledContrastiveOptions>('decoupledContrastive', flDecoupledContrastive);
