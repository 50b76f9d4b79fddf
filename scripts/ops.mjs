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

export function scoresTensor(fl, rng, c) {
  const x = randomScores(rng, c.rows, c.cols, c.kind ?? 'normal');
  const dtype = c.dtype ?? 'float32';
  const data = dtype === 'float32' ? x : dtype === 'float16' ? fl.float32ToFloat16(x) : fl.float32ToBFloat16(x);
  return fl.tensor(data, [c.rows, c.cols], { dtype });
}

/** Puts a host tensor where an op should run (the caller disposes device copies). */
export const place = (fl, t, device) => (device === 'cuda' ? fl.toDevice(t) : t);

const dtypes = ['float32', 'float16', 'bfloat16'];

export const ops = [
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
          const x = tf.tensor2d(inputs.scores.data(), inputs.scores.shape);
          return { fn: () => tf.tidy(() => tf.logSumExp(x, 1).dataSync()), dispose: () => x.dispose() };
        },
        'plain-js': (_ctx, inputs) => {
          const [rows, cols] = inputs.scores.shape;
          const x = inputs.scores.data();
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
];
