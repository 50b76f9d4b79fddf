// The one registry of ops. Everything that drives every op reads it:
//   scripts/backend-ops.mjs       each case on every live backend, compared with the CPU
//   bench/run.mjs, bench/chart.mjs  CPU timings against the peers and the copy floor
//   bench/gpu.mjs, scripts/gpu/   GPU timings (and shapes.py hands `gpu.shapes` to the PyTorch baselines)
//   scripts/gpu/checks.mjs        the GPU checklist
//   test/ops-under-test.ts        the property, async, lifetime and leak tests (op.property)
//   test/workers.test.ts          every case in worker threads
// Adding an op is one entry here. It is plain JS that node runs as it is, on the GPU machine too
// (only node and dist/ there): the test-only parts take fast-check and the float64 references
// from the test kit they are called with, and import nothing themselves.
//
// An entry:
//   name, fn, asyncFn                the package's function and its async twin (fl[fn], fl[asyncFn])
//   args                             the arguments before the options, by kind: 'scores', then
//                                    'labels' (Int32Array) or 'positives' (CSR); inputs objects
//                                    hold them under these names, the options under `opts`
//   options                          the op's own options, beyond the common ones (LOSS_OPTION_KEYS
//                                    for a loss; shape and dtype, the bare-array form, for any op);
//                                    test/options.test.ts checks them against what the op accepts
//   returns                          'loss' (a LossResult) or 'lse' (the row log-sum-exps)
//   reference                        its float64 oracle: the name of a function test/reference/<op>.ts exports
//   cases: [{ rows, cols, kind, dtype, ...op options }]       inputs for the backend comparison
//   make(fl, rng, c) -> inputs                                host inputs (Tensor scores + args + opts)
//   run(fl, inputs, device) -> { key: Float32Array | number } runs on 'cpu' or 'cuda' (from fn/args)
//   tol: { float32, float16, bfloat16 }                       max relative error vs the CPU
//   bench: { sizes: [{rows, cols, ...}], bytes(c), prepare?, peers: { name: (ctx, inputs) => { fn, dispose? } } }
//          bytes(c) counts the bytes the op must move at least (its copy-floor traffic).
//   gpu: { shapes: [[rows, cols]], opts?, positivesPerRow? }   the GPU bench (bench/gpu.mjs)
//   property(kit, entry) -> { cases, make, outputs, reference, check, views, mutations, heavy, small }
//          the property-test parts (test/ops-under-test.ts: the kit, and what each part means)
import { makeRng, randomScores } from './lib/random.mjs';

export function scoresTensor(fl, rng, c, edit) {
  const x = randomScores(rng, c.rows, c.cols, c.kind ?? 'normal');
  edit?.(x);
  const dtype = c.dtype ?? 'float32';
  const data = dtype === 'float32' ? x : dtype === 'float16' ? fl.float32ToFloat16(x) : fl.float32ToBFloat16(x);
  return fl.tensor(data, [c.rows, c.cols], { dtype });
}

/** Puts a host tensor where an op should run (the caller disposes device copies). */
export const place = (fl, t, device) => (device === 'cuda' ? fl.toDevice(t) : t);

const dtypes = ['float32', 'float16', 'bfloat16'];

/** Labels in [0, cols), with about a fifth ignored (-100) when `ignore` is set. */
export function randomLabels(rng, rows, cols, ignore = false) {
  const y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) y[i] = ignore && rng.u() < 0.2 ? -100 : rng.int(0, cols);
  return y;
}

/**
 * Bench inputs timed as a training loop runs them: the gradient buffer is reused (opts.out), and
 * no dScale is asked for (the peers compute none; make() asks for it to compare backends).
 */
const reuseGrad = (fl, inputs) => ({
  ...inputs,
  opts: { ...inputs.opts, gradScale: false, out: fl.tensor(new Float32Array(inputs.scores.size), inputs.scores.shape) },
});

/** Host values of a loss result's gradient (for comparisons across backends). */
const gradValues = (fl, g) => (g ? fl.toFloat32(fl.toHost(g).data, g.dtype) : new Float32Array(0));

/** The arguments of a call of `op` from an inputs object, `scores` in place of the scores. */
export const argsOf = (op, inputs, scores) => [scores, ...op.args.slice(1).map((kind) => inputs[kind]), inputs.opts];

/** `run` of every entry: the op on `device`, its outputs as host values. */
function runOn(op, fl, inputs, device) {
  const s = place(fl, inputs.scores, device);
  try {
    const r = fl[op.fn](...argsOf(op, inputs, s));
    if (op.returns === 'lse') return { lse: r };
    const out = { loss: r.loss, dScale: r.dScale, grad: gradValues(fl, r.grad) };
    if (device === 'cuda' && r.grad) r.grad.dispose();
    return out;
  } finally {
    if (s !== inputs.scores) s.dispose();
  }
}

