#!/usr/bin/env node
// Label-sharded training across R Node processes (child_process.fork), with fusedloss's
// shardedLoss('decoupledSoftmax', ...) and an all-reduce over the processes' IPC channels.
//
// The model is the demo's dual encoder (demo/model.ts: one embedding table shared by
// documents and labels, embedding-bag + L2 norm) on the demo's synthetic XMC data
// (demo/data.ts). The table is replicated on every rank; the labels are not: rank r encodes
// only its labels [off_r, off_r + N_r), scores the batch against them (B × N_r), and takes the
// loss and its gradient block from the sharded loss. Per step, besides the loss's own rounds,
// the ranks sum dL/dQ (B × D: every rank's labels touch every query) and the table rows the
// label descriptions read (each rank's label-side gradient), so the replicas stay identical.
//
//   npm run build:ts                         # dist/ and dist/demo/ (once)
//   node examples/sharded/train.mjs          # the unsharded run, then R = 4 processes
//   node examples/sharded/train.mjs --ranks 3 --epochs 2 --labels 1000
//
// The transport lives here, not in the library: the parent process is the hub of a star
// all-reduce (it sums or maxes the R buffers of each round in rank order and sends the result
// back to every rank). Replace `allReduce` by MPI, NCCL or gloo and nothing else changes.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const dist = path.join(here, '..', '..', 'dist');
const fl = require(path.join(dist, 'index.js'));
const { synthetic, makeRng, rows } = require(path.join(dist, 'demo', 'data.js'));
const { Encoder, normalizeRows, normalizeRowsBackward, scoresAll } = require(path.join(dist, 'demo', 'model.js'));
const { evaluate } = require(path.join(dist, 'demo', 'train.js'));

const defaults = { ranks: 4, epochs: 3, labels: 2000, docs: 12000, dim: 32, batch: 256, tau: 0.05, lr: 0.01, seed: 1 };

function parseArgs(argv) {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (key === 'help' || !(key in o)) {
      console.log(`usage: node examples/sharded/train.mjs [${Object.keys(o).map((k) => `--${k} ${o[k]}`).join('] [')}]`);
      process.exit(key === 'help' ? 0 : 1);
    }
    o[key] = Number(argv[++i]);
  }
  return o;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** The CSR label sets of rows `ids` (global label indices, as the sharded loss takes them). */
function subset(all, ids) {
  const rowPtr = new Int32Array(ids.length + 1);
  for (let r = 0; r < ids.length; r++) rowPtr[r + 1] = rowPtr[r] + all.rowPtr[ids[r] + 1] - all.rowPtr[ids[r]];
  const cols = new Int32Array(rowPtr[ids.length]);
  for (let r = 0; r < ids.length; r++) cols.set(all.cols.subarray(all.rowPtr[ids[r]], all.rowPtr[ids[r] + 1]), rowPtr[r]);
  return { rowPtr, cols };
}

/**
 * The backward of S = Q·Kᵀ (B × N, K being N × D), G = dL/dS: dQ = G·K and dK = Gᵀ·Q (both
 * overwritten). The sharded loss takes a score block, so this example forms it and its backward.
 */
function scoresBackward(G, Q, B, K, N, D, dQ, dK) {
  dQ.fill(0, 0, B * D);
  dK.fill(0, 0, N * D);
  for (let i = 0; i < B; i++)
    for (let j = 0; j < N; j++) {
      const g = G[i * N + j];
      if (g === 0) continue;
      for (let d = 0; d < D; d++) {
        dQ[i * D + d] += g * K[j * D + d];
        dK[j * D + d] += g * Q[i * D + d];
      }
    }
}

/** Rank r's labels: [offset, offset + count) of L, as even as can be. */
const shardOf = (L, R, r) => {
  const offset = Math.floor((L * r) / R);
  return { offset, count: Math.floor((L * (r + 1)) / R) - offset };
};

/**
 * Trains the dual encoder. `allReduce` null: one process, the unsharded decoupledSoftmax over
 * all labels. Otherwise rank `rank` of `ranks`, the sharded loss over its labels.
 */
