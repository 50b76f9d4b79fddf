import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { refSoftTopKLoss, type RefSoftTopKLossOptions } from '../scripts/ops/softTopKLoss.mjs';
import { refSoftTopKVjp, solveThreshold } from '../scripts/ops/softTopKLoss.mjs';
import { loadGoldenCases, runReference } from './reference/golden.js';
import { fdGradCheck, fdScalarCheck } from './reference/fd.js';
import { makeRng, randomExclude, randomPositives, randomScores, type CsrArrays, type ScoreKind } from './reference/rng.js';
import { fromBFloat16Bits, fromFloat16Bits, toBFloat16Bits, toFloat16Bits } from './reference/dtype.js';
import { allWritten, expectCode, expectCodeAsync, fl, relL2 } from './helpers';

type Opts = fl.SoftTopKLossOptions;

function gradOf(r: fl.LossResult): Float32Array {
  const g = fl.toHost(r.grad!);
  return fl.toFloat32(g.data, g.dtype);
}

/** Kernel vs float64 reference: loss, row losses, gradient, dScale. */
function check(S: Float32Array, B: number, N: number, positives: CsrArrays, opts: Opts, tol = 1e-5) {
  const got = fl.softTopKLoss(fl.tensor(S, [B, N]), positives, { ...opts, gradScale: true });
  const ref = refSoftTopKLoss(S, B, N, positives, opts as RefSoftTopKLossOptions);
  expect(Math.abs(got.loss - ref.loss) / Math.max(1e-30, Math.abs(ref.loss)), `loss ${got.loss} vs ${ref.loss}`).toBeLessThanOrEqual(tol);
  expect(relL2(got.rowLoss, ref.rowLoss)).toBeLessThanOrEqual(tol);
  const g = gradOf(got);
  expect(allWritten(g)).toBe(true);
  expect(relL2(g, ref.grad)).toBeLessThanOrEqual(tol * 10);
  expect(Math.abs(got.dScale! - ref.dScale!)).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(ref.dScale!)));
  return { got, ref };
}

interface Case {
  B: number;
  N: number;
  k?: Opts['k'];
  alpha?: number;
  kind: ScoreKind;
  pos: [number, number];
  weighted?: boolean;
  exclude?: boolean;
  reduction?: 'mean' | 'sum' | 'none';
  scale?: number;
  seed: number;
}

function inputs(c: Case) {
  const rng = makeRng(c.seed);
  const S = randomScores(rng, c.B, c.N, { kind: c.kind });
  const positives = randomPositives(rng, c.B, c.N, { min: c.pos[0], max: c.pos[1], weighted: c.weighted });
  const exclude = c.exclude ? randomExclude(rng, c.B, c.N, positives, { max: 30 }) : undefined;
  const gradOutput = c.reduction === 'none' ? Float32Array.from({ length: c.B }, () => 0.5 + rng.uniform()) : undefined;
  const opts: Opts = { k: c.k, alpha: c.alpha, exclude, reduction: c.reduction, gradOutput, scale: c.scale };
  return { S, positives, opts };
}

