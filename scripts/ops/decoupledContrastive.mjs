// decoupledContrastive: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { chunked, embeddingsEntry, exclusions, rowPositives } from '../lib/embeddings-kit.mjs';
import { contrastiveEntry, reuseGrad } from '../lib/op-kit.mjs';
import { diagonalPositives, logSumExp, markRow, OUT, reduceRows, rowCoefficients, scaledRow } from '../lib/reference.mjs';

/**
 * MATH decoupledContrastive (native/ops/contrastive_math.h), decoupled contrastive loss (DCL, Yeh et al. 2022) in float64:
 *   ℓ_i = −w_i·z_ip + LSE_{j ≠ p, j ∉ Excl_i} z_ij,  exactly one positive p per row
 *   (the diagonal by default, or CSR with n_i = 1).
 * DCL: w_i = 1. DCLW (`weighting: { sigma }`, σ default 0.5):
 *   w_i = 2 − B·softmax_i(S_ip / σ)   (softmax over the rows),
 * on the raw scores S, not on z = scale·S: the golden PyTorch case fixes this, and it is what
 * the reference implementation does (cosine similarities, before the temperature). w is a
 * constant: no gradient, and no dScale term, flows through it.
 * Gradient: ∂ℓ_i/∂z_ip = −w_i; ∂ℓ_i/∂z_ij = softmax over the negatives of row i.
 * 'mean' divides by B.
 *
 * Out entries (excluded, or S = −∞) take no part and get gradient 0. A positive at −∞ costs
 * +∞; a row with no negative left has LSE over nothing = −∞ (the caller's problem: exclusions
 * should leave negatives).
 */
// interface RefDecoupledContrastiveOptions extends RefCommonOptions {
//   /** Default: the diagonal. Exactly one positive per row. */
//   positives?: RefPositives;
//   exclude?: RefPositives;
//   /** DCLW: the von Mises-Fisher weighting, σ default 0.5. */
//   weighting?: { sigma?: number };
//   /**
//    * Reference only (no kernel option): the w_i given outright, overriding `weighting`. With
//    * dclwWeights(S) frozen here, finite differences in S see exactly the constant-w loss.
//    */
//   rowWeights?: ArrayLike<number>;
// }

/** Column of each row's single positive. */
function positiveColumns(B, positives) {
  const col = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    const n = positives.rowPtr[i + 1] - positives.rowPtr[i];
    if (n !== 1) throw new Error(`decoupledContrastive: row ${i} has ${n} positives, expected exactly 1`);
    col[i] = positives.cols[positives.rowPtr[i]];
  }
  return col;
}

/** DCLW's w_i = 2 − B·softmax over rows of (S_ip/σ) (positives default to the diagonal). */
export function dclwWeights(S, B, N, sigma = 0.5, positives = diagonalPositives(B)) {
  const positiveCol = positiveColumns(B, positives);
  const a = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    const x = S[i * N + positiveCol[i]];
    a[i] = x === -Infinity ? -Infinity : x / sigma;
  }
  const lse = logSumExp(a);
  // Every positive at −∞: take the limit of equal scores, a uniform softmax (w_i = 1).
  if (lse === -Infinity) return new Float64Array(B).fill(1);
  const w = new Float64Array(B);
  for (let i = 0; i < B; i++) w[i] = 2 - B * Math.exp(a[i] - lse);
  return w;
}

export function refDecoupledContrastive(S, B, N, opts = {}) {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  if (!opts.positives && N < B) throw new Error(`decoupledContrastive: diagonal positives need N >= B, got B=${B}, N=${N}`);
  const positives = opts.positives ?? diagonalPositives(B);
  const positiveCol = positiveColumns(B, positives);
  const w = opts.rowWeights
    ? Float64Array.from(opts.rowWeights)
    : opts.weighting
      ? dclwWeights(S, B, N, opts.weighting.sigma ?? 0.5, positives)
      : new Float64Array(B).fill(1);
  const coef = rowCoefficients(reduction, B, B, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    const p = positiveCol[i];
    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);
    const zp = z[p];
    z[p] = -Infinity; // the positive leaves the denominator (that is the decoupling)
    const Z = logSumExp(z);
    // −w·z_p, with 0·(−∞) taken as 0; a positive at −∞ costs +∞ even if no negative is left
    // (+∞ + −∞ would be NaN).
    const positiveTerm = w[i] === 0 ? 0 : -w[i] * zp;
    rowLoss[i] = positiveTerm === Infinity ? Infinity : positiveTerm + Z;
    if (zp !== -Infinity) {
      const d = coef[i] * -w[i];
      grad[i * N + p] = scale * d;
      dScale += d * S[i * N + p];
    }
    if (Z === -Infinity) continue; // no negatives left
    for (let j = 0; j < N; j++) {
      if (z[j] === -Infinity) continue;
      const d = coef[i] * Math.exp(z[j] - Z);
      grad[i * N + j] = scale * d;
      dScale += d * S[i * N + j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, B), rowLoss, grad, dScale };
}

export const entries = [
  contrastiveEntry('decoupledContrastive', {
    options: ['weighting', 'positives', 'exclude'],
    reference: refDecoupledContrastive,
    rowWeights: dclwWeights,
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
  embeddingsEntry('decoupledContrastiveFromEmbeddings', {
    cases: [
      { rows: 64, dim: 48, cols: 70, normalize: true, scale: 10 },
      { rows: 90, dim: 40, cols: 90, normalize: true, scale: 10, sigma: 0.5, bias: true, cudaBudget: chunked(90, 20) },
      { rows: 40, dim: 33, cols: 600, scale: 2, explicit: true, exclude: true },
    ],
    make: (fl, rng, c) => {
      const opts = {};
      if (c.sigma) opts.weighting = { sigma: c.sigma };
      if (c.explicit) opts.positives = rowPositives(rng, c.rows, c.cols, 1);
      if (c.exclude) opts.exclude = exclusions(rng, c.rows, c.cols, opts.positives);
      return { opts };
    },
    // CLIP at B = N = 32768, D = 1024 (cosine): PyTorch eager holds several B×N matrices.
    gpu: { shapes: [[32768, 1024, 32768]], opts: { normalize: true, scale: 10, memoryBudget: 2 ** 29 } },
  }),
];
