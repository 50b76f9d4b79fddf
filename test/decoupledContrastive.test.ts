import { describe, expect, it } from 'vitest';
import { dclwWeights, refDecoupledContrastive } from '../scripts/ops/decoupledContrastive.mjs';
import { loadGoldenCases } from './reference/golden.js';
import { makeRng, randomExclude, randomPositives, randomScores, type ScoreKind } from './reference/rng.js';
import { checkFiniteDifferences, checkFp32, checkHalf, gradOf, type Kernel, type Reference } from './contrastive-check';
import { expectCode, expectCodeAsync, fl, hasCuda, relL2 } from './helpers';

const kernel: Kernel = (t, o) => fl.decoupledContrastive(t, o);
const refFor = (B: number, N: number): Reference => (S, o) => refDecoupledContrastive(S, B, N, o as never);

describe('decoupledContrastive: golden cases (PyTorch float64)', () => {
  for (const c of loadGoldenCases().filter((g) => g.fn === 'decoupledContrastive')) {
    it(JSON.stringify(c.opts), () => {
      const [B, N] = c.shape;
      const r = fl.decoupledContrastive(fl.tensor(new Float32Array(c.S), [B, N]), { ...c.opts, gradScale: true });
      expect(Math.abs(r.loss - c.loss) / Math.abs(c.loss)).toBeLessThan(1e-5);
      expect(relL2(gradOf(r), c.grad)).toBeLessThan(1e-5);
      expect(Math.abs(r.dScale! - c.dScale!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(c.dScale!)));
    });
  }
});

describe('decoupledContrastive: random cases against float64', () => {
  const shapes: [number, number][] = [[1, 2], [7, 97], [64, 64], [33, 5003], [3, 70001]];
  const kinds: ScoreKind[] = ['normal', 'flat', 'peaked'];
  let seed = 300;
  for (const [B, N] of shapes)
    for (const kind of kinds)
      for (const scale of [1, 1 / 0.07, 20])
        for (const weighting of [undefined, { sigma: 0.5 }, { sigma: 2 }]) {
          const s = seed++;
          if (N > 60000 && s % 3 !== 0) continue; // keep the suite fast
          const reduction = (['mean', 'sum', 'none'] as const)[s % 3];
          it(`${B}x${N} ${kind} scale ${scale.toFixed(2)} ${reduction} ${weighting ? `sigma ${weighting.sigma}` : 'DCL'}`, () => {
            const rng = makeRng(s);
            const S = randomScores(rng, B, N, { kind, sigma: kind === 'normal' ? 0.3 : undefined });
            const opts: Record<string, unknown> = { scale, reduction, weighting };
            if (reduction === 'none') opts.gradOutput = new Float32Array(B).map(() => rng.normal());
            checkFp32(kernel, refFor(B, N), S, [B, N], opts);
          });
        }
  let csrSeed = 500;
  for (const [B, N] of [[1, 3], [9, 7], [64, 301], [2, 70001]] as [number, number][])
    for (const kind of kinds)
      for (const weighting of [undefined, { sigma: 0.5 }]) {
        const s = csrSeed++;
        const reduction = (['mean', 'sum', 'none'] as const)[s % 3];
        it(`${B}x${N} ${kind} CSR positive and exclusions ${reduction} ${weighting ? 'DCLW' : 'DCL'}`, () => {
          const rng = makeRng(s);
          const S = randomScores(rng, B, N, { kind, sigma: kind === 'normal' ? 0.3 : undefined });
          const positives = randomPositives(rng, B, N, { min: 1, max: 1 });
          const opts: Record<string, unknown> = { scale: 1 / 0.07, reduction, weighting, positives, exclude: randomExclude(rng, B, N, positives, { max: 6 }) };
          if (reduction === 'none') opts.gradOutput = new Float32Array(B).map(() => rng.normal());
          checkFp32(kernel, refFor(B, N), S, [B, N], opts);
        });
      }
  it('weighting: {} means sigma 0.5', () => {
    const S = randomScores(makeRng(4), 9, 9, { kind: 'normal' });
    const a = fl.decoupledContrastive(fl.tensor(S, [9, 9]), { weighting: {} });
    const b = fl.decoupledContrastive(fl.tensor(S, [9, 9]), { weighting: { sigma: 0.5 } });
    expect(a.loss).toBe(b.loss);
  });
});