describe('softTopKLoss', () => {
  it('matches the golden cases', () => {
    for (const gc of loadGoldenCases().filter((g) => g.fn === 'softTopKLoss')) {
      const [B, N] = gc.shape;
      const pos = gc.positives!;
      const positives = { rowPtr: Int32Array.from(pos.rowPtr), cols: Int32Array.from(pos.cols), weights: pos.weights ? Float32Array.from(pos.weights) : undefined };
      const r = fl.softTopKLoss(fl.tensor(Float32Array.from(gc.S), [B, N]), positives, gc.opts as Opts);
      expect(Math.abs(r.loss - gc.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(gc.loss));
      expect(relL2(gradOf(r), gc.grad)).toBeLessThanOrEqual(1e-4);
      const ref = runReference(gc);
      expect(Math.abs(ref.loss - gc.loss)).toBeLessThanOrEqual(1e-9 * Math.abs(gc.loss));
    }
  });

  const cases: Case[] = [
    { B: 7, N: 50, kind: 'normal', pos: [0, 3], seed: 1 },
    { B: 5, N: 97, k: 1, alpha: 1, kind: 'normal', pos: [1, 2], seed: 2 },
    { B: 6, N: 1031, k: 'numPositives', alpha: 5, kind: 'normal', pos: [1, 12], weighted: true, seed: 3 },
    { B: 4, N: 3001, k: 50, alpha: 2, kind: 'flat', pos: [1, 5], exclude: true, reduction: 'sum', seed: 4 },
    { B: 3, N: 70001, k: 5, alpha: 2, kind: 'normal', pos: [1, 4], exclude: true, reduction: 'none', scale: 1.7, seed: 5 },
    { B: 2, N: 131072, kind: 'peaked', pos: [2, 5], seed: 6 },
  ];
  for (const c of cases)
    it(`B=${c.B} N=${c.N} k=${String(c.k ?? 5)} α=${c.alpha ?? 2} ${c.kind}${c.exclude ? ' exclude' : ''}${c.reduction ? ' ' + c.reduction : ''}`, () => {
      const { S, positives, opts } = inputs(c);
      check(S, c.B, c.N, positives, opts);
    });

  it('flat rows with N = 300,000 (beyond the ±10/α bracket), per-row k up to 50', () => {
    const { S, positives } = inputs({ B: 2, N: 300_000, kind: 'flat', pos: [1, 3], seed: 7 });
    check(S, 2, 300_000, positives, { k: Int32Array.from([3, 50]), alpha: 2 });
  });

  it('positives far below and far above the threshold: finite loss', () => {
    const B = 2, N = 500;
    const S = randomScores(makeRng(8), B, N);
    S[3] = -60; // far below: log σ ≈ α·(z + t), large and finite
    S[4] = 60; // far above: log σ ≈ 0
    S[N + 9] = -1e4;
    const positives = { rowPtr: Int32Array.from([0, 2, 3]), cols: Int32Array.from([3, 4, 9]) };
    const { got } = check(S, B, N, positives, { k: 5, alpha: 5 });
    expect(Number.isFinite(got.loss)).toBe(true);
    expect(got.rowLoss[1]).toBeGreaterThan(4e4);
  });

  it('fp16 and bf16 scores, gradient in the input dtype or float32', () => {
    const c: Case = { B: 4, N: 4099, kind: 'normal', pos: [1, 4], seed: 9 };
    const { S, positives } = inputs(c);
    for (const [dtype, bits, back] of [
      ['float16', toFloat16Bits(S), fromFloat16Bits],
      ['bfloat16', toBFloat16Bits(S), fromBFloat16Bits],
    ] as const) {
      const ref = refSoftTopKLoss(back(bits), c.B, c.N, positives, {});
      for (const gradDtype of [dtype, 'float32'] as const) {
        const got = fl.softTopKLoss(fl.tensor(bits, [c.B, c.N], { dtype }), positives, { gradDtype });
        expect(got.grad!.dtype).toBe(gradDtype);
        expect(Math.abs(got.loss - ref.loss) / ref.loss).toBeLessThanOrEqual(1e-5);
        expect(relL2(gradOf(got), ref.grad)).toBeLessThanOrEqual(dtype === 'float16' && gradDtype !== 'float32' ? 2e-3 : gradDtype === 'float32' ? 1e-4 : 1e-2);
      }
    }
  });

  it('in place, out, grad: false, async', async () => {
    const c: Case = { B: 3, N: 2000, kind: 'normal', pos: [1, 3], seed: 10 };
    const { S, positives } = inputs(c);
    const base = fl.softTopKLoss(fl.tensor(S, [3, 2000]), positives);
    const x = S.slice();
    const inplace = fl.softTopKLoss(fl.tensor(x, [3, 2000]), positives, { inplace: true });
    expect(x).toEqual(gradOf(base));
    expect(inplace.loss).toBe(base.loss);
    const out = fl.tensor(new Float32Array(6000), [3, 2000]);
    fl.softTopKLoss(fl.tensor(S, [3, 2000]), positives, { out });
    expect(out.data).toEqual(gradOf(base));
    const noGrad = fl.softTopKLoss(fl.tensor(S, [3, 2000]), positives, { grad: false });
    expect(noGrad.grad).toBeUndefined();
    expect(noGrad.loss).toBe(base.loss);
    const a = await fl.softTopKLossAsync(fl.tensor(S, [3, 2000]), positives);
    expect(a.loss).toBe(base.loss);
    expect(gradOf(a)).toEqual(gradOf(base));
  });

  it('finite differences of the loss and of dScale (float64 reference vs kernel gradient)', () => {
    const B = 3, N = 37;
    const rng = makeRng(11);
    const S = randomScores(rng, B, N);
    const positives = randomPositives(rng, B, N, { min: 1, max: 3, weighted: true });
    const exclude = randomExclude(rng, B, N, positives, { max: 4 });
    const opts: Opts = { k: 3, alpha: 2, exclude, scale: 1.3 };
    const got = fl.softTopKLoss(fl.tensor(S, [B, N]), positives, { ...opts, gradScale: true });
    const f = (x: Float64Array) => refSoftTopKLoss(x, B, N, positives, opts as RefSoftTopKLossOptions).loss;
    expect(fdGradCheck(f, Float64Array.from(S), gradOf(got), { h: 1e-3 }).relErr).toBeLessThanOrEqual(1e-4);
    const fs = (s: number) => refSoftTopKLoss(S, B, N, positives, { ...opts, scale: s } as RefSoftTopKLossOptions).loss;
    expect(fdScalarCheck(fs, 1.3, got.dScale!).relErr).toBeLessThanOrEqual(1e-4);
  });
});

describe('softTopKLoss bad input', () => {
  const B = 3, N = 20;
  const S = randomScores(makeRng(31), B, N);
  const t = () => fl.tensor(S.slice(), [B, N]);
  const positives = { rowPtr: Int32Array.from([0, 1, 1, 3]), cols: Int32Array.from([2, 5, 9]) };
  it('k out of range, per row too, rows without positives unchecked', () => {
    expectCode(() => fl.softTopKLoss(t(), positives, { k: 0 }), 'ERR_K_RANGE', /opts.k/);
    expectCode(() => fl.softTopKLoss(t(), positives, { k: 20 }), 'ERR_K_RANGE');
    expectCode(() => fl.softTopKLoss(t(), positives, { k: Int32Array.from([3, 3, 20]) }), 'ERR_K_RANGE', /opts.k\[2\]/);
    // Row 1 has no positives: its k is never used.
    expect(Number.isFinite(fl.softTopKLoss(t(), positives, { k: Int32Array.from([3, 0, 3]) }).loss)).toBe(true);
    const exclude = { rowPtr: Int32Array.from([0, 3, 3, 3]), cols: Int32Array.from([0, 1, 3]) };
    expectCode(() => fl.softTopKLoss(t(), positives, { k: 17, exclude }), 'ERR_K_RANGE', /N_i = 17/);
    expectCode(() => fl.softTopKLoss(t(), positives, { k: Int32Array.from([3, 3]) }), 'ERR_SHAPE');
    expectCode(() => fl.softTopKLoss(t(), positives, { k: 'all' as never }), 'ERR_TYPE');
  });
  it('α ≤ 0 or non-finite', () => {
    for (const alpha of [0, -2, Number.NaN, -Infinity]) expectCode(() => fl.softTopKLoss(t(), positives, { alpha }), 'ERR_ARG', /opts.alpha/);
  });
  it('CSR errors, exclusion that is a positive', () => {
    expectCode(() => fl.softTopKLoss(t(), { rowPtr: Int32Array.from([0, 1, 1]), cols: Int32Array.from([2]) }), 'ERR_SHAPE');
    const exclude = { rowPtr: Int32Array.from([0, 1, 1, 1]), cols: Int32Array.from([2]) };
    expectCode(() => fl.softTopKLoss(t(), positives, { exclude }), 'ERR_CSR');
  });
  it('NaN and +Infinity, the process survives', async () => {
    for (const bad of [Number.NaN, Infinity]) {
      const x = S.slice();
      x[N + 4] = bad; // row 1 has no positives: still an error
      expectCode(() => fl.softTopKLoss(fl.tensor(x, [B, N]), positives), 'ERR_NON_FINITE', /\[1, 4\]/);
      await expectCodeAsync(fl.softTopKLossAsync(fl.tensor(x, [B, N]), positives), 'ERR_NON_FINITE');
    }
  });
});

/**
 * Rows whose top entries saturate far above the rest (α·gap up to 200), with the threshold, the
 * row loss and its gradient at 60 digits (test/fixtures/soft-topk-saturated.py, mpmath). At the
 * root both sides of Σp − k are near e^−95, below fp32's range: the kernel must compare them
 * scaled, and the float64 reference in the split form.
 */
describe('softTopKLoss on saturated rows, against 60-digit roots', () => {
  interface Row { alpha: number; k: number; x: number[]; positives: number[]; threshold: string; rowLoss: string; grad: number[] }
  const rows = JSON.parse(readFileSync(new URL('./fixtures/soft-topk-saturated.json', import.meta.url), 'utf8')) as Row[];
  for (const row of rows) {
    it(`α=${row.alpha} k=${row.k} N=${row.x.length}, top ${Math.max(...row.x)}: loss ${Number(row.rowLoss).toFixed(4)}`, () => {
      const N = row.x.length;
      const S = Float32Array.from(row.x);
      const positives = { rowPtr: Int32Array.from([0, row.positives.length]), cols: Int32Array.from(row.positives) };
      const opts = { k: row.k, alpha: row.alpha, reduction: 'sum' } as const;
      const t = Number(row.threshold);
      const loss = Number(row.rowLoss);
      // The float64 reference resolves the root to double precision.
      expect(Math.abs(solveThreshold(Float64Array.from(S), row.k, row.alpha) - t)).toBeLessThanOrEqual(1e-13 * Math.abs(t));
      const ref = refSoftTopKLoss(S, 1, N, positives, opts);
      expect(Math.abs(ref.loss - loss)).toBeLessThanOrEqual(1e-12 * loss);
      expect(relL2(ref.grad, row.grad)).toBeLessThanOrEqual(1e-10);
      // The kernel, to fp32 (z + t is formed in fp32).
      const got = fl.softTopKLoss(fl.tensor(S, [1, N]), positives, opts);
      expect(Math.abs(got.loss - loss), `loss ${got.loss} vs ${loss}`).toBeLessThanOrEqual(2e-6 * loss);
      expect(relL2(gradOf(got), row.grad)).toBeLessThanOrEqual(1e-4);
      const op = fl.softTopK(fl.tensor(S, [1, N]), row.k, { alpha: row.alpha, output: 'log' });
      expect(Math.abs(op.threshold[0] - t), `t ${op.threshold[0]} vs ${t}`).toBeLessThanOrEqual(1e-6 * Math.abs(t));
      // The operator's 'log' vjp (its 'prob' one is near e^−95 everywhere here: 0 in fp32).
      const g = Float32Array.from({ length: N }, (_, j) => Math.sin(j));
      expect(relL2(op.vjp(g).data, refSoftTopKVjp(S, 1, N, row.k, { alpha: row.alpha, output: 'log' }, g))).toBeLessThanOrEqual(1e-4);
    });
  }
});
