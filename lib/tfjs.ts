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
 *
 * The forms from embeddings (`linearCrossEntropy`, `<loss>FromEmbeddings`) take the two
 * matrices whose product is the score matrix, queries/hidden [B, D] and keys/weight [N, D],
 * and give gradients for both (and for `bias` and a tensor `scale`), without the B×N scores
 * ever existing: a model's last Dense layer and its loss become one fused op
 * (`linearCrossEntropy(hidden, tf.transpose(dense.kernel.read()), ids, { bias: dense.bias.read() })`).
 * @module
 */
import type * as Tfjs from '@tensorflow/tfjs';
import type { Positives } from './csr';
import { makeError } from './errors';
import type { LossOptions, LossResult } from './loss';
import { binaryCrossEntropy as flBinaryCrossEntropy } from './ops/binaryCrossEntropy';
import { decoupledContrastive as flDecoupledContrastive, type DecoupledContrastiveOptions } from './ops/decoupledContrastive';
import { decoupledSoftmax as flDecoupledSoftmax } from './ops/decoupledSoftmax';
import {
  binaryCrossEntropyFromEmbeddings as flBinaryCrossEntropyFromEmbeddings,
  decoupledContrastiveFromEmbeddings as flDecoupledContrastiveFromEmbeddings,
  decoupledSoftmaxFromEmbeddings as flDecoupledSoftmaxFromEmbeddings,
  infoNCEFromEmbeddings as flInfoNCEFromEmbeddings,
  multiLabelSoftmaxFromEmbeddings as flMultiLabelSoftmaxFromEmbeddings,
  softTopKLossFromEmbeddings as flSoftTopKLossFromEmbeddings,
  type DecoupledContrastiveEmbeddingsOptions,
  type EmbeddingsLossResult,
  type InfoNCEEmbeddingsOptions,
  type PositivesEmbeddingsOptions,
  type SoftTopKLossEmbeddingsOptions,
} from './ops/fromEmbeddings';
import { infoNCE as flInfoNCE, type InfoNCEOptions } from './ops/infoNCE';
import { linearCrossEntropy as flLinearCrossEntropy, type LinearCrossEntropyOptions, type LinearCrossEntropyResult } from './ops/linearCrossEntropy';
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
 * Cross-entropy over many classes (MATH softmaxCrossEntropy, native/ops/cross_entropy_math.h; torch semantics) as a tfjs loss.
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

/** DEXML's multi-label softmax (MATH multiLabelSoftmax, native/ops/positives_math.h) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const multiLabelSoftmax = positivesLoss<PositivesLossOptions>('multiLabelSoftmax', flMultiLabelSoftmax);
/** DEXML's decoupled softmax (MATH decoupledSoftmax, native/ops/positives_math.h) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const decoupledSoftmax = positivesLoss<PositivesLossOptions>('decoupledSoftmax', flDecoupledSoftmax);
/** One-vs-all binary cross-entropy (MATH binaryCrossEntropy, native/ops/positives_math.h) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
export const binaryCrossEntropy = positivesLoss<PositivesLossOptions>('binaryCrossEntropy', flBinaryCrossEntropy);
/** DEXML's soft top-k loss (MATH softTopKLoss (native/ops/soft_topk_math.h): k default 5, α default 2) as a tfjs loss; positives as CSR or a dense multi-hot tensor. */
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

/** InfoNCE (MATH infoNCE, native/ops/contrastive_math.h) as a tfjs loss: diagonal positives by default, `symmetric: true` for CLIP, or `opts.positives` (CSR or dense). */
export const infoNCE = contrastiveLoss<InfoNCEOptions>('infoNCE', flInfoNCE);
/** Decoupled contrastive loss DCL/DCLW (MATH decoupledContrastive, native/ops/contrastive_math.h) as a tfjs loss: diagonal positive by default, or one per row in `opts.positives`. */
export const decoupledContrastive = contrastiveLoss<DecoupledContrastiveOptions>('decoupledContrastive', flDecoupledContrastive);

