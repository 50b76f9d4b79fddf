#!/usr/bin/env node
// Where the default call's time goes: an op's bench shape timed as the reuse call (`out`) and as
// the default call (a new gradient per call), in alternating rounds of a loop that never yields,
// with per call: CPU time (all threads), page faults, GCs by kind and their time; and the peak RSS.
//
//   node bench/default-call.mjs OP [SIZE_INDEX] [MS]      e.g. softmaxCrossEntropy 2 3000
//
// Prints one JSON line. bench/run.mjs gives the same two medians beside the peers; this adds
// the figures that say why they differ.
import { createRequire } from 'node:module';
import { PerformanceObserver } from 'node:perf_hooks';
import { ops } from '../scripts/ops.mjs';
import { makeRng } from '../scripts/lib/random.mjs';

const fl = createRequire(import.meta.url)('../dist/index.js');
const [name, sizeIndex = '0', msArg = '2000'] = process.argv.slice(2);
const op = ops.find((o) => o.name === name && o.bench?.prepare);
if (!op) {
  console.log(`usage: node bench/default-call.mjs OP [SIZE_INDEX] [MS]; OP: ${ops.filter((o) => o.bench?.prepare).map((o) => o.name).join(', ')}`);
  process.exit(2);
}
const size = op.bench.sizes[Number(sizeIndex)];
const reuse = op.bench.prepare(fl, op.make(fl, makeRng(42), { ...size, dtype: 'float32' }));
const fresh = { ...reuse, opts: { ...reuse.opts, out: undefined } };
const fns = { reuse: () => op.run(fl, reuse, 'cpu'), default: () => op.run(fl, fresh, 'cpu') };

const gcs = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push({ t: e.startTime, ms: e.duration, kind: { 1: 'minor', 4: 'major', 8: 'incremental', 16: 'weak' }[e.detail.kind] });
}).observe({ entryTypes: ['gc'] });

const ROUNDS = 5;
const times = { reuse: [], default: [] };
const stats = { reuse: { cpu: 0, faults: 0 }, default: { cpu: 0, faults: 0 } };
const spans = [];
for (const f of Object.values(fns)) f(); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const [k, f] of Object.entries(fns)) {
    const u0 = process.resourceUsage();
    const start = performance.now();
    while (performance.now() - start < Number(msArg) / ROUNDS) {
      const t0 = performance.now();
      f();
      times[k].push(performance.now() - t0);
    }
    const u1 = process.resourceUsage();
    spans.push({ k, from: start, to: performance.now() });
    stats[k].cpu += (u1.userCPUTime + u1.systemCPUTime - u0.userCPUTime - u0.systemCPUTime) / 1e3;
    stats[k].faults += u1.minorPageFault - u0.minorPageFault;
    await new Promise((resolve) => setTimeout(resolve, 20)); // GC entries arrive on the event loop
  }
}
await new Promise((resolve) => setTimeout(resolve, 50));

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const out = { op: name, size: `${size.rows}x${size.cols}`, isa: fl.backendInfo().cpu.simd, threads: fl.backendInfo().cpu.threads };
for (const k of Object.keys(fns)) {
  const calls = times[k].length;
  const mine = gcs.filter((g) => spans.some((s) => s.k === k && g.t >= s.from && g.t < s.to));
  const kinds = {};
  for (const g of mine) kinds[g.kind] = (kinds[g.kind] ?? 0) + 1;
  out[k] = {
    ms: +median(times[k]).toFixed(2),
    calls,
    cpuMsPerCall: +(stats[k].cpu / calls).toFixed(2),
    faultsPerCall: Math.round(stats[k].faults / calls),
    gcMsPerCall: +(mine.reduce((s, g) => s + g.ms, 0) / calls).toFixed(2),
    gcs: kinds,
  };
}
out.ratio = +(out.default.ms / out.reuse.ms).toFixed(2);
out.cpuRatio = +(out.default.cpuMsPerCall / out.reuse.cpuMsPerCall).toFixed(2);
out.peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
console.log(JSON.stringify(out));
