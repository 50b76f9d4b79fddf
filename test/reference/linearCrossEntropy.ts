/**
 * linearCrossEntropy (docs/MATH.md §3.9–3.10) in float64: refSoftmaxCrossEntropy on S = H·Wᵀ (+ b), chained
 * through the product: dH = G·W, dW = Gᵀ·H, db = Σ_i G_i with G = dL/dS.
 */
import { refSoftmaxCrossEntropy, type RefCrossEntropyOptions } from './softmaxCrossEntropy.js';

export interface RefLinearResult {
  loss: number;
  rowLoss: Float64Array;
  lse: Float64Array;
  dH: Float64Array;
  dW: Float64Array;
  db: Float64Array;
  dScale: number;
}

export function refLinearCrossEntropy(
  H: ArrayLike<number>,
  W: ArrayLike<number>,
  b: ArrayLike<number> | undefined,
  B: number,
  D: number,
  N: number,
  labels: ArrayLike<number>,
  opts: RefCrossEntropyOptions = {},
): RefLinearResult {
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
  return { loss: r.loss, rowLoss: r.rowLoss, lse: r.lse!, dH, dW, db, dScale: r.dScale };
}