// ---------------------------------------------------------------------------------------------
// The forms from embeddings: S = A·Bᵀ (+ bias) is never materialised; the kernel returns the
// gradients of both factors (and of the bias and the scale) from the forward pass.

/** The options the embeddings forms manage themselves (gradient buffers and what only they may set). */
const EMBEDDINGS_NOT_HERE = [...NOT_HERE, 'accumulate', 'gradQueries', 'gradKeys', 'gradHidden', 'gradWeight', 'gradBias', 'returnLse'];

/** The options every embeddings form takes here: the core function's, less the gradient buffers; a tensor scale gets its gradient; the result is a scalar. */
export type EmbeddingsAdapterOptions<O> = Omit<
  O,
  'grad' | 'gradDtype' | 'gradScale' | 'gradOutput' | 'reduction' | 'accumulate' | 'gradQueries' | 'gradKeys' | 'gradHidden' | 'gradWeight' | 'gradBias' | 'returnLse' | 'scale' | 'positives' | 'bias'
> & {
  /** A bias [N] (float32 tf.Tensor) added to the scores; it gets dL/dbias. Default: none. */
  bias?: Tfjs.Tensor;
  /** 'mean' (default) or 'sum'; the adapter always returns a scalar. */
  reduction?: 'mean' | 'sum';
  /** Multiplies the scores. A number (default 1), or a size-1 float32 tf.Tensor, which then gets dL/dscale (a learnable temperature; keep it > 0, e.g. tf.exp(logScale)). */
  scale?: number | Tfjs.Tensor;
};

/** Options of {@link linearCrossEntropy} here: the core's, with `bias` a tf.Tensor [N] that gets its gradient. */
export type LinearCrossEntropyAdapterOptions = EmbeddingsAdapterOptions<LinearCrossEntropyOptions>;
/** Options of the `<loss>FromEmbeddings` functions over positives here (`exclude` as CSR). */
export type PositivesEmbeddingsAdapterOptions = EmbeddingsAdapterOptions<PositivesEmbeddingsOptions>;
/** Options of {@link softTopKLossFromEmbeddings} here. */
export type SoftTopKLossEmbeddingsAdapterOptions = EmbeddingsAdapterOptions<SoftTopKLossEmbeddingsOptions>;
/** Options of {@link infoNCEFromEmbeddings} here: `positives` may also be a dense B×N tf.Tensor. */
export type InfoNCEEmbeddingsAdapterOptions = EmbeddingsAdapterOptions<InfoNCEEmbeddingsOptions> & { positives?: PositivesInput };
/** Options of {@link decoupledContrastiveFromEmbeddings} here: `positives` may also be a dense B×N tf.Tensor. */
export type DecoupledContrastiveEmbeddingsAdapterOptions = EmbeddingsAdapterOptions<DecoupledContrastiveEmbeddingsOptions> & { positives?: PositivesInput };

/** A float32 tf.Tensor of the given rank, live. */
function tfArg(fn: string, name: string, v: unknown, rank: number, expected: string): Tfjs.Tensor {
  if (!isTfTensor(v)) fail('ERR_TYPE', `${fn}(): ${name}`, 'a tf.Tensor', v);
  if (v.isDisposed) throw makeError('ERR_DISPOSED', `${fn}(): ${name}: the tf.Tensor was disposed`);
  if (v.rank !== rank) fail('ERR_SHAPE', `${fn}(): ${name}`, expected, `#shape [${v.shape.join(', ')}]`);
  if (v.dtype !== 'float32') fail('ERR_DTYPE', `${fn}(): ${name}`, "a tf.Tensor of dtype 'float32'", v.dtype);
  return v;
}

