/**
 * Training and evaluation of the dual encoder: every step embeds a batch of documents and all
 * labels (DEXML's "all labels in batch"), takes the loss and its gradients with respect to both
 * embeddings from one fusedloss call, and scatters them into the embedding table.
 */
import * as fl from 'fusedloss';
import { makeRng, rows, type Dataset, type LabelSets } from './data';
import { runLoss, type LossEntry, type StepBuffers } from './losses';
import { Encoder, foldTopK, normalizeRows, scoresAll, topK } from './model';

export interface TrainOptions {
  epochs: number;
  batch: number;
  dim: number;
  /** Temperature τ: the loss sees cosine / τ (fusedloss `scale: 1/τ`). */
  tau: number;
  lr: number;
  seed: number;
  device: fl.Device;
  /** Bytes of scratch each loss call may use for its chunks of scores (default fusedloss's, 32 MiB). */
  memoryBudget?: number;
  /** Progress output (a TTY gets a live bar); null for none. */
  progress: NodeJS.WriteStream | null;
}

export interface EpochStats {
  loss: number;
  seconds: number;
  docsPerSecond: number;
}

export interface TrainResult {
  loss: string;
  epochs: EpochStats[];
  /** P@1, P@3, P@5 on the test split. */
  precision: [number, number, number];
  /** Seconds spent in the fusedloss call (incl. device copies) vs the encoder, over all steps. */
  lossSeconds: number;
  encoderSeconds: number;
  steps: number;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** The CSR label sets of rows `ids` of `all`. */
function subset(all: LabelSets, ids: Int32Array): LabelSets {
  const rowPtr = new Int32Array(ids.length + 1);
  for (let r = 0; r < ids.length; r++) rowPtr[r + 1] = rowPtr[r] + all.rowPtr[ids[r] + 1] - all.rowPtr[ids[r]];
  const cols = new Int32Array(rowPtr[ids.length]);
  for (let r = 0; r < ids.length; r++) cols.set(all.cols.subarray(all.rowPtr[ids[r]], all.rowPtr[ids[r] + 1]), rowPtr[r]);
  return { rowPtr, cols };
}

function bar(out: NodeJS.WriteStream, epoch: number, epochs: number, done: number, total: number, loss: number, rate: number, final: boolean) {
  const width = 30;
  const fill = Math.round((width * done) / total);
  const line = `epoch ${epoch}/${epochs} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(Math.round((100 * done) / total)).padStart(3)}%  loss ${loss.toFixed(4)}  ${Math.round(rate)} docs/s`;
  if (out.isTTY) out.write(`\r${line}${final ? '\n' : ''}`);
  else if (final) out.write(`${line}\n`);
}

/** Trains a fresh encoder on ds.train with loss `entry` and evaluates it on ds.test. */
export function train(ds: Dataset, entry: LossEntry, o: TrainOptions): TrainResult {
  const rng = makeRng(o.seed);
  const enc = new Encoder(ds.vocab, o.dim, rng);
  const D = o.dim;
  const L = ds.numLabels;
  const nTrain = rows(ds.train.docs);
  const B = Math.min(o.batch, nTrain);
  const Q = new Float32Array(B * D);
  const dQ = new Float32Array(B * D);
  const K = new Float32Array(L * D);
  const dK = new Float32Array(L * D);
  const step = (n: number): StepBuffers => ({
    queries: fl.tensor(Q.subarray(0, n * D), [n, D]),
    keys: fl.tensor(K, [L, D]),
    gradQueries: fl.tensor(dQ.subarray(0, n * D), [n, D]),
    gradKeys: fl.tensor(dK, [L, D]),
  });
  const full = step(B);
  const call = { scale: 1 / o.tau, memoryBudget: o.memoryBudget ?? fl.DEFAULT_MEMORY_BUDGET, device: o.device };
  const order = Int32Array.from({ length: nTrain }, (_, i) => i);
  const epochs: EpochStats[] = [];
  let lossSeconds = 0;
  let encoderSeconds = 0;
  let allSteps = 0;
  for (let ep = 1; ep <= o.epochs; ep++) {
    for (let i = nTrain - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const t0 = now();
    let lossSum = 0;
    let steps = 0;
    for (let b0 = 0; b0 < nTrain; b0 += B) {
      const ids = order.subarray(b0, Math.min(nTrain, b0 + B));
      const n = ids.length;
      const ts = now();
      enc.encode(ds.train.docs, ids, Q);
      enc.encode(ds.labelBags, null, K);
      const tl = now();
      const loss = runLoss(entry, n === B ? full : step(n), subset(ds.train.labels, ids), call, rng.int);
      const te = now();
      enc.backward(ds.train.docs, ids, dQ);
      enc.backward(ds.labelBags, null, dK);
      enc.adam(o.lr);
      const t1 = now();
      lossSeconds += te - tl;
      encoderSeconds += tl - ts + (t1 - te);
      lossSum += loss;
      steps++;
      allSteps++;
      if (o.progress && (steps % 4 === 0 || b0 + B >= nTrain)) {
        const dt = t1 - t0;
        bar(o.progress, ep, o.epochs, b0 + n, nTrain, lossSum / steps, (b0 + n) / dt, b0 + B >= nTrain);
      }
    }
    const seconds = now() - t0;
    epochs.push({ loss: lossSum / steps, seconds, docsPerSecond: nTrain / seconds });
  }
  return { loss: entry.name, epochs, precision: evaluate(ds, enc), lossSeconds, encoderSeconds, steps: allSteps };
}

/** P@1/3/5 of a ranking: (1/k)·|top-k ∩ labels|, averaged over the test documents. */
function precisionAt(labels: LabelSets, top: Int32Array, first: number, count: number, acc: Float64Array): void {
  for (let r = 0; r < count; r++) {
    const i = first + r;
    const have = labels.cols.subarray(labels.rowPtr[i], labels.rowPtr[i + 1]);
    let hits = 0;
    for (let k = 0; k < 5; k++) {
      if (have.includes(top[r * 5 + k])) hits++;
      if (k === 0) acc[0] += hits;
      if (k === 2) acc[1] += hits / 3;
      if (k === 4) acc[2] += hits / 5;
    }
  }
}

/** Scratch for the evaluation's score tiles: rows × columns floats, whatever the number of labels. */
const EVAL_ROWS = 256;
const EVAL_COLS = 4096;

/**
 * P@1/3/5 on ds.test by exact nearest neighbours (cosine) over all label embeddings. The scores
 * are taken a tile of EVAL_ROWS documents × EVAL_COLS labels at a time and folded into each
 * document's running top 5, so memory does not grow with documents × labels.
 */
export function evaluate(ds: Dataset, enc: Encoder): [number, number, number] {
  const D = enc.dim;
  const L = ds.numLabels;
  const K = new Float32Array(L * D);
  enc.encode(ds.labelBags, null, K);
  normalizeRows(K, L, D, new Float32Array(L));
  const n = rows(ds.test.docs);
  const Q = new Float32Array(EVAL_ROWS * D);
  const qNorm = new Float32Array(EVAL_ROWS);
  const cols = Math.min(EVAL_COLS, L);
  const S = new Float32Array(EVAL_ROWS * cols);
  const best = new Float32Array(EVAL_ROWS * 5);
  const top = new Int32Array(EVAL_ROWS * 5);
  const acc = new Float64Array(3);
  for (let c0 = 0; c0 < n; c0 += EVAL_ROWS) {
    const m = Math.min(EVAL_ROWS, n - c0);
    const ids = Int32Array.from({ length: m }, (_, r) => c0 + r);
    enc.encode(ds.test.docs, ids, Q);
    normalizeRows(Q, m, D, qNorm);
    best.fill(-Infinity);
    top.fill(-1);
    for (let j0 = 0; j0 < L; j0 += cols) {
      const w = Math.min(cols, L - j0);
      scoresAll(Q, m, K.subarray(j0 * D, (j0 + w) * D), w, D, S);
      foldTopK(S, m, w, j0, 5, best, top);
    }
    precisionAt(ds.test.labels, top, c0, m, acc);
  }
  return [acc[0] / n, acc[1] / n, acc[2] / n];
}

/** The baseline every model must beat: the 5 most frequent training labels for every document. */
export function popularity(ds: Dataset): [number, number, number] {
  const freq = new Float32Array(ds.numLabels);
  for (const l of ds.train.labels.cols) freq[l]++;
  const top1 = new Int32Array(5);
  topK(freq, 1, ds.numLabels, 5, top1);
  const n = rows(ds.test.docs);
  const top = new Int32Array(n * 5);
  for (let i = 0; i < n; i++) top.set(top1, i * 5);
  const acc = new Float64Array(3);
  precisionAt(ds.test.labels, top, 0, n, acc);
  return [acc[0] / n, acc[1] / n, acc[2] / n];
}
