/**
 * The losses the demo can train with: one entry each, every one a fusedloss call from
 * embeddings (queries Q, B×D, against all label embeddings K, N×D) that returns the loss and
 * the gradients for both, without a B×N score matrix. An entry is offered only when the
 * fusedloss build in use exports its function, so the list grows as losses land.
 */
import * as fl from 'fusedloss';
import type { LabelSets } from './data';
import { normalizeRows, normalizeRowsBackward } from './model';

type Options = fl.EmbeddingsLossOptions & Record<string, unknown>;
/** A loss from embeddings with its positives as third argument, e.g. decoupledSoftmaxFromEmbeddings. */
type PositivesLoss = (queries: fl.Tensor, keys: fl.Tensor, positives: LabelSets, opts: Options) => fl.EmbeddingsLossResult;
/** One that takes its positives in `opts.positives`, e.g. infoNCEFromEmbeddings. */
type OptsPositivesLoss = (queries: fl.Tensor, keys: fl.Tensor, opts: Options) => fl.EmbeddingsLossResult;

export interface LossEntry {
  /** The `--loss` value. */
  name: string;
  /** The fusedloss export it calls. */
  fn: string;
  /** One line for --help and the comparison table. */
  what: string;
  /** Loss-specific options (the common ones, scale and the gradient buffers, are added by the trainer). */
  opts: Record<string, unknown>;
  /**
   * How the function takes the positives: its third argument (default), `opts.positives`, or
   * as one label per row (linearCrossEntropy, a linear layer's cross-entropy: no `normalize`, so
   * the cosine is taken here).
   */
  positivesIn?: 'arg' | 'opts' | 'labels';
}

export const LOSSES: readonly LossEntry[] = [
  { name: 'softmax', fn: 'multiLabelSoftmaxFromEmbeddings', what: "DEXML 'softmax': each positive against all labels", opts: {} },
  { name: 'decoupled', fn: 'decoupledSoftmaxFromEmbeddings', what: 'DEXML decoupled softmax: each positive against the negatives only', opts: {} },
  { name: 'topk', fn: 'softTopKLossFromEmbeddings', what: 'DEXML soft top-k: positives pushed into a soft top-5', opts: { k: 5, alpha: 2 } },
  { name: 'infonce', fn: 'infoNCEFromEmbeddings', what: 'InfoNCE, SupCon form: the mean over positives of each against all labels', opts: {}, positivesIn: 'opts' },
  { name: 'bce', fn: 'binaryCrossEntropyFromEmbeddings', what: 'one-vs-all binary cross-entropy', opts: {} },
  { name: 'ce', fn: 'linearCrossEntropy', what: 'cross-entropy with one positive sampled per document and step', opts: {}, positivesIn: 'labels' },
];

const exported = (fn: string): unknown => (fl as unknown as Record<string, unknown>)[fn];

/** The entries this build of fusedloss can run. */
export const availableLosses = (): LossEntry[] => LOSSES.filter((e) => typeof exported(e.fn) === 'function');

/** One step's host buffers: the embeddings (bag means, not normalised) and their gradients (overwritten). */
export interface StepBuffers {
  /** Queries, B×D, and label embeddings, N×D; the ce entry normalises them in place. */
  queries: fl.Tensor;
  keys: fl.Tensor;
  /** dL/dqueries (B×D) and dL/dkeys (N×D). */
  gradQueries: fl.Tensor;
  gradKeys: fl.Tensor;
}

/** What every loss call of a run gets. */
export interface CallOptions {
  /** 1/τ. */
  scale: number;
  /** Bytes of scratch for the score chunks (fusedloss `memoryBudget`). */
  memoryBudget: number;
  device: fl.Device;
}

const data = (t: fl.Tensor) => t.data as Float32Array;

/**
 * Runs the call `f` on the step's queries and keys on `device`: on the CPU its gradients go
 * straight into the step's buffers (`into` names the option keys), on a GPU the inputs are
 * copied over and the gradients back.
 */
function onDevice(
  device: fl.Device,
  b: StepBuffers,
  into: [string, string],
  f: (q: fl.Tensor, k: fl.Tensor, grads: Record<string, fl.Tensor>) => { loss: number },
): number {
  if (device === 'cpu') return f(b.queries, b.keys, { [into[0]]: b.gradQueries, [into[1]]: b.gradKeys }).loss;
  const q = fl.toDevice(b.queries);
  const k = fl.toDevice(b.keys);
  try {
    const r = f(q, k, {});
    for (const [key, to] of [[into[0], b.gradQueries], [into[1], b.gradKeys]] as const) {
      const g = (r as unknown as Record<string, fl.Tensor>)[key];
      data(to).set(data(fl.toHost(g)));
      g.dispose();
    }
    return r.loss;
  } finally {
    q.dispose();
    k.dispose();
  }
}

/**
 * Runs entry `e` on the cosine scores of the step's queries and keys times `scale` (1/τ),
 * writing the gradients with respect to the bag means into the step's gradient buffers;
 * returns the loss. Single-label losses see one positive per row, drawn with `pick` (uniform
 * over the row's positives).
 */
export function runLoss(e: LossEntry, b: StepBuffers, positives: LabelSets, c: CallOptions, pick: (n: number) => number): number {
  const { scale, memoryBudget, device } = c;
  if (e.positivesIn !== 'labels') {
    const fn = exported(e.fn);
    return onDevice(device, b, ['gradQueries', 'gradKeys'], (q, k, grads) => {
      const opts: Options = { ...e.opts, scale, normalize: true, memoryBudget, ...grads };
      return e.positivesIn === 'opts' ? (fn as OptsPositivesLoss)(q, k, { ...opts, positives }) : (fn as PositivesLoss)(q, k, positives, opts);
    });
  }
  const [B, D] = b.queries.shape;
  const N = b.keys.shape[0];
  const labels = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    const p0 = positives.rowPtr[i];
    const n = positives.rowPtr[i + 1] - p0;
    labels[i] = n > 0 ? positives.cols[p0 + pick(n)] : -100; // a document with no labels is ignored
  }
  // linearCrossEntropy is a linear layer's loss and has no `normalize`: the cosine is taken
  // here, and its gradients are chained back through the normalisation.
  const qNorm = new Float32Array(B);
  const kNorm = new Float32Array(N);
  normalizeRows(data(b.queries), B, D, qNorm);
  normalizeRows(data(b.keys), N, D, kNorm);
  const loss = onDevice(device, b, ['gradHidden', 'gradWeight'], (q, k, grads) => fl.linearCrossEntropy(q, k, labels, { ...e.opts, scale, memoryBudget, ...grads }));
  normalizeRowsBackward(data(b.queries), B, D, qNorm, data(b.gradQueries));
  normalizeRowsBackward(data(b.keys), N, D, kNorm, data(b.gradKeys));
  return loss;
}
