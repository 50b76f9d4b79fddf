// linearCrossEntropy: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// linearCrossEntropy is softmaxCrossEntropy on H·Wᵀ + b (docs/MATH.md §3.9).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { accumulateInto, chunked, embeddingsTol, matrix, runEmbeddings } from '../lib/embeddings-kit.mjs';
import { dtypes } from '../lib/op-kit.mjs';
import { refSoftmaxCrossEntropy } from './softmaxCrossEntropy.mjs';

/**
 * linearCrossEntropy (docs/MATH.md §3.9–3.10) in float64: refSoftmaxCrossEntropy on S = H·Wᵀ (+ b), chained
 * through the product: dH = G·W, dW = Gᵀ·H, db = Σ_i G_i with G = dL/dS.
 */

// interface RefLinearResult {
//   loss: number;
//   rowLoss: Float64Array;
//   lse: Float64Array;
//   dH: Float64Array;
//   dW: Float64Array;
//   db: Float64Array;
//   dScale: number;
// }

export function refLinearCrossEntropy(
  H,
  W,
  b,
  B,
  D,
  N,
  labels,
  opts = {},
) {
  const S = new Float64Array(B * N);
  for (let i = 0; i < B; i++)
    for (let j = 0; j < N; j++) {
      let s = b ? b[j] : 0;
      for (let k = 0; k < D; k++) s += H[i * D + k] * W[j * D + k];
      S[i * N + j] = s;
    }
  const r = refSoftmaxCrossEntropy(S, B, N, labels, opts);
  const G = r.grad;
  const dH = new Float64Array(B * D);
  const dW = new Float64Array(N * D);
  const db = new Float64Array(N);
  for (let i = 0; i < B; i++)
    for (let j = 0; j < N; j++) {
      const g = G[i * N + j];
      if (g === 0) continue;
      db[j] += g;
      for (let k = 0; k < D; k++) {
        dH[i * D + k] += g * W[j * D + k];
        dW[j * D + k] += g * H[i * D + k];
      }
    }
  return { loss: r.loss, rowLoss: r.rowLoss, lse: r.lse, dH, dW, db, dScale: r.dScale };
}

export const entries = [
  {
    name: 'linearCrossEntropy',
    fn: 'linearCrossEntropy',
    asyncFn: 'linearCrossEntropyAsync',
    args: ['queries', 'keys', 'labels'],
    cases: [
      { rows: 37, dim: 70, cols: 1031, opts: {} },
      { rows: 129, dim: 136, cols: 5003, opts: { labelSmoothing: 0.1, zLoss: 1e-4, bias: true }, cudaBudget: chunked(5003, 40) },
      { rows: 64, dim: 64, cols: 2051, opts: { softcap: 15, classWeights: true, reduction: 'sum', scale: 1.5 }, accumulate: true },
      { rows: 33, dim: 257, cols: 777, opts: { reduction: 'none', gradOutput: true, returnLse: true, bias: true }, gradDtype: 'float32' },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      const hidden = matrix(fl, rng, c.rows, c.dim, c.dtype, 1);
      const weight = matrix(fl, rng, c.cols, c.dim, c.dtype, 0.1);
      const labels = new Int32Array(c.rows).map(() => (rng.u() < 0.15 ? -100 : rng.int(0, c.cols)));
      const opts = { ...c.opts, gradScale: true };
      if (opts.bias === true) opts.bias = new Float32Array(c.cols).map(() => rng.normal() * 0.5);
      if (opts.classWeights === true) opts.classWeights = new Float32Array(c.cols).map(() => 0.5 + rng.u());
      if (opts.gradOutput === true) opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      if (c.gradDtype) opts.gradDtype = c.gradDtype;
      if (c.accumulate) {
        Object.assign(opts, accumulateInto(fl, rng, c, ['gradHidden', 'gradWeight']));
        if (opts.bias) opts.gradBias = new Float32Array(c.cols).map(() => rng.normal() * 0.01);
      }
      return { queries: hidden, keys: weight, labels, opts, cudaBudget: c.cudaBudget };
    },
    run(fl, inputs, device, async = false) {
      // gradBias is a host array the call adds into: each backend gets its own copy.
      const opts = inputs.opts.gradBias ? { ...inputs.opts, gradBias: Float32Array.from(inputs.opts.gradBias) } : inputs.opts;
      return runEmbeddings(fl, { ...inputs, opts }, device, (h, w, o) => (async ? fl.linearCrossEntropyAsync : fl.linearCrossEntropy)(h, w, inputs.labels, o));
    },
    tol: embeddingsTol,
    gpu: {
      // The target, and a smaller vocabulary. 512 MiB of scratch (~900 rows of S at N = 131072):
      // the issue asks for at most 1/10 of what PyTorch eager takes beyond inputs and gradients.
      shapes: [[8192, 4096, 131072], [4096, 2048, 32768]],
      opts: { memoryBudget: 2 ** 29 },
    },
  },
];
