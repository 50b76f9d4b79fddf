// infoNCE: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { chunked, embeddingsEntry, exclusions, rowPositives } from '../lib/embeddings-kit.mjs';
import { contrastiveEntry, reuseGrad } from '../lib/op-kit.mjs';
import { diagonalPositives, entryWeight, logSumExp, markRow, OUT, reduceRows, rowCoefficients, scaledRow, transposeCsr } from '../lib/reference.mjs';

/**
 * MATH infoNCE (native/ops/contrastive_math.h), InfoNCE in float64.
 *
 * One-way: ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip (z_ip − lse_i), lse_i over every column not excluded
 * (positives included, SupCon-style); n_i = |P_i| (a count, not Σ w). Positives default to
 * the diagonal (row i ↔ column i, needs N ≥ B).
 * 'mean' divides by R, the number of rows with at least one positive.
 *
 * symmetric (CLIP; square S): the column-wise loss is the same formula on Sᵀ with the
 * transposed positives and exclusions, c_j for column j, and
 *   'mean': L = (Σ_i r_i / R + Σ_j c_j / C) / 2  (C: columns with at least one positive),
 *   'sum':  L = (Σ_i r_i + Σ_j c_j) / 2,
 *   rowLoss_i = (r_i + c_i) / 2 for every reduction, so 'none' pairs query i with key i and
 *   Σ_i rowLoss_i equals the 'sum' loss; gradOutput_i weights that pair.
 *
 * Out entries (excluded, or S = −∞) have probability 0 and gradient 0. A positive at −∞ costs
 * +∞; the other entries keep the gradient of the finite part.
 */
// interface RefInfoNCEOptions extends RefCommonOptions {
//   /** Default: the diagonal. */
//   positives?: RefPositives;
//   /** CLIP-style (row-wise + column-wise)/2 on a square S. */
//   symmetric?: boolean;
//   exclude?: RefPositives;
// }

// interface OneWay {
//   /** ℓ_i per row. */
//   rowLoss: Float64Array;
//   /** ∂ℓ_i/∂z_ij (B×N): each row's own derivative, unweighted. */
//   dz: Float64Array;
//   /** Rows with at least one positive. */
//   rowsWithPositives: number;
// }

/** Row-wise InfoNCE of a B×N matrix: losses and per-row derivatives with respect to z. */
function oneWay(S, B, N, scale, positives, exclude) {
  const rowLoss = new Float64Array(B);
  const dz = new Float64Array(B * N);
  const z = new Float64Array(N);
  const flags = new Uint8Array(N);
  let rowsWithPositives = 0;
  for (let i = 0; i < B; i++) {
    const p0 = positives.rowPtr[i];
    const p1 = positives.rowPtr[i + 1];
    const n = p1 - p0;
    if (n === 0) continue; // no positives: ℓ_i = 0, gradient 0, not counted by 'mean'
    rowsWithPositives++;
    markRow(flags, exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, exclude, i, 0);

    const lse = logSumExp(z);
    if (lse === -Infinity) {
      rowLoss[i] = Infinity; // every column out
      continue;
    }
    let W = 0;
    let loss = 0;
    for (let e = p0; e < p1; e++) {
      const wp = entryWeight(positives, e);
      W += wp;
      if (wp !== 0) loss += wp * (lse - z[positives.cols[e]]); // 0·∞ would be NaN
    }
    rowLoss[i] = loss / n;
    // ∂ℓ_i/∂z_ij = (W/n)·softmax_j − w_ij/n·[j∈P_i]
    for (let j = 0; j < N; j++) if (z[j] !== -Infinity) dz[i * N + j] = (W / n) * Math.exp(z[j] - lse);
    for (let e = p0; e < p1; e++) {
      const j = positives.cols[e];
      if (z[j] !== -Infinity) dz[i * N + j] -= entryWeight(positives, e) / n;
    }
  }
  return { rowLoss, dz, rowsWithPositives };
}

function transposeScores(S, B, N) {
  const T = new Float64Array(B * N);
  for (let i = 0; i < B; i++) for (let j = 0; j < N; j++) T[j * B + i] = S[i * N + j];
  return T;
}