describe('decoupledContrastive: finite differences of the float64 loss', () => {
  for (const sigma of [undefined, 0.5])
    it(`7x11 ${sigma ? 'DCLW' : 'DCL'}`, () => {
      const [B, N] = [7, 11];
      const S = randomScores(makeRng(11), B, N, { kind: 'normal', sigma: 1 });
      // DCLW's w is a constant of the loss (no gradient through it): freeze it for the
      // differences, as the kernel's gradient does.
      const rowWeights = sigma ? dclwWeights(S, B, N, sigma) : undefined;
      const ref: Reference = (s, o) => refDecoupledContrastive(s, B, N, { ...(o as object), rowWeights });
      const frozen: Kernel = (t, o) => fl.decoupledContrastive(t, { ...o, weighting: sigma ? { sigma } : undefined });
      checkFiniteDifferences(frozen, ref, S, [B, N], { scale: 2.5 });
      checkFiniteDifferences(frozen, ref, S, [B, N], { scale: 0.7, reduction: 'sum' });
    });
});

describe('decoupledContrastive: float16 and bfloat16', () => {
  for (const dtype of ['float16', 'bfloat16'] as const)
    it(dtype, () => {
      const [B, N] = [13, 40009];
      const S = randomScores(makeRng(dtype === 'float16' ? 1 : 2), B, N, { kind: 'normal', sigma: 0.3 });
      checkHalf(kernel, refFor(B, N), S, [B, N], { scale: 20, weighting: { sigma: 0.5 } }, dtype);
    });
});

describe('decoupledContrastive: entries out and edge cases', () => {
  it('−Infinity entries are out; a positive at −Infinity costs +Infinity with gradient 0 there', () => {
    const [B, N] = [9, 40];
    const S = randomScores(makeRng(8), B, N, { kind: 'normal', sigma: 0.5 });
    const rng = makeRng(9);
    for (let i = 0; i < S.length; i++) if (rng.uniform() < 0.2) S[i] = -Infinity;
    S[4 * N + 4] = -Infinity;
    S[2 * N + 2] = 1;
    for (const weighting of [undefined, { sigma: 0.5 }]) {
      const opts = { scale: 3, reduction: 'none' as const, weighting };
      const r = fl.decoupledContrastive(fl.tensor(S, [B, N]), opts);
      const ref = refDecoupledContrastive(S, B, N, opts);
      const g = gradOf(r);
      for (let i = 0; i < S.length; i++) if (S[i] === -Infinity) expect(g[i]).toBe(0);
      expect(r.rowLoss[4]).toBe(Infinity);
      expect(relL2(g, ref.grad)).toBeLessThan(1e-5);
    }
  });

  it('results do not depend on sync vs async; in place, out and grad: false', async () => {
    const [B, N] = [5, 70001];
    const S = randomScores(makeRng(B), B, N, { kind: 'peaked' });
    const opts = { scale: 1 / 0.07, gradScale: true, weighting: { sigma: 0.5 } };
    const a = fl.decoupledContrastive(fl.tensor(S, [B, N]), opts);
    const b = await fl.decoupledContrastiveAsync(fl.tensor(S, [B, N]), opts);
    expect(b.loss).toBe(a.loss);
    expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(gradOf(b).buffer))).toBe(0);
    const t = fl.tensor(S.slice(), [B, N]);
    const c = fl.decoupledContrastive(t, { ...opts, inplace: true });
    expect(c.grad).toBe(t);
    expect(c.dScale).toBe(a.dScale);
    expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(t.data.buffer))).toBe(0);
    const e = fl.decoupledContrastive(fl.tensor(S, [B, N]), { ...opts, grad: false });
    expect(e.grad).toBeUndefined();
    expect(e.loss).toBe(a.loss);
  });
});

