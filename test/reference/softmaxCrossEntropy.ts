/**
 * SPEC 3.1 in float64, straight from the formulas (torch F.cross_entropy semantics plus z-loss
 * and softcap). Scores of −Infinity are out: they take no part in the sums and get gradient 0.
 */
import type { Reduction, RefResult, Scores } from './types.js';

export interface RefCrossEntropyOptions {
  scale?: number;
  reduction?: Reduction;
  gradOutput?: ArrayLike<number>;
  ignoreIndex?: number;
  labelSmoothing?: number;
  classWeights?: ArrayLike<number>;
  zLoss?: number;
  softcap?: number;
}

export function refSoftmaxCrossEntropy(S: Scores, B: number, N: number, labels: ArrayLike<number>, opts: RefCrossEntropyOptions = {}): RefResult {
  const scale = opts.scale ?? 1;
  const eps = opts.labelSmoothing ?? 0;
  const lambda = opts.zLoss ?? 0;
  const cap = opts.softcap;
  const ignore = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  const w = (j: number) => (opts.classWeights ? opts.classWeights[j] : 1);
  let wMean = 0;
  for (let j = 0; j < N; j++) wMean += w(j);
  wMean /= N;
  let wSum = 0;
  for (let i = 0; i < B; i++) if (labels[i] !== ignore) wSum += w(labels[i]);

  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  const lseOut = new Float64Array(B);
  let dScale = 0;
  const z = new Float64Array(N);
  const dzdx = new Float64Array(N);
  const dzds = new Float64Array(N);
  for (let i = 0; i < B; i++) {
    let m = -Infinity;
    for (let j = 0; j < N; j++) {
      const x = S[i * N + j];
      if (x === -Infinity) {
        z[j] = -Infinity;
        dzdx[j] = 0;
        dzds[j] = 0;
        continue;
      }
      if (cap !== undefined) {
        const u = (scale * x) / cap;
        // sech² as 1/cosh², not 1 − tanh²: the latter is exactly 0 once tanh rounds to ±1.
        const sech2 = 1 / Math.cosh(u) ** 2;
        z[j] = cap * Math.tanh(u);
        dzdx[j] = scale * sech2;
        dzds[j] = x * sech2;
      } else {
        z[j] = scale * x;
        dzdx[j] = scale;
        dzds[j] = x;
      }
      m = Math.max(m, z[j]);
    }
    // Two-pass stable log-sum-exp; −inf entries contribute exp(−inf) = 0.
    let s = 0;
    let lin = 0;
    for (let j = 0; j < N; j++) {
      if (z[j] === -Infinity) continue;
      s += Math.exp(z[j] - m);
      lin += w(j) * z[j];
    }
    const lse = m + Math.log(s);
    lseOut[i] = lse;
    const y = labels[i];
    if (y === ignore) continue;
    const wy = w(y);
    rowLoss[i] = wy * (1 - eps) * (lse - z[y]) + lambda * lse * lse + (eps > 0 ? eps * (wMean * lse - lin / N) : 0);
    const u = reduction === 'mean' ? (wSum > 0 ? 1 / wSum : 0) : reduction === 'none' && opts.gradOutput ? opts.gradOutput[i] : 1;
    for (let j = 0; j < N; j++) {
      if (z[j] === -Infinity) continue;
      const p = Math.exp(z[j] - lse);
      let d = (wy * (1 - eps) + eps * wMean + 2 * lambda * lse) * p - (eps * w(j)) / N;
      if (j === y) d -= (1 - eps) * wy;
      grad[i * N + j] = u * d * dzdx[j];
      dScale += u * d * dzds[j];
    }
  }
  let loss = 0;
  for (let i = 0; i < B; i++) loss += rowLoss[i];
  if (reduction === 'mean') loss = wSum > 0 ? loss / wSum : 0;
  return { loss, rowLoss, grad, dScale, lse: lseOut };
}
