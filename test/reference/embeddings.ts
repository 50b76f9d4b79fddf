/**
 * docs/MATH.md §3.10 in float64: a section-3 loss on S = Q̂·K̂ᵀ (+ b) (Q̂, K̂ the rows normalised as
 * F.normalize does with `normalize`, else Q and K), its dL/dS chained back to dQ, dK and db.
 */
import { ops } from '../../scripts/ops.mjs';
import type { RefPositives, RefResult, Scores } from './types.js';

export type EmbeddingsLossName = 'decoupledSoftmax' | 'multiLabelSoftmax' | 'binaryCrossEntropy' | 'infoNCE' | 'softTopKLoss' | 'decoupledContrastive';

/** The options the references read: the matrix form's, plus `normalize`, `bias` (per key) and infoNCE's `symmetric` (which ignores `pos`). */
export type RefEmbeddingsOptions = { normalize?: boolean; symmetric?: boolean; bias?: ArrayLike<number> } & Record<string, unknown>;

/**
 * The matrix form's reference from its registry entry: the positives as its argument where the
 * entry takes them as one, else as its `positives` option (infoNCE, DCL), except for the symmetric
 * InfoNCE, whose positives are the diagonal.
 */
function matrixReference(name: EmbeddingsLossName, S: Scores, B: number, N: number, pos: RefPositives, o: RefEmbeddingsOptions): RefResult {
  const op = ops.find((e: { name: string }) => e.name === name);
  if (!op) throw new Error(`no op ${name} in scripts/ops.mjs`);
  if ((op.args as string[]).includes('positives')) return op.reference(S, B, N, pos, o);
  return op.reference(S, B, N, o.symmetric ? o : { ...o, positives: pos });
}

/** The float64 reference of `<name>FromEmbeddings`: the matrix form's result, with dQ (B×D), dK (N×D) and dB (N, with `bias`). */
export function refFromEmbeddings(name: EmbeddingsLossName, Q: ArrayLike<number>, K: ArrayLike<number>, B: number, N: number, D: number, pos: RefPositives, opts: RefEmbeddingsOptions) {
  const { bias, ...o } = opts;
  const unit = (X: ArrayLike<number>, rows: number) => {
    const Y = Float64Array.from(X);
    const inv = new Float64Array(rows).fill(1);
    if (o.normalize)
      for (let i = 0; i < rows; i++) {
        let s = 0;
        for (let k = 0; k < D; k++) s += Y[i * D + k] ** 2;
        inv[i] = 1 / Math.max(Math.sqrt(s), 1e-12);
        for (let k = 0; k < D; k++) Y[i * D + k] *= inv[i];
      }
    return { Y, inv };
  };
  const q = unit(Q, B);
  const k = unit(K, N);
  const S = new Float64Array(B * N);
  for (let i = 0; i < B; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let c = 0; c < D; c++) s += q.Y[i * D + c] * k.Y[j * D + c];
      S[i * N + j] = s + (bias ? bias[j] : 0);
    }
  const r: RefResult = matrixReference(name, S, B, N, pos, o);
  const G = r.grad!;
  const dB = new Float64Array(N);
  for (let i = 0; i < B; i++) for (let j = 0; j < N; j++) dB[j] += G[i * N + j];
  const dQ = new Float64Array(B * D);
  const dK = new Float64Array(N * D);
  for (let i = 0; i < B; i++)
    for (let j = 0; j < N; j++) {
      const g = G[i * N + j];
      if (g === 0) continue;
      for (let c = 0; c < D; c++) {
        dQ[i * D + c] += g * k.Y[j * D + c];
        dK[j * D + c] += g * q.Y[i * D + c];
      }
    }
  // Through the normalisation: dx = (dx̂ − x̂ (x̂·dx̂)) / ‖x‖.
  const chain = (dX: Float64Array, X: { Y: Float64Array; inv: Float64Array }, rows: number) => {
    if (!o.normalize) return;
    for (let i = 0; i < rows; i++) {
      let dot = 0;
      for (let c = 0; c < D; c++) dot += X.Y[i * D + c] * dX[i * D + c];
      for (let c = 0; c < D; c++) dX[i * D + c] = (dX[i * D + c] - X.Y[i * D + c] * dot) * X.inv[i];
    }
  };
  chain(dQ, q, B);
  chain(dK, k, N);
  return { ...r, dQ, dK, dB };
}
