#!/usr/bin/env node
// Times linearCrossEntropy and every <loss>FromEmbeddings on CUDA at their `gpu.shapes`
// (embeddingsOps of scripts/ops.mjs; scripts/gpu/torch_embeddings.py times PyTorch eager on the same),
// forward and backward as a training step runs them (gradient buffers reused), in bfloat16 and
// float32, with the device-to-device copy rate measured in the same process. Each result has the
// FLOP rate over the step's 3 matrix products (6·B·N·D) and the scratch budget it ran under.
// Run on the GPU machine by scripts/gpu/run.sh (step bench-embeddings).
//   node bench/gpu-embeddings.mjs [--json FILE] [--op NAME] [--dtype bfloat16]
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { embeddingsOps } from '../scripts/ops.mjs';

const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const { native } = require('../dist/native.js');
const { emptyDevice } = require('../dist/tensor.js');
const argv = process.argv.slice(2);
const opt = (name) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const jsonOut = opt('--json');
const info = fl.backendInfo();
if (!info.cuda.available) throw new Error(`no GPU: ${info.cuda.reason}`);

function timeit(fn, reps) {
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

// A device tensor of n values ~ uniform(−a, a) (xorshift on the host, 64 Ki at a time).
function deviceFill(shape, dtype, a) {
  const n = shape.reduce((x, y) => x * y, 1);
  const host = dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
  let s = 0x9e3779b9;
  const chunk = new Float32Array(1 << 16);
  for (let i = 0; i < chunk.length; i++) { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; chunk[i] = (((s >>> 0) / 2 ** 32) * 2 - 1) * a; }
  const src = dtype === 'float32' ? chunk : dtype === 'float16' ? fl.float32ToFloat16(chunk) : fl.float32ToBFloat16(chunk);
  for (let o = 0; o < n; o += src.length) host.set(src.subarray(0, Math.min(src.length, n - o)), o);
  return fl.toDevice(fl.tensor(host, shape, { dtype }));
}

const positivesOf = (rows, cols, perRow) => ({
  rowPtr: new Int32Array(rows + 1).map((_, i) => perRow * i),
  cols: new Int32Array(perRow * rows).map((_, e) => (Math.floor(e / perRow) * 7919 + (e % perRow) * 104729) % cols),
});

const addon = native().addon;
const copyBytes = 2 ** 30;
const ca = addon.deviceAlloc(copyBytes), cb = addon.deviceAlloc(copyBytes);
const copyMs = timeit(() => addon.memcpy(cb, ca), 20);
ca.dispose(); cb.dispose();
const copyGBs = (2 * copyBytes) / (copyMs / 1e3) / 1e9;
console.log(`${info.cuda.devices[0].name}: device copy ${copyGBs.toFixed(0)} GB/s (read+write)`);

const out = { device: info.cuda.devices[0].name, copyGBs, ops: {} };
for (const op of embeddingsOps) {
  if (opt('--op') && op.name !== opt('--op')) continue;
  for (const [B, D, N] of op.gpu.shapes)
    for (const dtype of opt('--dtype') ? [opt('--dtype')] : ['bfloat16', 'float32']) {
      const key = `${B}x${D}x${N}`;
      const q = deviceFill([B, D], dtype, 1), k = deviceFill([N, D], dtype, 0.05);
      const isLinear = op.name === 'linearCrossEntropy';
      // The gradient buffers, reused across steps (the op overwrites them).
      const gq = emptyDevice(dtype, [B, D]), gk = emptyDevice('float32', [N, D]);
      const opts = { ...op.gpu.opts, ...(isLinear ? { gradHidden: gq, gradWeight: gk } : { gradQueries: gq, gradKeys: gk }) };
      const extra = isLinear
        ? [new Int32Array(B).map((_, i) => (i * 7919) % N)]
        : op.fn.startsWith('infoNCE') || op.fn.startsWith('decoupledContrastive') ? [] : [positivesOf(B, N, op.gpu.positivesPerRow ?? 3)];
      const step = () => fl[op.fn](q, k, ...extra, opts);
      let r;
      try {
        const ms = timeit(step, dtype === 'float32' ? 3 : 5);
        const tflops = (6 * B * N * D) / (ms / 1e3) / 1e12;
        r = { ms, tflops, budget: opts.memoryBudget };
        console.log(`${op.name} ${key} ${dtype}: ${ms.toFixed(2)} ms, ${tflops.toFixed(1)} TFLOP/s over 3 products, scratch ≤ ${(opts.memoryBudget / 2 ** 20).toFixed(0)} MiB`);
      } catch (e) {
        r = { error: e.message };
        console.log(`${op.name} ${key} ${dtype}: FAILED ${e.message}`);
      }
      ((out.ops[op.name] ??= {})[key] ??= {})[dtype] = r;
      for (const t of [q, k, gq, gk]) t.dispose();
    }
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(out, null, 2));
