/**
 * The PyTorch float64 golden cases (test/fixtures/cases.jsonl, a copy of shared/golden), and the
 * mapping from a case to its reference call. `opts` carries the TypeScript API's option names
 * (the API names), which are also the references' option names, so a case's opts can be passed to the
 * kernel and to the reference alike.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { refBinaryCrossEntropy, type RefBinaryCrossEntropyOptions } from './binaryCrossEntropy.js';
import { refDecoupledContrastive, type RefDecoupledContrastiveOptions } from './decoupledContrastive.js';
import { refDecoupledSoftmax, type RefDecoupledSoftmaxOptions } from './decoupledSoftmax.js';
import { refInfoNCE, type RefInfoNCEOptions } from './infoNCE.js';
import { refMultiLabelSoftmax, type RefMultiLabelSoftmaxOptions } from './multiLabelSoftmax.js';
import { refSoftmaxCrossEntropy, type RefCrossEntropyOptions } from './softmaxCrossEntropy.js';
import { refSoftTopK, refSoftTopKVjp, type RefSoftTopKOptions } from './softTopK.js';
import { refSoftTopKLoss, type RefSoftTopKLossOptions } from './softTopKLoss.js';
import type { RefResult, RefSoftTopKResult } from './types.js';

export type GoldenFn =
  | 'softmaxCrossEntropy'
  | 'multiLabelSoftmax'
  | 'infoNCE'
  | 'decoupledSoftmax'
  | 'decoupledContrastive'
  | 'binaryCrossEntropy'
  | 'softTopK'
  | 'softTopKLoss';

export interface GoldenCase {
  fn: GoldenFn;
  shape: [number, number];
  /** Row-major scores, exactly representable in fp32. */
  S: number[];
  /** The options of the TypeScript call (the API names names). */
  opts: Record<string, unknown>;
  /** softmaxCrossEntropy. */
  labels?: number[];
  /** The losses that take positives as an argument. */
  positives?: { rowPtr: number[]; cols: number[]; weights?: number[] };
  /** softTopK operator: k, and the upstream gradient of its values that `grad` belongs to. */
  k?: number | number[];
  upstream?: number[];
  /** The loss; NaN for the softTopK operator, which has none (the file omits it). */
  loss: number;
  /** dL/dS, or for softTopK the vector-Jacobian product with `upstream`. */
  grad: number[];
  dScale?: number;
  /** softTopK operator outputs. */
  values?: number[];
  threshold?: number[];
}

export function loadGoldenCases(): GoldenCase[] {
  const file = fileURLToPath(new URL('../fixtures/cases.jsonl', import.meta.url));
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const c = JSON.parse(l) as Omit<GoldenCase, 'loss'> & { loss?: number };
      return { ...c, loss: c.loss ?? Number.NaN };
    });
}

/** The softTopK operator's reference outputs plus its vjp with the case's `upstream`. */
export interface RefSoftTopKCaseResult extends RefSoftTopKResult {
  grad: Float64Array;
}

export type GoldenResult = RefResult | RefSoftTopKCaseResult;

function need<T>(value: T | undefined, what: string, c: GoldenCase): T {
  if (value === undefined) throw new Error(`golden ${c.fn} case has no ${what}`);
  return value;
}

/** Runs the reference named by c.fn on the case's scores, targets and options. */
export function runReference(c: GoldenCase): GoldenResult {
  const [B, N] = c.shape;
  const o = c.opts;
  switch (c.fn) {
    case 'softmaxCrossEntropy':
      return refSoftmaxCrossEntropy(c.S, B, N, need(c.labels, 'labels', c), o as RefCrossEntropyOptions);
    case 'multiLabelSoftmax':
      return refMultiLabelSoftmax(c.S, B, N, need(c.positives, 'positives', c), o as RefMultiLabelSoftmaxOptions);
    case 'infoNCE':
      return refInfoNCE(c.S, B, N, o as RefInfoNCEOptions);
    case 'decoupledSoftmax':
      return refDecoupledSoftmax(c.S, B, N, need(c.positives, 'positives', c), o as RefDecoupledSoftmaxOptions);
    case 'decoupledContrastive':
      return refDecoupledContrastive(c.S, B, N, o as RefDecoupledContrastiveOptions);
    case 'binaryCrossEntropy':
      return refBinaryCrossEntropy(c.S, B, N, need(c.positives, 'positives', c), o as RefBinaryCrossEntropyOptions);
    case 'softTopKLoss':
      return refSoftTopKLoss(c.S, B, N, need(c.positives, 'positives', c), o as RefSoftTopKLossOptions);
    case 'softTopK': {
      const k = need(c.k, 'k', c);
      const r = refSoftTopK(c.S, B, N, k, o as RefSoftTopKOptions);
      return { ...r, grad: refSoftTopKVjp(c.S, B, N, k, o as RefSoftTopKOptions, need(c.upstream, 'upstream', c)) };
    }
    default:
      throw new Error(`golden case with unknown fn ${String((c as { fn: unknown }).fn)}`);
  }
}
