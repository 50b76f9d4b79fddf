// Shared test body of the losses over CSR positives (decoupledSoftmax, multiLabelSoftmax,
// binaryCrossEntropy): golden cases, random cases against the float64 reference, finite
// differences, half precision, the common options and bad input. Each loss's test file calls
// describePositivesLoss with its functions and reference.
import { describe, expect, it } from 'vitest';
import { fdGradCheck, fdScalarCheck } from './reference/fd.js';
import { loadGoldenCases, type GoldenFn } from './reference/golden.js';
import { makeRng, randomExclude, randomPositives, randomScores, type CsrArrays, type Rng, type ScoreKind } from './reference/rng.js';
import type { RefPositives, RefResult, Reduction, Scores } from './reference/types.js';
import { allWritten, expectCode, expectCodeAsync, fl, hasCuda, relL2 } from './helpers';

type Opts = fl.DecoupledSoftmaxOptions;
type Fn = (s: fl.ScoresInput, p: fl.Positives, o?: Opts) => fl.LossResult;
type AsyncFn = (s: fl.ScoresInput, p: fl.Positives, o?: Opts) => Promise<fl.LossResult>;
type RefOpts = { scale?: number; reduction?: Reduction; gradOutput?: ArrayLike<number>; exclude?: RefPositives };
type Ref = (S: Scores, B: number, N: number, p: RefPositives, o?: RefOpts) => RefResult;

export interface LossUnderTest {
  name: GoldenFn;
  fn: Fn;
  async: AsyncFn;
  ref: Ref;
}

export function gradOf(r: fl.LossResult): Float32Array {
  const g = fl.toHost(r.grad!);
  return fl.toFloat32(g.data, g.dtype);
}

const l2 = (a: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
};
const absL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let n = 0;
  for (let i = 0; i < b.length; i++) n += (a[i] - b[i]) ** 2;
  return Math.sqrt(n);
};
const relErr = (a: number, b: number) => (a === b ? 0 : Math.abs(a - b) / Math.max(1e-30, Math.abs(b)));

/** The same positives with each row's columns (and weights) in a shuffled order: the kernels must not need sorted rows. */
export function shuffleRows(rng: Rng, p: CsrArrays): CsrArrays {
  const cols = p.cols.slice();
  const weights = p.weights?.slice();
  for (let i = 0; i + 1 < p.rowPtr.length; i++)
    for (let e = p.rowPtr[i + 1] - 1; e > p.rowPtr[i]; e--) {
      const f = rng.int(p.rowPtr[i], e + 1);
      [cols[e], cols[f]] = [cols[f], cols[e]];
      if (weights) [weights[e], weights[f]] = [weights[f], weights[e]];
    }
  return { rowPtr: p.rowPtr, cols, weights };
}

