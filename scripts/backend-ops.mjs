#!/usr/bin/env node
// Runs every registered op (scripts/ops.mjs: the ops on a scores matrix, and those on queries and
// keys, their async twins too) on every live backend on random inputs and
// compares each backend with the CPU, the ggml test-backend-ops idea. Needs only node and the
// built package, so it runs unchanged on the GPU machine (see scripts/gpu/).
//
//   node scripts/backend-ops.mjs [--op NAME] [--json FILE] [--small] [--embeddings]
// Exit status 1 when any comparison fails. Without a GPU it runs the CPU side alone (so the
// script itself is exercised) and says that CUDA was not compared.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { embeddingsOps, ops } from './ops.mjs';
import { makeRng } from './lib/random.mjs';

const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const args = process.argv.slice(2);
const only = args.includes('--op') ? args[args.indexOf('--op') + 1] : undefined;
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
// --small: only the cases of at most 10^6 elements (for compute-sanitizer, which is slow).
const small = args.includes('--small');
// --embeddings: only the ops on queries and keys (embeddingsOps of scripts/ops.mjs).
const embeddingsOnly = args.includes('--embeddings');

const info = fl.backendInfo();
const devices = ['cpu', ...(info.cuda.available ? ['cuda'] : [])];
console.log(`backends: cpu (${info.cpu.simd}, ${info.cpu.threads} threads)` +
  (info.cuda.available ? `, cuda (${info.cuda.devices.map((d) => `${d.name} sm_${d.computeCapability.replace('.', '')}`).join(', ')})` : `; cuda not compared: ${info.cuda.reason ?? info.loader.notes.join('; ')}`));

function relErr(a, b) {
  if (typeof a === 'number') return Math.abs(a - b) / Math.max(1, Math.abs(b));
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num) / Math.max(1, Math.sqrt(den));
}
const toNumbers = (v) => (v && v.dtype ? fl.toFloat32(fl.toHost(v).data, v.dtype) : v);

const rows = [];
let failed = 0;
for (const op of embeddingsOnly ? [] : ops) {
  if (only && op.name !== only) continue;
  op.cases.forEach((c, i) => {
    if (small && c.rows * c.cols > 1e6) return;
    const inputs = op.make(fl, makeRng(1000 + i), c);
    const label = `${op.name} ${c.rows}x${c.cols} ${c.dtype ?? 'float32'} ${c.kind ?? ''}`.trim();
    let cpu;
    try {
      cpu = op.run(fl, inputs, 'cpu');
    } catch (e) {
      failed++;
      rows.push({ label, device: 'cpu', ok: false, error: e.message });
      return;
    }
    for (const device of devices.slice(1)) {
      try {
        const t0 = performance.now();
        const out = op.run(fl, inputs, device);
        const ms = performance.now() - t0;
        let worst = 0;
        for (const key of Object.keys(cpu)) worst = Math.max(worst, relErr(toNumbers(out[key]), toNumbers(cpu[key])));
        const tol = op.tol[c.dtype ?? 'float32'];
        const ok = worst <= tol;
        if (!ok) failed++;
        rows.push({ label, device, ok, worst, tol, ms });
      } catch (e) {
        failed++;
        rows.push({ label, device, ok: false, error: e.message });
      }
    }
    if (devices.length === 1) rows.push({ label, device: 'cpu', ok: true, note: 'ran (no other backend to compare)' });
  });
}
// The label-sharded protocol on device blocks (lib/sharded.ts, cuda/sharded.cu): R simulated
// ranks driven in lockstep through job.phases() (an in-process all-reduce), each rank's block
// on the backend, against the same ranks on the CPU (host blocks of the same dtype). Loss, row
// losses, dScale and the gradient blocks side by side. Every loss of the sharded family, the
// CLIP form, and fp16/bf16 blocks; `node scripts/backend-ops.mjs --op shardedLoss` runs these alone.
function runSharded(name, S, B, N, targets, opts, R, device, dtype = 'float32') {
  const edges = Array.from({ length: R + 1 }, (_, k) => Math.floor((N * k) / R));
  const blocks = edges.slice(1).map((e, k) => {
    const w = e - edges[k];
    const b = new Float32Array(B * w);
    for (let i = 0; i < B; i++) b.set(S.subarray(i * N + edges[k], i * N + e), i * w);
    const data = dtype === 'float32' ? b : dtype === 'float16' ? fl.float32ToFloat16(b) : fl.float32ToBFloat16(b);
    const t = fl.tensor(data, [B, w], { dtype });
    return device === 'cpu' ? t : fl.toDevice(t);
  });
  try {
    const steps = blocks.map((b, k) => fl.shardedLoss(name, b, targets, { ...opts, gradScale: true, columnOffset: edges[k], totalColumns: N }).phases());
    let st = steps.map((g) => g.next());
    while (!st[0].done) {
      const { op } = st[0].value;
      const out = st[0].value.buffer.slice();
      for (const s of st.slice(1)) for (let i = 0; i < out.length; i++) out[i] = op === 'sum' ? out[i] + s.value.buffer[i] : Math.max(out[i], s.value.buffer[i]);
      st = steps.map((g) => g.next(out.slice()));
    }
    const res = st.map((s) => s.value);
    const grad = new Float32Array(B * N);
    res.forEach((r, k) => {
      const w = edges[k + 1] - edges[k];
      const g = fl.toFloat32(fl.toHost(r.grad).data, r.grad.dtype);
      for (let i = 0; i < B; i++) grad.set(g.subarray(i * w, (i + 1) * w), i * N + edges[k]);
      if (device !== 'cpu') r.grad.dispose();
    });
    return { loss: res[0].loss, rowLoss: res[0].rowLoss, dScale: res[0].dScale, grad };
  } finally {
    if (device !== 'cpu') for (const b of blocks) b.dispose();
  }
}