/** The two factors of S, [B, D] and [N, D] (the core checks that their D agree). */
function factorArgs(fn: string, names: [string, string], a: unknown, b: unknown): [Tfjs.Tensor2D, Tfjs.Tensor2D] {
  return [tfArg(fn, names[0], a, 2, 'a rank-2 tf.Tensor [B, D]') as Tfjs.Tensor2D, tfArg(fn, names[1], b, 2, 'a rank-2 tf.Tensor [N, D]') as Tfjs.Tensor2D];
}

/** The adapter options of an embeddings form, with `scale` split off: a number stays in the options, a tensor is returned apart. */
function embeddingsOptions(fn: string, opts: unknown): { o: Record<string, unknown>; scale?: Tfjs.Tensor } {
  const o = { ...optionsObject<Record<string, unknown>>(`${fn}(): opts`, opts) };
  for (const k of EMBEDDINGS_NOT_HERE)
    if (o[k] !== undefined) fail('ERR_ARG', `${fn}(): opts.${k}`, 'no value (the tfjs adapter manages the gradients)', o[k]);
  if (o.reduction === 'none') fail('ERR_ARG', `${fn}(): opts.reduction`, "'mean' or 'sum' (the adapter returns a scalar)", o.reduction);
  if (!isTfTensor(o.scale)) return { o };
  const scale = o.scale;
  delete o.scale;
  if (scale.isDisposed) throw makeError('ERR_DISPOSED', `${fn}(): opts.scale: the tf.Tensor was disposed`);
  if (scale.size !== 1 || scale.dtype !== 'float32') fail('ERR_SHAPE', `${fn}(): opts.scale`, "a number or a float32 tf.Tensor of one element", `#a ${scale.dtype} tensor of shape [${scale.shape.join(', ')}]`);
  return { o, scale };
}

/** What an embeddings kernel returns, as the adapter needs it: the gradients of the inputs in customGrad's order. */
interface FactorGrads {
  loss: number;
  grads?: { data: Float32Array; shape: readonly number[] }[];
}

/**
 * The core of the embeddings forms, as {@link fused} is of the others: the kernel runs once in
 * the forward pass and writes every input's gradient (both factors, then the bias and the scale
 * where they are tensors); each becomes a tensor only when backpropagation asks for it. The
 * inputs' values are read in place (no copy on the cpu backend) and only before the kernel's
 * result is turned into tensors.
 */
function fusedFactors(inputs: Tfjs.Tensor[], run: (values: Float32Array[], grad: boolean) => FactorGrads): Tfjs.Scalar {
  const wantGrad = tf.engine().isTapeOn();
  const f = tf.customGrad((...args: (Tfjs.Tensor | Tfjs.GradSaveFunc)[]) => {
    const values = inputs.map((_, i) => valuesView(args[i] as Tfjs.Tensor) as Float32Array);
    const r = run(values, wantGrad);
    const gradFunc = (dy: Tfjs.Tensor) => {
      if (!r.grads) throw makeError('ERR_INTERNAL', 'fusedloss/tfjs: a gradient was asked for a loss computed outside a gradient computation');
      const unit = dy.size === 1 && dy.dataSync()[0] === 1;
      return r.grads.map((g) => {
        const t = tf.tensor(g.data, g.shape as number[], 'float32');
        return unit ? t : tf.mul(t, dy);
      });
    };
    return { value: tf.scalar(r.loss), gradFunc };
  });
  return f(...inputs) as Tfjs.Scalar;
}

/** The gradients an embeddings result carries, in the order of the inputs (a, b[, bias][, scale]). */
function factorGrads(
  r: { loss: number; dScale?: number },
  dA: FlTensor | undefined,
  dB: FlTensor | undefined,
  dBias: Float32Array | undefined,
  scale: Tfjs.Tensor | undefined,
): FactorGrads {
  if (!dA || !dB) return { loss: r.loss };
  const grads = [
    { data: dA.data as Float32Array, shape: dA.shape },
    { data: dB.data as Float32Array, shape: dB.shape },
  ];
  if (dBias) grads.push({ data: dBias, shape: [dBias.length] });
  if (scale) grads.push({ data: Float32Array.of(r.dScale!), shape: scale.shape });
  return { loss: r.loss, grads };
}