export const ops = [
  {
    name: 'softmaxCrossEntropy',
    fn: 'softmaxCrossEntropy',
    asyncFn: 'softmaxCrossEntropyAsync',
    args: ['scores', 'labels'],
    options: ['ignoreIndex', 'labelSmoothing', 'classWeights', 'zLoss', 'softcap', 'returnLse'],
    returns: 'loss',
    reference: 'refSoftmaxCrossEntropy',
    cases: [
      { rows: 7, cols: 97, kind: 'normal', opts: {} },
      { rows: 5, cols: 50257, kind: 'peaked', opts: { labelSmoothing: 0.1, zLoss: 1e-4 } },
      { rows: 300, cols: 32771, kind: 'normal', opts: { scale: 1.5, softcap: 30 } },
      { rows: 2, cols: 300007, kind: 'flat', opts: { reduction: 'sum', classWeights: true } },
      // Confident rows: the label's logit 24 above the rest, so p_y − 1 ≈ −3·10^-6 must survive.
      { rows: 33, cols: 50257, kind: 'normal', confident: 24, opts: {} },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      const opts = { ...(c.opts ?? {}), gradScale: true };
      if (opts.classWeights === true) opts.classWeights = new Float32Array(c.cols).map(() => 0.5 + rng.u());
      const labels = randomLabels(rng, c.rows, c.cols, c.rows > 2 && !c.confident);
      const raise = (x) => labels.forEach((y, i) => (x[i * c.cols + y] += c.confident));
      return { scores: scoresTensor(fl, rng, c, c.confident ? raise : undefined), labels, opts };
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      sizes: [
        { rows: 256, cols: 32768 },
        { rows: 8, cols: 1_000_003 },
        { rows: 1, cols: 10_000_003 }, // one row: the pool splits it into tiles (two-level reduction)
      ],
      bytes: (c) => c.rows * c.cols * 8, // one read of the logits, one write of the gradient
      prepare: reuseGrad,
      peers: {
        'tfjs-wasm': ({ tf }, inputs) => {
          const [rows, cols] = inputs.scores.shape;
          const x = tf.tensor2d(inputs.scores.data, [rows, cols]);
          const onehot = tf.oneHot(tf.tensor1d(inputs.labels, 'int32'), cols);
          const lossAndGrad = tf.valueAndGrad((logits) => tf.losses.softmaxCrossEntropy(onehot, logits));
          return {
            fn: () => {
              const { value, grad } = lossAndGrad(x);
              value.dataSync();
              grad.dataSync();
              value.dispose();
              grad.dispose();
            },
            dispose: () => { x.dispose(); onehot.dispose(); },
          };
        },
        'plain-js': (_ctx, inputs) => {
          const [rows, cols] = inputs.scores.shape;
          const x = inputs.scores.data;
          const g = new Float32Array(rows * cols);
          return {
            fn: () => {
              for (let r = 0; r < rows; r++) {
                const o = r * cols;
                let m = -Infinity;
                for (let c = 0; c < cols; c++) m = Math.max(m, x[o + c]);
                let s = 0;
                for (let c = 0; c < cols; c++) s += Math.exp(x[o + c] - m);
                const lse = m + Math.log(s);
                for (let c = 0; c < cols; c++) g[o + c] = Math.exp(x[o + c] - lse) / rows;
                g[o + inputs.labels[r]] -= 1 / rows;
              }
            },
          };
        },
      },
    },
    gpu: { shapes: [[8192, 32768], [4096, 131072], [16, 50257]] },
    property: softmaxCrossEntropyProperty,
  },
  {
    name: 'logSumExp',
    fn: 'logSumExp',
    asyncFn: 'logSumExpAsync',
    args: ['scores'],
    options: ['scale'],
    returns: 'lse',
    reference: 'refLogSumExp',
    cases: [
      { rows: 7, cols: 97, kind: 'normal', scale: 1 },
      { rows: 3, cols: 50257, kind: 'peaked', scale: 1 },
      { rows: 2, cols: 70001, kind: 'flat', scale: 14.285714 },
      { rows: 1, cols: 1000003, kind: 'normal', scale: 1 },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make: (fl, rng, c) => ({ scores: scoresTensor(fl, rng, c), opts: { scale: c.scale ?? 1 } }),
    tol: { float32: 1e-5, float16: 1e-5, bfloat16: 1e-5 },
    bench: {
      sizes: [
        { rows: 256, cols: 32768 },
        { rows: 1, cols: 10_000_000 },
      ],
      bytes: (c) => c.rows * c.cols * 4, // one read of the scores
      peers: {
        'tfjs-wasm': ({ tf }, inputs) => {
          const x = tf.tensor2d(inputs.scores.data, inputs.scores.shape);
          return { fn: () => tf.tidy(() => tf.logSumExp(x, 1).dataSync()), dispose: () => x.dispose() };
        },
        'plain-js': (_ctx, inputs) => {
          const [rows, cols] = inputs.scores.shape;
          const x = inputs.scores.data;
          const out = new Float64Array(rows);
          return {
            fn: () => {
              for (let r = 0; r < rows; r++) {
                let m = -Infinity;
                for (let c = 0; c < cols; c++) m = Math.max(m, x[r * cols + c]);
                let s = 0;
                for (let c = 0; c < cols; c++) s += Math.exp(x[r * cols + c] - m);
                out[r] = m + Math.log(s);
              }
            },
          };
        },
      },
    },
    gpu: { shapes: [[8192, 32768], [1, 100000000]] },
    property: logSumExpProperty,
  },
  {
    name: 'softTopKLoss',
    fn: 'softTopKLoss',
    asyncFn: 'softTopKLossAsync',
    args: ['scores', 'positives'],
    options: ['k', 'alpha', 'tol', 'maxIter', 'exclude'],
    returns: 'loss',
    reference: 'refSoftTopKLoss',
    cases: [
      { rows: 7, cols: 97, kind: 'normal', opts: { k: 3, alpha: 1 } },
      { rows: 5, cols: 50257, kind: 'peaked', opts: {} },
      { rows: 9, cols: 32771, kind: 'normal', opts: { k: 'numPositives', alpha: 5, scale: 0.7, exclude: true } },
      { rows: 2, cols: 300007, kind: 'flat', opts: { k: 50, reduction: 'sum' } },
      // CUDA layouts: one block (≤ ~56K columns), a cluster (≤ ~450K), re-read passes (wider).
      { rows: 3, cols: 1000003, kind: 'normal', opts: { exclude: true } },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      // 1 to 3 positives per row, distinct columns; with `exclude`, 5 more columns per row out.
      const rowPtr = new Int32Array(c.rows + 1);
      const cols = [];
      const excl = [];
      for (let i = 0; i < c.rows; i++) {
        const taken = new Set();
        const n = 1 + rng.int(0, 3);
        while (taken.size < n) taken.add(rng.int(0, c.cols));
        cols.push(...[...taken].sort((a, b) => a - b));
        rowPtr[i + 1] = cols.length;
        if (c.opts?.exclude) {
          const out = new Set();
          while (out.size < 5) {
            const j = rng.int(0, c.cols);
            if (!taken.has(j)) out.add(j);
          }
          excl.push([...out]);
        }
      }
      const opts = { ...(c.opts ?? {}), gradScale: true };
      if (opts.exclude) {
        const ptr = new Int32Array(c.rows + 1).map((_, i) => 5 * i);
        opts.exclude = { rowPtr: ptr, cols: Int32Array.from(excl.flat()) };
      }
      return { scores: scoresTensor(fl, rng, c), positives: { rowPtr, cols: Int32Array.from(cols) }, opts };
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      // DEXML's configuration: k = 5, α = 2 (the defaults).
      sizes: [{ rows: 64, cols: 131072 }],
      bytes: (c) => c.rows * c.cols * 8, // one read of the scores, one write of the gradient
      prepare: reuseGrad,
      peers: {},
    },
    // One positive per row (the label), DEXML's k = 5, α = 2.
    gpu: { shapes: [[4096, 131072]], positivesPerRow: 1 },
    property: softTopKLossProperty,
  },
];

// ---------- losses over CSR positives: decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy ----------

/** `count` distinct columns per row (capped at cols), in random order, as CSR; weights in [0.5, 1.5) when asked. */
export function randomCsr(rng, rows, cols, count, { weighted = false, avoid } = {}) {
  const rowPtr = new Int32Array(rows + 1);
  const list = [];
  for (let r = 0; r < rows; r++) {
    const taken = new Set(avoid ? avoid.cols.subarray(avoid.rowPtr[r], avoid.rowPtr[r + 1]) : []);
    const want = Math.min(count, cols - taken.size);
    const row = new Set();
    while (row.size < want) {
      const c = rng.int(0, cols);
      if (!taken.has(c)) row.add(c);
    }
    list.push(...row);
    rowPtr[r + 1] = list.length;
  }
  const cols32 = Int32Array.from(list);
  return weighted ? { rowPtr, cols: cols32, weights: Float32Array.from(cols32, () => 0.5 + rng.u()) } : { rowPtr, cols: cols32 };
}

function positivesLossOp(name, reference) {
  return {
    name,
    fn: name,
    asyncFn: `${name}Async`,
    args: ['scores', 'positives'],
    options: ['exclude'],
    returns: 'loss',
    reference,
    cases: [
      { rows: 7, cols: 97, kind: 'normal', positives: 1, opts: {} },
      { rows: 64, cols: 4099, kind: 'peaked', positives: 4, weighted: true, exclude: 8, opts: { scale: 1 / 0.07 } },
      { rows: 300, cols: 32771, kind: 'normal', positives: 3, exclude: 3, opts: { scale: 20, reduction: 'sum' } },
      { rows: 2, cols: 300007, kind: 'flat', positives: 2, weighted: true, opts: { reduction: 'none' } },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      const positives = randomCsr(rng, c.rows, c.cols, c.positives ?? 3, { weighted: c.weighted });
      const opts = { ...(c.opts ?? {}), gradScale: true };
      if (c.exclude) opts.exclude = randomCsr(rng, c.rows, c.cols, c.exclude, { avoid: positives });
      if (opts.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { scores: scoresTensor(fl, rng, c), positives, opts };
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      // DEXML's shape on the CPU: 256 queries × 32768 labels, 3 positives per row.
      sizes: [{ rows: 256, cols: 32768, positives: 3 }],
      bytes: (c) => c.rows * c.cols * 8, // one read of the scores, one write of the gradient
      prepare: reuseGrad,
      peers: {},
    },
    // Three positives per row (DEXML's setting).
    gpu: { shapes: [[4096, 131072]], positivesPerRow: 3 },
    property: positivesProperty,
  };
}

ops.push(
  positivesLossOp('decoupledSoftmax', 'refDecoupledSoftmax'),
  positivesLossOp('multiLabelSoftmax', 'refMultiLabelSoftmax'),
  positivesLossOp('binaryCrossEntropy', 'refBinaryCrossEntropy'),
);

// ---------- infoNCE and decoupledContrastive ----------

/** The options of a contrastive case: `positives`/`exclude` as counts become random CSR. */
function contrastiveOpts(rng, c, dcl) {
  const opts = { ...(c.opts ?? {}), gradScale: true };
  if (typeof opts.positives === 'number') opts.positives = randomCsr(rng, c.rows, c.cols, opts.positives, { weighted: !dcl });
  if (typeof opts.exclude === 'number') {
    const diagonal = { rowPtr: Int32Array.from({ length: c.rows + 1 }, (_, i) => i), cols: Int32Array.from({ length: c.rows }, (_, i) => i) };
    opts.exclude = randomCsr(rng, c.rows, c.cols, opts.exclude, { avoid: opts.positives ?? diagonal });
  }
  if (opts.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
  return opts;
}

function contrastiveEntry(name, { options, reference, cases, bench, gpu }) {
  const dcl = name === 'decoupledContrastive';
  return {
    name,
    fn: name,
    asyncFn: `${name}Async`,
    args: ['scores'],
    options,
    returns: 'loss',
    reference,
    cases: cases.flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make: (fl, rng, c) => ({ scores: scoresTensor(fl, rng, c), opts: contrastiveOpts(rng, c, dcl) }),
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench,
    gpu,
    property: contrastiveProperty,
  };
}


ops.push(
  contrastiveEntry('infoNCE', {
    options: ['symmetric', 'positives', 'exclude'],
    reference: 'refInfoNCE',
    cases: [
      { rows: 7, cols: 97, kind: 'normal', opts: { scale: 14 } },
      { rows: 300, cols: 50257, kind: 'peaked', opts: { reduction: 'sum' } },
      { rows: 64, cols: 70001, kind: 'flat', opts: { scale: 20, positives: 3, exclude: 5 } },
      { rows: 513, cols: 513, kind: 'normal', opts: { scale: 20, symmetric: true } },
      { rows: 4096, cols: 4096, kind: 'peaked', opts: { scale: 1 / 0.07, symmetric: true, reduction: 'none' } },
    ],
    bench: {
      // CLIP at batch 2048 (cosine similarities times a logit scale of 20). The kernel reads S
      // twice (the row and column log-sum-exps, then the gradient), but the floor counts what the
      // op must move, one read and one write, like every other op: S is 16 MiB, so the second
      // read can come from cache, and counting it would lengthen the floor by half.
      sizes: [{ rows: 2048, cols: 2048, kind: 'cosine', opts: { scale: 20, symmetric: true } }],
      bytes: (c) => c.rows * c.cols * 8, // one read of S, one write of the gradient
      prepare: reuseGrad,
    },
    // CLIP: symmetric, logit scale 20.
    gpu: { shapes: [[32768, 32768]], opts: { symmetric: true, scale: 20 } },
  }),
  contrastiveEntry('decoupledContrastive', {
    options: ['weighting', 'positives', 'exclude'],
    reference: 'refDecoupledContrastive',
    cases: [
      { rows: 7, cols: 97, kind: 'normal', opts: { scale: 14 } },
      { rows: 300, cols: 50257, kind: 'peaked', opts: { weighting: { sigma: 0.5 } } },
      { rows: 64, cols: 70001, kind: 'flat', opts: { scale: 20, positives: 1, exclude: 5, reduction: 'sum' } },
      { rows: 4096, cols: 4096, kind: 'normal', opts: { scale: 20, weighting: { sigma: 0.5 } } },
    ],
    bench: {
      sizes: [{ rows: 2048, cols: 2048, kind: 'cosine', opts: { scale: 20, weighting: { sigma: 0.5 } } }],
      bytes: (c) => c.rows * c.cols * 8, // one read of S, one write of the gradient
      prepare: reuseGrad,
    },
    // DCLW training: logit scale 20, σ = 0.5.
    gpu: { shapes: [[32768, 32768]], opts: { scale: 20, weighting: { sigma: 0.5 } } },
  }),
);

for (const op of ops) op.run = (fl, inputs, device) => runOn(op, fl, inputs, device);

/** The GPU bench shapes of every op, { name: [[rows, cols]] } (scripts/gpu/shapes.py reads them). */
export const gpuShapes = () => Object.fromEntries(ops.map((op) => [op.name, op.gpu.shapes]));

// ---------- the property-test parts (op.property) ----------
//
// Each takes the kit of test/ops-under-test.ts (fast-check, the addon, the float64 references,
// the shared scores cases, mutations and checks) and this entry.

// ---------- logSumExp ----------

function logSumExpProperty(kit, entry) {
  const { fc, scoresCase, makeScores, heavyScores, scoresMutations, optionMutations, checkElementwise } = kit;
  const reference = kit.ref[entry.reference];
  const op = {
    cases: fc
      .tuple(scoresCase, fc.option(fc.double({ min: 1e-3, max: 50, noNaN: true }), { nil: undefined }))
      .map(([c, scale]) => ({ ...c, scale })),
    make(c) {
      const s = makeScores(c);
      return { s, opts: c.scale === undefined ? {} : { scale: c.scale } };
    },
    outputs: (lse) => ({ lse }),
    reference: (i) => ({ lse: reference(i.s.values, i.s.rows, i.s.cols, i.opts.scale ?? 1) }),
    check: (got, ref) => checkElementwise('lse', got.lse, ref.lse, 1e-5),
    views: (i) => [i.s.data],
    mutations: [...scoresMutations(), ...optionMutations()],
    heavy() {
      // 64 × 262147 fp32 (67 MB): a few tens of ms per call on two cores.
      const rows = 64;
      const cols = 262147;
      const rng = makeRng(7);
      const x = new Float32Array(rows * cols);
      for (let i = 0; i < x.length; i++) x[i] = rng.u() * 8 - 4;
      return { s: heavyScores(x, rows, cols), opts: {} };
    },
    small: () => op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2 }),
  };
  return op;
}

// ---------- softmaxCrossEntropy ----------

function softmaxCrossEntropyProperty(kit, entry) {
  const { fc, fl, makeRefRng, scoresCase, makeScores, heavyScores, inAddonMemory, withElement, scoresMutations, optionMutations, checkElementwise, checkGradient, checkDScale, rowMaxAbs } = kit;
  const reference = kit.ref[entry.reference];
  const outputs = (r) => {
    const o = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0, lse: r.lse };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };

  const op = {
    outputs,
    cases: fc
      .record({
        c: scoresCase,
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        labelSmoothing: fc.option(fc.constantFrom(0.1, 0.5, 1), { nil: undefined }),
        zLoss: fc.option(fc.constantFrom(1e-4, 1e-2), { nil: undefined }),
        softcap: fc.option(fc.constantFrom(3, 30), { nil: undefined }),
        classWeights: fc.boolean(),
        ignoreSome: fc.boolean(),
        reduction: fc.constantFrom('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => ({ ...c, ...rest })),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x27d4eb2f);
      // With no classes (N = 0) every row must be ignored.
      const labels = Int32Array.from({ length: c.rows }, () => (c.cols === 0 || (c.ignoreSome && rng.uniform() < 0.3) ? -100 : rng.int(0, c.cols)));
      const opts = { gradScale: true, returnLse: true, reduction: c.reduction };
      for (const k of ['scale', 'labelSmoothing', 'zLoss', 'softcap']) if (c[k] !== undefined) opts[k] = c[k];
      // No softcap on ±6e4 scores: tanh saturates there, and the float64 reference's 1 − tanh²
      // underflows to 0 where the kernel's sech² keeps 1e-18; with smoothing, the fp32 rounding of
      // z = c·tanh(·) then decides the gradient. softmaxCrossEntropy.test.ts covers huge softcapped logits.
      // Nor smoothing: its term ε(w̄·lse − Σ_j w_j z_j / N) is a difference of two sums of size
      // |z| ~ 6e4 that cancel when N is tiny (N = 1: exactly), so fp32 sums leave ~1e-3 of a loss of 0.
      if (c.kind === 'large') {
        delete opts.softcap;
        delete opts.labelSmoothing;
      }
      if (c.classWeights) opts.classWeights = Float32Array.from({ length: c.cols }, () => 0.25 + 2 * rng.uniform());
      if (c.reduction === 'none') opts.gradOutput = Float32Array.from({ length: c.rows }, () => rng.normal());
      return { s, labels, opts };
    },
    // Without a softcap, the float64 loss of the z = scale·S the kernel works on, z rounded to
    // fp32 as the kernel rounds it (at |z| ~ 1e6 that rounding alone moves a probability), then
    // dL/dS = scale·dL/dz and dScale = Σ dL/dz·S. A softcap bounds z, so it goes in as it is.
    reference: (i) => {
      const o = { ...i.opts };
      if (i.opts.softcap !== undefined) {
        const r = reference(i.s.values, i.s.rows, i.s.cols, i.labels, o);
        return { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale, grad: r.grad, lse: r.lse };
      }
      const scale = Math.fround(i.opts.scale ?? 1);
      const z = i.s.values.map((v) => Math.fround(scale * v));
      const r = reference(z, i.s.rows, i.s.cols, i.labels, { ...o, scale: 1 });
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * i.s.values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale), lse: r.lse };
    },
    check(got, ref, i) {
      const why =
        checkElementwise('loss', new Float32Array([got.loss]), [ref.loss], 1e-5) ??
        checkElementwise('rowLoss', got.rowLoss, ref.rowLoss, 1e-5) ??
        checkElementwise('lse', got.lse, ref.lse, 1e-5);
      if (why) return why;
      // dScale sums the dense part in fp32 lanes and corrects the label in double: that cancels
      // up to u_i·w_max·max_j |S_ij| per row, rounded in fp32.
      const cw = i.opts.classWeights;
      const wMax = cw ? cw.reduce((a, b) => Math.max(a, b), 0) : 1;
      let cancel = 0;
      for (let r = 0; r < i.s.rows; r++) {
        if (i.labels[r] === -100) continue;
        const u = i.opts.reduction === 'none' ? Math.abs(i.opts.gradOutput[r]) : 1;
        cancel += u * wMax * rowMaxAbs(i.s, r);
      }
      if (i.opts.reduction === 'mean') cancel /= Math.max(1e-30, [...i.labels].filter((y) => y !== -100).reduce((a, y) => a + (cw ? cw[y] : 1), 0));
      return checkGradient(got.grad, ref.grad, i.s.dtype, 0) ?? checkDScale(got.dScale, ref.dScale, cancel);
    },
    views: (i) => [i.s.data, i.labels, ...(i.opts.classWeights ? [i.opts.classWeights] : []), ...(i.opts.gradOutput ? [i.opts.gradOutput] : [])],
    mutations: [
      // A scores mutation may turn empty scores into 1×1; the labels follow the new shape.
      ...scoresMutations().map((m) => ({
        ...m,
        apply: (i) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows && j.s.cols === i.s.cols ? j : { ...j, labels: new Int32Array(j.s.rows), opts: { gradScale: true } };
        },
      })),
      ...optionMutations(),
      { name: 'labels missing', code: 'ERR_TYPE', apply: (i) => ({ ...i, labels: undefined }) },
      { name: 'labels a plain array', code: 'ERR_TYPE', apply: (i) => ({ ...i, labels: Array.from(i.labels) }) },
      { name: 'labels one too many', code: 'ERR_SHAPE', apply: (i) => ({ ...i, labels: new Int32Array(i.labels.length + 1) }) },
      // On empty scores, a 1×1 matrix (with default options) to hold the bad label.
      { name: 'a label of N', code: 'ERR_LABEL_RANGE', apply: (i) => (i.s.rows ? { ...i, labels: new Int32Array(i.s.rows).fill(i.s.cols) } : { s: withElement(i.s, 0, 0), labels: new Int32Array([1]), opts: {} }) },
      { name: 'a label of −1', code: 'ERR_LABEL_RANGE', apply: (i) => (i.s.rows ? { ...i, labels: new Int32Array(i.s.rows).fill(-1) } : { s: withElement(i.s, 0, 0), labels: new Int32Array([-1]), opts: {} }) },
      { name: 'labelSmoothing 1.5', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, labelSmoothing: 1.5 } }) },
      { name: 'softcap 0', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, softcap: 0 } }) },
      { name: 'classWeights one too many', code: 'ERR_SHAPE', apply: (i) => ({ ...i, opts: { ...i.opts, classWeights: new Float32Array(i.s.cols + 1).fill(1) } }) },
      { name: 'an unknown reduction', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, reduction: 'avg', gradOutput: undefined } }) },
    ],
    heavy() {
      // 128 × 32771 fp32 (17 MB): tens of ms per call on two cores, the gradient into a reused
      // `out` as in a training loop.
      const rows = 128, cols = 32771;
      const x = randomScores(makeRng(11), rows, cols, 'normal');
      const labels = Int32Array.from({ length: rows }, (_, r) => (r * 7919) % cols);
      const out = fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]);
      return { s: heavyScores(x, rows, cols), labels, opts: { out } };
    },
    small: () => op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, labelSmoothing: 0.1, zLoss: 1e-4, softcap: 30, classWeights: true, ignoreSome: true, reduction: 'none' }),
  };
  return op;
}

