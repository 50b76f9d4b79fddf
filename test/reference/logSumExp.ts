/**
 * The row log-sum-exps of scale·S in float64: lse_i = m + ln Σ_j exp(scale·S_ij − m), m the row
 * max. A row whose every entry is −∞ has lse −∞.
 */
import type { Scores } from './types.js';

export function refLogSumExp(S: Scores, B: number, N: number, scale = 1): Float64Array {
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
