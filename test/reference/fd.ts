/**
 * Finite-difference checks of the references' analytic gradients, in float64.
 *
 * The derivative is the fourth-order central stencil
 *   f'(x) ≈ [8(f(x+h) − f(x−h)) − (f(x+2h) − f(x−2h))] / 12h,
 * whose truncation error is O(h⁴) instead of the plain stencil's O(h²). With the default
 * h = 1e-4 both the truncation error and the rounding error (≈ ε·|f|/h ≈ 1e-12·|f|) sit far
 * below the 1e-7-ish tolerances the tests use, even for steep losses (scale 10+).
 */
import { makeRng } from './rng.js';

export interface FdError {
  /** max over the checked entries of |fd − analytic|. */
  maxAbsErr: number;
  /** ‖fd − analytic‖₂ / ‖analytic‖₂ over the checked entries (the absolute ‖fd‖₂ when analytic is all 0 there). */
  relErr: number;
}

export interface FdOptions {
  /** Step (default 1e-4). */
  h?: number;
  /** Check this many distinct entries, drawn at random, instead of all of them (big inputs). */
  sample?: number;
  /** Seed of that draw (default 1). */
  seed?: number;
}

/** The fourth-order central difference of g at x. */
function derivative(g: (x: number) => number, x: number, h: number): number {
  return (8 * (g(x + h) - g(x - h)) - (g(x + 2 * h) - g(x - 2 * h))) / (12 * h);
}

function summarize(fd: number[], analytic: number[]): FdError {
  let maxAbsErr = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < fd.length; i++) {
    const d = Math.abs(fd[i] - analytic[i]);
    maxAbsErr = Math.max(maxAbsErr, d);
    num += d * d;
    den += analytic[i] * analytic[i];
  }
  return { maxAbsErr, relErr: den > 0 ? Math.sqrt(num / den) : Math.sqrt(num) };
}

/**
 * Compares analytic[i] with the finite difference of f in S[i], on every entry or on `sample`
 * of them. S is perturbed in place and restored. An entry at −∞ has no neighbourhood: there the
 * analytic gradient must be exactly 0, and any other value counts in full as error.
 */
export function fdGradCheck(f: (S: Float64Array) => number, S: Float64Array, analytic: ArrayLike<number>, o: FdOptions = {}): FdError {
  const h = o.h ?? 1e-4;
  let idx = Array.from(S.keys());
  if (o.sample !== undefined && o.sample < S.length) {
    const rng = makeRng(o.seed ?? 1);
    for (let i = 0; i < o.sample; i++) {
      // Partial Fisher-Yates: idx[0..sample) ends up a uniform draw without repeats.
      const j = rng.int(i, idx.length);
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    idx = idx.slice(0, o.sample);
  }
  const fd: number[] = [];
  const an: number[] = [];
  for (const i of idx) {
    an.push(analytic[i]);
    if (S[i] === -Infinity) {
      fd.push(0);
      continue;
    }
    const x = S[i];
    fd.push(
      derivative(
        (v) => {
          S[i] = v;
          return f(S);
        },
        x,
        h,
      ),
    );
    S[i] = x;
  }
  return summarize(fd, an);
}

/** The same for one scalar parameter, e.g. dScale with f as a function of the scale. */
export function fdScalarCheck(f: (x: number) => number, x: number, analytic: number, o: { h?: number } = {}): FdError {
  return summarize([derivative(f, x, o.h ?? 1e-4)], [analytic]);
}
