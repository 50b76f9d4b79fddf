#!/usr/bin/env node
// Runs every registered op (scripts/ops.mjs, and scripts/embeddings-ops.mjs for the ops without
// a scores matrix, their async twins too) on every live backend on random inputs and
// compares each backend with the CPU, the ggml test-backend-ops idea. Needs only node and the
// built package, so it runs unchanged on the GPU machine (see scripts/gpu/).
//
//   node scripts/backend-ops.mjs [--op NAME] [--json FILE] [--small] [--embeddings]
// Exit status 1 when any comparison fails. Without a GPU it runs the CPU side alone (so the
// script itself is exercised) and says that CUDA was not compared.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { embeddingsOps } from './embeddings-ops.mjs';
import { ops } from './ops.mjs';
import { makeRng } from './lib/random.mjs';

const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const args = process.argv.slice(2);
const only = args.includes('--op') ? args[args.indexOf('--op') + 1] : undefined;
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
// --small: only the cases of at most 10^6 elements (for compute-sanitizer, which is slow).
const small = args.includes('--small');
// --embeddings: only the ops from embeddings (scripts/embeddings-ops.mjs).
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
// The ops from embeddings: B×D queries (hidden), N×D keys (weight); CUDA sync and async.
for (const op of embeddingsOps) {
  if (only && op.name !== only) continue;
  for (const [i, c] of op.cases.entries()) {
    if (small && c.rows * c.cols > 1e6) continue;
    const inputs = op.make(fl, makeRng(2000 + i), c);
    const label = `${op.name} ${c.rows}x${c.dim}x${c.cols} ${c.dtype}${c.cudaBudget ? ' chunked' : ''}`;
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
