#!/usr/bin/env node
// linearCrossEntropy against what a PyTorch user writes, F.cross_entropy(h @ W.T, y).backward(),
// on the same threads (FUSEDLOSS_THREADS, default 2), in alternating rounds: time per step, and
// the memory a step needs beyond its inputs and its gradients. Says which BLAS torch used, and
// prints no ratio against the reference BLAS. Prints a markdown section (bench/run.mjs puts it
// into docs/BENCHMARKS.md).
//   node bench/linear.mjs [--rows 2048] [--dim 512] [--classes 32768] [--rounds 2]
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => Number(process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : dflt);
const B = arg('--rows', 2048);
const D = arg('--dim', 512);
const N = arg('--classes', 32768);
const rounds = arg('--rounds', 2);
process.env.FUSEDLOSS_THREADS ??= '2';
const threads = Number(process.env.FUSEDLOSS_THREADS);
const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');

const kib = (field) => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field + ':')))[1]);
const MiB = 2 ** 20;

// Inputs as torch makes them (scaled normal), and the gradient buffers a training loop reuses.
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 3.46 * D ** -0.5;
const h = fl.tensor(Float32Array.from({ length: B * D }, rnd), [B, D]);
const w = fl.tensor(Float32Array.from({ length: N * D }, rnd), [N, D]);
const y = Int32Array.from({ length: B }, (_, i) => (i * 7919) % N);
const gradHidden = fl.tensor(new Float32Array(B * D).fill(0), [B, D]);
const gradWeight = fl.tensor(new Float32Array(N * D).fill(0), [N, D]);
const step = () => fl.linearCrossEntropy(h, w, y, { gradHidden, gradWeight });

const base = kib('VmRSS');
writeFileSync('/proc/self/clear_refs', '5');
step();
const extraOurs = (kib('VmHWM') - base) / 1024;

function oursMs() {
  const t = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    step();
    t.push(performance.now() - t0);
  }
  return Math.min(...t);
}
const python = process.env.FUSEDLOSS_BENCH_PYTHON ?? '/usr/bin/python3';
function torchRun() {
  const spec = { op: 'linearCrossEntropy', rows: B, cols: N, dim: D, threads, minSeconds: 0 };
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
const cmd = ['node bench/linear.mjs', ...process.argv.slice(2)].join(' ');
console.log(`## linearCrossEntropy (\`${cmd}\`)\n`);
console.log(`B=${B}, D=${D}, N=${N}, fp32, ${threads} threads (${fl.backendInfo().cpu.simd}), the default memoryBudget; ` +
  `best of ${rounds} alternating rounds, ${new Date().toISOString().slice(0, 10)}, load average ${(await import('node:os')).loadavg()[0].toFixed(1)}.\n`);
console.log('| | time per step | memory beyond inputs and gradients |\n|---|---:|---:|');
console.log(`| fusedloss | ${best(ours).toFixed(0)} ms | ${extraOurs.toFixed(1)} MiB (peak RSS) |`);
if (torch.length) {
  const t = torch[0];
  const extraTorch = t.extraMiB === null ? undefined : t.extraMiB - gradsMiB;
  const optimised = /openblas|mkl|blis/i.test(t.blas);
  console.log(`| \`F.cross_entropy(h @ W.T, y).backward()\`, PyTorch ${t.torch} (BLAS: \`${t.blas}\`) | ${best(torch.map((x) => x.ms)).toFixed(0)} ms | ${extraTorch?.toFixed(0) ?? '?'} MiB |`);
  if (optimised) console.log(`\nSpeed-up: **${(best(torch.map((x) => x.ms)) / best(ours)).toFixed(2)}×** faster than PyTorch.`);
  else console.log('\nPyTorch used the reference BLAS: no ratio printed (install libopenblas0-pthread).');
} else console.log('\nNo PyTorch peer on this machine: no ratio.');