// dtype: the blocks' (the half cases compare the gradient in that dtype: a rounding apart at most).
// square: infoNCE's CLIP form on the B × B matrix (its column statistics across the ranks).
const shardedCases = [
  { name: 'softmaxCrossEntropy', targets: 'labels', opts: { labelSmoothing: 0.1, zLoss: 1e-4 } },
  { name: 'softmaxCrossEntropy', targets: 'labels', opts: { softcap: 15, classWeights: true } },
  { name: 'softmaxCrossEntropy', targets: 'labels', opts: {}, dtype: 'bfloat16' },
  { name: 'multiLabelSoftmax', targets: 'positives', opts: {} },
  { name: 'multiLabelSoftmax', targets: 'positives', opts: {}, dtype: 'float16' },
  { name: 'decoupledSoftmax', targets: 'positives', opts: { exclude: true } },
  { name: 'binaryCrossEntropy', targets: 'positives', opts: { exclude: true } },
  { name: 'binaryCrossEntropy', targets: 'positives', opts: {}, dtype: 'bfloat16' },
  { name: 'infoNCE', targets: 'positives', opts: { scale: 2 } },
  { name: 'infoNCE', targets: 'diagonal', opts: { symmetric: true, scale: 3 }, square: true },
  { name: 'infoNCE', targets: 'diagonal', opts: { symmetric: true }, square: true, dtype: 'float16' },
  { name: 'decoupledContrastive', targets: 'diagonal', opts: { reduction: 'sum' } },
  { name: 'softTopKLoss', targets: 'positives', opts: { k: 4, exclude: true } },
  { name: 'softTopKLoss', targets: 'positives', opts: { k: 4 }, dtype: 'bfloat16' },
];
const shardedTol = { float32: 1e-5, float16: 2e-3, bfloat16: 1e-2 };
if (!embeddingsOnly && (!only || only === 'shardedLoss'))
  for (const [B, N0] of [[37, 1013], [256, 50257]])
    for (const c of shardedCases)
      for (const R of [1, 3]) {
        const N = c.square ? B : N0;
        if (small && B * N > 1e6) continue;
        const rng = makeRng(7 + B + R);
        const S = Float32Array.from({ length: B * N }, () => (rng.u() * 2 - 1) * 6);
        let targets;
        if (c.targets === 'labels') targets = Int32Array.from({ length: B }, (_, i) => (i % 5 === 4 ? -100 : rng.int(0, N)));
        else if (c.targets === 'positives') {
          const rowPtr = new Int32Array(B + 1);
          const cols = [];
          for (let i = 0; i < B; i++) {
            const set = new Set();
            while (set.size < 1 + (i % 3)) set.add(rng.int(0, N));
            cols.push(...[...set].sort((a, b) => a - b));
            rowPtr[i + 1] = cols.length;
          }
          targets = { rowPtr, cols: Int32Array.from(cols) };
        }
        const opts = { ...c.opts };
        // exclude: the next column after each row's first positive, when it is not a positive itself.
        if (opts.exclude) {
          const rowPtr = new Int32Array(B + 1);
          const cols = [];
          for (let i = 0; i < B; i++) {
            const own = new Set(targets.cols.subarray(targets.rowPtr[i], targets.rowPtr[i + 1]));
            const x = (targets.cols[targets.rowPtr[i]] + 1) % N;
            if (!own.has(x)) cols.push(x);
            rowPtr[i + 1] = cols.length;
          }
          opts.exclude = { rowPtr, cols: Int32Array.from(cols) };
        }
        const dtype = c.dtype ?? 'float32';
        const label = `shardedLoss ${c.name} R=${R} ${B}x${N} ${dtype} ${Object.keys(c.opts).join(',')}`.trim();
        let cpu;
        const weights = opts.classWeights ? Float32Array.from({ length: N }, (_, j) => 0.5 + (j % 4) / 4) : undefined;
        if (weights && R > 1) continue; // class weights are each rank's slice: one rank only here
        if (weights) opts.classWeights = weights;
        try {
          cpu = runSharded(c.name, S, B, N, targets, opts, R, 'cpu', dtype);
        } catch (e) {
          failed++;
          rows.push({ label, device: 'cpu', ok: false, error: e.message });
          continue;
        }
        for (const device of devices.slice(1)) {
          try {
            const t0 = performance.now();
            const out = runSharded(c.name, S, B, N, targets, opts, R, device, dtype);
            const ms = performance.now() - t0;
            let worst = 0;
            for (const key of Object.keys(cpu)) worst = Math.max(worst, relErr(out[key], cpu[key]));
            const tol = shardedTol[dtype];
            const ok = worst <= tol;
            if (!ok) failed++;
            rows.push({ label, device, ok, worst, tol, ms });
          } catch (e) {
            failed++;
            rows.push({ label, device, ok: false, error: e.message });
          }
        }
        if (devices.length === 1) rows.push({ label, device: 'cpu', ok: true, note: 'ran (no other backend to compare)' });
      }

