/**
 * The losses the demo can train with: one entry each. An entry is offered only when the
 * fusedloss build in use exports its function, so the list grows as losses land.
 */
import * as fl from 'fusedloss';
import type { LabelSets } from './data';

/** What a positives-taking fusedloss loss looks like (the API names), e.g. multiLabelSoftmax. */
type PositivesLoss = (scores: fl.Tensor, positives: LabelSets, opts: fl.LossOptions & Record<string, unknown>) => fl.LossResult;
/** A loss that takes its positives in `opts.positives` (the API names), e.g. infoNCE. */
type OptsPositivesLoss = (scores: fl.Tensor, opts: fl.LossOptions & Record<string, unknown>) => fl.LossResult;

export interface LossEntry {
  /** The `--loss` value. */
  name: string;
  /** The fusedloss export it calls. */
  fn: string;
  /** One line for --help and the comparison table. */
  what: string;
  /** Loss-specific options (the common ones, scale and out, are added by the trainer). */
  opts: Record<string, unknown>;
  /** Where the function takes the positives: its second argument (default) or `opts.positives`. */
  positivesIn?: 'arg' | 'opts';
}

export const LOSSES: readonly LossEntry[] = [
  { name: 'softmax', fn: 'multiLabelSoftmax', what: "DEXML 'softmax': each positive against all labels", opts: {} },
  { name: 'decoupled', fn: 'decoupledSoftmax', what: 'DEXML decoupled softmax: each positive against the negatives only', opts: {} },
  { name: 'topk', fn: 'softTopKLoss', what: 'DEXML soft top-k: positives pushed into a soft top-5', opts: { k: 5, alpha: 2 } },
  { name: 'infonce', fn: 'infoNCE', what: 'InfoNCE, SupCon form: the mean over positives of each against all labels', opts: {}, positivesIn: 'opts' },
  { name: 'bce', fn: 'binaryCrossEntropy', what: 'one-vs-all binary cross-entropy', opts: {} },
  { name: 'ce', fn: 'softmaxCrossEntropy', what: 'cross-entropy with one positive sampled per document and step', opts: {} },
];

const exported = (fn: string): unknown => (fl as unknown as Record<string, unknown>)[fn];

/** The entries this build of fusedloss can run. */
export const availableLosses = (): LossEntry[] => LOSSES.filter((e) => typeof exported(e.fn) === 'function');

/**
 * Runs entry `e` on scores (B×N) with each row's positives. Single-label losses see one
 * positive per row, drawn with `pick` (uniform over the row's positives).
 */
export function runLoss(e: LossEntry, scores: fl.Tensor, positives: LabelSets, opts: fl.LossOptions, pick: (n: number) => number): fl.LossResult {
  const all = { ...e.opts, ...opts };
  if (e.fn === 'softmaxCrossEntropy') {
    const B = positives.rowPtr.length - 1;
    const labels = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      const p0 = positives.rowPtr[i];
      const n = positives.rowPtr[i + 1] - p0;
      labels[i] = n > 0 ? positives.cols[p0 + pick(n)] : -100; // a document with no labels is ignored
    }
    return fl.softmaxCrossEntropy(scores, labels, all);
  }
  if (e.positivesIn === 'opts') return (exported(e.fn) as OptsPositivesLoss)(scores, { ...all, positives });
  return (exported(e.fn) as PositivesLoss)(scores, positives, all);
}
