#!/usr/bin/env node
// npm run bench: times every registered op (scripts/ops.mjs) against its peers and against
// this machine's copy-bandwidth floor, in one run, and writes docs/BENCHMARKS.md.
//
//   node bench/run.mjs [--op NAME] [--quick] [--no-write] [--chart]
//
// --chart runs only the throughput-vs-N sweep (bench/chart.mjs) and writes docs/bench-throughput.svg;
// a full run writes it too, and links it from docs/BENCHMARKS.md.
//
// bench/default-call.mjs breaks the "default call" column down (CPU, page faults, GCs, peak RSS).
//
// The losses from embeddings have sections of their own, each from its standalone script in a
// subprocess (its own heap, its peak RSS its own), PyTorch alongside: the GEMM core against
// OpenBLAS sgemm (bench/gemm.mjs), linearCrossEntropy (bench/linear.mjs) and
// decoupledSoftmaxFromEmbeddings at DEXML's shape (bench/embeddings.mjs). --op gemm, --op linear
// or --op embeddings runs one of them alone.
//
// The floor: the addon's multi-threaded memcpy over 256 MiB gives the copy bandwidth B (bytes
// read + written per second); an op that must move `bytes` (scripts/ops.mjs: what the op must
// read and write at least, e.g. the scores once and the gradient once, not what a kernel happens
// to re-read) takes about bytes / B. 256 MiB is far beyond the last-level cache, so B is the
// memory's bandwidth, which is the ceiling for an op's 32-64 MiB too. It is a lenient floor, not a
// strict one, in two ways, both in the op's favour: memcpy (glibc, per 1 MiB chunk) stores
// through the cache, reading each destination line for ownership first, where the ops write a
// large gradient with non-temporal stores (a copy with such stores measured 1.4-1.8x memcpy's
// bandwidth on the 2-core EPYC of docs/BENCHMARKS.md, under load); and the op's inputs, reused
// from call to call, may be partly served from a 32 MiB L3. So an op can pass 100%. Peers are
// TensorFlow.js on its wasm backend and a plain-JS loop, on the same inputs. Every figure is a
// median over repeated runs after a warm-up; ratios compare figures from this same run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ops } from '../scripts/ops.mjs';
import { makeRng } from '../scripts/lib/random.mjs';
import { chartSvg, gpuPoints, sweep } from './chart.mjs';
import { adapterBench, adapterSection } from './tfjs-adapter.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const fl = require('../dist/index.js');
const { native } = require('../dist/native.js');
const args = process.argv.slice(2);
const known = ['--op', '--quick', '--no-write', '--chart'];
const unknown = args.filter((a, i) => !known.includes(a) && args[i - 1] !== '--op');
if (unknown.length || args.includes('--help')) {
  // An unknown flag (say --help) must not start a full run that rewrites docs/BENCHMARKS.md.
  console.log('usage: node bench/run.mjs [--op NAME] [--quick] [--no-write] [--chart]\n' +
    '  --op NAME   only this op (softmaxCrossEntropy, softTopKLoss, ..., tfjs-adapter, gemm, linear or embeddings); writes nothing\n' +
    '  --quick     shorter timing; writes nothing\n  --no-write  leave docs/ alone\n  --chart     only the throughput sweep (writes docs/bench-throughput.svg)');
  process.exit(unknown.filter((a) => a !== '--help').length ? 2 : 0);
}
const only = args.includes('--op') ? args[args.indexOf('--op') + 1] : undefined;
const quick = args.includes('--quick');
const chartOnly = args.includes('--chart');
const write = !args.includes('--no-write') && !only && !quick && !chartOnly;

/** Times of repeated calls of fn (no warm-up): at least minReps, and until minMs have passed. */
function samples(fn, { minMs, minReps = 1, maxReps = 200 }) {
  const times = [];
  const start = performance.now();
  while (times.length < minReps || (performance.now() - start < minMs && times.length < maxReps)) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return times;
}

