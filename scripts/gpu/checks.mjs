#!/usr/bin/env node
// The GPU checklist (issue 21), run on the lent GPU machine by scripts/gpu/run.sh:
//
//   node scripts/gpu/checks.mjs matrix        every op × dtype × {grad in dtype, fp32 grad, in place} at odd N,
//                                             rows below and above 2·SMs, CUDA vs CPU (small: run it under
//                                             compute-sanitizer memcheck/racecheck/synccheck)
//   node scripts/gpu/checks.mjs layouts       soft top-k at the layout boundaries (N = 12288, 57601, 200000,
//                                             460000, 500000) with exclusions, in place and dScale; the operator
//                                             and its vjp with exclusions (and the vjp's own on-chip
//                                             boundaries); the softmax losses over positives and one-way
//                                             InfoNCE/DCL at the row-on-chip boundaries; CUDA vs CPU
//   node scripts/gpu/checks.mjs edges         CPU parity at the edge cases: −inf rows, a −inf label under a
//                                             softcap, logits ~1e3 and ~3e4, an excluded outlier in soft top-k
//   node scripts/gpu/checks.mjs determinism   every op twice on CUDA: bitwise equal losses, dScale, gradients
//   node scripts/gpu/checks.mjs ncu --op NAME one large call of one op, for Nsight Compute (run.sh profiles it
//                                             and scripts/gpu/ncu_report.mjs sets DRAM bytes against the ideal)
//
// Each prints one line per check and exits 1 when any failed; --json FILE writes the rows.
// --dry-run (no GPU needed): the same checks with the CPU in place of CUDA, to try the script.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ops, randomCsr, scoresTensor } from '../ops.mjs';
import { makeRng } from '../lib/random.mjs';

const require = createRequire(import.meta.url);
const fl = require('../../dist/index.js');
const args = process.argv.slice(2);
const section = args[0];
const arg = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const info = fl.backendInfo();
const dry = args.includes('--dry-run');
if (!info.cuda.available && !dry) {
  console.log(`no GPU (${info.cuda.reason}): nothing to check (--dry-run tries the script on the CPU)`);
  process.exit(2);
}
const gpu = dry ? 'cpu' : 'cuda';  // where the checked side runs
const toGpu = (t) => (dry ? t : fl.toDevice(t));
const sms = dry ? 132 : info.cuda.devices[info.cuda.selectedDevice ?? 0].multiprocessors;
const dtypes = ['float32', 'float16', 'bfloat16'];
const rows = [];
let failed = 0;

const host = (v) => (v && v.dtype ? fl.toFloat32(fl.toHost(v).data, v.dtype) : v);

// Relative error over the finite entries; non-finite entries must agree exactly (−inf, +inf, NaN).
function compare(a, b) {
  if (typeof b === 'number') {
    if (!Number.isFinite(b) || !Number.isFinite(a)) return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)) ? 0 : Infinity;
    return Math.abs(a - b) / Math.max(1, Math.abs(b));
  }
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(b[i]) || !Number.isFinite(a[i])) {
      if (!(Object.is(a[i], b[i]) || (Number.isNaN(a[i]) && Number.isNaN(b[i])))) return Infinity;
      continue;
    }
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num) / Math.max(1, Math.sqrt(den));
}

