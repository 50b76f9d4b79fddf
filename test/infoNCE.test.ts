import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { refInfoNCE } from '../scripts/ops/infoNCE.mjs';
import { loadGoldenCases } from './reference/golden.js';
import { makeRng, randomExclude, randomPositives, randomScores, type ScoreKind } from './reference/rng.js';
import { checkFiniteDifferences, checkFp32, checkHalf, gradOf, type Kernel, type Reference } from './contrastive-check';
import { expectCode, expectCodeAsync, fl, hasCuda, relL2 } from './helpers';

const kernel: Kernel = (t, o) => fl.infoNCE(t, o);
const refFor = (B: number, N: number): Reference => (S, o) => refInfoNCE(S, B, N, o as never);

describe('infoNCE: golden cases (PyTorch float64)', () => {
  for (const c of loadGoldenCases().filter((g) => g.fn === 'infoNCE')) {
    it(JSON.stringify(c.opts), () => {
      const [B, N] = c.shape;
      const opts: Record<string, unknown> = { ...c.opts };
      const pos = c.opts.positives as { rowPtr: number[]; cols: number[]; weights?: number[] } | undefined;
      if (pos) opts.positives = { rowPtr: Int32Array.from(pos.rowPtr), cols: Int32Array.from(pos.cols), weights: pos.weights && Float32Array.from(pos.weights) };
      const r = fl.infoNCE(fl.tensor(new Float32Array(c.S), [B, N]), { ...opts, gradScale: true });
      expect(Math.abs(r.loss - c.loss) / Math.abs(c.loss)).toBeLessThan(1e-5);
      expect(relL2(gradOf(r), c.grad)).toBeLessThan(1e-5);
      expect(Math.abs(r.dScale! - c.dScale!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(c.dScale!)));
    });
  }
});

const scales = [1, 1 / 0.07, 20];
const kinds: ScoreKind[] = ['normal', 'flat', 'peaked'];

describe('infoNCE one-way: random cases against float64', () => {
  // Scores of σ = 0.3 at scale 20 are CLIP-like (cosines times a logit scale); σ = 3 at scale
  // 20 makes nearly one-hot rows.
  const shapes: [number, number][] = [[1, 1], [1, 2], [7, 97], [64, 64], [33, 5003], [3, 70001]];
  let seed = 100;
  for (const [B, N] of shapes)
    for (const kind of kinds)
      for (const scale of scales) {
        const s = seed++;
        const reduction = (['mean', 'sum', 'none'] as const)[s % 3];
        it(`${B}x${N} ${kind} scale ${scale.toFixed(2)} ${reduction}`, () => {
          const rng = makeRng(s);
          const S = randomScores(rng, B, N, { kind, sigma: kind === 'normal' ? 0.3 : undefined });
          const opts: Record<string, unknown> = { scale, reduction };
          if (reduction === 'none') opts.gradOutput = new Float32Array(B).map(() => rng.normal());
          checkFp32(kernel, refFor(B, N), S, [B, N], opts);
        });
      }
});

describe('infoNCE with CSR positives (SupCon) and exclusions: random cases against float64', () => {
  // 1 to 4 positives per row (some rows with none), weighted or not, with and without
  // exclusions; N > 65,536 in the last shape.
  const shapes: [number, number][] = [[1, 3], [9, 7], [64, 301], [17, 5003], [2, 70001]];
  let seed = 400;
  for (const [B, N] of shapes)
    for (const kind of kinds)
      for (const scale of scales)
        for (const [weighted, excluded] of [[false, false], [true, true]]) {
          const s = seed++;
          const reduction = (['mean', 'sum', 'none'] as const)[s % 3];
          it(`${B}x${N} ${kind} scale ${scale.toFixed(2)} ${reduction}${weighted ? ' weighted' : ''}${excluded ? ' exclude' : ''}`, () => {
            const rng = makeRng(s);
            const S = randomScores(rng, B, N, { kind, sigma: kind === 'normal' ? 0.3 : undefined });
            const positives = randomPositives(rng, B, N, { min: B > 4 ? 0 : 1, max: 4, weighted });
            const opts: Record<string, unknown> = { scale, reduction, positives };
            if (excluded) opts.exclude = randomExclude(rng, B, N, positives, { max: 6 });
            if (reduction === 'none') opts.gradOutput = new Float32Array(B).map(() => rng.normal());
            checkFp32(kernel, refFor(B, N), S, [B, N], opts);
          });
        }
  it('diagonal positives with exclusions', () => {
    const rng = makeRng(5);
    const [B, N] = [12, 40];
    const S = randomScores(rng, B, N, { kind: 'normal' });
    const diag = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i), cols: Int32Array.from({ length: B }, (_, i) => i) };
    checkFp32(kernel, refFor(B, N), S, [B, N], { scale: 2, exclude: randomExclude(rng, B, N, diag, { max: 10 }) });
  });
});

