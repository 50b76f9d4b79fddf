// The registry of ops that scripts/backend-ops.mjs checks on every live backend and that
// bench/run.mjs times. Each loss issue adds its entry here.
//
// An entry:
//   name
//   cases: [{ rows, cols, kind, dtype, ...op options }]       inputs for the backend comparison
//   make(rng, c) -> inputs                                      host inputs (Tensor scores + extras)
//   run(fl, inputs, device) -> { key: Float32Array | number }   runs on 'cpu' or 'cuda'
//   tol: { float32, float16, bfloat16 }                         max relative error vs the CPU
//   bench: { sizes: [{rows, cols, ...}], bytes(c), peers: { name: (ctx, inputs) => () => void } }
//          bytes(c) counts the bytes the op must move at least (its copy-floor traffic).
import { randomScores } from './lib/random.mjs';

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

export const ops = [
  {
    name: 'softmaxCrossEntropy',
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
    run(fl, inputs, device) {
      const s = place(fl, inputs.scores, device);
      try {
        const r = fl.softmaxCrossEntropy(s, inputs.labels, inputs.opts);
        const out = { loss: r.loss, dScale: r.dScale, grad: gradValues(fl, r.grad) };
        if (device === 'cuda') r.grad.dispose();
        return out;
      } finally {
        if (s !== inputs.scores) s.dispose();
      }
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
  },
  {
    name: 'logSumExp',
    cases: [
      { rows: 7, cols: 97, kind: 'normal', scale: 1 },
      { rows: 3, cols: 50257, kind: 'peaked', scale: 1 },
      { rows: 2, cols: 70001, kind: 'flat', scale: 14.285714 },
      { rows: 1, cols: 1000003, kind: 'normal', scale: 1 },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make: (fl, rng, c) => ({ scores: scoresTensor(fl, rng, c), scale: c.scale ?? 1 }),
    run(fl, inputs, device) {
      const s = place(fl, inputs.scores, device);
      try {
        return { lse: fl.logSumExp(s, { scale: inputs.scale }) };
      } finally {
        if (s !== inputs.scores) s.dispose();
      }
    },
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
  },
  {
    name: 'softTopKLoss',
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
    run(fl, inputs, device) {
      const s = place(fl, inputs.scores, device);
      try {
        const r = fl.softTopKLoss(s, inputs.positives, inputs.opts);
        const out = { loss: r.loss, dScale: r.dScale, grad: gradValues(fl, r.grad) };
        if (device === 'cuda') r.grad.dispose();
        return out;
      } finally {
        if (s !== inputs.scores) s.dispose();
      }
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      // DEXML's configuration: k = 5, α = 2 (the defaults).
      sizes: [{ rows: 64, cols: 131072 }],
      bytes: (c) => c.rows * c.cols * 8, // one read of the scores, one write of the gradient
      prepare: reuseGrad,
      peers: {},
    },
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

function positivesLossOp(name) {
  return {
    name,
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
    run(fl, inputs, device) {
      const s = place(fl, inputs.scores, device);
      try {
        const r = fl[name](s, inputs.positives, inputs.opts);
        const out = { loss: r.loss, dScale: r.dScale, grad: gradValues(fl, r.grad) };
        if (device === 'cuda' && r.grad) r.grad.dispose();
        return out;
      } finally {
        if (s !== inputs.scores) s.dispose();
      }
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      // DEXML's shape on the CPU: 256 queries × 32768 labels, 3 positives per row.
      sizes: [{ rows: 256, cols: 32768, positives: 3 }],
      bytes: (c) => c.rows * c.cols * 8, // one read of the scores, one write of the gradient
      prepare: reuseGrad,
      peers: {},
    },
  };
}

ops.push(positivesLossOp('decoupledSoftmax'), positivesLossOp('multiLabelSoftmax'), positivesLossOp('binaryCrossEntropy'));

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

function contrastiveEntry(name, cases, bench) {
  const dcl = name === 'decoupledContrastive';
  return {
    name,
    cases: cases.flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make: (fl, rng, c) => ({ scores: scoresTensor(fl, rng, c), opts: contrastiveOpts(rng, c, dcl) }),
    run(fl, inputs, device) {
      const s = place(fl, inputs.scores, device);
      try {
        const r = fl[name](s, inputs.opts);
        const out = { loss: r.loss, dScale: r.dScale, grad: gradValues(fl, r.grad) };
        if (device === 'cuda') r.grad.dispose();
        return out;
      } finally {
        if (s !== inputs.scores) s.dispose();
      }
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench,
  };
}


ops.push(
  contrastiveEntry(
    'infoNCE',
    [
      { rows: 7, cols: 97, kind: 'normal', opts: { scale: 14 } },
      { rows: 300, cols: 50257, kind: 'peaked', opts: { reduction: 'sum' } },
      { rows: 64, cols: 70001, kind: 'flat', opts: { scale: 20, positives: 3, exclude: 5 } },
      { rows: 513, cols: 513, kind: 'normal', opts: { scale: 20, symmetric: true } },
      { rows: 4096, cols: 4096, kind: 'peaked', opts: { scale: 1 / 0.07, symmetric: true, reduction: 'none' } },
    ],
    {
      // CLIP at batch 2048 (cosine similarities times a logit scale of 20): the row and column
      // log-sum-exps from one read, the gradient from a second.
      sizes: [{ rows: 2048, cols: 2048, kind: 'cosine', opts: { scale: 20, symmetric: true } }],
      bytes: (c) => c.rows * c.cols * 12, // two reads of S, one write of the gradient
      prepare: reuseGrad,
    },
  ),
  contrastiveEntry(
    'decoupledContrastive',
    [
      { rows: 7, cols: 97, kind: 'normal', opts: { scale: 14 } },
      { rows: 300, cols: 50257, kind: 'peaked', opts: { weighting: { sigma: 0.5 } } },
      { rows: 64, cols: 70001, kind: 'flat', opts: { scale: 20, positives: 1, exclude: 5, reduction: 'sum' } },
      { rows: 4096, cols: 4096, kind: 'normal', opts: { scale: 20, weighting: { sigma: 0.5 } } },
    ],
    {
      sizes: [{ rows: 2048, cols: 2048, kind: 'cosine', opts: { scale: 20, weighting: { sigma: 0.5 } } }],
      bytes: (c) => c.rows * c.cols * 8, // one read of S, one write of the gradient
      prepare: reuseGrad,
    },
  ),
);