// ---------- losses over CSR positives: decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy ----------

/** The empty CSR of `rows` rows (used when a mutation turns empty scores into a 1×1 matrix). */
const emptyCsr = (rows) => ({ rowPtr: new Int32Array(rows + 1), cols: new Int32Array(0) });

function positivesProperty(kit, entry) {
  const { fc, fl, makeRefRng, randomPositives, randomExclude, scoresCase, makeScores, heavyScores, inAddonMemory, scoresMutations, optionMutations, checkElementwise, checkGradient, checkDScale, rowMaxAbs } = kit;
  const reference = kit.ref[entry.reference];
  const outputs = (r) => {
    const o = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0 };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };
  const csrMutation = (mname, code, f) => ({
    name: mname,
    code,
    apply: (i) => ({ ...i, positives: f(i.positives, i.s.rows, i.s.cols) }),
  });
  const op = {
    outputs,
    cases: fc
      .record({
        c: scoresCase,
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        maxPositives: fc.integer({ min: 0, max: 4 }),
        weighted: fc.boolean(),
        exclude: fc.boolean(),
        reduction: fc.constantFrom('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => ({ ...c, ...rest })),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x5bd1e995);
      const positives = randomPositives(rng, c.rows, c.cols, { min: Math.min(1, c.maxPositives), max: c.maxPositives, weighted: c.weighted });
      const opts = { gradScale: true, reduction: c.reduction };
      if (c.scale !== undefined) opts.scale = c.scale;
      if (c.exclude) opts.exclude = randomExclude(rng, c.rows, c.cols, positives, { max: 5 });
      if (c.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { s, positives, opts };
    },
    // The float64 loss of the z = scale·S the kernel works on: scale and z rounded to fp32 as
    // the kernel rounds them (at |z| ~ 2e4, that rounding alone moves a probability by 1e-3).
    // Then dL/dS = scale·dL/dz and dScale = Σ dL/dz·S.
    reference: (i) => {
      const scale = Math.fround(i.opts.scale ?? 1);
      const z = i.s.values.map((v) => Math.fround(scale * v));
      const r = reference(z, i.s.rows, i.s.cols, i.positives, { ...i.opts, scale: 1 });
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * i.s.values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale) };
    },
    check(got, ref, i) {
      const why =
        checkElementwise('loss', new Float32Array([got.loss]), [ref.loss], 1e-5) ??
        checkElementwise('rowLoss', got.rowLoss, ref.rowLoss, 1e-5);
      if (why) return why;
      // dScale sums the dense part over the row in fp32 lanes, then corrects the positives in
      // double: that cancels up to u_i·W_i·max_j |S_ij| per row (W_i = Σ w_p), rounded in fp32.
      // The gradient's own cancellation (W_i·p_j − w_ij at a positive) is of order u_i·W_i·scale:
      // a gradient that is exactly 0 in float64 comes out as ~1e-29 in fp32, and that is not an error.
      let cancel = 0, gradScaleOfRows = 0;
      const scale = Math.fround(i.opts.scale ?? 1);
      for (let r = 0; r < i.s.rows; r++) {
        const red = i.opts.reduction;
        const u = red === 'sum' ? 1 : red === 'none' ? Math.abs(i.opts.gradOutput[r]) : 1 / i.s.rows;
        let W = 0;
        for (let e = i.positives.rowPtr[r]; e < i.positives.rowPtr[r + 1]; e++) W += i.positives.weights?.[e] ?? 1;
        cancel += u * W * rowMaxAbs(i.s, r);
        gradScaleOfRows += u * W * scale;
      }
      return checkGradient(got.grad, ref.grad, i.s.dtype, 1e-7 * gradScaleOfRows) ?? checkDScale(got.dScale, ref.dScale, cancel);
    },
    views: (i) => {
      const x = i.opts.exclude;
      return [i.s.data, i.positives.rowPtr, i.positives.cols, ...(i.positives.weights ? [i.positives.weights] : []), ...(x ? [x.rowPtr, x.cols] : [])];
    },
    mutations: [
      // A scores mutation may turn empty scores into 1×1; the positives follow the new shape.
      ...scoresMutations().map((m) => ({
        ...m,
        apply: (i) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows ? j : { ...j, positives: emptyCsr(j.s.rows), opts: { ...j.opts, exclude: undefined, gradOutput: undefined } };
        },
      })),
      ...optionMutations(),
      csrMutation('positives missing', 'ERR_TYPE', () => undefined),
      csrMutation('positives a plain object of arrays', 'ERR_TYPE', (p) => ({ rowPtr: Array.from(p.rowPtr), cols: Array.from(p.cols) })),
      csrMutation('rowPtr one short', 'ERR_SHAPE', (p, rows) => ({ ...p, rowPtr: new Int32Array(rows) })),
      csrMutation('rowPtr[0] not 0', 'ERR_CSR', (p) => ({ ...p, rowPtr: p.rowPtr.map((v, k) => (k === 0 ? 1 : v)) })),
      csrMutation('a column out of range', 'ERR_CSR', (p, rows, cols) => ({
        rowPtr: p.rowPtr.map((v, k) => (k === rows && rows > 0 ? v + 1 : v)),
        cols: Int32Array.from([...p.cols, cols]),
      })),
      csrMutation('weights of the wrong length', 'ERR_SHAPE', (p) => ({ ...p, weights: new Float32Array(p.cols.length + 1).fill(1) })),
      { name: 'exclude with weights', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, exclude: { ...emptyCsr(i.s.rows), weights: new Float32Array(0) } } }) },
    ],
    heavy() {
      // 128 × 32768 fp32 (16 MB), 3 positives per row: tens of ms per call on two cores. The
      // gradient goes into a reused `out`, as in a training loop: a fresh 16 MB output per call
      // (allocated and poisoned on the main thread) would itself stall the event loop.
      const rows = 128, cols = 32768;
      const rng = makeRng(9);
      const x = randomScores(rng, rows, cols, 'normal');
      const positives = randomPositives(makeRefRng(9), rows, cols, { min: 3, max: 3 });
      const out = fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]);
      return { s: heavyScores(x, rows, cols), positives, opts: { out } };
    },
    small: () => op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, maxPositives: 3, weighted: true, exclude: true, reduction: 'none' }),
  };
  return op;
}

