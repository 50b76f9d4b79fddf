#!/usr/bin/env node
// The cost of the sharded protocol against the unsharded native call, per loss:
//
//   node bench/sharded.mjs [--reps N] [--only name,name] [--form block|embeddings]
//
// For each loss, on the same B × N scores: the unsharded native call (the addon's threads and
// SIMD), then shardedLoss at R = 1 and R = 4 ranks simulated in this process (an in-process
// all-reduce; the R jobs run one after another on this thread, so the R = 4 figure is the sum
// over the ranks: on R machines each rank takes about a quarter of it, plus the collective's
// latency per round). Also the floats each rank sends per call, and the rounds. Medians.
//
// The key-embedding form (a second table): Q (B × D) and the keys K (N × D) split into R
// blocks, against the unsharded <loss>FromEmbeddings (linearCrossEntropy for cross-entropy),
// both with the default 32 MiB memoryBudget; gradQueries is each rank's part (the caller's
// all-reduce of B·D floats is not in the figure, only in the bytes column as "+ dQ").
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');

const args = process.argv.slice(2);
const reps = args.includes('--reps') ? Number(args[args.indexOf('--reps') + 1]) : 7;
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : undefined;
const form = args.includes('--form') ? args[args.indexOf('--form') + 1] : undefined;

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An in-process all-reduce among R ranks (reduces once all have called). */
function collective(R) {
  let pending = [];
  return Array.from({ length: R }, (_, rank) => (buf, op) =>
    new Promise((resolve) => {
      pending[rank] = { buf, op, resolve };
      if (pending.filter(Boolean).length < R) return;
      const calls = pending;
      pending = [];
      const out = Float32Array.from(calls[0].buf);
      for (let r = 1; r < R; r++) {
        const b = calls[r].buf;
        if (op === 'sum') for (let k = 0; k < out.length; k++) out[k] += b[k];
        else for (let k = 0; k < out.length; k++) out[k] = Math.max(out[k], b[k]);
      }
      for (const c of calls) c.resolve(out.slice());
    }),
  );
}

function block(S, B, N, c0, c1) {
  const out = new Float32Array(B * (c1 - c0));
  for (let i = 0; i < B; i++) out.set(S.subarray(i * N + c0, i * N + c1), i * (c1 - c0));
  return out;
}

const median = (a) => a.slice().sort((x, y) => x - y)[a.length >> 1];

