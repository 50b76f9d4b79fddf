#!/usr/bin/env node
// npm run bench:native: the native microbenchmarks (bench/native/bench_native.cpp), built with
// CMake into build-bench/ and run at every op's bench sizes from the op registry
// (scripts/ops.mjs), with the same byte counts for the copy floor as bench/run.mjs. Each op is
// validated against its long-double reference before it is timed.
//
//   node bench/native/run.mjs [--op NAME]
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { ops } from '../../scripts/ops.mjs';

const args = process.argv.slice(2);
const only = args.includes('--op') ? args[args.indexOf('--op') + 1] : undefined;
const jobs = ops
  .filter((op) => !only || op.name === only)
  .flatMap((op) => op.bench.sizes.map((size) => `${op.name}:${size.rows}:${size.cols}:${op.bench.bytes(size)}`));
if (jobs.length === 0) throw new Error(`no op ${only} in scripts/ops.mjs`);
const dir = 'build-bench';
const steps = [
  ['cmake', ['-S', '.', '-B', dir, '-G', 'Ninja', '-DFUSEDLOSS_BENCH=ON', '-DCMAKE_BUILD_TYPE=Release']],
  ['cmake', ['--build', dir, '--target', 'bench_native', '--parallel', String(Math.min(8, os.availableParallelism()))]],
  [`${dir}/bench_native`, jobs],
];
for (const [cmd, argv] of steps) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
