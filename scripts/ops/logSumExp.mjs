// logSumExp: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { dtypes, scoresTensor } from '../lib/op-kit.mjs';
import { makeRng } from '../lib/random.mjs';


export function refLogSumExp(S, B, N, scale = 1) {
  const out = new Float64Array(B);
  for (let r = 0; r < B; r++) {
    let m = -Infinity;
    for (let c = 0; c < N; c++) m = Math.max(m, scale * S[r * N + c]);
    let s = 0;
    if (m !== -Infinity) for (let c = 0; c < N; c++) s += Math.exp(scale * S[r * N + c] - m);
    out[r] = m === -Infinity ? -Infinity : m + Math.log(s);
  }
  return out;
}

export const entries = [
  {
    name: 'logSumExp',
    fn: 'logSumExp',
    asyncFn: 'logSumExpAsync',
    args: ['scores'],
    options: ['scale'],
    returns: 'lse',
    reference: refLogSumExp,
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
];

function logSumExpProperty(kit, entry) {
  const { fc, scoresCase, makeScores, heavyScores, scoresMutations, optionMutations, checkElementwise } = kit;
  const reference = entry.reference;
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