async function time(fn) {
  await fn();
  const t = [];
  for (let k = 0; k < reps; k++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}

function positives(B, N, r) {
  const rowPtr = new Int32Array(B + 1);
  const cols = [];
  for (let i = 0; i < B; i++) {
    const s = new Set();
    while (s.size < 3) s.add(Math.floor(r() * N));
    cols.push(...s);
    rowPtr[i + 1] = cols.length;
  }
  return { rowPtr, cols: Int32Array.from(cols) };
}

const cases = [
  { name: 'softmaxCrossEntropy', B: 64, N: 50257, targets: (B, N, r) => Int32Array.from({ length: B }, () => Math.floor(r() * N)), native: (S, t) => fl.softmaxCrossEntropy(S, t) },
  { name: 'multiLabelSoftmax', B: 256, N: 16384, targets: positives, native: (S, t) => fl.multiLabelSoftmax(S, t) },
  { name: 'decoupledSoftmax', B: 256, N: 16384, targets: positives, native: (S, t) => fl.decoupledSoftmax(S, t) },
  { name: 'infoNCE', B: 256, N: 16384, targets: positives, native: (S, t) => fl.infoNCE(S, { positives: t }) },
  { name: 'decoupledContrastive', B: 256, N: 16384, targets: () => undefined, native: (S) => fl.decoupledContrastive(S) },
  { name: 'infoNCE', label: 'infoNCE symmetric', B: 2048, N: 2048, targets: () => undefined, opts: { symmetric: true }, native: (S) => fl.infoNCE(S, { symmetric: true }) },
  { name: 'binaryCrossEntropy', B: 256, N: 16384, targets: positives, native: (S, t) => fl.binaryCrossEntropy(S, t) },
  { name: 'softTopKLoss', B: 256, N: 16384, targets: positives, native: (S, t) => fl.softTopKLoss(S, t) },
];

const info = fl.backendInfo().cpu;
if (form !== 'embeddings') {
console.log(`CPU: ${info.simd}, ${info.threads} threads (native calls); the sharded partials and finish: native where lib/shardedMath.ts says so. Median of ${reps}.`);
console.log('| loss | B × N | native unsharded | sharded R = 1 | sharded R = 4 (sum over ranks) | rounds | floats sent per rank (R = 4) | bytes per rank |');
console.log('|---|---|---|---|---|---|---|---|');
for (const c of cases) {
  if (only && !only.includes(c.label ?? c.name)) continue;
  const r = rng(7);
  const { B, N } = c;
  const S = Float32Array.from({ length: B * N }, () => (r() * 2 - 1) * 4);
  const targets = c.targets(B, N, r);
  const tNative = await time(() => c.native(fl.tensor(S, [B, N]), targets));
  let exchange;
  const sharded = async (R) => {
    const edges = Array.from({ length: R + 1 }, (_, k) => Math.floor((N * k) / R));
    const blocks = Array.from({ length: R }, (_, k) => block(S, B, N, edges[k], edges[k + 1]));
    return time(async () => {
      const ar = collective(R);
      const res = await Promise.all(blocks.map((b, k) => fl.shardedLoss(c.name, b, targets, { ...c.opts, shape: [B, edges[k + 1] - edges[k]], columnOffset: edges[k], totalColumns: N }).run(ar[k])));
      exchange = res[0].exchange;
    });
  };
  const t1 = await sharded(1);
  const t4 = await sharded(4);
  console.log(
    `| ${c.label ?? c.name} | ${B} × ${N} | ${tNative.toFixed(1)} ms | ${t1.toFixed(1)} ms (${(t1 / tNative).toFixed(1)}×) | ${t4.toFixed(1)} ms (${(t4 / tNative).toFixed(1)}×) | ${exchange.rounds} | ${exchange.floats} | ${(4 * exchange.floats / 1024).toFixed(1)} KiB |`,
  );
}
}

const embCases = [
  { name: 'softmaxCrossEntropy', B: 256, D: 128, N: 32768, targets: (B, N, r) => Int32Array.from({ length: B }, () => Math.floor(r() * N)), native: (Q, K, t) => fl.linearCrossEntropy(Q, K, t) },
  { name: 'decoupledSoftmax', B: 256, D: 128, N: 32768, targets: positives, native: (Q, K, t) => fl.decoupledSoftmaxFromEmbeddings(Q, K, t) },
  { name: 'infoNCE', label: 'infoNCE symmetric', B: 2048, D: 128, N: 2048, targets: () => undefined, opts: { symmetric: true, normalize: true, scale: 10 }, native: (Q, K) => fl.infoNCEFromEmbeddings(Q, K, { symmetric: true, normalize: true, scale: 10 }) },
  { name: 'softTopKLoss', B: 256, D: 128, N: 32768, targets: positives, native: (Q, K, t) => fl.softTopKLossFromEmbeddings(Q, K, t) },
];
if (form !== 'block') {
  console.log(`\nKey-embedding form. CPU: ${info.simd}, ${info.threads} threads. Median of ${reps}.`);
  console.log('| loss | B × D, N | unsharded FromEmbeddings | sharded R = 1 | sharded R = 4 (sum over ranks) | rounds | bytes sent per rank (R = 4) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const c of embCases) {
    if (only && !only.includes(c.label ?? c.name)) continue;
    const r = rng(11);
    const { B, D, N } = c;
    const Qd = Float32Array.from({ length: B * D }, () => (r() * 2 - 1) * 0.3);
    const Kd = Float32Array.from({ length: N * D }, () => (r() * 2 - 1) * 0.3);
    const targets = c.targets(B, N, r);
    const Q = fl.tensor(Qd, [B, D]);
    const tNative = await time(() => c.native(Q, fl.tensor(Kd, [N, D]), targets));
    let exchange;
    const sharded = async (R) => {
      const edges = Array.from({ length: R + 1 }, (_, k) => Math.floor((N * k) / R));
      const keys = Array.from({ length: R }, (_, k) => fl.tensor(Kd.subarray(edges[k] * D, edges[k + 1] * D), [edges[k + 1] - edges[k], D]));
      return time(async () => {
        const ar = collective(R);
        const res = await Promise.all(keys.map((K, k) => fl.shardedLoss(c.name, { queries: Q, keys: K }, targets, { ...c.opts, columnOffset: edges[k], totalColumns: N }).run(ar[k])));
        exchange = res[0].exchange;
      });
    };
    const t1 = await sharded(1);
    const t4 = await sharded(4);
    console.log(
      `| ${c.label ?? c.name} | ${B} × ${D}, ${N} | ${tNative.toFixed(1)} ms | ${t1.toFixed(1)} ms (${(t1 / tNative).toFixed(2)}×) | ${t4.toFixed(1)} ms (${(t4 / tNative).toFixed(2)}×) | ${exchange.rounds} | ${(4 * exchange.floats / 1024).toFixed(1)} KiB + dQ ${(4 * B * D / 1024).toFixed(0)} KiB |`,
    );
  }
}
