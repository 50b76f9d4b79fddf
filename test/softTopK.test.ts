import { describe, expect, it } from 'vitest';
import { refSoftTopK, refSoftTopKVjp } from '../scripts/ops/softTopKLoss.mjs';
import { loadGoldenCases, runReference, type RefSoftTopKCaseResult } from './reference/golden.js';
import { fdGradCheck } from './reference/fd.js';
import { makeRng, randomExclude, randomScores, type ScoreKind } from './reference/rng.js';
import { toBFloat16Bits, toFloat16Bits, fromBFloat16Bits, fromFloat16Bits } from './reference/dtype.js';
import { allWritten, expectCode, expectCodeAsync, fl, relL2 } from './helpers';

const sigmoid = (a: number) => (a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a)));

/**
 * How far t may be from the float64 root: the solver stops at |Σp − k| ≤ tol·k, which moves t
 * by up to tol·k/F'(t) (F' = α·Σp(1 − p)), plus the fp32 rounding of z + t.
 */
function thresholdSlack(x: ArrayLike<number>, t: number, alpha: number, k: number, tol: number): number {
  let v = 0;
  let big = Math.abs(t);
  for (let j = 0; j < x.length; j++) {
    if (x[j] === -Infinity) continue;
    const p = sigmoid(alpha * (x[j] + t));
    v += p * (1 - p);
    big = Math.max(big, Math.abs(x[j]));
  }
  return (2 * tol * k) / (alpha * v) + 4e-7 * big;
}

interface Case {
  B: number;
  N: number;
  k: number | Int32Array;
  alpha: number;
  kind: ScoreKind;
  output?: 'prob' | 'log';
  exclude?: boolean;
  seed: number;
}

function run(c: Case) {
  const rng = makeRng(c.seed);
  const S = randomScores(rng, c.B, c.N, { kind: c.kind });
  const exclude = c.exclude ? randomExclude(rng, c.B, c.N, undefined, { max: 40 }) : undefined;
  const opts = { alpha: c.alpha, output: c.output, exclude };
  const got = fl.softTopK(fl.tensor(S, [c.B, c.N]), c.k, opts);
  const ref = refSoftTopK(S, c.B, c.N, c.k, opts);
  return { S, got, ref, exclude };
}

/** Threshold vs float64 bisection, Σp = k within tol, and the values. */
function checkForward(c: Case) {
  const { S, got, ref, exclude } = run(c);
  const tol = 1e-5;
  const values = got.values.data as Float32Array;
  expect(allWritten(values)).toBe(true);
  const x = new Float64Array(c.N);
  for (let i = 0; i < c.B; i++) {
    const k = typeof c.k === 'number' ? c.k : c.k[i];
    for (let j = 0; j < c.N; j++) x[j] = S[i * c.N + j];
    if (exclude) for (let e = exclude.rowPtr[i]; e < exclude.rowPtr[i + 1]; e++) x[exclude.cols[e]] = -Infinity;
    const slack = thresholdSlack(x, ref.threshold[i], c.alpha, k, tol);
    expect(Math.abs(got.threshold[i] - ref.threshold[i]), `row ${i}: t ${got.threshold[i]} vs ${ref.threshold[i]}`).toBeLessThanOrEqual(slack);
    // Σp at the returned threshold, in float64, is k within tol (and a little fp32 rounding).
    let sum = 0;
    for (let j = 0; j < c.N; j++) sum += sigmoid(c.alpha * (x[j] + got.threshold[i]));
    expect(Math.abs(sum - k), `row ${i}: Σp ${sum} vs k ${k}`).toBeLessThanOrEqual(1.5 * tol * k + 1e-6 * Math.abs(got.threshold[i]) * c.alpha * k);
    expect(got.iterations[i]).toBeGreaterThanOrEqual(1);
  }
  if (c.output === 'log') {
    // log p: compare where finite; −∞ exactly where the reference has it.
    for (let i = 0; i < values.length; i++) {
      if (ref.values[i] === -Infinity) expect(values[i]).toBe(-Infinity);
      else expect(Math.abs(values[i] - ref.values[i])).toBeLessThanOrEqual(2e-4 * Math.max(1, Math.abs(ref.values[i])));
    }
  } else {
    expect(relL2(values, ref.values)).toBeLessThanOrEqual(2e-4);
    if (exclude) for (let i = 0; i < c.B; i++) for (let e = exclude.rowPtr[i]; e < exclude.rowPtr[i + 1]; e++) expect(values[i * c.N + exclude.cols[e]]).toBe(0);
  }
  return { got, ref };
}

