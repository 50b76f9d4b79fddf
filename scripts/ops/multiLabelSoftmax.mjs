// multiLabelSoftmax: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { chunked, embeddingsEntry, exclusions, rowPositives } from '../lib/embeddings-kit.mjs';
import { positivesLossOp } from '../lib/op-kit.mjs';
import { entryWeight, logSumExp, markRow, OUT, reduceRows, rowCoefficients, scaledRow } from '../lib/reference.mjs';

/**
 * MATH multiLabelSoftmax (native/ops/positives_math.h), multi-label softmax (DEXML "softmax") in float64:
 *   ℓ_i = Σ_{p∈P_i} w_ip (lse_i − z_ip),  lse_i over every column that is not excluded,
 *   ∂ℓ_i/∂z_ij = W_i·p_ij − w_ij·[j∈P_i],  W_i = Σ_p w_ip.
 * 'mean' divides by B (rows without positives add 0).
 *
 * Out entries (excluded, or S = −∞) have probability 0 and gradient 0. A positive at −∞ costs
 * +∞; the other entries keep the gradient of the finite part.
 */
// interface RefMultiLabelSoftmaxOptions extends RefCommonOptions {
//   exclude?: RefPositives;
// }

export function refMultiLabelSoftmax(S, B, N, positives, opts = {}) {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  const coef = rowCoefficients(reduction, B, B, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const dz = new Float64Array(N); // ∂ℓ_i/∂z_ij of the current row
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    const p0 = positives.rowPtr[i];
    const p1 = positives.rowPtr[i + 1];
    if (p0 === p1) continue; // no positives: ℓ_i = 0, gradient 0
    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);

    const lse = logSumExp(z);
    if (lse === -Infinity) {
      rowLoss[i] = Infinity; // every column out: no probability left for the positives
      continue;
    }
    let W = 0;
    let loss = 0;
    for (let e = p0; e < p1; e++) {
      const wp = entryWeight(positives, e);
      W += wp;
      if (wp !== 0) loss += wp * (lse - z[positives.cols[e]]); // 0·∞ would be NaN
    }
    rowLoss[i] = loss;

    // exp(z − lse) ≤ 1 and is exactly 0 for out entries (lse is finite when a positive is in).
    for (let j = 0; j < N; j++) dz[j] = z[j] === -Infinity ? 0 : W * Math.exp(z[j] - lse);
    for (let e = p0; e < p1; e++) {
      const j = positives.cols[e];
      if (z[j] !== -Infinity) dz[j] -= entryWeight(positives, e);
    }
    for (let j = 0; j < N; j++) {
      if (dz[j] === 0) continue;
      grad[i * N + j] = coef[i] * scale * dz[j];
      dScale += coef[i] * dz[j] * S[i * N + j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, B), rowLoss, grad, dScale };
}

export const entries = [
  positivesLossOp('multiLabelSoftmax', refMultiLabelSoftmax),
  embeddingsEntry('multiLabelSoftmaxFromEmbeddings', {
    args: ['positives'],
    cases: [
      { rows: 37, dim: 48, cols: 1031, normalize: true, scale: 20, perRow: 3, weighted: true },
      { rows: 130, dim: 70, cols: 3001, perRow: 2, bias: true, cudaBudget: chunked(3001, 50) },
    ],
    make: (fl, rng, c) => ({ positives: rowPositives(rng, c.rows, c.cols, c.perRow, { gaps: true, weighted: c.weighted }) }),
    // DEXML-style: B = 4096, D = 768, N = 262144 keys, 3 positives per row.
    gpu: { shapes: [[4096, 768, 262_144]], opts: { normalize: true, scale: 20, memoryBudget: 2 ** 29 }, positivesPerRow: 3 },
  }),
];