describe('infoNCE symmetric (CLIP): random cases against float64', () => {
  // 1 and 7: one strip and one row block; 300 and 513: several 256-column strips, a partial
  // last strip, row blocks of 32 with a tail, and SIMD tails.
  let seed = 200;
  for (const n of [1, 2, 7, 64, 300, 513])
    for (const kind of kinds)
      for (const scale of scales) {
        const s = seed++;
        const reduction = (['mean', 'sum', 'none'] as const)[s % 3];
        it(`${n}x${n} ${kind} scale ${scale.toFixed(2)} ${reduction}`, () => {
          const rng = makeRng(s);
          const S = randomScores(rng, n, n, { kind, sigma: kind === 'normal' ? 0.3 : undefined });
          const opts: Record<string, unknown> = { scale, reduction, symmetric: true };
          if (reduction === 'none') opts.gradOutput = new Float32Array(n).map(() => rng.normal());
          checkFp32(kernel, refFor(n, n), S, [n, n], opts);
        });
      }

  // CLIP's own regime (cosines in [−1, 1], scale 20) takes the one-exponential column sums. Each
  // row has one match far ahead (1.0 or 0.9), off the diagonal, so rows and columns are confident
  // (rests ~1e-5 to 1e-8) and a column's max sits in a row whose max is not the block's largest:
  // its column term must still count as exactly 1, not as a product of factors near 1.
  for (const n of [515, 1029])
    it(`${n}x${n} cosines, confident matches, scale 20`, () => {
      const rng = makeRng(n);
      const S = new Float32Array(n * n).map(() => 0.02 * rng.normal());
      for (let i = 0; i < n; i++) S[i * n + ((i * 7 + 3) % n)] = i % 2 ? 0.9 : 1;
      S[3 * n + 5] = -Infinity;
      checkFp32(kernel, refFor(n, n), S, [n, n], { scale: 20, symmetric: true });
      checkFp32(kernel, refFor(n, n), S, [n, n], { scale: 20, symmetric: true, reduction: 'sum' });
    });
});

describe('infoNCE: finite differences of the float64 loss', () => {
  it('7x12 weighted positives with exclusions', () => {
    const rng = makeRng(12);
    const S = randomScores(rng, 7, 12, { kind: 'normal', sigma: 1 });
    const positives = randomPositives(rng, 7, 12, { min: 1, max: 4, weighted: true });
    const exclude = randomExclude(rng, 7, 12, positives, { max: 3 });
    checkFiniteDifferences(kernel, refFor(7, 12), S, [7, 12], { scale: 1.7, positives, exclude });
  });
  for (const symmetric of [false, true])
    for (const [B, N] of [[5, 9], [9, 9]] as [number, number][]) {
      if (symmetric && B !== N) continue;
      it(`${B}x${N} symmetric=${symmetric}`, () => {
        const S = randomScores(makeRng(B * 10 + N), B, N, { kind: 'normal', sigma: 1 });
        checkFiniteDifferences(kernel, refFor(B, N), S, [B, N], { scale: 2.5, symmetric });
        checkFiniteDifferences(kernel, refFor(B, N), S, [B, N], { scale: 0.7, symmetric, reduction: 'sum' });
      });
    }
});