// ---------- softTopKLoss ----------

/** 0 to 3 positives per row (distinct columns), weights on odd seeds. */
function topKPositives(rows, cols, seed) {
  const rng = makeRng(seed);
  const rowPtr = new Int32Array(rows + 1);
  const c = [];
  for (let i = 0; i < rows; i++) {
    const taken = new Set();
    const n = rng.int(0, 4);
    while (taken.size < n) taken.add(rng.int(0, cols));
    c.push(...taken);
    rowPtr[i + 1] = c.length;
  }
  const cs = Int32Array.from(c);
  return seed % 2 ? { rowPtr, cols: cs, weights: Float32Array.from(cs, () => 0.5 + rng.u()) } : { rowPtr, cols: cs };
}

/** ln σ(a), stable. */
const logSig = (a) => (a >= 0 ? -Math.log1p(Math.exp(-a)) : a - Math.log1p(Math.exp(a)));

/** docs/MATH.md §3.8 in float64 (mean reduction, scale 1): the threshold by bisection, then loss and gradient. */
function refTopKLoss(i) {
  const { rows, cols, values } = i.s;
  const alpha = i.opts.alpha;
  const grad = new Float64Array(rows * cols);
  let loss = 0;
  const sig = (a) => (a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a)));
  for (let r = 0; r < rows; r++) {
    const e0 = i.positives.rowPtr[r], e1 = i.positives.rowPtr[r + 1];
    if (e0 === e1) continue;
    const x = values.subarray(r * cols, (r + 1) * cols);
    let W = 0;
    for (let e = e0; e < e1; e++) W += i.positives.weights ? i.positives.weights[e] : 1;
    const k = i.opts.k === 'numPositives' ? Math.ceil(W) : i.opts.k;
    let max = -Infinity, min = Infinity;
    for (const v of x) { max = Math.max(max, v); min = Math.min(min, v); }
    const shift = Math.log(k / (cols - k)) / alpha;
    let lo = -max + shift, hi = -min + shift;
    for (let it = 0; it < 100 && hi - lo > 1e-12 * Math.max(1, Math.abs(lo)); it++) {
      const t = (lo + hi) / 2;
      let f = 0;
      for (const v of x) f += sig(alpha * (v + t));
      if (f < k) lo = t;
      else hi = t;
    }
    const t = (lo + hi) / 2;
    const n = e1 - e0;
    let U = 0, V = 0;
    for (let e = e0; e < e1; e++) {
      const w = i.positives.weights ? i.positives.weights[e] : 1;
      const a = alpha * (x[i.positives.cols[e]] + t);
      loss -= (w / n) * logSig(a) / rows;
      const u = (alpha * (-w / n / rows)) * sig(-a);
      grad[r * cols + i.positives.cols[e]] = u;
      U += u;
    }
    for (const v of x) V += alpha * sig(alpha * (v + t)) * sig(-alpha * (v + t));
    for (let j = 0; j < cols; j++) grad[r * cols + j] -= (alpha * sig(alpha * (x[j] + t)) * sig(-alpha * (x[j] + t)) * U) / V;
  }
  return { loss, grad };
}