/** Kernel vs float64 reference: loss, row losses, gradient (relative L2, absolute floor) and dScale. */
export function check(t: LossUnderTest, S: Float32Array, B: number, N: number, p: fl.Positives, opts: Opts, tol = 1e-5) {
  const got = t.fn(fl.tensor(S, [B, N]), p, { ...opts, gradScale: true });
  const ref = t.ref(S, B, N, p, opts as RefOpts);
  expect(relErr(got.loss, ref.loss), `loss ${got.loss} vs ${ref.loss}`).toBeLessThanOrEqual(tol);
  for (let i = 0; i < B; i++) expect(relErr(got.rowLoss[i], ref.rowLoss[i]), `row ${i}: ${got.rowLoss[i]} vs ${ref.rowLoss[i]}`).toBeLessThanOrEqual(tol);
  const g = gradOf(got);
  expect(allWritten(g)).toBe(true);
  expect(absL2(g, ref.grad), 'grad').toBeLessThanOrEqual(tol * l2(ref.grad) + 1e-30);
  expect(Math.abs(got.dScale! - ref.dScale), `dScale ${got.dScale} vs ${ref.dScale}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(ref.dScale)) * 10);
  return got;
}

export function describePositivesLoss(t: LossUnderTest) {
  describe(`${t.name}: golden cases (PyTorch float64)`, () => {
    for (const c of loadGoldenCases().filter((g) => g.fn === t.name)) {
      it(`${c.shape.join('x')} ${JSON.stringify(c.opts)}${c.positives?.weights ? ' weighted' : ''}`, () => {
        const [B, N] = c.shape;
        const pos = c.positives!;
        const p = { rowPtr: new Int32Array(pos.rowPtr), cols: new Int32Array(pos.cols), weights: pos.weights ? new Float32Array(pos.weights) : undefined };
        const r = t.fn(fl.tensor(new Float32Array(c.S), [B, N]), p, { ...(c.opts as Opts), gradScale: true });
        expect(relErr(r.loss, c.loss)).toBeLessThan(1e-5);
        expect(relL2(gradOf(r), c.grad)).toBeLessThan(1e-5);
        expect(Math.abs(r.dScale! - c.dScale!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(c.dScale!)));
      });
    }
  });

  describe(`${t.name}: random cases against float64`, () => {
    const shapes: [number, number][] = [[1, 2], [1, 9], [7, 97], [64, 301], [3, 50257], [2, 70001]];
    const kinds: ScoreKind[] = ['normal', 'flat', 'peaked'];
    const variants: [string, Opts, { weighted?: boolean; exclude?: boolean; shuffle?: boolean }][] = [
      ['plain', {}, {}],
      ['weighted+exclude', {}, { weighted: true, exclude: true }],
      ['scale 1/0.07, unsorted rows', { scale: 1 / 0.07 }, { shuffle: true }],
      ['scale 20, weighted, exclude, sum', { scale: 20, reduction: 'sum' }, { weighted: true, exclude: true }],
      ['none+gradOutput', { reduction: 'none' }, { exclude: true }],
    ];
    let seed = 100;
    for (const [B, N] of shapes)
      for (const kind of kinds)
        for (const [name, opts, how] of variants) {
          if (N > 60000 && (kind !== 'normal' || name === 'none+gradOutput')) continue; // keep the suite fast
          const s = seed++;
          it(`${B}x${N} ${kind} ${name}`, () => {
            const rng = makeRng(s);
            const S = randomScores(rng, B, N, { kind });
            let p = randomPositives(rng, B, N, { min: B > 2 ? 0 : 1, max: 4, weighted: how.weighted });
            const exclude = how.exclude ? randomExclude(rng, B, N, p, { max: Math.min(20, N) }) : undefined;
            if (how.shuffle) p = shuffleRows(rng, p);
            const o: Opts = { ...opts, exclude };
            if (o.reduction === 'none') o.gradOutput = new Float32Array(B).map(() => rng.normal());
            check(t, S, B, N, p, o);
          });
        }

    it('−Infinity scores are out: gradient 0 there, finite elsewhere', () => {
      const S = new Float32Array([1, -Infinity, 2, 0.5, 0.25, -Infinity, -Infinity, 3, 1, -1, 4, 2, -3, 0, 1]);
      const p = { rowPtr: new Int32Array([0, 1, 2, 4]), cols: new Int32Array([0, 3, 1, 4]) };
      const r = check(t, S, 3, 5, p, {});
      const g = gradOf(r);
      expect(g[1]).toBe(0);
      expect(g[5]).toBe(0);
      expect(g[6]).toBe(0);
    });

    it('rows without negatives or without positives', () => {
      // Row 0: every column a positive or excluded (decoupled: no negatives, loss 0); row 1: no positives.
      const S = new Float32Array([0.5, -1.25, 2, 3, 0.75, -0.5]);
      const p = { rowPtr: new Int32Array([0, 2, 2]), cols: new Int32Array([1, 0]), weights: new Float32Array([0.75, 1.5]) };
      const r = check(t, S, 2, 3, p, { exclude: { rowPtr: new Int32Array([0, 1, 1]), cols: new Int32Array([2]) } });
      expect(gradOf(r)[2]).toBe(0);
    });

    it('excluded entries get a gradient of exactly 0', () => {
      const rng = makeRng(3);
      const S = randomScores(rng, 5, 33, { kind: 'normal' });
      const p = randomPositives(rng, 5, 33, { min: 1, max: 3 });
      const x = randomExclude(rng, 5, 33, p, { max: 8 });
      const g = gradOf(check(t, S, 5, 33, p, { exclude: x }));
      for (let i = 0; i < 5; i++) for (let e = x.rowPtr[i]; e < x.rowPtr[i + 1]; e++) expect(g[i * 33 + x.cols[e]]).toBe(0);
    });
  });

  describe(`${t.name}: finite differences (float64 reference loss)`, () => {
    for (const scale of [1, 1 / 0.07, 20]) {
      it(`gradient and dScale at scale ${scale}`, () => {
        const rng = makeRng(Math.round(scale * 7));
        const B = 4, N = 13;
        const S32 = randomScores(rng, B, N, { kind: 'normal', sigma: 3 / scale });
        const p = randomPositives(rng, B, N, { min: 1, max: 4, weighted: true });
        const exclude = randomExclude(rng, B, N, p, { max: 3 });
        const opts: Opts = { scale, exclude };
        const got = t.fn(fl.tensor(S32, [B, N]), p, { ...opts, gradScale: true });
        const S = Float64Array.from(S32);
        const fd = fdGradCheck((x) => t.ref(x, B, N, p, { scale, exclude }).loss, S, gradOf(got), { h: 1e-3 / scale });
        expect(fd.relErr).toBeLessThan(1e-4);
        const ds = fdScalarCheck((sc) => t.ref(S, B, N, p, { scale: sc, exclude }).loss, scale, got.dScale!, { h: 1e-4 * scale });
        expect(ds.relErr).toBeLessThan(1e-4);
      });
    }
  });

  describe(`${t.name}: float16 and bfloat16`, () => {
    for (const [dtype, magnitude] of [['float16', 1], ['float16', 3000], ['bfloat16', 1], ['bfloat16', 1e30]] as const)
      it(`${dtype} scores of magnitude ${magnitude}`, () => {
        const rng = makeRng(magnitude + 11);
        const B = 5, N = 40961;
        const S32 = randomScores(rng, B, N, { kind: 'normal' }).map((v) => v * magnitude);
        const bits = dtype === 'float16' ? fl.float32ToFloat16(S32) : fl.float32ToBFloat16(S32);
        const Sq = fl.toFloat32(bits, dtype);
        const p = randomPositives(rng, B, N, { min: 1, max: 4, weighted: true });
        const exclude = randomExclude(rng, B, N, p, { max: 5 });
        const got = t.fn(fl.tensor(bits, [B, N], { dtype }), p, { exclude });
        const ref = t.ref(Sq, B, N, p, { exclude });
        expect(Number.isFinite(got.loss)).toBe(true);
        expect(relErr(got.loss, ref.loss)).toBeLessThan(1e-5);
        const g = gradOf(got);
        expect(g.every(Number.isFinite)).toBe(true);
        // The gradient is rounded once to the dtype: no worse than twice that rounding (tiny
        // 'mean' BCE gradients are float16 subnormals, so this is not a fixed 2^-11).
        const f64 = Float32Array.from(ref.grad);
        const rounded = fl.toFloat32(dtype === 'float16' ? fl.float32ToFloat16(f64) : fl.float32ToBFloat16(f64), dtype);
        expect(relL2(g, ref.grad)).toBeLessThanOrEqual(2 * relL2(rounded, ref.grad) + 1e-6);
        const f32 = t.fn(fl.tensor(bits, [B, N], { dtype }), p, { exclude, gradDtype: 'float32' });
        expect(absL2(gradOf(f32), ref.grad)).toBeLessThanOrEqual(1e-5 * l2(ref.grad) + 1e-30);
      });
  });

  describe(`${t.name}: common options`, () => {
    const rng = makeRng(21);
    const B = 6, N = 70001;
    const S = randomScores(rng, B, N, { kind: 'peaked' });
    const p = randomPositives(rng, B, N, { min: 1, max: 4, weighted: true });
    const exclude = randomExclude(rng, B, N, p, { max: 30 });

    it('sync and async agree bit for bit, and a reused `out` gets the same gradient', async () => {
      const a = t.fn(fl.tensor(S, [B, N]), p, { exclude, gradScale: true });
      const b = await t.async(fl.tensor(S, [B, N]), p, { exclude, gradScale: true });
      expect(b.loss).toBe(a.loss);
      expect(b.dScale).toBe(a.dScale);
      expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(gradOf(b).buffer))).toBe(0);
      const out = fl.tensor(new Float32Array(B * N), [B, N]);
      const c = t.fn(fl.tensor(S, [B, N]), p, { exclude, out });
      expect(c.grad).toBe(out);
      expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(gradOf(c).buffer))).toBe(0);
    });

    it('in place: the gradient overwrites the scores (fp32 and bf16)', () => {
      for (const dtype of ['float32', 'bfloat16'] as const) {
        const data = () => (dtype === 'float32' ? S.slice() : fl.float32ToBFloat16(S));
        const expected = gradOf(t.fn(fl.tensor(data(), [B, N], { dtype }), p, { exclude }));
        const x = fl.tensor(data(), [B, N], { dtype });
        const r = t.fn(x, p, { exclude, inplace: true });
        expect(r.grad).toBe(x);
        expect(Buffer.compare(Buffer.from(gradOf(r).buffer), Buffer.from(expected.buffer))).toBe(0);
      }
    });

    it('grad: false computes the loss only and leaves every input unchanged', () => {
      const copy = S.slice();
      const cols = p.cols.slice();
      const r = t.fn(fl.tensor(S, [B, N]), p, { exclude, grad: false, gradScale: true });
      const full = t.fn(fl.tensor(S, [B, N]), p, { exclude, gradScale: true });
      expect(r.grad).toBeUndefined();
      expect(r.loss).toBe(full.loss);
      expect(r.dScale).toBe(full.dScale);
      expect(Buffer.compare(Buffer.from(S.buffer), Buffer.from(copy.buffer))).toBe(0);
      expect(Array.from(p.cols)).toEqual(Array.from(cols));
    });

    it("'mean', 'sum' and 'none' agree", () => {
      const mean = t.fn(fl.tensor(S, [B, N]), p, { exclude });
      const sum = t.fn(fl.tensor(S, [B, N]), p, { exclude, reduction: 'sum' });
      const none = t.fn(fl.tensor(S, [B, N]), p, { exclude, reduction: 'none' });
      const divisor = t.name === 'binaryCrossEntropy' ? B * N : B;
      expect(relErr(mean.loss * divisor, sum.loss)).toBeLessThan(1e-12);
      expect(none.loss).toBe(sum.loss);
      expect(relL2(gradOf(mean).map((v) => v * divisor), gradOf(sum))).toBeLessThan(1e-6);
    });
  });

  describe(`${t.name}: bad input`, () => {
    const S = new Float32Array(3 * 5).map((_, i) => i / 7);
    const s = fl.tensor(S, [3, 5]);
    const p = { rowPtr: new Int32Array([0, 1, 1, 3]), cols: new Int32Array([4, 0, 2]) };
    it('throws precise FusedLossErrors', async () => {
      expectCode(() => t.fn(s, undefined as never), 'ERR_TYPE', /positives/);
      expectCode(() => t.fn(s, { ...p, rowPtr: new Int32Array([0, 1, 3]) }), 'ERR_SHAPE', /positives\.rowPtr/, /length 4/);
      expectCode(() => t.fn(s, { ...p, rowPtr: new Int32Array([0, 2, 1, 3]) }), 'ERR_CSR', /positives\.rowPtr\[2\]/, /non-decreasing/);
      expectCode(() => t.fn(s, { ...p, cols: new Int32Array([4, 0, 5]) }), 'ERR_CSR', /positives\.cols\[2\]/, /\[0, 5\)/, /received 5/);
      expectCode(() => t.fn(s, { ...p, cols: new Int32Array([4, 2, 2]) }), 'ERR_CSR', /positives\.cols\[2\]/, /row 2/);
      expectCode(() => t.fn(s, { ...p, weights: new Float32Array(2) }), 'ERR_SHAPE', /positives\.weights/, /length 3/);
      expectCode(() => t.fn(s, { ...p, weights: new Float32Array([1, -1, 1]) }), 'ERR_CSR', /positives\.weights\[1\]/);
      const exclude = { rowPtr: new Int32Array([0, 0, 1, 2]), cols: new Int32Array([3, 2]) };
      expectCode(() => t.fn(s, p, { exclude }), 'ERR_CSR', /opts\.exclude\.cols\[1\]/, /positive of row 2/, /received 2/);
      expectCode(() => t.fn(s, p, { exclude: { ...exclude, cols: new Int32Array([3, 1]), weights: new Float32Array(2) } as never }), 'ERR_ARG', /exclude\.weights/);
      expectCode(() => t.fn(s, p, { scale: 0 }), 'ERR_ARG', /scale/);
      expectCode(() => t.fn(s, p, { reduction: 'none', gradOutput: new Float32Array(2) }), 'ERR_SHAPE', /gradOutput/);
      const bad = S.slice();
      bad[7] = Number.NaN;
      expectCode(() => t.fn(fl.tensor(bad, [3, 5]), p), 'ERR_NON_FINITE', /\[1, 2\]/);
      bad[7] = Infinity;
      await expectCodeAsync(t.async(fl.tensor(bad, [3, 5]), p), 'ERR_NON_FINITE', /\[1, 2\]/);
      // A NaN at a positive or an excluded entry is an error too.
      bad[7] = 1;
      bad[14] = Number.NaN;
      expectCode(() => t.fn(fl.tensor(bad, [3, 5]), p), 'ERR_NON_FINITE', /\[2, 4\]/);
      bad[14] = 1;
      bad[2] = Infinity;
      expectCode(() => t.fn(fl.tensor(bad, [3, 5]), p, { exclude: { rowPtr: new Int32Array([0, 1, 1, 1]), cols: new Int32Array([2]) } }), 'ERR_NON_FINITE', /\[0, 2\]/);
    });
  });

  describe.skipIf(!hasCuda())(`${t.name} on CUDA`, () => {
    for (const [B, N] of [[7, 97], [300, 50257], [2, 300007]] as [number, number][])
      for (const dtype of ['float32', 'bfloat16'] as const)
        it(`${B}x${N} ${dtype} matches the CPU`, () => {
          const rng = makeRng(B + N);
          const S32 = randomScores(rng, B, N, { kind: 'peaked' });
          const data = dtype === 'float32' ? S32 : fl.float32ToBFloat16(S32);
          const p = shuffleRows(rng, randomPositives(rng, B, N, { min: 0, max: 4, weighted: true }));
          const opts: Opts = { scale: 1 / 0.07, exclude: randomExclude(rng, B, N, p, { max: 6 }), gradScale: true };
          const cpu = t.fn(fl.tensor(data, [B, N], { dtype }), p, opts);
          using d = fl.toDevice(fl.tensor(data, [B, N], { dtype }));
          const gpu = t.fn(d, p, opts);
          expect(relErr(gpu.loss, cpu.loss)).toBeLessThan(1e-5);
          expect(relL2(gradOf(gpu), gradOf(cpu))).toBeLessThan(dtype === 'float32' ? 1e-4 : 1e-2);
          expect(Math.abs(gpu.dScale! - cpu.dScale!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(cpu.dScale!)));
          gpu.grad!.dispose();
        });
  });
}
