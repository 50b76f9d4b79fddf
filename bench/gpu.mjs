#!/usr/bin/env node
// Times every registered op (scripts/ops.mjs) on CUDA at its `gpu.shapes` (the PyTorch baseline
// script reads the same through scripts/gpu/shapes.py) and the device-to-device copy ceiling, in
// one process. Run on the GPU machine by scripts/gpu/run.sh. Each op's `bench.bytes` gives its floor.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { argsOf, ops } from '../scripts/ops.mjs';

/** `perRow` positives per row, at spread-out columns (deterministic). */
const positivesOf = (rows, cols, perRow) => ({
  rowPtr: new Int32Array(rows + 1).map((_, i) => perRow * i),
  cols: new Int32Array(perRow * rows).map((_, e) => (Math.floor(e / perRow) * 7919 + (e % perRow)) % cols),
});

const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const { native } = require('../dist/native.js');
const args = process.argv.slice(2);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
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
  for (const [rows, cols] of op.gpu.shapes) {
    for (const dtype of ['float32', 'bfloat16']) {
      const host = fl.tensor(fill(rows * cols, dtype), [rows, cols], { dtype });
      const scores = fl.toDevice(host);
      const outGrad = op.returns === 'loss' ? fl.toDevice(fl.tensor(dtype === 'float32' ? new Float32Array(rows * cols) : new Uint16Array(rows * cols), [rows, cols], { dtype })) : undefined;
      const inputs = {
        labels: op.args.includes('labels') ? new Int32Array(rows).map(() => Math.floor(Math.random() * cols)) : undefined,
        positives: op.args.includes('positives') ? positivesOf(rows, cols, op.gpu.positivesPerRow) : undefined,
        opts: { ...op.gpu.opts, ...(outGrad ? { out: outGrad } : {}) },
      };
      const run = () => fl[op.fn](...argsOf(op, inputs, scores));
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