function softTopKLossProperty(kit) {
  const { fc, fl, makeScores, heavyScores, inAddonMemory, scoresMutations, optionMutations, DTYPES } = kit;
  const op = {
    // Normal and flat rows (peaked rows whose top entries saturate, and ±6e4 magnitudes, put the
    // root where float64 bisection cannot resolve it: test/softTopK.test.ts covers those).
    cases: fc
      .tuple(
        fc.oneof(
          { weight: 8, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 6 }), cols: fc.integer({ min: 9, max: 300 }) }) },
          { weight: 1, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 2 }), cols: fc.integer({ min: 32760, max: 70001 }) }) },
        ),
        fc.constantFrom(...DTYPES),
        fc.constantFrom('normal', 'flat'),
        fc.constantFrom('tensor', 'like', 'bare'),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant('numPositives')),
        fc.constantFrom(1, 2, 5),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      )
      .map(([s, dtype, kind, form, seed, k, alpha, positivesSeed]) => ({ ...s, dtype, kind, form, seed, k, alpha, positivesSeed })),
    make(c) {
      return { s: makeScores(c), positives: topKPositives(c.rows, c.cols, c.positivesSeed), opts: { k: c.k, alpha: c.alpha } };
    },
    outputs: (r) => ({ loss: r.loss, grad: fl.toFloat32(r.grad.data, r.grad.dtype) }),
    reference: (i) => refTopKLoss(i),
    check(got, ref, i) {
      const loss = got.loss, rl = ref.loss;
      if (!(Math.abs(loss - rl) <= 1e-4 * Math.max(1e-3, Math.abs(rl)))) return `loss ${loss}, expected ${rl}`;
      const g = got.grad, rg = ref.grad;
      let num = 0, den = 0;
      for (let j = 0; j < rg.length; j++) {
        if (Number.isNaN(g[j])) return `grad[${j}] is NaN`;
        num += (g[j] - rg[j]) ** 2;
        den += rg[j] ** 2;
      }
      const tol = i.s.dtype === 'float32' ? 1e-4 : i.s.dtype === 'float16' ? 3e-3 : 2e-2;
      const err = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
      return den > 0 && err > tol ? `grad relative L2 error ${err.toExponential(2)} > ${tol}` : undefined;
    },
    views: (i) => [i.s.data, i.positives.rowPtr, i.positives.cols],
    mutations: [
      ...scoresMutations(),
      ...optionMutations(),
      { name: 'k 0', code: 'ERR_K_RANGE', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows) }, opts: { ...i.opts, k: 0 } }) },
      { name: 'k = N', code: 'ERR_K_RANGE', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows) }, opts: { ...i.opts, k: i.s.cols } }) },
      { name: 'k array of the wrong length', code: 'ERR_SHAPE', apply: (i) => ({ ...i, opts: { ...i.opts, k: new Int32Array(i.s.rows + 1).fill(1) } }) },
      { name: 'alpha 0', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, alpha: 0 } }) },
      { name: 'alpha NaN', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, alpha: Number.NaN } }) },
      { name: 'a positive column out of range', code: 'ERR_CSR', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows).fill(i.s.cols) } }) },
      { name: 'positives not an object', code: 'ERR_TYPE', apply: (i) => ({ ...i, positives: 7 }) },
    ],
    heavy() {
      // 64 × 131072 fp32 (32 MB), DEXML's k = 5, α = 2: tens of ms per call on two cores. The
      // gradient goes into a reused tensor (opts.out), as in a training loop: the main thread
      // then only validates and launches.
      const rows = 64, cols = 131072;
      const rng = makeRng(8);
      const x = new Float32Array(rows * cols);
      for (let j = 0; j < x.length; j++) x[j] = rng.normal() * 3;
      const s = heavyScores(x, rows, cols);
      return { s, positives: topKPositives(rows, cols, 2), opts: { k: 5, alpha: 2, out: fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]) } };
    },
    small: () => op.make({ rows: 3, cols: 29, dtype: 'bfloat16', kind: 'normal', form: 'tensor', seed: 3, k: 3, alpha: 2, positivesSeed: 5 }),
  };
  return op;
}

