#!/usr/bin/env node
// The GEMM core against OpenBLAS sgemm through PyTorch, on the same threads, in alternating
// rounds (a shared machine's speed drifts): the native microbenchmark (bench/native/gemm_bench.cpp,
// built with the native tests: npm run test:native) for each shape, then torch.mm at that shape,
// and the FMA peak measured the same way. Prints a markdown section with GFLOP/s and the ratios
// (bench/run.mjs puts it into docs/BENCHMARKS.md).
//   node bench/gemm.mjs [--threads 2] [--rounds 3] [--isa best|avx512|avx2|sse2]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : dflt);
const threads = Number(arg('--threads', '2'));
const rounds = Number(arg('--rounds', '3'));
const isa = arg('--isa', 'best');
const exe = path.join(root, 'build-tests', 'gemm_bench');
if (!existsSync(exe)) {
  console.error(`${exe} is missing: build it with npm run test:native (or cmake --build build-tests --target gemm_bench)`);
  process.exit(1);
}
const python = process.env.FUSEDLOSS_BENCH_PYTHON ?? '/usr/bin/python3';
const shapes = [
  { name: 'square A.Bt', m: 2048, n: 2048, k: 2048, layout: 'nt' },
  { name: 'scores H.Wt', m: 256, n: 32768, k: 512, layout: 'nt' },
  { name: 'dH += G.W', m: 256, n: 512, k: 32768, layout: 'nn' },
  { name: 'dW += Gt.H', m: 32768, n: 512, k: 256, layout: 'tn' },
];

function ours(which) {
  const r = spawnSync(exe, [String(threads), isa, '3', String(which)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gemm_bench failed: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}
function torch(s) {
  const spec = { op: 'sgemm', rows: s.m, cols: s.n, dim: s.k, layout: s.layout, threads, minSeconds: 0.5 };
  const r = spawnSync(python, [path.join(root, 'bench', 'torch_cpu.py'), JSON.stringify(spec)], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  return { gflops: (2 * s.m * s.n * s.k) / (out.ms * 1e6), blas: out.blas };
}

const best = { peak: 0 };
let blas;
for (let round = 0; round < rounds; round++) {
  const p = ours('peak');
  best.peak = Math.max(best.peak, p.gflops);
  best.isa = p.isa;
  shapes.forEach((s, i) => {
    const o = ours(i);
    const t = torch(s);
    best[`o${i}`] = Math.max(best[`o${i}`] ?? 0, o.gflops);
    if (t) {
      best[`t${i}`] = Math.max(best[`t${i}`] ?? 0, t.gflops);
      blas = t.blas;
    }
  });
}
const cmd = ['node bench/gemm.mjs', ...process.argv.slice(2)].join(' ');
console.log(`## The GEMM core against OpenBLAS sgemm (\`${cmd}\`)\n`);
console.log(`${best.isa}, ${threads} threads, fp32, best of ${rounds} alternating rounds, ${new Date().toISOString().slice(0, 10)}; ` +
  `the FMA peak, measured by the same microbenchmark: ${best.peak.toFixed(1)} GFLOP/s.`);
const referenceBlas = !blas || !/openblas|mkl|blis/i.test(blas);
console.log(`Peer: torch.mm through \`${blas ?? 'no PyTorch'}\`${referenceBlas ? ' (not an optimised BLAS: no ratio printed)' : ''}.\n`);
console.log('| shape | m×n×k | ours GFLOP/s | % of FMA peak | torch GFLOP/s | ours / torch |');
console.log('|---|---|---:|---:|---:|---:|');
shapes.forEach((s, i) => {
  const o = best[`o${i}`];
  const t = best[`t${i}`];
  const ratio = t && !referenceBlas ? (o / t).toFixed(2) : '—';
  console.log(`| ${s.name} | ${s.m}×${s.n}×${s.k} | ${o.toFixed(1)} | ${((100 * o) / best.peak).toFixed(0)}% | ${t ? t.toFixed(1) : '—'} | ${ratio} |`);
});