/**
 * Cross-entropy of a linear layer's scores, softmaxCrossEntropy(hidden·weightᵀ + bias, labels),
 * as one tfjs op (`fusedloss` linearCrossEntropy, docs/MATH.md §3.9): gradients for `hidden`
 * [B, D], `weight` [N, D] (torch's nn.Linear layout: a tfjs Dense kernel [D, N] goes in as
 * `tf.transpose(kernel)`), `opts.bias` [N] and a tensor `opts.scale`, with no B×N matrix held.
 * `labels`: class ids (Int32Array or 1-D tf.Tensor) or a one-hot B×N tf.Tensor.
 */
export function linearCrossEntropy(hidden: Tfjs.Tensor, weight: Tfjs.Tensor, labels: Tfjs.Tensor | Int32Array, opts?: LinearCrossEntropyAdapterOptions): Tfjs.Scalar {
  const fn = 'linearCrossEntropy';
  const [h, w] = factorArgs(fn, ['hidden', 'weight'], hidden, weight);
  const { o, scale } = embeddingsOptions(fn, opts);
  const bias = o.bias === undefined ? undefined : tfArg(fn, 'opts.bias', o.bias, 1, `a rank-1 tf.Tensor [${w.shape[0]}]`);
  delete o.bias;
  const y = labelsArg(fn, labels, h.shape[0], w.shape[0], typeof o.ignoreIndex === 'number' ? o.ignoreIndex : -100);
  const inputs = [h, w, ...(bias ? [bias] : []), ...(scale ? [scale] : [])];
  return fusedFactors(inputs, (v, grad) => {
    const r: LinearCrossEntropyResult = flLinearCrossEntropy(flTensor(v[0], h.shape), flTensor(v[1], w.shape), y, {
      ...o,
      ...(bias ? { bias: v[2] } : {}),
      ...(scale ? { scale: v[inputs.length - 1][0], gradScale: grad } : {}),
      grad,
    } as LinearCrossEntropyOptions);
    return factorGrads(r, r.gradHidden, r.gradWeight, r.gradBias, scale);
  });
}

/** An embeddings form's call: the factors checked, the core function run inside {@link fusedFactors}. */
function embeddingsLoss(fn: string, queries: unknown, keys: unknown, o: Record<string, unknown>, scale: Tfjs.Tensor | undefined, core: (q: FlTensor, k: FlTensor, o: Record<string, unknown>) => EmbeddingsLossResult): Tfjs.Scalar {
  const [q, k] = factorArgs(fn, ['queries', 'keys'], queries, keys);
  const bias = o.bias === undefined ? undefined : tfArg(fn, 'opts.bias', o.bias, 1, `a rank-1 tf.Tensor [${k.shape[0]}]`);
  const rest = { ...o };
  delete rest.bias;
  const inputs = [q, k, ...(bias ? [bias] : []), ...(scale ? [scale] : [])];
  return fusedFactors(inputs, (v, grad) => {
    const r = core(flTensor(v[0], q.shape), flTensor(v[1], k.shape), {
      ...rest,
      ...(bias ? { bias: v[2] } : {}),
      ...(scale ? { scale: v[inputs.length - 1][0], gradScale: grad } : {}),
      grad,
    });
    return factorGrads(r, r.gradQueries, r.gradKeys, r.gradBias, scale);
  });
}

function positivesFromEmbeddings<O extends PositivesEmbeddingsOptions>(fn: string, core: (q: FlTensor, k: FlTensor, p: Positives, o: O) => EmbeddingsLossResult) {
  return (queries: Tfjs.Tensor, keys: Tfjs.Tensor, positives: PositivesInput, opts?: EmbeddingsAdapterOptions<O>): Tfjs.Scalar => {
    const { o, scale } = embeddingsOptions(fn, opts);
    const [q, k] = factorArgs(fn, ['queries', 'keys'], queries, keys);
    const p = positivesArg(fn, positives, q.shape[0], k.shape[0]);
    return embeddingsLoss(fn, q, k, o, scale, (qq, kk, oo) => core(qq, kk, p, oo as O));
  };
}

