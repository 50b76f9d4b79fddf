import { describe, expect, it } from 'vitest';
import { refSoftmaxCrossEntropy } from '../scripts/ops/softmaxCrossEntropy.mjs';
import { loadGoldenCases } from './reference/golden.js';
import { makeRng, randomScores } from './reference/rng.js';
import { allWritten, expectCode, expectCodeAsync, fl, hasCuda, relL2 } from './helpers';

type Opts = fl.SoftmaxCrossEntropyOptions;

function labelsFor(rng: ReturnType<typeof makeRng>, B: number, N: number, ignoreSome: boolean): Int32Array {
  const y = new Int32Array(B);
  for (let i = 0; i < B; i++) y[i] = ignoreSome && rng.uniform() < 0.2 ? -100 : rng.int(0, N);
  return y;
}

const l2 = (a: ArrayLike<number>) => Math.sqrt(Array.prototype.reduce.call(a, (s: number, v: number) => s + v * v, 0) as number);
const absL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let n = 0;
  for (let i = 0; i < b.length; i++) n += (a[i] - b[i]) ** 2;
  return Math.sqrt(n);
};

function gradOf(r: fl.LossResult): Float32Array {
  const g = fl.toHost(r.grad!);
  return fl.toFloat32(g.data, g.dtype);
}

/** Runs the kernel and the float64 reference and compares loss, rows, grad, dScale, lse. */
function check(S: Float32Array, B: number, N: number, labels: Int32Array, opts: Opts, tol = 1e-5) {
  const got = fl.softmaxCrossEntropy(fl.tensor(S, [B, N]), labels, { ...opts, gradScale: true, returnLse: true });
  const ref = refSoftmaxCrossEntropy(S, B, N, labels, opts as never);
  const relLoss = Math.abs(got.loss - ref.loss) / Math.max(1e-30, Math.abs(ref.loss));
  expect(relLoss, `loss ${got.loss} vs ${ref.loss}`).toBeLessThanOrEqual(tol);
  // Absolute floor: a row loss of 3e-48 (the label 110 nats ahead) is 0 in fp32, and that is right.
  expect(absL2(got.rowLoss!, ref.rowLoss)).toBeLessThanOrEqual(tol * l2(ref.rowLoss) + 1e-30);
  const g = gradOf(got);
  expect(allWritten(g)).toBe(true);
  // ‖g − ref‖ ≤ tol·‖ref‖, with an absolute floor: a float64 gradient entry of 1e-44 (a row
  // whose label wins by 100 nats) is 0 in fp32, and that is not an error.
  expect(absL2(g, ref.grad)).toBeLessThanOrEqual(tol * l2(ref.grad) + 1e-30);
  expect(Math.abs(got.dScale! - ref.dScale)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(ref.dScale)) * 10);
  if (ref.lse) for (let i = 0; i < B; i++) expect(Math.abs(got.lse![i] - ref.lse[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.lse[i])));
}

describe('softmaxCrossEntropy: golden cases (PyTorch float64)', () => {
  for (const c of loadGoldenCases().filter((g) => g.fn === 'softmaxCrossEntropy')) {
    it(JSON.stringify(Object.keys(c.opts)), () => {
      const [B, N] = c.shape;
      const opts = { ...c.opts } as Opts & { classWeights?: unknown };
      if (Array.isArray(opts.classWeights)) opts.classWeights = new Float32Array(opts.classWeights as number[]);
      const r = fl.softmaxCrossEntropy(fl.tensor(new Float32Array(c.S), [B, N]), new Int32Array(c.labels!), { ...opts, gradScale: true });
      expect(Math.abs(r.loss - c.loss) / Math.abs(c.loss)).toBeLessThan(1e-5);
      expect(relL2(gradOf(r), c.grad)).toBeLessThan(1e-5);
      expect(Math.abs(r.dScale! - c.dScale!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(c.dScale!)));
    });
  }
});

