#!/usr/bin/env node
// Times the registered ops on CUDA at the shapes of scripts/gpu/shapes.json (shared with the
// PyTorch baseline script) and the device-to-device copy ceiling, in one process. Run on the
// GPU machine by scripts/gpu/run.sh. Each op's `bytes` (scripts/ops.mjs) gives its floor.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ops } from '../scripts/ops.mjs';

// Ops this script knows how to call at GPU scale; each needs a line in `run` below.
const timed = new Set(['logSumExp', 'softmaxCrossEntropy', 'softTopKLoss']);
// Losses over CSR positives, timed with 3 positives per row (DEXML's setting).
const positivesOps = new Set(['decoupledSoftmax', 'multiLabelSoftmax', 'binaryCrossEntropy']);
// The contrastive losses, timed as CLIP (symmetric, logit scale 20) and DCLW train.
const contrastiveOpts = { infoNCE: { symmetric: true, scale: 20 }, decoupledContrastive: { scale: 20, weighting: { sigma: 0.5 } } };
const threePositives = (rows, cols) => ({
  rowPtr: new Int32Array(rows + 1).map((_, i) => 3 * i),
  cols: new Int32Array(3 * rows).map((_, e) => (Math.floor(e / 3) * 7919 + (e % 3)) % cols),
});

const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const { native } = require('../dist/native.js');
const args = process.argv.slice(2);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const shapes = JSON.parse(readFileSync(new URL('../scripts/gpu/shapes.json', import.meta.url), 'utf8'));
const info = fl.backendInfo();
if (!info.cuda.available) throw new Error(`no GPU: ${info.cuda.reason}`);

function timeit(fn, reps = 20) {
  fn();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1];
}

// Fills a host array quickly (xorshift, values ~ uniform(−4, 4)): B·N reaches 10^9 here.
function fill(n, dtype) {
  const a = dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
  let s = 0x9e3779b9;
  const chunk = new Float32Array(1 << 16);
  for (let i = 0; i < chunk.length; i++) { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; chunk[i] = ((s >>> 0) / 2 ** 32) * 8 - 4; }
  const src = dtype === 'float32' ? chunk : dtype === 'float16' ? fl.float32ToFloat16(chunk) : fl.float32ToBFloat16(chunk);
  for (let o = 0; o < n; o += src.length) a.set(src.subarray(0, Math.min(src.length, n - o)), o);
  return a;
}

const addon = native().addon;
const copyBytes = 2 ** 30;
const a = addon.deviceAlloc(copyBytes), b = addon.deviceAlloc(copyBytes);
const copyMs = timeit(() => addon.memcpy(b, a));
a.dispose(); b.dispose();
const copyGBs = (2 * copyBytes) / (copyMs / 1e3) / 1e9;
console.log(`${info.cuda.devices[0].name}: device copy ${copyGBs.toFixed(0)} GB/s (read+write)`);
const out = { device: info.cuda.devices[0].name, copyGBs, ops: {} };
for (const op of ops) {
  if (!timed.has(op.name) && !positivesOps.has(op.name) && !contrastiveOpts[op.name]) continue;
  for (const [rows, cols] of shapes[op.name] ?? []) {
    for (const dtype of ['float32', 'bfloat16']) {
      const host = fl.tensor(fill(rows * cols, dtype), [rows, cols], { dtype });
      const labels = new Int32Array(rows).map(() => Math.floor(Math.random() * cols));
      const scores = fl.toDevice(host);
      const outGrad = op.name === 'logSumExp' ? undefined : fl.toDevice(fl.tensor(dtype === 'float32' ? new Float32Array(rows * cols) : new Uint16Array(rows * cols), [rows, cols], { dtype }));
      // softTopKLoss: one positive per row (the label), DEXML's k = 5, α = 2.
      const positives = positivesOps.has(op.name) ? threePositives(rows, cols)
        : op.name === 'softTopKLoss' ? { rowPtr: Int32Array.from({ length: rows + 1 }, (_, i) => i), cols: labels } : undefined;
      const run = () =>
        op.name === 'logSumExp' ? fl.logSumExp(scores)
        : contrastiveOpts[op.name] ? fl[op.name](scores, { ...contrastiveOpts[op.name], out: outGrad })
        : positives ? fl[op.name](scores, positives, { out: outGrad })
        : fl.softmaxCrossEntropy(scores, labels, { out: outGrad });
      const ms = timeit(run);
      const bytesPerElem = dtype === 'float32' ? 4 : 2;
      const bytes = (op.bench.bytes({ rows, cols }) / 4) * bytesPerElem;
      const ofCopy = bytes / (ms / 1e3) / 1e9 / copyGBs;
      (out.ops[op.name] ??= {})[`${rows}x${cols}`] = { ...(out.ops[op.name]?.[`${rows}x${cols}`] ?? {}), [dtype]: { ms, ofCopy } };
      console.log(`${op.name} ${rows}x${cols} ${dtype}: ${ms.toFixed(3)} ms, ${(ofCopy * 100).toFixed(0)}% of copy bandwidth`);
      scores.dispose();
      outGrad?.dispose();
    }
  }
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(out, null, 2));