function contrastiveFromEmbeddings<O extends InfoNCEEmbeddingsOptions | DecoupledContrastiveEmbeddingsOptions>(fn: string, core: (q: FlTensor, k: FlTensor, o: O) => EmbeddingsLossResult) {
  return (queries: Tfjs.Tensor, keys: Tfjs.Tensor, opts?: EmbeddingsAdapterOptions<O> & { positives?: PositivesInput }): Tfjs.Scalar => {
    const { o, scale } = embeddingsOptions(fn, opts);
    const [q, k] = factorArgs(fn, ['queries', 'keys'], queries, keys);
    if (o.positives !== undefined) o.positives = positivesArg(fn, o.positives, q.shape[0], k.shape[0]);
    return embeddingsLoss(fn, q, k, o, scale, (qq, kk, oo) => core(qq, kk, oo as O));
  };
}

/** decoupledSoftmax (MATH decoupledSoftmax, native/ops/positives_math.h) on S = queries·keysᵀ (cosine with `normalize`) as one tfjs op, with gradients for queries [B, D] and keys [N, D]; positives as CSR or a dense multi-hot tensor. */
export const decoupledSoftmaxFromEmbeddings = positivesFromEmbeddings<PositivesEmbeddingsOptions>('decoupledSoftmaxFromEmbeddings', flDecoupledSoftmaxFromEmbeddings);
/** multiLabelSoftmax (MATH multiLabelSoftmax, native/ops/positives_math.h) on S = queries·keysᵀ as one tfjs op; see {@link decoupledSoftmaxFromEmbeddings}. */
export const multiLabelSoftmaxFromEmbeddings = positivesFromEmbeddings<PositivesEmbeddingsOptions>('multiLabelSoftmaxFromEmbeddings', flMultiLabelSoftmaxFromEmbeddings);
/** binaryCrossEntropy (MATH binaryCrossEntropy, native/ops/positives_math.h) on S = queries·keysᵀ as one tfjs op; see {@link decoupledSoftmaxFromEmbeddings}. */
export const binaryCrossEntropyFromEmbeddings = positivesFromEmbeddings<PositivesEmbeddingsOptions>('binaryCrossEntropyFromEmbeddings', flBinaryCrossEntropyFromEmbeddings);
/** softTopKLoss (MATH softTopKLoss, native/ops/soft_topk_math.h) on S = queries·keysᵀ as one tfjs op; see {@link decoupledSoftmaxFromEmbeddings}. */
export const softTopKLossFromEmbeddings = positivesFromEmbeddings<SoftTopKLossEmbeddingsOptions>('softTopKLossFromEmbeddings', flSoftTopKLossFromEmbeddings);
/** InfoNCE (MATH infoNCE, native/ops/contrastive_math.h) on S = queries·keysᵀ as one tfjs op: diagonal positives by default, `symmetric: true` for CLIP, or `opts.positives` (CSR or dense); a tensor `opts.scale` learns the temperature. */
export const infoNCEFromEmbeddings = contrastiveFromEmbeddings<InfoNCEEmbeddingsOptions>('infoNCEFromEmbeddings', flInfoNCEFromEmbeddings);
/** Decoupled contrastive loss DCL/DCLW (MATH decoupledContrastive, native/ops/contrastive_math.h) on S = queries·keysᵀ as one tfjs op: the diagonal positive by default, or one per row in `opts.positives`. */
export const decoupledContrastiveFromEmbeddings = contrastiveFromEmbeddings<DecoupledContrastiveEmbeddingsOptions>('decoupledContrastiveFromEmbeddings', flDecoupledContrastiveFromEmbeddings);
