/** Central finite differences in float64, to check the references' analytic gradients. */
import type { Rng } from './rng.js';

/**
 * Compares analytic[i] with (f(S + h·e_i) − f(S − h·e_i)) / 2h on `sample` entries (all when
 * omitted). Returns the worst absolute error relative to max(1, |analytic|).
 */
export function fdGradCheck(f: (S: Float64Array) => number, S: Float64Array, analytic: ArrayLike<number>, o: { h?: number; sample?: number; rng?: Rng } = {}): number {
  const h = o.h ?? 1e-6;
  const idx = o.sample && o.rng ? Array.from({ length: o.sample }, () => o.rng!.int(0, S.length)) : Array.from(S.keys());
  let worst = 0;
  for (const i of idx) {
    if (!Number.isFinite(S[i])) continue;
    const x = S[i];
    S[i] = x + h;
    const up = f(S);
    S[i] = x - h;
    const down = f(S);
    S[i] = x;
    const fd = (up - down) / (2 * h);
    worst = Math.max(worst, Math.abs(fd - analytic[i]) / Math.max(1, Math.abs(analytic[i])));
  }
  return worst;
}

/** The same for a scalar parameter (dScale): f as a function of the scale. */
export function fdScalarCheck(f: (scale: number) => number, scale: number, analytic: number, h = 1e-6): number {
  const fd = (f(scale + h) - f(scale - h)) / (2 * h);
  return Math.abs(fd - analytic) / Math.max(1, Math.abs(analytic));
}