const median = (times) => [...times].sort((a, b) => a - b)[times.length >> 1];

function timeit(fn, { minMs = quick ? 150 : 600, minReps = 3, maxReps = 200 } = {}) {
  fn(); // warm-up
  return median(samples(fn, { minMs, minReps, maxReps }));
}

// A shared machine's speed drifts over seconds. Timing an op, then its floor, then each peer in
// one stretch each would fold that drift into their ratios, so they are timed in alternating
// rounds instead, and each figure is the median of all its rounds' samples.
const ROUNDS = quick ? 2 : 5;
function timeInRounds(fns, { minMs = quick ? 150 : 600 } = {}) {
  const times = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
  for (const f of Object.values(fns)) f.fn(); // warm-up
  for (let r = 0; r < ROUNDS; r++)
    for (const [k, f] of Object.entries(fns)) times[k].push(...samples(f.fn, { minMs: (f.minMs ?? minMs) / ROUNDS, maxReps: f.maxReps ?? 200 }));
  return Object.fromEntries(Object.entries(times).map(([k, t]) => [k, median(t)]));
}

async function loadTf() {
  try {
    const tf = require('@tensorflow/tfjs');
    require('@tensorflow/tfjs-backend-wasm');
    await tf.setBackend('wasm');
    await tf.ready();
    return tf;
  } catch (e) {
    console.warn(`tfjs-wasm peer unavailable: ${e.message}`);
    return undefined;
  }
}