async function train(o, rank, ranks, allReduce) {
  const ds = synthetic({ seed: o.seed, labels: o.labels, docs: o.docs, testFraction: 0.2 });
  const rng = makeRng(o.seed);
  const enc = new Encoder(ds.vocab, o.dim, rng);
  const D = o.dim, L = ds.numLabels;
  const { offset, count: Nr } = allReduce ? shardOf(L, ranks, rank) : { offset: 0, count: L };
  const myLabels = Int32Array.from({ length: Nr }, (_, j) => offset + j);
  // The table rows any label description reads: the label side of the table gradient.
  const descRows = Int32Array.from(new Set(ds.labelBags.tok)).sort();
  const nTrain = rows(ds.train.docs);
  const B = Math.min(o.batch, nTrain);
  const Q = new Float32Array(B * D), qNorm = new Float32Array(B), dQ = new Float32Array(B * D);
  const K = new Float32Array(Nr * D), kNorm = new Float32Array(Nr), dK = new Float32Array(Nr * D);
  const S = new Float32Array(B * Nr);
  const order = Int32Array.from({ length: nTrain }, (_, i) => i);
  const stats = { lossSeconds: 0, stepSeconds: 0, steps: 0, lossFloats: 0, modelFloats: 0, rounds: 0, epochLoss: [] };
  for (let ep = 1; ep <= o.epochs; ep++) {
    for (let i = nTrain - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    let lossSum = 0, steps = 0;
    for (let b0 = 0; b0 < nTrain; b0 += B) {
      const t0 = now();
      const ids = order.subarray(b0, Math.min(nTrain, b0 + B));
      const n = ids.length;
      enc.encode(ds.train.docs, ids, Q);
      normalizeRows(Q, n, D, qNorm);
      enc.encode(ds.labelBags, myLabels, K);
      normalizeRows(K, Nr, D, kNorm);
      scoresAll(Q, n, K, Nr, D, S);
      const positives = subset(ds.train.labels, ids);
      const tl = now();
      let r;
      if (allReduce) {
        const job = fl.shardedLoss('decoupledSoftmax', S.subarray(0, n * Nr), positives, { shape: [n, Nr], columnOffset: offset, totalColumns: L, scale: 1 / o.tau });
        r = await job.run(allReduce);
        stats.lossFloats += r.exchange.floats;
        stats.rounds += r.exchange.rounds;
      } else {
        r = fl.decoupledSoftmax(fl.tensor(S.subarray(0, n * Nr), [n, Nr]), positives, { scale: 1 / o.tau });
      }
      stats.lossSeconds += now() - tl;
      scoresBackward(r.grad.data, Q, n, K, Nr, D, dQ, dK);
      normalizeRowsBackward(K, Nr, D, kNorm, dK);
      enc.backward(ds.labelBags, myLabels, dK);
      if (allReduce) {
        // dL/dQ = Σ_r G_r·K_r, and the label side of the table gradient, summed over the ranks.
        dQ.set((await allReduce(dQ.subarray(0, n * D), 'sum')).subarray(0, n * D));
        const rowsBuf = new Float32Array(descRows.length * D);
        descRows.forEach((t, k) => rowsBuf.set(enc.grad.subarray(t * D, (t + 1) * D), k * D));
        const summed = await allReduce(rowsBuf, 'sum');
        descRows.forEach((t, k) => enc.grad.set(summed.subarray(k * D, (k + 1) * D), t * D));
        stats.modelFloats += n * D + rowsBuf.length;
      }
      normalizeRowsBackward(Q, n, D, qNorm, dQ);
      enc.backward(ds.train.docs, ids, dQ);
      enc.adam(o.lr);
      stats.stepSeconds += now() - t0;
      lossSum += r.loss;
      steps++;
      stats.steps++;
    }
    stats.epochLoss.push(lossSum / steps);
  }
  // Every replica holds the same table: rank 0 evaluates over all labels.
  const precision = rank === 0 ? evaluate(ds, enc) : undefined;
  return { ...stats, precision, dataset: ds.name, labelsHeld: Nr };
}

// ---------------------------------------------------------------------------------------------
// A rank: a child process whose collective is its IPC channel to the parent.
if (process.env.FUSEDLOSS_EXAMPLE_RANK !== undefined) {
  const rank = Number(process.env.FUSEDLOSS_EXAMPLE_RANK);
  const ranks = Number(process.env.FUSEDLOSS_EXAMPLE_RANKS);
  const o = JSON.parse(process.env.FUSEDLOSS_EXAMPLE_OPTIONS);
  let waiting = null;
  process.on('message', (m) => {
    if (m.type !== 'reduced') return;
    const resolve = waiting;
    waiting = null;
    resolve(m.buffer);
  });
  // One round at a time: the protocol awaits each all-reduce before the next.
  const allReduce = (buffer, op) =>
    new Promise((resolve) => {
      waiting = resolve;
      process.send({ type: 'reduce', op, buffer });
    });
  const result = await train(o, rank, ranks, allReduce);
  process.send({ type: 'done', result });
  process.disconnect();
} else {
  await main(parseArgs(process.argv.slice(2)));
}

// ---------------------------------------------------------------------------------------------
// The parent: the hub of the all-reduce, and the unsharded baseline.

/** Starts R ranks and serves their all-reduce rounds; resolves to their results. */
function runRanks(o) {
  const R = o.ranks;
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const results = new Array(R);
    let pending = new Array(R), arrived = 0, finished = 0;
    const children = Array.from({ length: R }, (_, rank) =>
      fork(self, [], {
        // 'advanced': structured clone, so Float32Arrays travel as binary, not JSON.
        serialization: 'advanced',
        env: { ...process.env, FUSEDLOSS_EXAMPLE_RANK: String(rank), FUSEDLOSS_EXAMPLE_RANKS: String(R), FUSEDLOSS_EXAMPLE_OPTIONS: JSON.stringify(o), FUSEDLOSS_THREADS: '1' },
      }),
    );
    children.forEach((child, rank) => {
      child.on('message', (m) => {
        if (m.type === 'done') {
          results[rank] = m.result;
          if (++finished === R) resolve(results);
          return;
        }
        pending[rank] = m;
        if (++arrived < R) return;
        const calls = pending;
        pending = new Array(R);
        arrived = 0;
        const n = calls[0].buffer.length;
        if (calls.some((c) => c.buffer.length !== n || c.op !== calls[0].op)) {
          reject(new Error(`ranks disagree on a round: lengths ${calls.map((c) => c.buffer.length)}, ops ${calls.map((c) => c.op)}`));
          children.forEach((c) => c.kill());
          return;
        }
        const out = Float32Array.from(calls[0].buffer);
        for (let r = 1; r < R; r++) {
          const b = calls[r].buffer;
          if (calls[0].op === 'sum') for (let k = 0; k < n; k++) out[k] += b[k];
          else for (let k = 0; k < n; k++) out[k] = Math.max(out[k], b[k]);
        }
        for (const c of children) c.send({ type: 'reduced', buffer: out });
      });
      child.on('exit', (code) => {
        if (code !== 0) reject(new Error(`rank ${rank} exited with code ${code}`));
      });
    });
  });
}