describe('softmaxCrossEntropy: random cases against float64', () => {
  const shapes: [number, number][] = [[1, 2], [7, 97], [5, 50257], [2, 70001], [3, 300007]];
  const variants: [string, (N: number, rng: ReturnType<typeof makeRng>) => Opts][] = [
    ['plain', () => ({})],
    ['scale', () => ({ scale: 1 / 0.07 })],
    ['smoothing', () => ({ labelSmoothing: 0.1 })],
    ['zLoss', () => ({ zLoss: 1e-3 })],
    ['softcap', () => ({ softcap: 3, scale: 2 })],
    ['classWeights+smoothing', (N, rng) => ({ classWeights: new Float32Array(N).map(() => 0.5 + rng.uniform()), labelSmoothing: 0.2 })],
    ['sum', () => ({ reduction: 'sum' })],
    ['none+gradOutput', () => ({ reduction: 'none' })],
    ['everything', (N, rng) => ({ scale: 1.7, softcap: 5, labelSmoothing: 0.05, zLoss: 1e-4, classWeights: new Float32Array(N).map(() => 0.5 + rng.uniform()) })],
  ];
  let seed = 1;
  for (const [B, N] of shapes)
    for (const kind of ['normal', 'flat', 'peaked'] as const)
      for (const [name, make] of variants) {
        if (N > 60000 && name !== 'plain' && name !== 'everything' && kind !== 'normal') continue; // keep the suite fast
        const s = seed++;
        it(`${B}x${N} ${kind} ${name}`, () => {
          const rng = makeRng(s);
          const S = randomScores(rng, B, N, { kind });
          const labels = labelsFor(rng, B, N, B > 2);
          const opts = make(N, rng);
          if (opts.reduction === 'none') opts.gradOutput = new Float32Array(B).map(() => rng.normal());
          check(S, B, N, labels, opts);
        });
      }

  it('every row ignored: loss 0 and a zero gradient, not NaN', () => {
    const S = randomScores(makeRng(9), 4, 33, { kind: 'normal' });
    const r = fl.softmaxCrossEntropy(fl.tensor(S, [4, 33]), new Int32Array([-100, -100, -100, -100]));
    expect(r.loss).toBe(0);
    expect(gradOf(r).every((v) => v === 0)).toBe(true);
  });

  it('confident rows (label 24 nats above the rest, p_y − 1 ≈ −3·10^-6) keep the label gradient exact', () => {
    const [B, N] = [9, 50257];
    const rng = makeRng(77);
    const S = randomScores(rng, B, N, { kind: 'normal' });
    const labels = labelsFor(rng, B, N, false);
    labels.forEach((y, i) => (S[i * N + y] += 24));
    for (const opts of [{}, { labelSmoothing: 0.1 }, { zLoss: 1e-4, reduction: 'sum' as const }]) check(S, B, N, labels, opts);
  });

  it('−Infinity logits are out: probability 0, gradient 0', () => {
    const S = new Float32Array([1, -Infinity, 2, 0.5, -Infinity, -Infinity, 3, 1]);
    check(S, 2, 4, new Int32Array([0, 3]), {});
    const r = fl.softmaxCrossEntropy(fl.tensor(S, [2, 4]), new Int32Array([0, 3]));
    expect(gradOf(r)[1]).toBe(0);
  });

  it('huge logits with a softcap stay finite', () => {
    const S = new Float32Array(3 * 101).map((_, i) => (i % 7 === 0 ? 3e38 : -1e30 * (i % 3)));
    const r = fl.softmaxCrossEntropy(fl.tensor(S, [3, 101]), new Int32Array([0, 5, 100]), { softcap: 30, gradScale: true });
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(gradOf(r).every(Number.isFinite)).toBe(true);
  });

  it('results do not depend on the thread count or on sync vs async', async () => {
    const rng = makeRng(77);
    const S = randomScores(rng, 3, 100003, { kind: 'normal' });
    const labels = labelsFor(rng, 3, 100003, false);
    const a = fl.softmaxCrossEntropy(fl.tensor(S, [3, 100003]), labels);
    const b = await fl.softmaxCrossEntropyAsync(fl.tensor(S, [3, 100003]), labels);
    expect(b.loss).toBe(a.loss);
    expect(Buffer.compare(Buffer.from(gradOf(a).buffer), Buffer.from(gradOf(b).buffer))).toBe(0);
  });

  it('in place: the gradient overwrites the logits', () => {
    const rng = makeRng(5);
    const S = randomScores(rng, 7, 97, { kind: 'normal' });
    const labels = labelsFor(rng, 7, 97, true);
    const expected = gradOf(fl.softmaxCrossEntropy(fl.tensor(S, [7, 97]), labels));
    const t = fl.tensor(S.slice(), [7, 97]);
    const r = fl.softmaxCrossEntropy(t, labels, { inplace: true });
    expect(r.grad).toBe(t);
    expect(Array.from(t.data)).toEqual(Array.from(expected));
  });

  it('grad: false computes the loss only; the input is left unchanged', () => {
    const S = randomScores(makeRng(6), 5, 61, { kind: 'peaked' });
    const copy = S.slice();
    const r = fl.softmaxCrossEntropy(fl.tensor(S, [5, 61]), new Int32Array([1, 2, 3, 4, 5]), { grad: false });
    expect(r.grad).toBeUndefined();
    expect(Array.from(S)).toEqual(Array.from(copy));
  });
});