// The sharded key-embedding form on device queries and keys (cuda/sharded.cu: the chunks of S by
// the embeddings GEMM, the block kernels on them, dQ̂/dK folded and projected on the device),
// against the same ranks on host queries and keys: loss, row losses, dScale, Σ_r dQ_r, dK.
function runShardedEmbeddings(name, Q, K, B, N, D, targets, opts, R, device, dtype) {
  const edges = Array.from({ length: R + 1 }, (_, k) => Math.floor((N * k) / R));
  const half = (x) => (dtype === 'float32' ? x : dtype === 'float16' ? fl.float32ToFloat16(x) : fl.float32ToBFloat16(x));
  const put = (x, rows) => {
    const t = fl.tensor(half(x), [rows, D], { dtype });
    return device === 'cpu' ? t : fl.toDevice(t);
  };
  const q = put(Q, B);
  const keys = edges.slice(1).map((e, k) => put(K.slice(edges[k] * D, e * D), e - edges[k]));
  try {
    const steps = keys.map((k, r) => {
      const w = edges[r + 1] - edges[r];
      const o = { ...opts, gradScale: true, columnOffset: edges[r], totalColumns: N };
      if (opts.memoryBudget) o.memoryBudget = Math.max(opts.memoryBudget, 8 * w);
      if (opts.bias) o.bias = opts.bias.slice(edges[r], edges[r + 1]);
      return fl.shardedLoss(name, { queries: q, keys: k }, targets, o).phases();
    });
    let st = steps.map((g) => g.next());
    while (!st[0].done) {
      const { op } = st[0].value;
      const out = st[0].value.buffer.slice();
      for (const s of st.slice(1)) for (let i = 0; i < out.length; i++) out[i] = op === 'sum' ? out[i] + s.value.buffer[i] : Math.max(out[i], s.value.buffer[i]);
      st = steps.map((g) => g.next(out.slice()));
    }
    const res = st.map((s) => s.value);
    const gradQueries = new Float32Array(B * D), gradKeys = new Float32Array(N * D);
    res.forEach((r, k) => {
      fl.toFloat32(fl.toHost(r.gradQueries).data, r.gradQueries.dtype).forEach((v, i) => (gradQueries[i] += v));
      gradKeys.set(fl.toFloat32(fl.toHost(r.gradKeys).data, 'float32'), edges[k] * D);
      if (device !== 'cpu') {
        r.gradQueries.dispose();
        r.gradKeys.dispose();
      }
    });
    return { loss: res[0].loss, rowLoss: res[0].rowLoss, dScale: res[0].dScale, gradQueries, gradKeys };
  } finally {
    if (device !== 'cpu') for (const t of [q, ...keys]) t.dispose();
  }
}
const shardedEmbeddingsCases = [
  { name: 'softmaxCrossEntropy', targets: 'labels', opts: { bias: true, labelSmoothing: 0.1 } },
  { name: 'decoupledSoftmax', targets: 'positives', opts: { normalize: true, scale: 10 } },
  { name: 'multiLabelSoftmax', targets: 'positives', opts: { memoryBudget: 8 * 512 * 16 } },
  { name: 'binaryCrossEntropy', targets: 'positives', opts: { normalize: true } },
  { name: 'infoNCE', targets: 'diagonal', opts: { symmetric: true, normalize: true, scale: 10 }, square: true },
  { name: 'softTopKLoss', targets: 'positives', opts: { k: 4, normalize: true, scale: 5 } },
  { name: 'decoupledSoftmax', targets: 'positives', opts: { normalize: true, scale: 10 }, dtype: 'bfloat16' },
];
const shardedEmbeddingsTol = { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 };
if (!embeddingsOnly && (!only || only === 'shardedLoss'))
  for (const [B, N0, D] of [[37, 1013, 64], [256, 32000, 128]])
    for (const c of shardedEmbeddingsCases)
      for (const R of [1, 3]) {
        const N = c.square ? B : N0;
        if (small && B * N > 1e6) continue;
        const dtype = c.dtype ?? 'float32';
        const rng = makeRng(11 + B + R);
        const Q = Float32Array.from({ length: B * D }, () => rng.u() * 2 - 1);
        const K = Float32Array.from({ length: N * D }, () => rng.u() * 2 - 1);
        let targets;
        if (c.targets === 'labels') targets = Int32Array.from({ length: B }, () => rng.int(0, N));
        else if (c.targets === 'positives') {
          const rowPtr = new Int32Array(B + 1);
          const cols = [];
          for (let i = 0; i < B; i++) {
            const set = new Set();
            while (set.size < 1 + (i % 3)) set.add(rng.int(0, N));
            cols.push(...[...set].sort((a, b) => a - b));
            rowPtr[i + 1] = cols.length;
          }
          targets = { rowPtr, cols: Int32Array.from(cols) };
        }
        const opts = { ...c.opts };
        if (opts.bias) opts.bias = Float32Array.from({ length: N }, (_, j) => ((j % 5) - 2) / 10);
        const label = `shardedLoss {queries, keys} ${c.name} R=${R} ${B}x${D}x${N} ${dtype} ${Object.keys(c.opts).join(',')}`.trim();
        let cpu;
        try {
          cpu = runShardedEmbeddings(c.name, Q, K, B, N, D, targets, opts, R, 'cpu', dtype);
        } catch (e) {
          failed++;
          rows.push({ label, device: 'cpu', ok: false, error: e.message });
          continue;
        }
        for (const device of devices.slice(1)) {
          try {
            const t0 = performance.now();
            const out = runShardedEmbeddings(c.name, Q, K, B, N, D, targets, opts, R, device, dtype);
            const ms = performance.now() - t0;
            let worst = 0;
            for (const key of Object.keys(cpu)) worst = Math.max(worst, relErr(out[key], cpu[key]));
            const tol = shardedEmbeddingsTol[dtype];
            const ok = worst <= tol;
            if (!ok) failed++;
            rows.push({ label, device, ok, worst, tol, ms });
          } catch (e) {
            failed++;
            rows.push({ label, device, ok: false, error: e.message });
          }
        }
        if (devices.length === 1) rows.push({ label, device: 'cpu', ok: true, note: 'ran (no other backend to compare)' });
      }

