#!/usr/bin/env node
// decoupledSoftmaxFromEmbeddings at DEXML's shape against PyTorch doing the same step (cosine
// scores F.normalize(q) @ F.normalize(k).T times the scale, decoupled softmax, backward to both;
// bench/torch_cpu.py), on the same threads (FUSEDLOSS_THREADS, default 2), in alternating rounds:
// time per step, and the memory a step needs beyond its inputs and its gradients. Says which BLAS
// torch used, and prints no ratio against the reference BLAS. Prints a markdown section (bench/run.mjs
// puts it into docs/BENCHMARKS.md).
// The budget is the default (32 MiB) unless --budget says otherwise: at N = 10^6 it holds 8 rows
// of S, so the driver takes its column-tile plan (native/ops/embeddings.cpp).
//   node bench/embeddings.mjs [--rows 256] [--dim 128] [--keys 1000000] [--rounds 2] [--budget BYTES]
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => Number(process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : dflt);
const B = arg('--rows', 256);
const D = arg('--dim', 128);
const N = arg('--keys', 1e6);
const rounds = arg('--rounds', 2);
const P = 3;
const scale = 20;
process.env.FUSEDLOSS_THREADS ??= '2';
const threads = Number(process.env.FUSEDLOSS_THREADS);
const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const memoryBudget = process.argv.includes('--budget') ? arg('--budget', 0) : undefined;

const kib = (field) => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field + ':')))[1]);
const MiB = 2 ** 20;

let seed = 1;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5;
const q = fl.tensor(Float32Array.from({ length: B * D }, rnd), [B, D]);
const k = fl.tensor(Float32Array.from({ length: N * D }, rnd), [N, D]);
const positives = {
  rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i * P),
  cols: Int32Array.from({ length: B * P }, (_, e) => (Math.floor(e / P) * 7919 + (e % P) * 104729) % N),
};
const gradQueries = fl.tensor(new Float32Array(B * D).fill(0), [B, D]);
const gradKeys = fl.tensor(new Float32Array(N * D).fill(0), [N, D]);
const step = () => fl.decoupledSoftmaxFromEmbeddings(q, k, positives, { normalize: true, scale, memoryBudget, gradQueries, gradKeys });

const base = kib('VmRSS');
writeFileSync('/proc/self/clear_refs', '5');
step();
const extraOurs = (kib('VmHWM') - base) / 1024;

function oursMs() {
  const t = [];
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    step();
    t.push(performance.now() - t0);
  }
  return Math.min(...t);
}
const python = process.env.FUSEDLOSS_BENCH_PYTHON ?? '/usr/bin/python3';
function torchRun() {
  const spec = { op: 'decoupledSoftmaxFromEmbeddings', rows: B, cols: N, dim: D, scale, positives: P, threads, minSeconds: 0, minReps: 1 };
  const r = spawnSync(python, [path.join(root, 'bench', 'torch_cpu.py'), JSON.stringify(spec)], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.warn(`torch peer unavailable: ${(r.stderr || '').trim().split('\n').pop()}`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const ours = [];
const torch = [];
for (let r = 0; r < rounds; r++) {
  ours.push(oursMs());
  const t = torchRun();
  if (t) torch.push(t);
}
const best = (a) => Math.min(...a);
const gradsMiB = ((B * D + N * D) * 4) / MiB;
const cmd = ['node bench/embeddings.mjs', ...process.argv.slice(2)].join(' ');
const budget = memoryBudget === undefined ? `the default memoryBudget (${fl.DEFAULT_MEMORY_BUDGET ? fl.DEFAULT_MEMORY_BUDGET / MiB : 32} MiB)` : `memoryBudget ${(memoryBudget / MiB).toFixed(0)} MiB`;
console.log(`## decoupledSoftmaxFromEmbeddings at DEXML's shape (\`${cmd}\`)\n`);
console.log(`B=${B}, D=${D}, N=${N}, normalised, scale ${scale}, ${P} positives a row, fp32, ${threads} threads (${fl.backendInfo().cpu.simd}), ${budget}; ` +
  `best of ${rounds} alternating rounds, ${new Date().toISOString().slice(0, 10)}, load average ${(await import('node:os')).loadavg()[0].toFixed(1)}.\n`);
console.log('| | time per step | memory beyond inputs and gradients |\n|---|---:|---:|');
console.log(`| fusedloss | ${best(ours).toFixed(0)} ms | ${extraOurs.toFixed(1)} MiB (peak RSS) |`);
if (torch.length) {
  const t = torch[0];
  const extraTorch = t.extraMiB === null ? undefined : t.extraMiB - gradsMiB;
  const optimised = /openblas|mkl|blis/i.test(t.blas);
  console.log(`| PyTorch ${t.torch} (BLAS: \`${t.blas}\`) | ${best(torch.map((x) => x.ms)).toFixed(0)} ms | ${extraTorch?.toFixed(0) ?? '?'} MiB |`);
  if (optimised) console.log(`\nSpeed-up: **${(best(torch.map((x) => x.ms)) / best(ours)).toFixed(2)}×** faster than PyTorch.`);
  else console.log('\nPyTorch used the reference BLAS: no ratio printed (install libopenblas0-pthread).');
} else console.log('\nNo PyTorch peer on this machine: no ratio.');