function record(label, fn) {
  const t0 = performance.now();
  try {
    const r = fn() ?? {};
    const ok = r.ok ?? true;
    if (!ok) failed++;
    rows.push({ label, ok, ...r, ms: performance.now() - t0 });
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${label.padEnd(70)} ${r.note ?? ''}`);
  } catch (e) {
    failed++;
    rows.push({ label, ok: false, error: String(e && e.stack ? e.stack : e) });
    console.log(`FAIL ${label.padEnd(70)} ${e && e.message}`);
  }
}

// Runs op on CUDA first (the host scores stay untouched, even in place), then on the CPU with
// its own copy, and compares every output.
function parity(op, inputs, tol) {
  const clone = () => {
    const t = inputs.scores;
    return fl.tensor(t.data.slice(), t.shape, { dtype: t.dtype });
  };
  const dev = op.run(fl, { ...inputs, scores: clone() }, gpu);
  const cpu = op.run(fl, { ...inputs, scores: clone() }, 'cpu');
  let worst = 0;
  for (const key of Object.keys(cpu)) worst = Math.max(worst, compare(host(dev[key]), host(cpu[key])));
  return { ok: worst <= tol, worst, note: `rel err ${worst.toExponential(2)} (tol ${tol})` };
}

// The case each op is checked with at new shapes: its first case with exclusions if it has one.
function template(op) {
  return op.cases.find((c) => c.exclude || c.opts?.exclude || c.opts?.positives) ?? op.cases[0];
}

// ---------- matrix: small, for compute-sanitizer ----------
function matrix() {
  const odd = 1031;
  const shapes = [
    [7, odd],
    [2 * sms + 3, odd],
  ];
  for (const op of ops) {
    const base = template(op);
    for (const dtype of dtypes)
      for (const [r, c] of shapes) {
        const variants = op.name === 'logSumExp' ? [{}] : [{}, { inplace: true }, ...(dtype === 'float32' ? [] : [{ gradDtype: 'float32' }])];
        for (const v of variants) {
          const isSym = op.name === 'infoNCE';
          const cases = isSym ? [{ ...base, rows: r, cols: c }, { ...base, rows: r === 7 ? 131 : odd, cols: r === 7 ? 131 : odd, opts: { scale: 20, symmetric: true } }] : [{ ...base, rows: r, cols: c }];
          for (const cs of cases) {
            const label = `matrix ${op.name} ${cs.rows}x${cs.cols} ${dtype} ${JSON.stringify(v)}${cs.opts?.symmetric ? ' symmetric' : ''}`;
            record(label, () => {
              const inputs = op.make(fl, makeRng(cs.rows * 31 + cs.cols), { ...cs, dtype });
              if (inputs.opts) inputs.opts = { ...inputs.opts, ...v };
              return parity(op, inputs, op.tol[dtype]);
            });
          }
        }
      }
  }
  // The operator and its vjp (with exclusions), both output kinds.
  for (const dtype of dtypes)
    for (const [r, c] of shapes)
      for (const output of ['prob', 'log']) record(`matrix softTopK+vjp ${r}x${c} ${dtype} ${output}`, () => topkOperatorParity(r, c, dtype, output, 5));
}

function topkOperatorParity(r, c, dtype, output, k, edit) {
  const rng = makeRng(r * 7 + c);
  const scores = scoresTensor(fl, rng, { rows: r, cols: c, kind: 'normal', dtype }, edit);
  const exclude = randomCsr(rng, r, c, 5);
  const g = new Float32Array(r * c).map(() => rng.normal());
  const run = (onGpu) => {
    const s = onGpu ? toGpu(scores) : scores;
    const res = fl.softTopK(s, k, { exclude, output });
    const out = { values: host(res.values), threshold: res.threshold, iterations: res.iterations };
    out.grad = host(res.vjp(onGpu ? toGpu(fl.tensor(g, [r, c])) : g));
    return out;
  };
  const a = run(true), b = run(false);
  const tol = dtype === 'float32' ? 1e-4 : 1e-2;
  let worst = 0;
  for (const key of ['values', 'threshold', 'grad']) worst = Math.max(worst, compare(a[key], b[key]));
  const sameIters = a.iterations.every((v, i) => v === b.iterations[i]);
  return { ok: worst <= tol, worst, sameIters, note: `rel err ${worst.toExponential(2)} (tol ${tol}), iterations ${sameIters ? 'as the CPU' : `differ: ${a.iterations} vs ${b.iterations}`}` };
}

// ---------- layouts: soft top-k at the boundaries ----------
function layouts() {
  const op = ops.find((o) => o.name === 'softTopKLoss');
  for (const cols of [12288, 57601, 200000, 460000, 500000])
    for (const dtype of ['float32', 'bfloat16'])
      for (const v of [{}, { inplace: true }]) {
        record(`layouts softTopKLoss 3x${cols} ${dtype} exclude ${JSON.stringify(v)}`, () => {
          const inputs = op.make(fl, makeRng(cols), { rows: 3, cols, kind: 'normal', dtype, opts: { k: 5, alpha: 2, exclude: true } });
          inputs.opts = { ...inputs.opts, ...v };
          return parity(op, inputs, op.tol[dtype]);
        });
      }
  for (const cols of [12288, 57601, 200000, 460000, 500000]) record(`layouts softTopK+vjp 2x${cols} float32`, () => topkOperatorParity(2, cols, 'float32', 'prob', 50));
  // The soft top-k vjp holds (v, own), 8 bytes a column, on chip: one block up to ~28.9K columns
  // on an H100/H200, a cluster of up to 8 to ~230K, re-read beyond.
  for (const cols of [28000, 29500, 200000, 240000])
    for (const output of ['prob', 'log']) record(`layouts softTopK+vjp on chip 2x${cols} float32 ${output}`, () => topkOperatorParity(2, cols, 'float32', output, 50));
  // The softmax losses over positives and one-way InfoNCE/DCL hold the row on chip: one block up
  // to ~57.7K float32 / ~115K bf16 columns on an H100/H200, a cluster of up to 8 (sm_90) to
  // ~462K / ~925K, re-read beyond; with exclusions (whose mask each block of a cluster builds for
  // its slice), positives in any slice, in place.
  const onChip = { float32: [57000, 57601, 131072, 470000], bfloat16: [115000, 116000, 940000] };
  for (const name of ['decoupledSoftmax', 'multiLabelSoftmax', 'infoNCE', 'decoupledContrastive']) {
    const op = ops.find((o) => o.name === name);
    const base = template(op);
    for (const [dtype, widths] of Object.entries(onChip))
      for (const cols of widths)
        for (const v of [{}, { inplace: true }])
          record(`layouts ${name} 3x${cols} ${dtype} ${JSON.stringify(v)}`, () => {
            const inputs = op.make(fl, makeRng(cols + 3), { ...base, rows: 3, cols, dtype });
            inputs.opts = { ...inputs.opts, ...v };
            return parity(op, inputs, op.tol[dtype]);
          });
  }
  // Call order must not matter (issue 21, bug 1): a small N after a large one and the reverse.
  record('layouts softTopKLoss 12288 after 460000 and before', () => {
    const op2 = ops.find((o) => o.name === 'softTopKLoss');
    const a = op2.make(fl, makeRng(1), { rows: 2, cols: 12288, kind: 'normal', opts: { k: 5 } });
    const first = op2.run(fl, a, gpu);
    op2.run(fl, op2.make(fl, makeRng(2), { rows: 2, cols: 460000, kind: 'normal', opts: { k: 5 } }), gpu);
    const again = op2.run(fl, a, gpu);
    const same = compare(again.grad, first.grad) === 0 && again.loss === first.loss;
    return { ok: same, note: same ? 'bitwise the same' : 'differs' };
  });
}

// ---------- edges: CPU parity at the edge cases ----------
function edges() {
  const ce = ops.find((o) => o.name === 'softmaxCrossEntropy');
  const lse = ops.find((o) => o.name === 'logSumExp');
  const topk = ops.find((o) => o.name === 'softTopKLoss');
  for (const dtype of ['float32', 'bfloat16']) {
    record(`edges CE −inf rows and −inf label with softcap ${dtype}`, () => {
      const rng = makeRng(5);
      const r = 6, c = 4099;
      const labels = new Int32Array(r).map(() => rng.int(0, c));
      const edit = (x) => {
        for (let j = 0; j < c; j++) x[j] = -Infinity;           // row 0: all −inf
        x[1 * c + labels[1]] = -Infinity;                         // row 1: the label at −inf
        for (let j = 0; j < c; j += 2) x[2 * c + j] = -Infinity;  // row 2: half −inf
      };
      const scores = scoresTensor(fl, rng, { rows: r, cols: c, kind: 'normal', dtype }, edit);
      return parity(ce, { scores, labels, opts: { softcap: 30, reduction: 'none', gradScale: true } }, ce.tol[dtype]);
    });
    for (const offset of [1e3, 3e4])
      record(`edges CE logits ~${offset} ${dtype}`, () => {
        const rng = makeRng(6);
        const r = 4, c = 50257;
        const labels = new Int32Array(r).map(() => rng.int(0, c));
        const scores = scoresTensor(fl, rng, { rows: r, cols: c, kind: 'normal', dtype }, (x) => x.forEach((v, i) => (x[i] = v + offset)));
        return parity(ce, { scores, labels, opts: { gradScale: true } }, dtype === 'float32' ? 1e-6 : ce.tol[dtype]);
      });
    record(`edges logSumExp logits ~1e3 (scale 100) ${dtype}`, () => {
      const rng = makeRng(7);
      const scores = scoresTensor(fl, rng, { rows: 4, cols: 50257, kind: 'normal', dtype });
      return parity(lse, { scores, scale: 100 }, 1e-6);
    });
  }
  for (const name of ['decoupledSoftmax', 'multiLabelSoftmax', 'infoNCE', 'decoupledContrastive'])
    record(`edges ${name} scale 100 (z ~1e3)`, () => {
      const op = ops.find((o) => o.name === name);
      const base = template(op);
      const inputs = op.make(fl, makeRng(8), { ...base, rows: 33, cols: 4099, dtype: 'float32' });
      inputs.opts = { ...inputs.opts, scale: 100, symmetric: undefined };
      return parity(op, inputs, 1e-5);
    });
  // An excluded outlier: the bracket, the Newton path and the iterations as on the CPU.
  for (const outlier of [1e4, -1e4])
    record(`edges softTopK excluded outlier ${outlier}`, () =>
      topkOperatorParity(3, 4099, 'float32', 'prob', 5, (x) => {
        for (let r = 0; r < 3; r++) x[r * 4099 + 17] = outlier;
      }),
    );
  record('edges softTopKLoss excluded outlier 1e4', () => {
    const inputs = topk.make(fl, makeRng(9), { rows: 3, cols: 4099, kind: 'normal', dtype: 'float32', opts: { k: 5, exclude: true } });
    const ex = inputs.opts.exclude;
    const x = inputs.scores.data;
    for (let r = 0; r < 3; r++) x[r * 4099 + ex.cols[ex.rowPtr[r]]] = 1e4;
    return parity(topk, inputs, 1e-4);
  });
}

// ---------- determinism: two runs, bitwise ----------
function determinism() {
  for (const op of ops)
    for (const dtype of ['float32', 'bfloat16'])
      op.cases
        .filter((c) => c.dtype === dtype)
        .slice(0, 3)
        .forEach((c, i) => {
          record(`determinism ${op.name} ${c.rows}x${c.cols} ${dtype}`, () => {
            const inputs = op.make(fl, makeRng(100 + i), c);
            const a = op.run(fl, inputs, gpu), b = op.run(fl, inputs, gpu);
            const same = Object.keys(a).every((k) => {
              const x = host(a[k]), y = host(b[k]);
              if (typeof x === 'number') return Object.is(x, y);
              return Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)) === 0;
            });
            return { ok: same, note: same ? 'bitwise the same' : 'differs between runs' };
          });
        });
}

// ---------- ncu: one large call of one op ----------
// The shapes of issue 21's table (4096×131072; CLIP at 16384², 1 GiB), float32.
const ncuShapes = {
  logSumExp: { rows: 4096, cols: 131072 },
  softmaxCrossEntropy: { rows: 4096, cols: 131072 },
  decoupledSoftmax: { rows: 4096, cols: 131072 },
  multiLabelSoftmax: { rows: 4096, cols: 131072 },
  binaryCrossEntropy: { rows: 4096, cols: 131072 },
  softTopKLoss: { rows: 4096, cols: 131072 },
  infoNCE: { rows: 16384, cols: 16384, symmetric: true },
  infoNCEOneWay: { rows: 4096, cols: 131072 },
  decoupledContrastive: { rows: 4096, cols: 131072 },
};
function ncu() {
  const name = arg('--op');
  const shape = ncuShapes[name];
  if (!shape) throw new Error(`--op: one of ${Object.keys(ncuShapes).join(', ')}`);
  const op = ops.find((o) => o.name === (name === 'infoNCEOneWay' ? 'infoNCE' : name));
  const { rows: r, cols: c } = shape;
  const x = new Float32Array(r * c);
  const rng = makeRng(3);
  for (let i = 0; i < x.length; i += 4096) x[i] = rng.normal();  // sparse values: generation stays fast, the traffic is the same
  const scores = fl.toDevice(fl.tensor(x, [r, c]));
  const opts = { ...(shape.symmetric ? { symmetric: true, scale: 20 } : {}) };
  const positives = randomCsr(rng, r, c, 3);
  let res;
  if (name === 'logSumExp') res = fl.logSumExp(scores);
  else if (name === 'softmaxCrossEntropy') res = fl.softmaxCrossEntropy(scores, new Int32Array(r).map(() => rng.int(0, c)), { inplace: true });
  else if (name === 'softTopKLoss') res = fl.softTopKLoss(scores, positives, { inplace: true });
  else if (name === 'infoNCE') res = fl.infoNCE(scores, { ...opts, inplace: true });
  else if (name === 'infoNCEOneWay' || name === 'decoupledContrastive') res = fl[op.name](scores, { positives: name === 'decoupledContrastive' ? randomCsr(rng, r, c, 1) : positives, inplace: true });
  else res = fl[name](scores, positives, { inplace: true });
  console.log(`ncu ${name} ${r}x${c} float32 ideal ${op.bench?.bytes ? op.bench.bytes({ rows: r, cols: c }) : r * c * 4} bytes`, typeof res?.loss === 'number' ? `loss ${res.loss}` : '');
  scores.dispose();
}

const sections = { matrix, layouts, edges, determinism, ncu };
if (!sections[section]) {
  console.error(`usage: checks.mjs ${Object.keys(sections).join('|')} [--json FILE]`);
  process.exit(2);
}
sections[section]();
if (section !== 'ncu') {
  console.log(`${section}: ${rows.filter((r) => r.ok).length} passed, ${failed} failed`);
  const out = arg('--json');
  if (out) writeFileSync(out, JSON.stringify({ info, rows }, null, 2));
}
process.exit(failed ? 1 : 0);