// The ops from embeddings: B×D queries (hidden), N×D keys (weight); CUDA sync and async.
for (const op of embeddingsOps) {
  if (only && op.name !== only) continue;
  for (const [i, c] of op.cases.entries()) {
    if (small && c.rows * c.cols > 1e6) continue;
    const inputs = op.make(fl, makeRng(2000 + i), c);
    const label = `${op.name} ${c.rows}x${c.dim}x${c.cols} ${c.dtype}${c.bias ? ' bias' : ''}${c.cudaBudget ? ' chunked' : ''}`;
    let cpu;
    try {
      cpu = await op.run(fl, inputs, 'cpu');
    } catch (e) {
      failed++;
      rows.push({ label, device: 'cpu', ok: false, error: e.message });
      continue;
    }
    for (const device of devices.slice(1))
      for (const async of [false, true]) {
        const l = async ? `${label} async` : label;
        try {
          const t0 = performance.now();
          const out = await op.run(fl, inputs, device, async);
          const ms = performance.now() - t0;
          let worst = 0;
          for (const key of Object.keys(cpu)) worst = Math.max(worst, out[key] === undefined ? Infinity : relErr(out[key], cpu[key]));
          const tol = op.tol[c.dtype];
          const ok = worst <= tol;
          if (!ok) failed++;
          rows.push({ label: l, device, ok, worst, tol, ms });
        } catch (e) {
          failed++;
          rows.push({ label: l, device, ok: false, error: e.message });
        }
      }
    if (devices.length === 1) rows.push({ label, device: 'cpu', ok: true, note: 'ran (no other backend to compare)' });
  }
}
for (const r of rows)
  console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.device.padEnd(4)} ${r.label.padEnd(56)} ` +
    (r.error ? r.error : r.note ?? `rel err ${r.worst.toExponential(2)} (tol ${r.tol}) ${r.ms.toFixed(1)} ms`));
console.log(`${rows.filter((r) => r.ok).length} passed, ${failed} failed`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ info, rows }, null, 2));
process.exit(failed ? 1 : 0);