describe('softTopK forward', () => {
  it('matches the golden case', () => {
    for (const gc of loadGoldenCases().filter((g) => g.fn === 'softTopK')) {
      const [B, N] = gc.shape;
      const S = Float32Array.from(gc.S);
      const k = typeof gc.k === 'number' ? gc.k : Int32Array.from(gc.k!);
      const r = fl.softTopK(fl.tensor(S, [B, N]), k, gc.opts as fl.SoftTopKOptions);
      const ref = runReference(gc) as RefSoftTopKCaseResult;
      expect(relL2(r.values.data, gc.values!)).toBeLessThanOrEqual(1e-5);
      expect(relL2(r.values.data, ref.values)).toBeLessThanOrEqual(1e-5);
      for (let i = 0; i < B; i++) expect(Math.abs(r.threshold[i] - gc.threshold![i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(gc.threshold![i])));
      const g = r.vjp(Float32Array.from(gc.upstream!));
      expect(relL2(g.data, gc.grad)).toBeLessThanOrEqual(1e-4);
    }
  });

  const cases: Case[] = [
    { B: 7, N: 50, k: 1, alpha: 1, kind: 'normal', seed: 1 },
    { B: 5, N: 97, k: 49, alpha: 2, kind: 'normal', seed: 2 },
    { B: 4, N: 1001, k: 5, alpha: 5, kind: 'peaked', seed: 3 },
    { B: 3, N: 5003, k: 50, alpha: 1, kind: 'flat', seed: 4 },
    { B: 3, N: 4099, k: 4000, alpha: 2, kind: 'normal', seed: 5 },
    { B: 2, N: 70001, k: 7, alpha: 2, kind: 'normal', exclude: true, seed: 6 },
    { B: 2, N: 33000, k: 3, alpha: 5, kind: 'peaked', output: 'log', seed: 7 },
  ];
  for (const c of cases) it(`B=${c.B} N=${c.N} k=${c.k} α=${c.alpha} ${c.kind}${c.exclude ? ' exclude' : ''}${c.output === 'log' ? ' log' : ''}`, () => checkForward(c));

  it('per-row k, 1..50', () => {
    const k = Int32Array.from([1, 2, 5, 17, 33, 50, 3]);
    checkForward({ B: 7, N: 2003, k, alpha: 2, kind: 'normal', seed: 8 });
  });

  it('flat rows where the ±10/α bracket fails (N = 300,000 ≳ 22,000·k)', () => {
    for (const alpha of [1, 2, 5]) {
      const { ref } = checkForward({ B: 1, N: 300_000, k: 5, alpha, kind: 'flat', seed: 9 + alpha });
      // The root lies outside DEXML's bracket [−10/α, 10/α]: a bisection there would be wrong.
      expect(Math.abs(ref.threshold[0])).toBeGreaterThan(10 / alpha);
    }
  });

  it('a saturated row (top entry 100 above the rest, k = 1): the root beyond float64 bisection', () => {
    // At the root 1 − p_top ≈ e^-47, so Σp − k in float64 is all rounding (its ulp near 1 is
    // 1e-16) and plain bisection stops anywhere in a wide interval. Written as L = R with
    // L = Σ_{a<0} p and R = Σ_{a≥0} (1 − p) + (k − m), each term exact, the root is sharp.
    const N = 201;
    const rng = makeRng(14);
    const S = Float32Array.from({ length: N }, () => rng.normal());
    S[17] = 100;
    const got = fl.softTopK(fl.tensor(S, [1, N]), 1, { alpha: 1 });
    const logLR = (t: number) => {
      let L = 0, R = 0, m = 0;
      for (const x of S) {
        const a = x + t;
        if (a < 0) L += sigmoid(a);
        else { R += sigmoid(-a); m++; }
      }
      return Math.log(L + Math.max(m - 1, 0)) - Math.log(R + Math.max(1 - m, 0));
    };
    let lo = -110, hi = 0;
    for (let i = 0; i < 80; i++) {
      const mid = (lo + hi) / 2;
      if (logLR(mid) < 0) lo = mid;
      else hi = mid;
    }
    expect(Math.abs(got.threshold[0] - lo)).toBeLessThanOrEqual(1e-5 * Math.abs(lo));
  });

  it('−Infinity entries are out: p = 0 and they do not count in N_i', () => {
    const rng = makeRng(11);
    const B = 3, N = 300;
    const S = randomScores(rng, B, N);
    for (let j = 0; j < N; j += 3) S[j] = -Infinity;
    const got = fl.softTopK(fl.tensor(S, [B, N]), 4, { alpha: 2 });
    const ref = refSoftTopK(S, B, N, 4, { alpha: 2 });
    expect(relL2(got.values.data, ref.values)).toBeLessThanOrEqual(1e-5);
    for (let j = 0; j < N; j += 3) expect(got.values.data[j]).toBe(0);
    // Row 0 has 200 entries that are in: k = 200 is out of range there only.
    expectCode(() => fl.softTopK(fl.tensor(S, [B, N]), 200), 'ERR_K_RANGE', /k: expected 0 < k < N_i = 200/);
  });

  it('fp16 and bf16 scores', () => {
    const rng = makeRng(12);
    const B = 3, N = 3001;
    const S = randomScores(rng, B, N);
    for (const [dtype, bits, back] of [
      ['float16', toFloat16Bits(S), fromFloat16Bits],
      ['bfloat16', toBFloat16Bits(S), fromBFloat16Bits],
    ] as const) {
      const got = fl.softTopK(fl.tensor(bits, [B, N], { dtype }), 5, { alpha: 2 });
      const ref = refSoftTopK(back(bits), B, N, 5, { alpha: 2 });
      expect(relL2(got.values.data, ref.values)).toBeLessThanOrEqual(2e-4);
      // The vjp comes back in the scores' dtype, rounded once.
      const g = Float32Array.from({ length: B * N }, (_, i) => Math.sin(i));
      const grad = got.vjp(g);
      expect(grad.dtype).toBe(dtype);
      const refGrad = refSoftTopKVjp(back(bits), B, N, 5, { alpha: 2 }, g);
      expect(relL2(fl.toFloat32(grad.data, dtype), refGrad)).toBeLessThanOrEqual(dtype === 'float16' ? 2e-3 : 1e-2);
    }
  });

  it('async twin gives the same result', async () => {
    const rng = makeRng(13);
    const S = randomScores(rng, 4, 999);
    const a = fl.softTopK(fl.tensor(S, [4, 999]), 5);
    const b = await fl.softTopKAsync(fl.tensor(S, [4, 999]), 5);
    expect(b.values.data).toEqual(a.values.data);
    expect(b.threshold).toEqual(a.threshold);
  });
});

describe('softTopK vjp', () => {
  for (const output of ['prob', 'log'] as const) {
    it(`${output}: against the float64 reference and finite differences`, () => {
      const rng = makeRng(output === 'prob' ? 21 : 22);
      const B = 3, N = 41;
      const S = randomScores(rng, B, N);
      const exclude = randomExclude(rng, B, N, undefined, { max: 5 });
      const g = Float32Array.from({ length: B * N }, () => rng.normal());
      const opts = { alpha: 2, output, exclude };
      const r = fl.softTopK(fl.tensor(S, [B, N]), 4, opts);
      const grad = r.vjp(g).data as Float32Array;
      const ref = refSoftTopKVjp(S, B, N, 4, opts, g);
      expect(relL2(grad, ref)).toBeLessThanOrEqual(1e-4);
      const f = (x: Float64Array) => {
        const v = refSoftTopK(x, B, N, 4, opts).values;
        let s = 0;
        for (let i = 0; i < v.length; i++) if (Number.isFinite(v[i])) s += g[i] * v[i];
        return s;
      };
      const err = fdGradCheck(f, Float64Array.from(S), grad, { h: 1e-3 });
      expect(err.relErr).toBeLessThanOrEqual(1e-3);
    });
  }

  it('large rows (N = 131,072, tiles), both modes', () => {
    const rng = makeRng(23);
    const B = 2, N = 131072;
    const S = randomScores(rng, B, N);
    const g = Float32Array.from({ length: B * N }, () => rng.normal());
    for (const output of ['prob', 'log'] as const) {
      const r = fl.softTopK(fl.tensor(S, [B, N]), 5, { alpha: 2, output });
      const ref = refSoftTopKVjp(S, B, N, 5, { alpha: 2, output }, g);
      expect(relL2(r.vjp(g).data, ref)).toBeLessThanOrEqual(1e-4);
    }
  });
});

describe('softTopK bad input', () => {
  const S = randomScores(makeRng(31), 3, 20);
  const t = () => fl.tensor(S.slice(), [3, 20]);
  it('k out of range (incl. exclusions)', () => {
    expectCode(() => fl.softTopK(t(), 0), 'ERR_K_RANGE', /k: expected 0 < k < N_i/);
    expectCode(() => fl.softTopK(t(), -2), 'ERR_K_RANGE');
    expectCode(() => fl.softTopK(t(), 20), 'ERR_K_RANGE');
    expectCode(() => fl.softTopK(t(), Int32Array.from([3, 20, 3])), 'ERR_K_RANGE', /k\[1\]/);
    const exclude = { rowPtr: Int32Array.from([0, 0, 2, 2]), cols: Int32Array.from([4, 7]) };
    expectCode(() => fl.softTopK(t(), 18, { exclude }), 'ERR_K_RANGE', /N_i = 18/);
    expectCode(() => fl.softTopK(t(), 1.5), 'ERR_ARG');
  });
  it('α ≤ 0 or non-finite, k array of the wrong length', () => {
    for (const alpha of [0, -1, Number.NaN, Infinity]) expectCode(() => fl.softTopK(t(), 3, { alpha }), 'ERR_ARG', /opts.alpha/);
    expectCode(() => fl.softTopK(t(), Int32Array.from([3, 3])), 'ERR_SHAPE', /length 3/);
    expectCode(() => fl.softTopK(t(), 3, { tol: 0 }), 'ERR_ARG');
    expectCode(() => fl.softTopK(t(), 3, { maxIter: 0 }), 'ERR_ARG');
  });
  it('vjp of the wrong shape, or after dispose', () => {
    const r = fl.softTopK(t(), 3);
    expectCode(() => r.vjp(new Float32Array(59)), 'ERR_SHAPE');
    expectCode(() => r.vjp(fl.tensor(new Float32Array(60), [6, 10])), 'ERR_SHAPE');
    r.dispose();
    expectCode(() => r.vjp(new Float32Array(60)), 'ERR_DISPOSED');
  });
  it('NaN and +Infinity', async () => {
    for (const bad of [Number.NaN, Infinity]) {
      const x = S.slice();
      x[27] = bad;
      expectCode(() => fl.softTopK(fl.tensor(x, [3, 20]), 3), 'ERR_NON_FINITE', /\[1, 7\]/);
      await expectCodeAsync(fl.softTopKAsync(fl.tensor(x, [3, 20]), 3), 'ERR_NON_FINITE');
    }
  });
});