describe('decoupledContrastive: bad input', () => {
  const S = new Float32Array(3 * 5).map((_, i) => i / 7);
  it('CSR positives and exclusions', () => {
    const t = fl.tensor(S, [3, 5]);
    const P = (rowPtr: number[], cols: number[], weights?: number[]) => ({ rowPtr: Int32Array.from(rowPtr), cols: Int32Array.from(cols), weights: weights && Float32Array.from(weights) });
    expectCode(() => fl.decoupledContrastive(t, { positives: P([0, 1, 3, 3], [0, 1, 2]) }), 'ERR_CSR', /opts\.positives row 1/, /exactly one positive/, /received 2 positives/);
    expectCode(() => fl.decoupledContrastive(t, { positives: P([0, 1, 2, 3], [0, 1, 2], [1, 1, 1]) }), 'ERR_ARG', /opts\.positives\.weights/);
    expectCode(() => fl.decoupledContrastive(t, { positives: P([0, 1, 2, 3], [0, 7, 2]) }), 'ERR_CSR', /opts\.positives\.cols\[1\]/, /received 7/);
    expectCode(() => fl.decoupledContrastive(t, { positives: P([0, 1, 2, 3], [4, 3, 2]), exclude: P([0, 0, 2, 2], [1, 3]) }), 'ERR_CSR', /opts\.exclude\.cols\[1\]/, /positive of row 1/);
    expectCode(() => fl.decoupledContrastive(t, { exclude: P([0, 1, 1, 1], [0]) }), 'ERR_CSR', /the diagonal positives/);
    expectCode(() => fl.decoupledContrastive(t, { exclude: P([0, 1, 1, 1], [3], [1]) }), 'ERR_ARG', /opts\.exclude\.weights/);
  });
  it('throws precise FusedLossErrors', async () => {
    expectCode(() => fl.decoupledContrastive(fl.tensor(S, [5, 3])), 'ERR_SHAPE', /scores/, /at least as many columns as rows/, /\[5, 3\]/);
    expectCode(() => fl.decoupledContrastive(fl.tensor(S, [3, 5]), { weighting: { sigma: 0 } }), 'ERR_ARG', /opts\.weighting\.sigma/, /> 0/, /received 0/);
    expectCode(() => fl.decoupledContrastive(fl.tensor(S, [3, 5]), { weighting: { sigma: -1 } }), 'ERR_ARG', /sigma/, /received -1/);
    expectCode(() => fl.decoupledContrastive(fl.tensor(S, [3, 5]), { weighting: { sigma: Number.NaN } }), 'ERR_ARG', /sigma/, /NaN/);
    expectCode(() => fl.decoupledContrastive(fl.tensor(S, [3, 5]), { weighting: 0.5 as never }), 'ERR_TYPE', /opts\.weighting/);
    const bad = S.slice();
    bad[7] = Number.NaN;
    expectCode(() => fl.decoupledContrastive(fl.tensor(bad, [3, 5])), 'ERR_NON_FINITE', /\[1, 2\]/);
    bad[7] = Infinity;
    await expectCodeAsync(fl.decoupledContrastiveAsync(fl.tensor(bad, [3, 5]), { weighting: {} }), 'ERR_NON_FINITE', /\[1, 2\]/);
    // The positive itself (a skipped column) is checked too.
    bad[7] = 0;
    bad[6] = Infinity;
    expectCode(() => fl.decoupledContrastive(fl.tensor(bad, [3, 5])), 'ERR_NON_FINITE', /\[1, 1\]/);
  });
});

describe.skipIf(!hasCuda())('decoupledContrastive on CUDA', () => {
  for (const [B, N] of [[7, 97], [300, 50257], [4096, 4096]] as [number, number][])
    for (const dtype of ['float32', 'bfloat16'] as const)
      it(`${B}x${N} ${dtype} matches the CPU`, () => {
        const S32 = randomScores(makeRng(B + N), B, N, { kind: 'normal', sigma: 0.3 });
        const data = dtype === 'float32' ? S32 : fl.float32ToBFloat16(S32);
        const opts = { scale: 20, gradScale: true, weighting: { sigma: 0.5 } };
        const cpu = fl.decoupledContrastive(fl.tensor(data, [B, N], { dtype }), opts);
        using d = fl.toDevice(fl.tensor(data, [B, N], { dtype }));
        const gpu = fl.decoupledContrastive(d, opts);
        expect(Math.abs(gpu.loss - cpu.loss) / Math.abs(cpu.loss)).toBeLessThan(1e-5);
        expect(Math.abs(gpu.dScale! - cpu.dScale!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(cpu.dScale!)));
        expect(relL2(gradOf(gpu), gradOf(cpu))).toBeLessThan(dtype === 'float32' ? 1e-4 : 1e-2);
        gpu.grad!.dispose();
      });
});
