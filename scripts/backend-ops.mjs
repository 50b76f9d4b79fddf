#!/usr/bin/env node
// Runs every registered op (scripts/ops.mjs) on every live backend on random inputs and
// compares each backend with the CPU, the ggml test-backend-ops idea. Needs only node and the
// built package, so it runs unchanged on the GPU machine (see scripts/gpu/).
//
//   node scripts/backend-ops.mjs [--op NAME] [--json FILE] [--small]
// Exit status 1 when any comparison fails. Without a GPU it runs the CPU side alone (so the
// script itself is exercised) and says that CUDA was not compared.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ops } from './ops.mjs';
import { makeRng } from './lib/random.mjs';

const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const args = process.argv.slice(2);
const only = args.includes('--op') ? args[args.indexOf('--op') + 1] : undefined;
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
// --small: only the cases of at most 10^6 elements (for compute-sanitizer, which is slow).
const small = args.includes('--small');

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
for (const op of ops) {
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
for (const r of rows)
  console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.device.padEnd(4)} ${r.label.padEnd(44)} ` +
    (r.error ? r.error : r.note ?? `rel err ${r.worst.toExponential(2)} (tol ${r.tol}) ${r.ms.toFixed(1)} ms`));
console.log(`${rows.filter((r) => r.ok).length} passed, ${failed} failed`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ info, rows }, null, 2));
process.exit(failed ? 1 : 0);