// PyTorch CPU as a peer, run in a subprocess per (op, shape) by bench/torch_cpu.py. Debian's
// python3-torch lives under /usr/bin/python3; FUSEDLOSS_BENCH_PYTHON picks another interpreter.
const python = process.env.FUSEDLOSS_BENCH_PYTHON ?? '/usr/bin/python3';
let torchVersion;
let torchWarned = false;
function torchCpuMs(op, size, threads) {
  const r = spawnSync(python, [path.join(root, 'bench', 'torch_cpu.py'), JSON.stringify({ op, ...size, threads })], { encoding: 'utf8' });
  if (r.status !== 0) {
    // Say once why the peer is missing (no torch, or a broken BLAS/LAPACK link under it).
    if (!torchWarned) console.warn(`torch-cpu peer unavailable (${python}): ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
    torchWarned = true;
    return undefined;
  }
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  torchVersion = out.torch;
  return out.ms;
}

const info = fl.backendInfo();
const addon = native().addon;
const copyBytes = 256 * 2 ** 20;
const src = new Float32Array(copyBytes / 4).fill(1);
const dst = new Float32Array(copyBytes / 4);
const copy = () => addon.memcpy(dst, src);
const copyMs = timeit(copy, { minReps: 5 });
const copyBw = (2 * copyBytes) / (copyMs / 1e3); // bytes moved per second (the run's headline figure)
const ctx = { tf: await loadTf() };
const cpuName = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`machine: ${cpuName}, ${os.cpus().length} cores; fusedloss ${info.cpu.simd}, ${info.cpu.threads} threads`);
console.log(`copy bandwidth (memcpy, ${info.cpu.threads} threads, 256 MiB): ${(copyBw / 1e9).toFixed(1)} GB/s read+write`);

const results = [];
for (const op of ops) {
  if (!op.bench || (only && op.name !== only) || chartOnly) continue;
  for (const size of op.bench.sizes) {
    const made = op.make(fl, makeRng(42), { ...size, dtype: 'float32' });
    const inputs = op.bench.prepare ? op.bench.prepare(fl, made) : made;
    // The default call: the same without a reused `out`, so each call gets a new gradient (as
    // most callers write it). Only ops whose bench reuses an output have one apart.
    const fresh = op.bench.prepare ? { ...inputs, opts: { ...inputs.opts, out: undefined } } : undefined;
    const peers = Object.entries(op.bench.peers ?? {})
      .filter(([peer]) => !peer.startsWith('tfjs') || ctx.tf)
      .map(([peer, make]) => [peer, make(ctx, inputs)]);
    // The torch peer runs in its own process, first, after a pause: threads another peer left
    // busy (TF.js's, say) would otherwise slow it, and flatter fusedloss.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    const torchMs = torchCpuMs(op.name, size, info.cpu.threads);
    const fns = {
      fusedloss: { fn: () => op.run(fl, inputs, 'cpu') },
      ...(fresh ? { defaultCall: { fn: () => op.run(fl, fresh, 'cpu') } } : {}),
      copy: { fn: copy, minMs: quick ? 60 : 200 },
      ...Object.fromEntries(peers.map(([peer, p]) => [peer, { fn: p.fn, minMs: quick ? 100 : 400 }])),
    };
    let t;
    try {
      t = timeInRounds(fns);
    } finally {
      for (const [, p] of peers) p.dispose?.();
    }
    const ms = t.fusedloss;
    const bytes = op.bench.bytes(size);
    const floorMs = (bytes / ((2 * copyBytes) / (t.copy / 1e3))) * 1e3;
    const row = { op: op.name, size: `${size.rows}x${size.cols}`, ms, defaultMs: t.defaultCall, gbs: bytes / (ms / 1e3) / 1e9, ofFloor: floorMs / ms, peers: {} };
    for (const [peer] of peers) row.peers[peer] = t[peer];
    if (torchMs) row.peers['torch-cpu'] = torchMs;
    results.push(row);
    const defaultNote = row.defaultMs ? `default call ${row.defaultMs.toFixed(2)} ms (${(row.defaultMs / ms).toFixed(2)}x)  ` : '';
    console.log(`${op.name.padEnd(22)} ${row.size.padStart(12)}  ${ms.toFixed(2).padStart(8)} ms  ${defaultNote}${row.gbs.toFixed(1).padStart(6)} GB/s  ` +
      `${(row.ofFloor * 100).toFixed(0).padStart(3)}% of floor  ` +
      Object.entries(row.peers).map(([k, v]) => `${(v / ms).toFixed(1)}x vs ${k}`).join('  '));
  }
}

// fusedloss/tfjs against the direct call and tfjs's own loss (--op tfjs-adapter runs it alone).
const adapter = ctx.tf && !chartOnly && (!only || only === 'tfjs-adapter')
  ? await adapterBench({ fl, tf: ctx.tf, flTf: require('../dist/tfjs.js'), timeInRounds, quick, log: console.log })
  : undefined;

// The sections from the standalone scripts (each prints markdown; each refuses a ratio against
// the reference BLAS). gemm.mjs needs build-tests/gemm_bench (npm run test:native builds it).
const sections = [];
for (const [name, script] of [['gemm', 'gemm.mjs'], ['linear', 'linear.mjs'], ['embeddings', 'embeddings.mjs']]) {
  if (chartOnly || (only && only !== name) || (!only && !write)) continue;
  const r = spawnSync(process.execPath, [path.join(root, 'bench', script)], { encoding: 'utf8', env: { ...process.env, FUSEDLOSS_THREADS: String(info.cpu.threads) } });
  if (r.stderr.trim()) console.warn(r.stderr.trim());
  const text = r.status === 0 ? r.stdout.trim() : `## bench/${script}\n\nFailed: ${(r.stderr || r.stdout).trim().split('\n').pop()}`;
  console.log(`\n${text}\n`);
  sections.push(text, '');
}

const chart = write || chartOnly;
if (chart) {
  // GPU points come from a scripts/gpu run: copy its fusedloss-bench.json to docs/gpu-bench.json.
  const gpuJson = path.join(root, 'docs', 'gpu-bench.json');
  const gpu = existsSync(gpuJson) ? gpuPoints(JSON.parse(readFileSync(gpuJson, 'utf8'))) : undefined;
  const op = ops.find((o) => o.name === 'softmaxCrossEntropy');
  const points = sweep({ fl, op, rng: () => makeRng(42), timeit, ctx, torchCpuMs, threads: info.cpu.threads, quick, log: console.log });
  const title = `softmaxCrossEntropy forward + backward, B = 64, fp32 (${cpuName}, ${info.cpu.threads} threads)`;
  mkdirSync(path.join(root, 'docs'), { recursive: true });
  writeFileSync(path.join(root, 'docs', 'bench-throughput.svg'), chartSvg({ points, copyGBs: copyBw / 1e9, gpu, title }));
  console.log('wrote docs/bench-throughput.svg');
}

if (write) {
  const peerNames = [...new Set(results.flatMap((r) => Object.keys(r.peers)))];
  const lines = [
    '# Benchmarks',
    '',
    'Made by `npm run bench` (bench/run.mjs); every figure below comes from one run on one machine.',
    'Times are medians after a warm-up. "Floor" is the time to move the bytes the op must read and',
    'write at this machine\'s measured copy bandwidth (a 256 MiB memcpy on the same threads), so "% of',
    'floor" near 100% means memory-bound at the hardware limit. Peer columns are how many times',
    'slower the peer is on the same inputs. Each op, its floor copy and its in-process peers are',
    `timed in ${ROUNDS} alternating rounds, so that the drift of a shared machine hits all of them`,
    'alike; PyTorch, a subprocess with its own timing loop, runs just before them, after a pause.',
    '"fusedloss ms" is the call with a reused gradient buffer (`out`); "default call ms" the same call',
    'without it (a new gradient per call, whose memory malloc recycles once V8 has collected the last one), timed in the same rounds.',
    '',
    `- Machine: ${cpuName}, ${os.cpus().length} cores, Node ${process.version}, ${os.platform()}-${os.arch()}`,
    `- fusedloss CPU backend: ${info.cpu.simd}, ${info.cpu.threads} threads`,
    `- Copy bandwidth (multi-threaded memcpy, 256 MiB): ${(copyBw / 1e9).toFixed(1)} GB/s read+write`,
    `- Peers: ${peerNames.join(', ') || 'none'}${ctx.tf ? ` (TensorFlow.js ${ctx.tf.version.tfjs}, wasm backend)` : ''}${torchVersion ? ` (PyTorch ${torchVersion} CPU, ${info.cpu.threads} threads, forward + backward)` : ''}`,
    `- Date: ${new Date().toISOString().slice(0, 10)}`,
    '',
    `| op | B×N | fusedloss ms | default call ms | GB/s | % of floor | ${peerNames.map((p) => `vs ${p}`).join(' | ')} |`,
    `|---|---|---:|---:|---:|---:|${peerNames.map(() => '---:').join('|')}|`,
    ...results.map((r) => `| ${r.op} | ${r.size} | ${r.ms.toFixed(2)} | ${r.defaultMs ? `${r.defaultMs.toFixed(2)} (${(r.defaultMs / r.ms).toFixed(2)}×)` : '–'} | ${r.gbs.toFixed(1)} | ${(r.ofFloor * 100).toFixed(0)}% | ` +
      peerNames.map((p) => (r.peers[p] ? `${(r.peers[p] / r.ms).toFixed(1)}×` : '–')).join(' | ') + ' |'),
    '',
    'Throughput against N (cross-entropy, 64 rows; the dashed line is the copy floor; GPU points',
    'appear when docs/gpu-bench.json holds a scripts/gpu run):',
    '',
    '![softmaxCrossEntropy throughput against N](bench-throughput.svg)',
    '',
    ...(adapter ? adapterSection(adapter) : []),
    ...sections,
  ];
  mkdirSync(path.join(root, 'docs'), { recursive: true });
  writeFileSync(path.join(root, 'docs', 'BENCHMARKS.md'), lines.join('\n'));
  console.log('wrote docs/BENCHMARKS.md');
}
