// decoupledSoftmax: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { chunked, embeddingsEntry, exclusions, rowPositives } from '../lib/embeddings-kit.mjs';
import { positivesLossOp } from '../lib/op-kit.mjs';
import { entryWeight, logSigmoid, markRow, OUT, POSITIVE, reduceRows, rowCoefficients, scaledRow, sigmoid } from '../lib/reference.mjs';

/**
 * MATH decoupledSoftmax (native/ops/positives_math.h), decoupled softmax (DEXML) in float64:
 *   Z_i = LSE over the negatives only (columns neither positive nor excluded),
 *   ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip · log σ(z_ip − Z_i),  n_i = |P_i| (a count, not Σ w).
 * Gradient, with q_ij = e^{z_ij − Z_i} (softmax over the negatives):
 *   positive p: −(w_ip/n_i)·σ(Z_i − z_ip)
 *   negative j: (1/n_i) Σ_p w_ip e^{z_ij}/(e^{z_ip} + e^{Z_i}) = q_ij · (1/n_i) Σ_p w_ip σ(Z_i − z_ip)
 * (the second form never exponentiates an unshifted score). 'mean' divides by B.
 *
 * A row with no negatives has Z_i = −∞ and log σ(+∞) = 0: its loss and gradient are 0.
 * Out entries (excluded, or S = −∞) take no part and get gradient 0. A positive at −∞ costs +∞
 * and its σ(Z_i − z_ip) is 1 (the limit), so the negatives keep the finite part's gradient.
 */
// interface RefDecoupledSoftmaxOptions extends RefCommonOptions {
//   exclude?: RefPositives;
// }

/** z_p − Z with the −∞ cases resolved by their limits (−∞ − −∞ would be NaN). */
function margin(zp, Z) {
  if (zp === -Infinity) return -Infinity;
  return zp - Z; // +∞ when there are no negatives
}

export function refDecoupledSoftmax(S, B, N, positives, opts = {}) {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  const coef = rowCoefficients(reduction, B, B, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const neg = new Float64Array(N); // z with positives set to −∞: the negatives only
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    const p0 = positives.rowPtr[i];
    const p1 = positives.rowPtr[i + 1];
    const n = p1 - p0;
    if (n === 0) continue;
    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);
    markRow(flags, positives, i, POSITIVE);
    for (let j = 0; j < N; j++) neg[j] = flags[j] === POSITIVE ? -Infinity : z[j];
    markRow(flags, positives, i, 0);

    let m = -Infinity;
    for (let j = 0; j < N; j++) if (neg[j] > m) m = neg[j];
    let sum = 0;
    if (m !== -Infinity) for (let j = 0; j < N; j++) sum += Math.exp(neg[j] - m);
    const Z = m === -Infinity ? -Infinity : m + Math.log(sum);

    let loss = 0;
    let negCoef = 0; // (1/n) Σ_p w_p σ(Z − z_p)
    for (let e = p0; e < p1; e++) {
      const j = positives.cols[e];
      const wp = entryWeight(positives, e);
      const x = margin(z[j], Z);
      if (wp !== 0) loss -= wp * logSigmoid(x); // 0·∞ would be NaN
      const s = sigmoid(-x); // σ(Z − z_p)
      negCoef += (wp * s) / n;
      if (z[j] === -Infinity) continue; // out: gradient 0
      const d = coef[i] * (-(wp / n) * s);
      grad[i * N + j] = scale * d;
      dScale += d * S[i * N + j];
    }
    rowLoss[i] = loss / n;
    if (Z === -Infinity) continue; // no negatives
    for (let j = 0; j < N; j++) {
      if (neg[j] === -Infinity) continue;
      const d = coef[i] * negCoef * Math.exp(neg[j] - Z);
      grad[i * N + j] = scale * d;
      dScale += d * S[i * N + j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, B), rowLoss, grad, dScale };
}

export const entries = [
  positivesLossOp('decoupledSoftmax', refDecoupledSoftmax),
  embeddingsEntry('decoupledSoftmaxFromEmbeddings', {
    args: ['positives'],
    cases: [
      { rows: 37, dim: 48, cols: 1031, normalize: true, scale: 20, perRow: 3 },
      { rows: 130, dim: 130, cols: 4099, perRow: 2, exclude: true, bias: true, cudaBudget: chunked(4099, 33) },
      { rows: 20, dim: 33, cols: 515, normalize: true, scale: 10, perRow: 1, accumulate: true, gradDtype: 'float32' },
    ],
    make: (fl, rng, c) => {
      const pos = rowPositives(rng, c.rows, c.cols, c.perRow, { gaps: true });
      return { positives: pos, opts: c.exclude ? { exclude: exclusions(rng, c.rows, c.cols, pos) } : {} };
    },
    // DEXML-style: B = 4096, D = 768, N = 262144 keys, 3 positives per row.
    gpu: { shapes: [[4096, 768, 262_144]], opts: { normalize: true, scale: 20, memoryBudget: 2 ** 29 }, positivesPerRow: 3 },
  }),
];
