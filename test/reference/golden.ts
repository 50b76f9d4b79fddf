/**
 * The PyTorch float64 golden cases (test/fixtures/cases.jsonl, a copy of shared/golden), and the
 * mapping from a case to its reference call. `opts` carries the TypeScript API's option names
 * (the API names), which are also the references' option names, so a case's opts can be passed to the
 * kernel and to the reference alike.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ops } from '../../scripts/ops.mjs';
import { refSoftTopK, refSoftTopKVjp } from '../../scripts/ops/softTopKLoss.mjs';
import type { RefResult, RefSoftTopKResult } from './types.js';

/** An op of the registry (scripts/ops.mjs) by name, or 'softTopK' (the operator, which is not a loss). */
export type GoldenFn = string;

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

/**
 * Runs the reference of c.fn on the case's scores, targets and options: the registry entry's
 * reference, given the arguments its `args` name after the scores (labels or positives), so that
 * a loss's golden cases need no line here.
 */
export function runReference(c: GoldenCase): GoldenResult {
  const [B, N] = c.shape;
  const o = c.opts;
  if (c.fn === 'softTopK') {
    const k = need(c.k, 'k', c);
    const r = refSoftTopK(c.S, B, N, k, o);
    return { ...r, grad: refSoftTopKVjp(c.S, B, N, k, o, need(c.upstream, 'upstream', c)) };
  }
  const op = ops.find((e: { name: string }) => e.name === c.fn);
  if (!op) throw new Error(`golden case with unknown fn ${String(c.fn)}`);
  const targets = (op.args as string[]).slice(1).map((kind) => need((c as unknown as Record<string, unknown>)[kind], kind, c));
  return op.reference(c.S, B, N, ...targets, o) as RefResult;
}