// ---------- infoNCE (one-way, CSR positives, symmetric) and decoupledContrastive ----------

function contrastiveProperty(kit, entry) {
  const { fc, fl, makeRefRng, randomPositives, randomExclude, scoresCase, makeScores, heavyScores, inAddonMemory, scoresMutations, optionMutations, checkElementwise, checkGradient, checkDScale, rowMaxAbs } = kit;
  const { dclwWeights, diagonalPositives } = kit.ref;
  const reference = kit.ref[entry.reference];
  const dcl = entry.name === 'decoupledContrastive';
  const outputs = (r) => {
    const o = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0 };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };
  // A call that must fail whatever the case: small scores of its own and one bad option.
  const broken = (mname, code, rows, cols, opts) => ({
    name: mname,
    code,
    apply: (i) => {
      const x = new Float32Array(rows * cols).map((_, k) => (k % 5) / 3);
      return { s: { ...i.s, arg: fl.tensor(x, [rows, cols]), formOpts: {}, rows, cols }, opts: { scale: 2, ...opts } };
    },
  });
  const csr = (rowPtr, cols) => ({ rowPtr: Int32Array.from(rowPtr), cols: Int32Array.from(cols) });
  const op = {
    outputs,
    cases: fc
      .record({
        c: scoresCase,
        variant: dcl ? fc.constantFrom('diagonal', 'csr') : fc.constantFrom('diagonal', 'csr', 'symmetric'),
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        exclude: fc.boolean(),
        weighted: fc.boolean(),
        sigma: dcl ? fc.option(fc.constantFrom(0.5, 0.1, 2), { nil: undefined }) : fc.constant(undefined),
        reduction: fc.constantFrom('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => {
        // Symmetric needs a square S (up to 300×300: two column strips), diagonal positives
        // N ≥ B, DCL's CSR one column per row.
        if (rest.variant === 'symmetric') {
          const n = Math.min(Math.max(c.rows, c.cols), 300);
          return { ...c, ...rest, rows: n, cols: n };
        }
        const cols = rest.variant === 'diagonal' ? Math.max(c.cols, c.rows) : dcl && c.rows > 0 ? Math.max(c.cols, 1) : c.cols;
        return { ...c, ...rest, cols };
      }),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x27d4eb2f);
      const opts = { gradScale: true, reduction: c.reduction };
      if (c.scale !== undefined) opts.scale = c.scale;
      if (c.sigma !== undefined) opts.weighting = { sigma: c.sigma };
      if (c.variant === 'symmetric') opts.symmetric = true;
      let positives;
      if (c.variant === 'csr') {
        positives = dcl ? randomPositives(rng, c.rows, c.cols, { min: 1, max: 1 }) : randomPositives(rng, c.rows, c.cols, { min: 0, max: 4, weighted: c.weighted });
        opts.positives = positives;
      }
      if (c.exclude && c.variant !== 'symmetric') {
        const taken = positives ?? diagonalPositives(c.rows);
        opts.exclude = randomExclude(rng, c.rows, c.cols, taken, { max: 5 });
      }
      if (c.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { s, opts };
    },
    // The float64 loss of the z = scale·S the kernel works on, z rounded to fp32 as the kernel
    // rounds it; DCLW's weights from the raw scores, as the kernel takes them.
    reference: (i) => {
      const { rows, cols, values } = i.s;
      const scale = Math.fround(i.opts.scale ?? 1);
      const z = values.map((v) => Math.fround(scale * v));
      const o = { ...i.opts, scale: 1 };
      let r;
      if (dcl) {
        const sigma = i.opts.weighting?.sigma;
        const rowWeights = sigma === undefined || rows === 0 ? undefined : dclwWeights(values, rows, cols, sigma, i.opts.positives ?? diagonalPositives(rows));
        r = reference(z, rows, cols, { ...o, rowWeights });
      } else {
        r = reference(z, rows, cols, o);
      }
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale) };
    },
    check(got, ref, i) {
      // −∞ + ∞ (a DCL row with no negative left beside a row whose positive is −∞) is NaN in
      // both; every row loss is still compared.
      const bothNaN = Number.isNaN(got.loss) && Number.isNaN(ref.loss);
      const why =
        (bothNaN ? undefined : checkElementwise('loss', new Float32Array([got.loss]), [ref.loss], 1e-5)) ??
        checkElementwise('rowLoss', got.rowLoss, ref.rowLoss, 1e-5);
      if (why) return why;
      // The float64 reference has its own rounding: p − 1 at a positive holding all but 1e-30
      // of the probability is 0 there (the kernel keeps it), so allow 1e-15 of the row factors.
      const red = i.opts.reduction;
      const go = i.opts.gradOutput;
      const u = (r) => (red === 'sum' ? 1 : red === 'none' ? Math.abs(go[r]) : 1 / i.s.rows);
      let uSum = 0;
      for (let r = 0; r < i.s.rows; r++) uSum += u(r);
      const floor = 1e-15 * (i.opts.scale ?? 1) * uSum;
      // dScale sums dense terms in fp32 lanes and corrects the positives in double: that
      // cancels up to 4·u_i·max_j |S_ij| per row (Σ_j |dℓ_i/dz_ij| ≤ 4: two softmaxes, or DCLW's
      // |w| ≤ 2 plus one), rounded in fp32.
      let cancel = 0;
      for (let r = 0; r < i.s.rows; r++) cancel += 4 * u(r) * rowMaxAbs(i.s, r) * (i.opts.positives ? 4 : 1);
      return checkGradient(got.grad, ref.grad, i.s.dtype, floor) ?? checkDScale(got.dScale, ref.dScale, cancel);
    },
    views: (i) => {
      const p = i.opts.positives;
      const x = i.opts.exclude;
      const go = i.opts.gradOutput;
      return [i.s.data, ...(p ? [p.rowPtr, p.cols, ...(p.weights ? [p.weights] : [])] : []), ...(x ? [x.rowPtr, x.cols] : []), ...(go ? [go] : [])];
    },
    mutations: [
      // A scores mutation may turn empty scores into 1×1: the options fall back to the diagonal.
      ...scoresMutations().map((m) => ({
        ...m,
        apply: (i) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows ? j : { ...j, opts: { ...j.opts, positives: undefined, exclude: undefined, gradOutput: undefined } };
        },
      })),
      ...optionMutations(),
      broken('diagonal positives with N < B', 'ERR_SHAPE', 3, 2, {}),
      broken('an exclusion that is also a (diagonal) positive', 'ERR_CSR', 2, 3, { exclude: csr([0, 1, 1], [0]) }),
      broken('positives rowPtr one short', 'ERR_SHAPE', 2, 3, { positives: csr([0, 1], [0]) }),
      broken('positives column out of range', 'ERR_CSR', 2, 3, { positives: csr([0, 1, 2], [0, 3]) }),
      broken('positives a plain object of arrays', 'ERR_TYPE', 2, 3, { positives: { rowPtr: [0, 1, 2], cols: [0, 1] } }),
      ...(dcl
        ? [
            broken('sigma 0', 'ERR_ARG', 2, 3, { weighting: { sigma: 0 } }),
            broken('negative sigma', 'ERR_ARG', 2, 3, { weighting: { sigma: -0.5 } }),
            broken('two positives in a row', 'ERR_CSR', 2, 3, { positives: csr([0, 2, 3], [0, 1, 2]) }),
            broken('weighted positives', 'ERR_ARG', 2, 3, { positives: { ...csr([0, 1, 2], [0, 1]), weights: new Float32Array([1, 1]) } }),
          ]
        : [
            broken('symmetric on a non-square matrix', 'ERR_SHAPE', 2, 3, { symmetric: true }),
            broken('symmetric with CSR positives', 'ERR_ARG', 3, 3, { symmetric: true, positives: csr([0, 1, 2, 3], [0, 1, 2]) }),
          ]),
    ],
    heavy() {
      // Symmetric InfoNCE (or DCL) on 2048 × 2048 fp32 (16 MB): tens of ms per call on two
      // cores. The gradient goes into a reused `out`, as in a training loop.
      const n = 2048;
      const x = randomScores(makeRng(9), n, n, 'normal');
      const out = fl.tensor(inAddonMemory(new Float32Array(n * n)), [n, n]);
      return { s: heavyScores(x, n, n), opts: dcl ? { out, scale: 20 } : { out, scale: 20, symmetric: true } };
    },
    small: () =>
      op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, variant: 'csr', exclude: true, weighted: true, sigma: dcl ? 0.5 : undefined, reduction: 'none' }),
  };
  return op;
}
