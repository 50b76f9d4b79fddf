// binaryCrossEntropy: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { chunked, embeddingsEntry, exclusions, rowPositives } from '../lib/embeddings-kit.mjs';
import { positivesLossOp } from '../lib/op-kit.mjs';
import { entryWeight, markRow, OUT, reduceRows, rowCoefficients, scaledRow, sigmoid, softplus } from '../lib/reference.mjs';

/**
 * MATH binaryCrossEntropy (native/ops/positives_math.h), binary cross-entropy with logits (DEXML "bce") in float64:
 *   ℓ_i = Σ_j softplus(z_ij) − Σ_{p∈P_i} y_ip·z_ip  over entries not excluded,
 *   ∂ℓ_i/∂z_ij = σ(z_ij) − y_ij,
 * with y_ip = 1, or the positive's weight when the CSR has weights (soft targets: MATH binaryCrossEntropy, native/ops/positives_math.h
 * names no weights here; this is the one reading under which they mean something).
 * 'mean' divides by B·N, exclusions included, as DEXML's mean over the full matrix does.
 *
 * Out entries (excluded, or S = −∞) add softplus(−∞) = 0 and get gradient 0. A positive at
 * −∞ costs +∞.
 */
// interface RefBinaryCrossEntropyOptions extends RefCommonOptions {
//   exclude?: RefPositives;
// }

/**
 * softplus(z) − y·z. For z > 0 it is written (1 − y)·z + softplus(−z): a confident positive
 * (y = 1, z large) then costs softplus(−z) to full precision instead of the difference of two
 * large numbers. For z ≤ 0 both terms are non-negative (y ≥ 0), so nothing cancels.
 */
function bceTerm(z, y) {
  if (z === -Infinity) return y === 0 ? 0 : y * Infinity;
  return z > 0 ? (1 - y) * z + softplus(-z) : softplus(z) - y * z;
}

/** σ(z) − y, written (1 − y) − σ(−z) for z > 0 so that σ(z) near 1 does not round away the answer. */
function bceSlope(z, y) {
  return z > 0 ? 1 - y - sigmoid(-z) : sigmoid(z) - y;
}

export function refBinaryCrossEntropy(S, B, N, positives, opts = {}) {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  const coef = rowCoefficients(reduction, B, B * N, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const y = new Float64Array(N); // targets of the current row
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);
    for (let e = positives.rowPtr[i]; e < positives.rowPtr[i + 1]; e++) y[positives.cols[e]] = entryWeight(positives, e);
    let loss = 0;
    for (let j = 0; j < N; j++) {
      loss += bceTerm(z[j], y[j]);
      if (z[j] === -Infinity) continue;
      const d = coef[i] * bceSlope(z[j], y[j]);
      if (d === 0) continue;
      grad[i * N + j] = scale * d;
      dScale += d * S[i * N + j];
    }
    rowLoss[i] = loss;
    for (let e = positives.rowPtr[i]; e < positives.rowPtr[i + 1]; e++) y[positives.cols[e]] = 0;
  }
  return { loss: reduceRows(rowLoss, reduction, B * N), rowLoss, grad, dScale };
}

export const entries = [
  positivesLossOp('binaryCrossEntropy', refBinaryCrossEntropy),
  embeddingsEntry('binaryCrossEntropyFromEmbeddings', {
    args: ['positives'],
    cases: [
      { rows: 37, dim: 48, cols: 1031, normalize: true, scale: 10, perRow: 3, weighted: true },
      { rows: 100, dim: 64, cols: 2003, perRow: 2, exclude: true, bias: true, cudaBudget: chunked(2003, 30) },
    ],
    make: (fl, rng, c) => {
      const pos = rowPositives(rng, c.rows, c.cols, c.perRow, { weighted: c.weighted });
      return { positives: pos, opts: c.exclude ? { exclude: exclusions(rng, c.rows, c.cols, pos) } : {} };
    },
    // DEXML-style: B = 4096, D = 768, N = 262144 keys, 3 positives per row.
    gpu: { shapes: [[4096, 768, 262_144]], opts: { normalize: true, scale: 10, memoryBudget: 2 ** 29 }, positivesPerRow: 3 },
  }),
];