describe('infoNCE: float16 and bfloat16', () => {
  for (const dtype of ['float16', 'bfloat16'] as const)
    for (const symmetric of [false, true])
      it(`${dtype} symmetric=${symmetric}`, () => {
        const [B, N] = symmetric ? [257, 257] : [13, 40009];
        const S = randomScores(makeRng(B + (dtype === 'float16' ? 1 : 2)), B, N, { kind: 'normal', sigma: 0.3 });
        checkHalf(kernel, refFor(B, N), S, [B, N], { scale: 20, symmetric }, dtype);
      });
  it('bfloat16 scores of magnitude 1e30 stay finite', () => {
    const S = randomScores(makeRng(3), 40, 40, { kind: 'normal' }).map((v) => v * 1e30);
    for (const symmetric of [false, true]) {
      const r = fl.infoNCE(fl.tensor(fl.float32ToBFloat16(S), [40, 40], { dtype: 'bfloat16' }), { symmetric });
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(gradOf(r).every(Number.isFinite)).toBe(true);
    }
  });
});

describe('infoNCE: entries out and edge cases', () => {
  it('−Infinity entries are out (probability 0, gradient 0); a positive at −Infinity costs +Infinity', () => {
    const n = 37;
    const S = randomScores(makeRng(8), n, n, { kind: 'normal', sigma: 0.5 });
    const rng = makeRng(9);
    for (let i = 0; i < S.length; i++) if (rng.uniform() < 0.2) S[i] = -Infinity;
    for (let j = 0; j < n; j++) S[5 * n + j] = -Infinity; // a whole row out
    for (let i = 0; i < n; i++) S[i * n + 11] = -Infinity; // a whole column out
    S[3 * n + 3] = 2; // diagonals finite except on row 5 and column 11
    for (const symmetric of [false, true]) {
      const opts = { symmetric, scale: 3, reduction: 'none' as const };
      const r = fl.infoNCE(fl.tensor(S, [n, n]), opts);
      const ref = refInfoNCE(S, n, n, opts);
      const g = gradOf(r);
      for (let i = 0; i < S.length; i++) if (S[i] === -Infinity) expect(g[i]).toBe(0);
      expect(r.rowLoss[5]).toBe(Infinity);
      expect(r.rowLoss[11]).toBe(Infinity);
      expect(relL2(g, ref.grad)).toBeLessThan(1e-5);
      for (let i = 0; i < n; i++) if (Number.isFinite(ref.rowLoss[i])) expect(Math.abs(r.rowLoss[i] - ref.rowLoss[i])).toBeLessThan(1e-5 * Math.max(1, ref.rowLoss[i]));
    }
  });

  it('a confident row keeps its tiny loss and gradient (no 1 − p cancellation)', () => {
    const n = 64;
    const S = randomScores(makeRng(10), n, n, { kind: 'normal', sigma: 0.1 });
    for (let i = 0; i < n; i++) S[i * n + i] = 1;
    for (const symmetric of [false, true]) {
      const r = fl.infoNCE(fl.tensor(S, [n, n]), { symmetric, scale: 30, gradScale: true });
      const ref = refInfoNCE(S, n, n, { symmetric, scale: 30 });
      expect(ref.loss).toBeLessThan(1e-9);
      expect(Math.abs(r.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
      expect(relL2(gradOf(r), ref.grad)).toBeLessThan(1e-5);
    }
  });

  it('an empty batch gives loss 0', () => {
    const r = fl.infoNCE(fl.tensor(new Float32Array(0), [0, 0]), { symmetric: true });
    expect(r.loss).toBe(0);
  });

  it('results do not depend on sync vs async; in place, out and grad: false', async () => {
    for (const [B, N, symmetric] of [[5, 70001, false], [600, 600, true]] as [number, number, boolean][]) {
      const S = randomScores(makeRng(B), B, N, { kind: 'peaked' });
      const opts = { symmetric, scale: 1 / 0.07, gradScale: true };
      const a = fl.infoNCE(fl.tensor(S, [B, N]), opts);
      const b = await fl.infoNCEAsync(fl.tensor(S, [B, N]), opts);
      expect(b.loss).toBe(a.loss);
      expect(b.dScale).toBe(a.dScale);
      expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(gradOf(b).buffer))).toBe(0);
      const t = fl.tensor(S.slice(), [B, N]);
      const c = fl.infoNCE(t, { ...opts, inplace: true });
      expect(c.grad).toBe(t);
      expect(c.dScale).toBe(a.dScale);
      expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(t.data.buffer))).toBe(0);
      const out = fl.tensor(new Float32Array(B * N), [B, N]);
      const d = fl.infoNCE(fl.tensor(S, [B, N]), { ...opts, out });
      expect(d.grad).toBe(out);
      expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(out.data.buffer))).toBe(0);
      const copy = S.slice();
      const e = fl.infoNCE(fl.tensor(S, [B, N]), { ...opts, grad: false });
      expect(e.grad).toBeUndefined();
      expect(e.loss).toBe(a.loss);
      expect(e.dScale).toBe(a.dScale);
      expect(Array.from(S)).toEqual(Array.from(copy));
    }
  });
});