describe('softmaxCrossEntropy: the gradient-only fast paths', () => {
  // Without dScale, smoothing or class weights, a row's gradient is written from the exps its
  // statistics sweep kept, with non-temporal stores to whole cache lines once the gradient
  // passes 16 MiB (130×32768 and 129×32765 fp32 do). Rows of 32765 start at every offset into
  // a line, so every split into head, lines and tail, and every block edge inside a vector,
  // occurs. 131×32771 is wider than one tile and takes the general path. Each must be bit for
  // bit what the general path (gradScale) computes.
  for (const [B, N] of [[37, 1031], [130, 32768], [129, 32765], [131, 32771]] as [number, number][])
    it(`${B}x${N}: equal to the general path, to float64, and in place`, () => {
      const rng = makeRng(B * N);
      const S = randomScores(rng, B, N, { kind: 'peaked' });
      for (let i = 0; i < B; i += 3) S[i * N + rng.int(0, N)] = -Infinity;
      const labels = labelsFor(rng, B, N, true);
      // Negative upstream factors make signed zeros where exps underflow: they must come out +0 too.
      const opts: Opts = { reduction: 'none', gradOutput: new Float32Array(B).map(() => rng.normal()), scale: 1.7 };
      const fast = gradOf(fl.softmaxCrossEntropy(fl.tensor(S, [B, N]), labels, opts));
      const general = gradOf(fl.softmaxCrossEntropy(fl.tensor(S, [B, N]), labels, { ...opts, gradScale: true }));
      expect(allWritten(fast)).toBe(true);
      expect(Buffer.compare(Buffer.from(fast.buffer), Buffer.from(general.buffer))).toBe(0);
      const t = fl.tensor(S.slice(), [B, N]);
      fl.softmaxCrossEntropy(t, labels, { ...opts, inplace: true });
      expect(Buffer.compare(Buffer.from((t.data as Float32Array).buffer), Buffer.from(fast.buffer))).toBe(0);
      check(S, B, N, labels, opts);
    });
});

describe('softmaxCrossEntropy: float16 and bfloat16', () => {
  // 3000σ float16 logits reach ±45000 (float16's largest is 65504); 1e36σ bfloat16 logits
  // reach ±5e36 (bfloat16 spans float32's range).
  for (const [dtype, magnitude] of [['float16', 1], ['float16', 3000], ['bfloat16', 1], ['bfloat16', 3000], ['bfloat16', 1e36]] as const)
    {
      it(`${dtype} logits of magnitude ${magnitude}`, () => {
        const rng = makeRng(magnitude);
        const B = 5, N = 50257;
        const S32 = randomScores(rng, B, N, { kind: 'normal' }).map((v) => v * magnitude);
        const bits = dtype === 'float16' ? fl.float32ToFloat16(S32) : fl.float32ToBFloat16(S32);
        const Sq = fl.toFloat32(bits, dtype); // what the kernel sees
        const labels = labelsFor(rng, B, N, false);
        const got = fl.softmaxCrossEntropy(fl.tensor(bits, [B, N], { dtype }), labels, { labelSmoothing: 0.1 });
        const ref = refSoftmaxCrossEntropy(Sq, B, N, labels, { labelSmoothing: 0.1 } as never);
        expect(Number.isFinite(got.loss)).toBe(true);
        expect(Math.abs(got.loss - ref.loss) / Math.abs(ref.loss)).toBeLessThan(1e-5);
        const g = gradOf(got);
        expect(g.every(Number.isFinite)).toBe(true);
        // The gradient is rounded once to the dtype: 2^-8 (bf16) or 2^-11 (f16) relative per entry.
        expect(relL2(g, ref.grad)).toBeLessThan(dtype === 'bfloat16' ? 8e-3 : 1e-3);
        const f32 = fl.softmaxCrossEntropy(fl.tensor(bits, [B, N], { dtype }), labels, { labelSmoothing: 0.1, gradDtype: 'float32' });
        expect(relL2(gradOf(f32), ref.grad)).toBeLessThan(1e-5);
      });
    }
});