export function refInfoNCE(S, B, N, opts = {}) {
  const scale = opts.scale ?? 1;
  const reduction = opts.reduction ?? 'mean';
  if (!opts.positives && N < B) throw new Error(`infoNCE: diagonal positives need N >= B, got B=${B}, N=${N}`);
  const positives = opts.positives ?? diagonalPositives(B);
  const rows = oneWay(S, B, N, scale, positives, opts.exclude);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  // Adds coefficient·∂ℓ/∂z of entry (i, j) to the gradient and to dScale (∂z/∂S = scale, ∂z/∂scale = S).
  const accumulate = (i, j, d) => {
    if (d === 0) return;
    grad[i * N + j] += scale * d;
    dScale += d * S[i * N + j];
  };

  if (!opts.symmetric) {
    const coef = rowCoefficients(reduction, B, rows.rowsWithPositives, opts.gradOutput);
    for (let i = 0; i < B; i++) for (let j = 0; j < N; j++) accumulate(i, j, coef[i] * rows.dz[i * N + j]);
    return { loss: reduceRows(rows.rowLoss, reduction, rows.rowsWithPositives), rowLoss: rows.rowLoss, grad, dScale };
  }

  if (B !== N) throw new Error(`infoNCE: symmetric needs a square S, got ${B}x${N}`);
  const cols = oneWay(transposeScores(S, B, N), N, B, scale, transposeCsr(positives, B, N), opts.exclude && transposeCsr(opts.exclude, B, N));
  const rowLoss = new Float64Array(B);
  for (let i = 0; i < B; i++) rowLoss[i] = (rows.rowLoss[i] + cols.rowLoss[i]) / 2;
  const rowCoef = rowCoefficients(reduction, B, rows.rowsWithPositives, opts.gradOutput);
  const colCoef = rowCoefficients(reduction, N, cols.rowsWithPositives, opts.gradOutput);
  for (let i = 0; i < B; i++)
    for (let j = 0; j < N; j++) {
      // Column j's loss c_j depends on z_ij through entry (j, i) of the transposed problem.
      accumulate(i, j, (rowCoef[i] * rows.dz[i * N + j] + colCoef[j] * cols.dz[j * B + i]) / 2);
    }
  const loss =
    reduction === 'mean'
      ? (reduceRows(rows.rowLoss, 'mean', rows.rowsWithPositives) + reduceRows(cols.rowLoss, 'mean', cols.rowsWithPositives)) / 2
      : reduceRows(rowLoss, 'sum', B);
  return { loss, rowLoss, grad, dScale };
}

export const entries = [
  contrastiveEntry('infoNCE', {
    options: ['symmetric', 'positives', 'exclude'],
    reference: refInfoNCE,
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
  embeddingsEntry('infoNCEFromEmbeddings', {
    cases: [
      { rows: 64, dim: 48, cols: 64, normalize: true, scale: 20, symmetric: true },
      { rows: 300, dim: 72, cols: 300, normalize: true, scale: 14, symmetric: true, bias: true, cudaBudget: chunked(300, 64) },
      { rows: 37, dim: 40, cols: 1031, normalize: true, scale: 20 },
      { rows: 50, dim: 40, cols: 777, scale: 2, perRow: 2, exclude: true, cudaBudget: chunked(777, 16), accumulate: true, bias: true },
    ],
    make: (fl, rng, c) => {
      const opts = {};
      if (c.symmetric) opts.symmetric = true;
      if (c.perRow) opts.positives = rowPositives(rng, c.rows, c.cols, c.perRow, { gaps: true });
      if (c.exclude) opts.exclude = exclusions(rng, c.rows, c.cols, opts.positives);
      return { opts };
    },
    // CLIP at B = N = 32768, D = 1024 (cosine): PyTorch eager holds several B×N matrices.
    gpu: { shapes: [[32768, 1024, 32768]], opts: { normalize: true, scale: 20, symmetric: true, memoryBudget: 2 ** 29 } },
  }),
];
