import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fdGradCheck, fdScalarCheck } from './reference/fd.js';
import { refLinearCrossEntropy } from '../scripts/ops/linearCrossEntropy.mjs';
import { makeRng, type Rng } from './reference/rng.js';
import { allWritten, expectCode, expectCodeAsync, fl, hostValues, l2Distance, l2Norm, relL2 } from './helpers';

type Opts = fl.LinearCrossEntropyOptions;

interface Problem {
  B: number;
  D: number;
  N: number;
  H: Float32Array;
  W: Float32Array;
  b: Float32Array;
  y: Int32Array;
}

/** S = H·Wᵀ + b with entries of standard deviation `spread` (peaked rows: large). */
function problem(rng: Rng, B: number, D: number, N: number, spread = 3, ignoreEvery = 3): Problem {
  const sd = Math.sqrt(spread / Math.sqrt(D));
  const H = Float32Array.from({ length: B * D }, () => rng.normal() * sd);
  const W = Float32Array.from({ length: N * D }, () => rng.normal() * sd);
  const b = Float32Array.from({ length: N }, () => rng.normal());
  const y = Int32Array.from({ length: B }, (_, i) => (i % ignoreEvery === 1 ? -100 : rng.int(0, N)));
  return { B, D, N, H, W, b, y };
}


function compare(got: fl.LinearCrossEntropyResult, p: Problem, opts: Opts, useBias: boolean, tol = 1e-5) {
  const ref = refLinearCrossEntropy(p.H, p.W, useBias ? p.b : undefined, p.B, p.D, p.N, p.y, opts as never);
  expect(Math.abs(got.loss - ref.loss) / Math.max(1e-30, Math.abs(ref.loss)), `loss ${got.loss} vs ${ref.loss}`).toBeLessThanOrEqual(tol);
  expect(l2Distance(got.rowLoss, ref.rowLoss)).toBeLessThanOrEqual(tol * l2Norm(ref.rowLoss) + 1e-30);
  const gh = hostValues(got.gradHidden);
  const gw = hostValues(got.gradWeight);
  expect(allWritten(gh) && allWritten(gw)).toBe(true);
  expect(l2Distance(gh, ref.dH), 'dH').toBeLessThanOrEqual(tol * l2Norm(ref.dH) + 1e-30);
  expect(l2Distance(gw, ref.dW), 'dW').toBeLessThanOrEqual(tol * l2Norm(ref.dW) + 1e-30);
  if (useBias) expect(l2Distance(got.gradBias!, ref.db), 'db').toBeLessThanOrEqual(tol * l2Norm(ref.db) + 1e-30);
  if (got.dScale !== undefined) expect(Math.abs(got.dScale - ref.dScale)).toBeLessThanOrEqual(10 * tol * Math.max(1, Math.abs(ref.dScale)));
  if (got.lse)
    for (let i = 0; i < p.B; i++) {
      if (p.y[i] === -100) expect(got.lse[i]).toBeNaN();
      else expect(Math.abs(got.lse[i] - ref.lse[i])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(ref.lse[i])));
    }
  return ref;
}

const tensors = (p: Problem) => [fl.tensor(p.H, [p.B, p.D]), fl.tensor(p.W, [p.N, p.D])] as const;