describe('softmaxCrossEntropy: bad input', () => {
  const S = new Float32Array(3 * 5).map((_, i) => i / 7);
  const t = fl.tensor(S, [3, 5]);
  const y = new Int32Array([0, 1, 2]);
  it('throws precise FusedLossErrors', async () => {
    expectCode(() => fl.softmaxCrossEntropy(t, new Int32Array(2)), 'ERR_SHAPE', /labels/, /length 3/, /received length 2/);
    expectCode(() => fl.softmaxCrossEntropy(t, [0, 1, 2] as never), 'ERR_TYPE', /labels/, /Int32Array/);
    expectCode(() => fl.softmaxCrossEntropy(t, new Int32Array([0, 5, 1])), 'ERR_LABEL_RANGE', /labels\[1\]/, /\[0, 5\)/, /received 5/);
    expectCode(() => fl.softmaxCrossEntropy(t, new Int32Array([0, -1, 1])), 'ERR_LABEL_RANGE', /received -1/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { classWeights: new Float32Array(4) }), 'ERR_SHAPE', /classWeights/, /length 5/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { labelSmoothing: 1.5 }), 'ERR_ARG', /labelSmoothing/, /\[0, 1\]/, /1\.5/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { scale: -2 }), 'ERR_ARG', /scale/, /> 0/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { scale: Infinity }), 'ERR_ARG', /scale/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { softcap: 0 }), 'ERR_ARG', /softcap/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { softcap: Number.NaN }), 'ERR_ARG', /softcap/, /NaN/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { reduction: 'avg' as never }), 'ERR_ARG', /reduction/, /'mean'/, /"avg"/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { gradOutput: new Float32Array(3) }), 'ERR_ARG', /gradOutput/, /'none'/);
    expectCode(() => fl.softmaxCrossEntropy(t, y, { reduction: 'none', gradOutput: new Float32Array(2) }), 'ERR_SHAPE', /gradOutput/);
    expectCode(() => fl.softmaxCrossEntropy(S, y, { shape: [3, 4] }), 'ERR_SHAPE', /^logits\.data: .*12 elements/);
    // Every error of one call names the argument alike: the kernel's NaN check too.
    const bad = S.slice();
    bad[7] = Number.NaN;
    expectCode(() => fl.softmaxCrossEntropy(fl.tensor(bad, [3, 5]), y), 'ERR_NON_FINITE', /^logits: expected finite values/, /\[1, 2\]/);
    bad[7] = Infinity;
    await expectCodeAsync(fl.softmaxCrossEntropyAsync(fl.tensor(bad, [3, 5]), y), 'ERR_NON_FINITE', /^logits: /, /\[1, 2\]/);
    // The SIMD check reads bit patterns: negative and signalling NaNs count, −Infinity does not.
    const wide = randomScores(makeRng(3), 3, 37, { kind: 'normal' });
    const bits = new Uint32Array(wide.buffer);
    for (const pattern of [0xffc00000, 0xff800001, 0x7f800001, 0x7fffffff]) {
      const saved = bits[40];
      bits[40] = pattern;
      expectCode(() => fl.softmaxCrossEntropy(fl.tensor(wide, [3, 37]), y), 'ERR_NON_FINITE', /\[1, 3\]/);
      bits[40] = saved;
    }
    bits[40] = 0xff800000;
    expect(Number.isFinite(fl.softmaxCrossEntropy(fl.tensor(wide, [3, 37]), y).loss)).toBe(true);
  });
});

describe.skipIf(!hasCuda())('softmaxCrossEntropy on CUDA', () => {
  for (const [B, N] of [[7, 97], [300, 50257], [2, 300007]] as [number, number][])
    for (const dtype of ['float32', 'bfloat16'] as const)
      it(`${B}x${N} ${dtype} matches the CPU`, () => {
        const rng = makeRng(B + N);
        const S32 = randomScores(rng, B, N, { kind: 'peaked' });
        const data = dtype === 'float32' ? S32 : fl.float32ToBFloat16(S32);
        const labels = labelsFor(rng, B, N, true);
        const opts: Opts = { labelSmoothing: 0.1, zLoss: 1e-4, gradScale: true };
        const cpu = fl.softmaxCrossEntropy(fl.tensor(data, [B, N], { dtype }), labels, opts);
        using d = fl.toDevice(fl.tensor(data, [B, N], { dtype }));
        const gpu = fl.softmaxCrossEntropy(d, labels, opts);
        expect(Math.abs(gpu.loss - cpu.loss) / Math.abs(cpu.loss)).toBeLessThan(1e-5);
        expect(relL2(gradOf(gpu), gradOf(cpu))).toBeLessThan(dtype === 'float32' ? 1e-4 : 1e-2);
        gpu.grad!.dispose();
      });
});