describe('infoNCE: determinism', () => {
  it('results are bitwise the same on 1, 2 and 3 threads (symmetric strips and one-way rows)', () => {
    // A fresh process per thread count: the pool size is read once, at load.
    const script = `
      const fl = require(${JSON.stringify(path.resolve(__dirname, '../dist/index.js'))});
      const crypto = require('node:crypto');
      let s = 1; const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
      const n = 1100, x = new Float32Array(n * n).map(() => (rnd() * 2 - 1) * 3);
      const out = [];
      for (const o of [{ symmetric: true, scale: 20 }, { symmetric: true, scale: 1 }, { scale: 5 }]) {
        const r = fl.infoNCE(fl.tensor(x, [n, n]), { ...o, gradScale: true });
        out.push(r.loss, r.dScale, crypto.createHash('sha256').update(Buffer.from(r.grad.data.buffer)).digest('hex'));
      }
      process.stdout.write(JSON.stringify(out));`;
    const run = (threads: number) => execFileSync(process.execPath, ['-e', script], { env: { ...process.env, FUSEDLOSS_THREADS: String(threads) }, encoding: 'utf8' });
    const one = run(1);
    expect(run(2)).toBe(one);
    expect(run(3)).toBe(one);
  });
});

describe('infoNCE: bad input', () => {
  const S = new Float32Array(3 * 5).map((_, i) => i / 7);
  it('CSR positives and exclusions', () => {
    const t = fl.tensor(S, [3, 5]);
    const P = (rowPtr: number[], cols: number[], weights?: number[]) => ({ rowPtr: Int32Array.from(rowPtr), cols: Int32Array.from(cols), weights: weights && Float32Array.from(weights) });
    expectCode(() => fl.infoNCE(t, { positives: P([0, 1, 2], [0, 1]) }), 'ERR_SHAPE', /opts\.positives\.rowPtr/, /length 4/);
    expectCode(() => fl.infoNCE(t, { positives: P([0, 2, 1, 3], [0, 1, 2]) }), 'ERR_CSR', /opts\.positives\.rowPtr\[2\]/, /non-decreasing/);
    expectCode(() => fl.infoNCE(t, { positives: P([0, 1, 2, 3], [0, 5, 2]) }), 'ERR_CSR', /opts\.positives\.cols\[1\]/, /\[0, 5\)/, /received 5/);
    expectCode(() => fl.infoNCE(t, { positives: P([0, 2, 2, 3], [4, 4, 2]) }), 'ERR_CSR', /opts\.positives\.cols\[1\]/, /row 0/);
    expectCode(() => fl.infoNCE(t, { positives: P([0, 1, 2, 3], [0, 1, 2], [1, 1]) }), 'ERR_SHAPE', /opts\.positives\.weights/, /length 3/);
    expectCode(() => fl.infoNCE(t, { positives: P([0, 1, 2, 3], [0, 1, 2], [1, -1, 1]) }), 'ERR_CSR', /weights\[1\]/);
    expectCode(() => fl.infoNCE(t, { positives: P([0, 1, 2, 3], [0, 1, 2]), exclude: P([0, 0, 1, 1], [1]) }), 'ERR_CSR', /opts\.exclude\.cols\[0\]/, /positive of row 1/);
    expectCode(() => fl.infoNCE(t, { exclude: P([0, 0, 0, 1], [2]) }), 'ERR_CSR', /opts\.exclude\.cols\[0\]/, /the diagonal positives/);
    expectCode(() => fl.infoNCE(fl.tensor(S.subarray(0, 9), [3, 3]), { symmetric: true, positives: P([0, 1, 2, 3], [0, 1, 2]) }), 'ERR_ARG', /symmetric/, /diagonal/);
    expectCode(() => fl.infoNCE(fl.tensor(S.subarray(0, 9), [3, 3]), { symmetric: true, exclude: P([0, 0, 1, 1], [0]) }), 'ERR_ARG', /symmetric/, /opts\.exclude/);
    // Positives given: N < B is fine.
    const r = fl.infoNCE(fl.tensor(S, [5, 3]), { positives: P([0, 1, 2, 3, 3, 4], [0, 2, 1, 0]) });
    expect(Number.isFinite(r.loss)).toBe(true);
  });
  it('throws precise FusedLossErrors', async () => {
    expectCode(() => fl.infoNCE(fl.tensor(S, [5, 3])), 'ERR_SHAPE', /scores/, /at least as many columns as rows/, /\[5, 3\]/);
    expectCode(() => fl.infoNCE(fl.tensor(S, [3, 5]), { symmetric: true }), 'ERR_SHAPE', /square/, /\[3, 5\]/);
    expectCode(() => fl.infoNCE(fl.tensor(S, [3, 5]), { symmetric: 1 as never }), 'ERR_TYPE', /symmetric/, /boolean/);
    expectCode(() => fl.infoNCE(fl.tensor(S, [3, 5]), { scale: 0 }), 'ERR_ARG', /scale/);
    expectCode(() => fl.infoNCE(fl.tensor(S, [3, 5]), { reduction: 'none', gradOutput: new Float32Array(2) }), 'ERR_SHAPE', /gradOutput/);
    for (const [shape, at, symmetric] of [[[3, 5], 7, false], [[3, 3], 4, true]] as [[number, number], number, boolean][]) {
      const bad = S.slice(0, shape[0] * shape[1]);
      bad[at] = Number.NaN;
      const where = new RegExp(`\\[${Math.floor(at / shape[1])}, ${at % shape[1]}\\]`);
      expectCode(() => fl.infoNCE(fl.tensor(bad, shape), { symmetric }), 'ERR_NON_FINITE', where);
      bad[at] = Infinity;
      await expectCodeAsync(fl.infoNCEAsync(fl.tensor(bad, shape), { symmetric }), 'ERR_NON_FINITE', where);
    }
  });
});