describe('linearCrossEntropy', () => {
  const cases: [string, number, number, number, Opts, boolean, number?][] = [
    ['D = 1', 7, 1, 97, {}, false],
    ['bias, smoothing, class weights', 5, 33, 1001, { scale: 2.5, labelSmoothing: 0.1 }, true],
    ['softcap, z-loss, sum', 9, 130, 513, { softcap: 4, zLoss: 1e-3, reduction: 'sum' }, true],
    ['none with gradOutput', 6, 17, 300, { reduction: 'none' }, false],
    ['D = 1024', 4, 1024, 67, {}, true],
    ['peaked rows', 6, 50, 300, {}, false, 60],
    ['flat rows', 6, 50, 300, { labelSmoothing: 0.3 }, true, 0.01],
  ];
  for (const [name, B, D, N, opts, useBias, spread] of cases)
    it(`matches the float64 reference: ${name}`, () => {
      const rng = makeRng(B * 1000 + D);
      const p = problem(rng, B, D, N, spread ?? 3);
      const o: Opts = { ...opts, gradScale: true, returnLse: true };
      if (name.includes('class weights')) o.classWeights = Float32Array.from({ length: N }, () => 0.5 + rng.uniform());
      if (opts.reduction === 'none') o.gradOutput = Float32Array.from({ length: B }, () => rng.normal());
      if (useBias) o.bias = p.b;
      const [h, w] = tensors(p);
      compare(fl.linearCrossEntropy(h, w, p.y, o), p, o, useBias);
    });

  it('N > 65536 in column tiles (a budget for two rows of scores), sync and async', async () => {
    const p = problem(makeRng(5), 5, 7, 70001);
    const [h, w] = tensors(p);
    // About 0.8 MB per thread goes to the GEMM's panels and the engine; 600 kB to the scores.
    const memoryBudget = fl.backendInfo().cpu.threads * 800_000 + 65_536 + 600_000;
    const o: Opts = { bias: p.b, memoryBudget, gradScale: true, labelSmoothing: 0.05, softcap: 5 };
    const ref = compare(fl.linearCrossEntropy(h, w, p.y, o), p, o, true);
    const a = await fl.linearCrossEntropyAsync(h, w, p.y, o);
    expect(Math.abs(a.loss - ref.loss) / ref.loss).toBeLessThanOrEqual(1e-5);
  });

  it('finite differences confirm the reference dH, dW, db and dScale', () => {
    const p = problem(makeRng(6), 4, 5, 9, 3, 4);
    const opts = { scale: 1.7, labelSmoothing: 0.1, zLoss: 0.01 };
    const loss = (H: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number>, scale = opts.scale) =>
      refLinearCrossEntropy(H, W, b, p.B, p.D, p.N, p.y, { ...opts, scale }).loss;
    const H = Float64Array.from(p.H);
    const W = Float64Array.from(p.W);
    const b = Float64Array.from(p.b);
    const ref = refLinearCrossEntropy(H, W, b, p.B, p.D, p.N, p.y, opts);
    expect(fdGradCheck((x) => loss(x, W, b), H, ref.dH).relErr).toBeLessThan(1e-7);
    expect(fdGradCheck((x) => loss(H, x, b), W, ref.dW).relErr).toBeLessThan(1e-7);
    expect(fdGradCheck((x) => loss(H, W, x), b, ref.db).relErr).toBeLessThan(1e-7);
    expect(fdScalarCheck((s) => loss(H, W, b, s), opts.scale, ref.dScale).relErr).toBeLessThan(1e-7);
    // and the kernel agrees with the reference these checks confirm.
    const [h, w] = tensors(p);
    compare(fl.linearCrossEntropy(h, w, p.y, { ...opts, bias: p.b, gradScale: true }), p, { ...opts, gradScale: true }, true);
  });

  it("finite differences confirm dH, dW, db and dScale under a softcap, class weights and reduction 'none' with gradOutput", () => {
    const rng = makeRng(16);
    const p = problem(rng, 5, 4, 9, 3, 4);
    const gradOutput = Float32Array.from({ length: p.B }, () => rng.normal()); // loss below weights by these same fp32 values
    const classWeights = Float32Array.from({ length: p.N }, () => 0.5 + rng.uniform());
    const opts = { scale: 1.3, softcap: 2.5, classWeights, labelSmoothing: 0.05, reduction: 'none' as const, gradOutput };
    // With 'none' the gradients are those of Σ_i gradOutput_i·ℓ_i.
    const loss = (H: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number>, scale = opts.scale) =>
      refLinearCrossEntropy(H, W, b, p.B, p.D, p.N, p.y, { ...opts, scale }).rowLoss.reduce((t, l, i) => t + gradOutput[i] * l, 0);
    const H = Float64Array.from(p.H);
    const W = Float64Array.from(p.W);
    const b = Float64Array.from(p.b);
    const ref = refLinearCrossEntropy(H, W, b, p.B, p.D, p.N, p.y, opts);
    expect(fdGradCheck((x) => loss(x, W, b), H, ref.dH).relErr).toBeLessThan(1e-7);
    expect(fdGradCheck((x) => loss(H, x, b), W, ref.dW).relErr).toBeLessThan(1e-7);
    expect(fdGradCheck((x) => loss(H, W, x), b, ref.db).relErr).toBeLessThan(1e-7);
    expect(fdScalarCheck((s) => loss(H, W, b, s), opts.scale, ref.dScale).relErr).toBeLessThan(1e-7);
    const [h, w] = tensors(p);
    compare(fl.linearCrossEntropy(h, w, p.y, { ...opts, bias: p.b, gradScale: true }), p, { ...opts, gradScale: true }, true);
  });

  it('half inputs are widened; gradHidden comes back in their dtype unless float32 is asked', () => {
    const p = problem(makeRng(7), 11, 40, 777);
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const enc = dtype === 'float16' ? fl.float32ToFloat16 : fl.float32ToBFloat16;
      const h16 = enc(p.H);
      const w16 = enc(p.W);
      const widened: Problem = { ...p, H: fl.toFloat32(h16, dtype), W: fl.toFloat32(w16, dtype) };
      const h = fl.tensor(h16, [p.B, p.D], { dtype });
      const w = fl.tensor(w16, [p.N, p.D], { dtype });
      const r32 = fl.linearCrossEntropy(h, w, p.y, { bias: p.b, gradDtype: 'float32' });
      expect(r32.gradHidden!.dtype).toBe('float32');
      expect(r32.gradWeight!.dtype).toBe('float32');
      compare(r32, widened, {}, true);
      const r = fl.linearCrossEntropy(h, w, p.y, { bias: p.b });
      expect(r.gradHidden!.dtype).toBe(dtype);
      expect(relL2(hostValues(r.gradHidden), hostValues(r32.gradHidden))).toBeLessThan(dtype === 'float16' ? 1e-3 : 1e-2);
    }
  });

  it('accumulate adds into the caller-given buffers (sync and async)', async () => {
    const p = problem(makeRng(8), 23, 45, 301);
    const [h, w] = tensors(p);
    const first = fl.linearCrossEntropy(h, w, p.y, { bias: p.b, reduction: 'sum' });
    const gh = fl.tensor(new Float32Array(hostValues(first.gradHidden)), [p.B, p.D]);
    const gw = fl.tensor(new Float32Array(hostValues(first.gradWeight)), [p.N, p.D]);
    const gb = new Float32Array(first.gradBias!);
    const again = fl.linearCrossEntropy(h, w, p.y, { bias: p.b, reduction: 'sum', accumulate: true, gradHidden: gh, gradWeight: gw, gradBias: gb });
    expect(again.gradHidden).toBe(gh);
    const twice = (a: ArrayLike<number>) => Array.from(a, (v) => 2 * v);
    expect(relL2(hostValues(gh), twice(hostValues(first.gradHidden)))).toBeLessThan(1e-6);
    expect(relL2(hostValues(gw), twice(hostValues(first.gradWeight)))).toBeLessThan(1e-6);
    expect(relL2(gb, twice(first.gradBias!))).toBeLessThan(1e-6);
    await fl.linearCrossEntropyAsync(h, w, p.y, { bias: p.b, reduction: 'sum', accumulate: true, gradHidden: gh, gradWeight: gw, gradBias: gb });
    const thrice = (a: ArrayLike<number>) => Array.from(a, (v) => 3 * v);
    expect(relL2(hostValues(gw), thrice(hostValues(first.gradWeight)))).toBeLessThan(1e-6);
    expect(relL2(gb, thrice(first.gradBias!))).toBeLessThan(1e-6);
  });

  it('grad: false returns the loss only; every row ignored gives zeros', () => {
    const p = problem(makeRng(9), 6, 8, 50);
    const [h, w] = tensors(p);
    const r = fl.linearCrossEntropy(h, w, p.y, { grad: false });
    expect(r.gradHidden).toBeUndefined();
    expect(Math.abs(r.loss - fl.linearCrossEntropy(h, w, p.y).loss)).toBeLessThan(1e-6);
    const z = fl.linearCrossEntropy(h, w, new Int32Array(p.B).fill(-100));
    expect(z.loss).toBe(0);
    expect(hostValues(z.gradHidden).every((v) => v === 0) && hostValues(z.gradWeight).every((v) => v === 0)).toBe(true);
  });

  // Linux: peak RSS (VmHWM) can be reset by writing 5 to /proc/self/clear_refs.
  const canTrackPeak = (() => {
    try {
      writeFileSync('/proc/self/clear_refs', '5');
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!canTrackPeak)('stays within memoryBudget where the B×N scores would take 1 GiB', () => {
    const B = 8192;
    const D = 16;
    const N = 32768; // S: 8192 × 32768 fp32 = 1 GiB
    const rng = makeRng(11);
    const h = fl.tensor(Float32Array.from({ length: B * D }, () => rng.normal() * 0.5), [B, D]);
    const w = fl.tensor(Float32Array.from({ length: N * D }, () => rng.normal() * 0.5), [N, D]);
    const y = Int32Array.from({ length: B }, () => rng.int(0, N));
    const gradHidden = fl.tensor(new Float32Array(B * D).fill(0), [B, D]);
    const gradWeight = fl.tensor(new Float32Array(N * D).fill(0), [N, D]);
    const memoryBudget = 16 * 2 ** 20;
    const kib = (field: string) => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field + ':'))!)![1]);
    const before = kib('VmRSS');
    writeFileSync('/proc/self/clear_refs', '5');
    const r = fl.linearCrossEntropy(h, w, y, { memoryBudget, gradHidden, gradWeight, returnLse: true });
    const peakExtra = (kib('VmHWM') - before) * 1024;
    expect(Number.isFinite(r.loss)).toBe(true);
    // The budget, the small outputs (rowLoss, lse) and some allocator and V8 slack; nothing near 1 GiB.
    expect(peakExtra, `peak ${(peakExtra / 2 ** 20).toFixed(1)} MiB beyond the inputs`).toBeLessThan(memoryBudget + 8 * 2 ** 20);
  });

  it('refuses bad arguments with the usual errors', async () => {
    const p = problem(makeRng(10), 3, 4, 10);
    const [h, w] = tensors(p);
    expectCode(() => fl.linearCrossEntropy(h, w, p.y, { memoryBudjet: 1 } as Opts), 'ERR_ARG', /unknown option 'memoryBudjet'; did you mean 'memoryBudget'\?/);
    expectCode(() => fl.linearCrossEntropy(h, w, p.y, { memoryBudget: 1000 }), 'ERR_ARG', /memoryBudget: expected at least \d+ bytes/);
    expectCode(() => fl.linearCrossEntropy(h, fl.tensor(new Float32Array(30), [10, 3]), p.y), 'ERR_SHAPE', /weight\.shape/);
    expectCode(() => fl.linearCrossEntropy(h, w, Int32Array.from([0, 10, 1])), 'ERR_LABEL_RANGE', /labels\[1\]/);
    expectCode(() => fl.linearCrossEntropy(h, w, p.y, { accumulate: true }), 'ERR_ARG', /gradHidden/);
    const bad = new Float32Array(p.H);
    bad[2 * 4 + 1] = Number.NaN;
    expectCode(() => fl.linearCrossEntropy(fl.tensor(bad, [3, 4]), w, Int32Array.from([0, 1, 2])), 'ERR_NON_FINITE', /\[2, 0\]/, /hidden row 2/);
    await expectCodeAsync(fl.linearCrossEntropyAsync(h, w, p.y, { scale: -1 }), 'ERR_ARG', /opts\.scale/);
  });
});
