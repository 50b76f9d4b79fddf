// One loss from embeddings at a shape whose B×N score matrix would take ≥ 1 GiB, in a process of
// its own so that its peak RSS is the call's: prints { op, B, D, N, memoryBudget, peakExtra,
// ms, loss } as JSON. Run by test/embeddings-peak.test.ts:
//   node test/workers/embeddings-peak.mjs <op> [B N [memoryBudget]]   (D = 16)
//
// Inputs and gradient buffers are allocated and touched first; the addon's threads and code are
// brought in by a small call of the same op; then VmHWM is reset (clear_refs 5, Linux) and the
// call's peak over the RSS before it is what it held: its scratch, within memoryBudget, and the
// outputs it made itself (B floats of row losses).
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const fl = createRequire(import.meta.url)('../../dist/index.js');
const op = process.argv[2];

/** Uniform in [−1, 1), from a 32-bit LCG: fast enough for 16M entries. */
function fill(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}
const kib = (field) => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field + ':')))[1]);

/** Row i's positives: columns (7919·(3i + e)) mod N for e < 3, sorted. */
function positives(B, N) {
  const cols = new Int32Array(3 * B);
  for (let i = 0; i < B; i++) {
    const row = [0, 1, 2].map((e) => (7919 * (3 * i + e)) % N).sort((x, y) => x - y);
    cols.set(row, 3 * i);
  }
  return { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => 3 * i), cols };
}

// Each op: its shape, and a call on (queries, keys, gradient buffers, extra options).
const OPS = {
  linearCrossEntropy: [256, 16, 1_000_000, (q, k, g, o) => fl.linearCrossEntropy(q, k, Int32Array.from({ length: q.shape[0] }, (_, i) => (i * 7919) % k.shape[0]), { bias: g.bias, gradHidden: g.q, gradWeight: g.k, gradBias: g.b, ...o })],
  decoupledSoftmax: [256, 16, 1_000_000, (q, k, g, o) => fl.decoupledSoftmaxFromEmbeddings(q, k, positives(q.shape[0], k.shape[0]), { normalize: true, scale: 20, gradQueries: g.q, gradKeys: g.k, ...o })],
  multiLabelSoftmax: [256, 16, 1_000_000, (q, k, g, o) => fl.multiLabelSoftmaxFromEmbeddings(q, k, positives(q.shape[0], k.shape[0]), { gradQueries: g.q, gradKeys: g.k, ...o })],
  binaryCrossEntropy: [256, 16, 1_000_000, (q, k, g, o) => fl.binaryCrossEntropyFromEmbeddings(q, k, positives(q.shape[0], k.shape[0]), { normalize: true, scale: 10, gradQueries: g.q, gradKeys: g.k, ...o })],
  softTopKLoss: [256, 16, 1_000_000, (q, k, g, o) => fl.softTopKLossFromEmbeddings(q, k, positives(q.shape[0], k.shape[0]), { normalize: true, scale: 4, gradQueries: g.q, gradKeys: g.k, ...o })],
  decoupledContrastive: [256, 16, 1_000_000, (q, k, g, o) => fl.decoupledContrastiveFromEmbeddings(q, k, { normalize: true, scale: 10, weighting: { sigma: 0.5 }, gradQueries: g.q, gradKeys: g.k, ...o })],
  infoNCESymmetric: [16384, 16, 16384, (q, k, g, o) => fl.infoNCEFromEmbeddings(q, k, { symmetric: true, normalize: true, scale: 10, gradQueries: g.q, gradKeys: g.k, ...o })],
};
const [B0, D, N0, run] = OPS[op];
const [B, N] = process.argv[3] ? [Number(process.argv[3]), Number(process.argv[4])] : [B0, N0];
const memoryBudget = Number(process.argv[5] ?? 16 * 2 ** 20);
const q = fl.tensor(fill(B * D, 1), [B, D]);
const k = fl.tensor(fill(N * D, 2), [N, D]);
const g = { q: fl.tensor(new Float32Array(B * D).fill(0), [B, D]), k: fl.tensor(new Float32Array(N * D).fill(0), [N, D]), bias: fill(N, 3), b: new Float32Array(N).fill(0) };
{
  // The warm-up: the same op on 64 keys (threads, code, allocator arenas).
  const [b, n] = [Math.min(B, 64), 64];
  const small = { q: fl.tensor(new Float32Array(b * D), [b, D]), k: fl.tensor(new Float32Array(n * D), [n, D]), bias: fill(n, 4), b: new Float32Array(n) };
  run(fl.tensor(fill(b * D, 5), [b, D]), fl.tensor(fill(n * D, 6), [n, D]), small, { memoryBudget });
}
const before = kib('VmRSS');
writeFileSync('/proc/self/clear_refs', '5');
const t0 = performance.now();
const r = run(q, k, g, { memoryBudget });
const ms = performance.now() - t0;
const peakExtra = (kib('VmHWM') - before) * 1024;
process.stdout.write(JSON.stringify({ op, B, D, N, memoryBudget, peakExtra, ms, loss: r.loss }) + '\n');