describe.skipIf(!hasCuda())('infoNCE on CUDA', () => {
  for (const [B, N, symmetric] of [[7, 97, false], [300, 50257, false], [513, 513, true], [4096, 4096, true]] as [number, number, boolean][])
    for (const dtype of ['float32', 'bfloat16'] as const)
      it(`${B}x${N} symmetric=${symmetric} ${dtype} matches the CPU`, () => {
        const S32 = randomScores(makeRng(B + N), B, N, { kind: 'normal', sigma: 0.3 });
        const data = dtype === 'float32' ? S32 : fl.float32ToBFloat16(S32);
        const opts = { symmetric, scale: 20, gradScale: true };
        const cpu = fl.infoNCE(fl.tensor(data, [B, N], { dtype }), opts);
        using d = fl.toDevice(fl.tensor(data, [B, N], { dtype }));
        const gpu = fl.infoNCE(d, opts);
        expect(Math.abs(gpu.loss - cpu.loss) / Math.abs(cpu.loss)).toBeLessThan(1e-5);
        expect(Math.abs(gpu.dScale! - cpu.dScale!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(cpu.dScale!)));
        expect(relL2(gradOf(gpu), gradOf(cpu))).toBeLessThan(dtype === 'float32' ? 1e-4 : 1e-2);
        gpu.grad!.dispose();
      });
});