async function main(o) {
  const fmt = (p) => p.map((x) => x.toFixed(4)).join(' / ');
  console.log(`options: ${JSON.stringify(o)}`);
  const t0 = now();
  const base = await train(o, 0, 1, null);
  const t1 = now();
  console.log(base.dataset);
  console.log(`unsharded (1 process):  P@1/3/5 ${fmt(base.precision)}  epoch losses ${base.epochLoss.map((l) => l.toFixed(4)).join(', ')}  ${(t1 - t0).toFixed(1)} s, loss ${(1000 * base.lossSeconds / base.steps).toFixed(2)} ms/step`);
  const results = await runRanks(o);
  const t2 = now();
  const r0 = results[0];
  console.log(
    `sharded (${o.ranks} processes, labels per rank ${results.map((r) => r.labelsHeld).join(', ')}):  P@1/3/5 ${fmt(r0.precision)}  epoch losses ${r0.epochLoss.map((l) => l.toFixed(4)).join(', ')}  ${(t2 - t1).toFixed(1)} s, loss ${(1000 * r0.lossSeconds / r0.steps).toFixed(2)} ms/step (incl. IPC)`,
  );
  console.log(
    `exchanged per step and rank: loss ${(4 * r0.lossFloats / r0.steps / 1024).toFixed(1)} KiB in ${r0.rounds / r0.steps} rounds; dQ and table rows ${(4 * r0.modelFloats / r0.steps / 1024).toFixed(1)} KiB in 2 rounds`,
  );
  const gap = Math.abs(r0.precision[0] - base.precision[0]);
  console.log(`P@1 difference: ${gap.toFixed(4)} ${gap <= 0.01 ? '(within 0.01: the sharded run reaches the unsharded one)' : '(more than 0.01!)'}`);
  if (gap > 0.01) process.exitCode = 1;
}
