import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fdGradCheck, fdScalarCheck } from './reference/fd.js';
import { refFromEmbeddings, type EmbeddingsLossName as Name, type RefEmbeddingsOptions } from './reference/embeddings.js';
import { dclwWeights, type RefPositives } from './reference/index.js';
import { makeRng, randomExclude, randomPositives, type Rng } from './reference/rng.js';
import { allWritten, expectCode, expectCodeAsync, fl, hostValues, l2Distance, l2Norm } from './helpers';

type Opts = fl.PositivesEmbeddingsOptions & { k?: number; weighting?: { sigma?: number } };
type Embeddings = fl.Tensor;
type Run = (q: Embeddings, k: Embeddings, pos: RefPositives, o: Opts) => fl.EmbeddingsLossResult;
type RunAsync = (q: Embeddings, k: Embeddings, pos: RefPositives, o: Opts) => Promise<fl.EmbeddingsLossResult>;
const c = (x: RefPositives) => x as fl.Positives;
const OP: Record<Name, [Run, RunAsync]> = {
  decoupledSoftmax: [(q, k, p, o) => fl.decoupledSoftmaxFromEmbeddings(q, k, c(p), o), (q, k, p, o) => fl.decoupledSoftmaxFromEmbeddingsAsync(q, k, c(p), o)],
  multiLabelSoftmax: [(q, k, p, o) => fl.multiLabelSoftmaxFromEmbeddings(q, k, c(p), o), (q, k, p, o) => fl.multiLabelSoftmaxFromEmbeddingsAsync(q, k, c(p), o)],
  binaryCrossEntropy: [(q, k, p, o) => fl.binaryCrossEntropyFromEmbeddings(q, k, c(p), o), (q, k, p, o) => fl.binaryCrossEntropyFromEmbeddingsAsync(q, k, c(p), o)],
  infoNCE: [(q, k, p, o) => fl.infoNCEFromEmbeddings(q, k, { ...o, positives: c(p) }), (q, k, p, o) => fl.infoNCEFromEmbeddingsAsync(q, k, { ...o, positives: c(p) })],
  softTopKLoss: [(q, k, p, o) => fl.softTopKLossFromEmbeddings(q, k, c(p), o), (q, k, p, o) => fl.softTopKLossFromEmbeddingsAsync(q, k, c(p), o)],
  decoupledContrastive: [
    (q, k, p, o) => fl.decoupledContrastiveFromEmbeddings(q, k, { ...o, positives: c(p) }),
    (q, k, p, o) => fl.decoupledContrastiveFromEmbeddingsAsync(q, k, { ...o, positives: c(p) }),
  ],
};

/** The float64 reference of a loss from embeddings: the matrix form on S = Q̂·K̂ᵀ, chained back. */
const reference = (name: Name, Q: ArrayLike<number>, K: ArrayLike<number>, B: number, N: number, D: number, pos: RefPositives, o: Opts | fl.InfoNCEEmbeddingsOptions) =>
  refFromEmbeddings(name, Q, K, B, N, D, pos, o as RefEmbeddingsOptions);

interface Problem {
  B: number;
  D: number;
  N: number;
  Q: Float32Array;
  K: Float32Array;
  pos: ReturnType<typeof randomPositives>;
}
let oneEach = false; // decoupledContrastive: exactly one unweighted positive per row
function problem(rng: Rng, B: number, D: number, N: number, spread = 1): Problem {
  const sd = Math.sqrt(spread / Math.sqrt(D));
  const Q = Float32Array.from({ length: B * D }, () => rng.normal() * sd);
  const K = Float32Array.from({ length: N * D }, () => rng.normal() * sd);
  const pos = oneEach ? randomPositives(rng, B, N, { min: 1, max: 1 }) : randomPositives(rng, B, N, { min: 0, max: Math.min(4, N - 1), weighted: true });
  return { B, D, N, Q, K, pos };
}


function compare(name: Name, got: fl.EmbeddingsLossResult, p: Problem, o: Opts, tol = 1e-5) {
  const ref = reference(name, p.Q, p.K, p.B, p.N, p.D, p.pos, o);
  expect(Math.abs(got.loss - ref.loss) / Math.max(1e-30, Math.abs(ref.loss)), `loss ${got.loss} vs ${ref.loss}`).toBeLessThanOrEqual(tol);
  expect(l2Distance(got.rowLoss, ref.rowLoss)).toBeLessThanOrEqual(tol * l2Norm(ref.rowLoss) + 1e-30);
  const gq = hostValues(got.gradQueries);
  const gk = hostValues(got.gradKeys);
  expect(allWritten(gq) && allWritten(gk)).toBe(true);
  expect(l2Distance(gq, ref.dQ), 'dQ').toBeLessThanOrEqual(tol * l2Norm(ref.dQ) + 1e-30);
  expect(l2Distance(gk, ref.dK), 'dK').toBeLessThanOrEqual(tol * l2Norm(ref.dK) + 1e-30);
  if (got.dScale !== undefined) expect(Math.abs(got.dScale - ref.dScale!)).toBeLessThanOrEqual(10 * tol * Math.max(1, Math.abs(ref.dScale!)));
  if (o.bias !== undefined) {
    expect(got.gradBias).toBeInstanceOf(Float32Array);
    expect(allWritten(got.gradBias!)).toBe(true);
    expect(l2Distance(got.gradBias!, ref.dB), 'dB').toBeLessThanOrEqual(tol * l2Norm(ref.dB) + 1e-30);
  } else expect(got.gradBias).toBeUndefined();
  return ref;
}

/**
 * A memoryBudget that holds about `rows` rows of S: the smallest budget (one row, whatever the
 * thread count makes the GEMM's panels cost), read from the error, plus rows − 1 more rows.
 */
function budgetForRows(run: (memoryBudget: number) => unknown, rows: number, rowBytes: number): number {
  try {
    run(1);
  } catch (e) {
    const min = Number(/at least (\d+) bytes/.exec(String((e as Error).message))![1]);
    return min + (rows - 1) * rowBytes;
  }
  throw new Error('a 1-byte budget was accepted');
}

const tensors = (p: Problem) => [fl.tensor(p.Q, [p.B, p.D]), fl.tensor(p.K, [p.N, p.D])] as const;

for (const name of ['decoupledSoftmax', 'multiLabelSoftmax', 'binaryCrossEntropy', 'infoNCE', 'softTopKLoss', 'decoupledContrastive'] as const) {
  const [op, opAsync] = OP[name];
  describe(`${name}FromEmbeddings`, () => {
    beforeEach(() => {
      oneEach = name === 'decoupledContrastive';
    });
    afterEach(() => {
      oneEach = false;
    });
    const cases: [string, number, number, number, Opts][] = [
      ['D = 1', 7, 1, 97, {}],
      ['normalised, scale 20', 9, 33, 1001, { normalize: true, scale: 20 }],
      ['sum, exclusions', 6, 130, 513, { reduction: 'sum', scale: 2 }],
      ['none with gradOutput, normalised', 5, 17, 300, { reduction: 'none', normalize: true }],
      ['D = 301, several chunks', 11, 301, 211, { normalize: true, scale: 5 }],
    ];
    for (const [label, B, D, N, opts] of cases)
      it(`matches the float64 reference: ${label}`, () => {
        const rng = makeRng(B * 1000 + D);
        const p = problem(rng, B, D, N);
        const o: Opts = { ...opts, gradScale: true };
        if (name === 'decoupledContrastive' && label.includes('scale 20')) o.weighting = { sigma: 0.5 };
        if (label.includes('exclusions')) o.exclude = randomExclude(rng, B, N, p.pos, { max: 5 });
        if (opts.reduction === 'none') o.gradOutput = Float32Array.from({ length: B }, () => rng.normal());
        const [q, k] = tensors(p);
        if (label.includes('several chunks')) o.memoryBudget = budgetForRows((memoryBudget) => op(q, k, p.pos, { ...o, memoryBudget }), 3, 4 * N + 8 * D);
        compare(name, op(q, k, p.pos, o), p, o);
      });

    it('finite differences confirm dQ, dK and dScale of the reference it is compared with', () => {
      const rng = makeRng(7);
      const p = problem(rng, 4, 5, 9);
      const opts = { normalize: true, scale: 3 };
      const Q = Float64Array.from(p.Q);
      const K = Float64Array.from(p.K);
      const f = (q: Float64Array, k: Float64Array, s = 3) => reference(name, q, k, p.B, p.N, p.D, p.pos, { ...opts, scale: s }).loss;
      const ref = reference(name, Q, K, p.B, p.N, p.D, p.pos, opts);
      expect(fdGradCheck((x) => f(x, K), Q, ref.dQ).relErr).toBeLessThan(1e-7);
      expect(fdGradCheck((x) => f(Q, x), K, ref.dK).relErr).toBeLessThan(1e-7);
      expect(fdScalarCheck((s) => f(Q, K, s), 3, ref.dScale!).relErr).toBeLessThan(1e-7);
      const [q, k] = tensors(p);
      compare(name, op(q, k, p.pos, { ...opts, gradScale: true }), p, { ...opts, gradScale: true });
    });

    it("finite differences confirm dQ, dK and dScale unnormalised, with exclusions and reduction 'none' under gradOutput", () => {
      const rng = makeRng(8);
      const p = problem(rng, 5, 4, 11);
      const gradOutput = Float32Array.from({ length: p.B }, () => rng.normal()); // f below weights by these same fp32 values
      const opts: Opts = { scale: 1.5, reduction: 'none', gradOutput, exclude: randomExclude(rng, p.B, p.N, p.pos, { max: 2 }) };
      if (name === 'softTopKLoss') opts.k = 3;
      // With 'none' the gradients are those of Σ_i gradOutput_i·ℓ_i.
      const f = (q: Float64Array, k: Float64Array, scale = 1.5) => reference(name, q, k, p.B, p.N, p.D, p.pos, { ...opts, scale }).rowLoss.reduce((t, l, i) => t + gradOutput[i] * l, 0);
      const Q = Float64Array.from(p.Q);
      const K = Float64Array.from(p.K);
      const ref = reference(name, Q, K, p.B, p.N, p.D, p.pos, opts);
      expect(fdGradCheck((x) => f(x, K), Q, ref.dQ).relErr).toBeLessThan(1e-7);
      expect(fdGradCheck((x) => f(Q, x), K, ref.dK).relErr).toBeLessThan(1e-7);
      expect(fdScalarCheck((s) => f(Q, K, s), 1.5, ref.dScale!).relErr).toBeLessThan(1e-7);
      const [q, k] = tensors(p);
      compare(name, op(q, k, p.pos, { ...opts, gradScale: true }), p, { ...opts, gradScale: true });
    });

    it('accumulates into the given buffers, async too, and writes no input', async () => {
      const rng = makeRng(11);
      const p = problem(rng, 6, 20, 70);
      const [q, k] = tensors(p);
      const q0 = p.Q.slice();
      const k0 = p.K.slice();
      const o: Opts = { normalize: true, scale: 4 };
      const once = op(q, k, p.pos, o);
      const gq = fl.tensor(Float32Array.from({ length: p.B * p.D }, () => rng.normal()), [p.B, p.D]);
      const gk = fl.tensor(Float32Array.from({ length: p.N * p.D }, () => rng.normal()), [p.N, p.D]);
      const gq0 = hostValues(gq).slice();
      const gk0 = hostValues(gk).slice();
      const r = await opAsync(q, k, p.pos, { ...o, accumulate: true, gradQueries: gq, gradKeys: gk });
      expect(r.gradQueries).toBe(gq);
      const aq = hostValues(gq);
      const ak = hostValues(gk);
      const oq = hostValues(once.gradQueries);
      const ok = hostValues(once.gradKeys);
      for (let i = 0; i < aq.length; i++) expect(aq[i]).toBeCloseTo(gq0[i] + oq[i], 5);
      for (let i = 0; i < ak.length; i++) expect(ak[i]).toBeCloseTo(gk0[i] + ok[i], 5);
      expect(p.Q).toEqual(q0);
      expect(p.K).toEqual(k0);
    });

    it('takes float16 and bfloat16 inputs (dK in float32)', () => {
      const rng = makeRng(5);
      const p = problem(rng, 5, 24, 150);
      for (const dtype of ['float16', 'bfloat16'] as const) {
        const half = dtype === 'float16' ? fl.float32ToFloat16 : fl.float32ToBFloat16;
        const Qh = half(p.Q);
        const Kh = half(p.K);
        const r = op(fl.tensor(Qh, [p.B, p.D], { dtype }), fl.tensor(Kh, [p.N, p.D], { dtype }), p.pos, { normalize: true, scale: 5 });
        expect(r.gradQueries!.dtype).toBe(dtype);
        expect(r.gradKeys!.dtype).toBe('float32');
        // Against the reference on the rounded inputs: only the outputs' rounding remains.
        const rounded = { ...p, Q: fl.toFloat32(Qh, dtype), K: fl.toFloat32(Kh, dtype) };
        const ref = reference(name, rounded.Q, rounded.K, p.B, p.N, p.D, p.pos, { normalize: true, scale: 5 });
        expect(Math.abs(r.loss - ref.loss) / Math.abs(ref.loss)).toBeLessThan(1e-5);
        expect(l2Distance(hostValues(r.gradKeys), ref.dK)).toBeLessThan(1e-5 * l2Norm(ref.dK));
        expect(l2Distance(hostValues(r.gradQueries), ref.dQ)).toBeLessThan(2e-2 * l2Norm(ref.dQ));
      }
    });
  });
}

describe('the losses from embeddings', () => {
  it('decoupledSoftmaxFromEmbeddings at N > 65536 with empty-positive rows and chunks of rows', () => {
    const rng = makeRng(3);
    const p = problem(rng, 5, 16, 70001);
    p.pos = randomPositives(rng, p.B, p.N, { min: 0, max: 3 });
    p.pos.rowPtr[2] = p.pos.rowPtr[1]; // row 1 empty
    const cols = Array.from(p.pos.cols);
    cols.splice(p.pos.rowPtr[1], p.pos.rowPtr[2] - p.pos.rowPtr[1]);
    const [q, k] = tensors(p);
    const o: Opts = { normalize: true, scale: 10 };
    o.memoryBudget = budgetForRows((memoryBudget) => fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { ...o, memoryBudget }), 2, 4 * p.N);
    const r = fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, o);
    compare('decoupledSoftmax', r, p, o);
    expect(r.rowLoss[1]).toBe(0);
    expect(Array.from(hostValues(r.gradQueries).subarray(16, 32)).every((v) => v === 0)).toBe(true);
  });

  it('infoNCEFromEmbeddings symmetric (CLIP): both halves, over several chunks, against the float64 reference', async () => {
    const rng = makeRng(21);
    for (const [B, D, o] of [
      [37, 9, { normalize: true, scale: 10, gradScale: true }],
      [1500, 4, { normalize: true, scale: 10, gradScale: true, reduction: 'sum' }],
      [23, 40, { reduction: 'none', gradScale: true }],
      [16, 5, { reduction: 'sum', scale: 3 }],
    ] as [number, number, fl.InfoNCEEmbeddingsOptions][]) {
      const p = problem(rng, B, D, B);
      const opts: fl.InfoNCEEmbeddingsOptions = { ...o, symmetric: true };
      if (o.reduction === 'none') opts.gradOutput = Float32Array.from({ length: B }, () => rng.normal());
      const [q, k] = tensors(p);
      if (B === 1500) opts.memoryBudget = budgetForRows((memoryBudget) => fl.infoNCEFromEmbeddings(q, k, { ...opts, memoryBudget }), 40, 8 * B); // ~38 chunks
      const got = B === 23 ? await fl.infoNCEFromEmbeddingsAsync(q, k, opts) : fl.infoNCEFromEmbeddings(q, k, opts);
      const diag = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i), cols: Int32Array.from({ length: B }, (_, i) => i) };
      compare('infoNCE', got, { ...p, pos: diag }, opts as Opts); // symmetric: the reference takes the diagonal itself
    }
    const p = problem(rng, 4, 3, 5);
    const [q, k] = tensors(p);
    expectCode(() => fl.infoNCEFromEmbeddings(q, k, { symmetric: true }), 'ERR_SHAPE', /keys\.shape/);
  });

  it('finite differences confirm dQ, dK and dScale of symmetric InfoNCE (normalised and not) and of DCLW with its weights held', () => {
    const rng = makeRng(51);
    const B = 5;
    const D = 4;
    const diag = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i), cols: Int32Array.from({ length: B }, (_, i) => i) };
    for (const normalize of [false, true]) {
      const p = problem(rng, B, D, B);
      const Q = Float64Array.from(p.Q);
      const K = Float64Array.from(p.K);
      const opts = { symmetric: true, normalize, scale: 2.5 };
      const f = (q: Float64Array, k: Float64Array, scale = 2.5) => reference('infoNCE', q, k, B, B, D, diag, { ...opts, scale }).loss;
      const ref = reference('infoNCE', Q, K, B, B, D, diag, opts);
      expect(fdGradCheck((x) => f(x, K), Q, ref.dQ).relErr).toBeLessThan(1e-7);
      expect(fdGradCheck((x) => f(Q, x), K, ref.dK).relErr).toBeLessThan(1e-7);
      expect(fdScalarCheck((s) => f(Q, K, s), 2.5, ref.dScale!).relErr).toBeLessThan(1e-7);
      const [q, k] = tensors(p);
      compare('infoNCE', fl.infoNCEFromEmbeddings(q, k, { ...opts, gradScale: true }), { ...p, pos: diag }, { ...opts, gradScale: true } as Opts);
    }
    // DCLW: w_i = 2 − B·softmax_i(S_ii/σ) is held constant (MATH decoupledContrastive, native/ops/contrastive_math.h), so the finite
    // differences are of the loss with the weights of the base point given outright.
    const N = 7;
    const p = problem(rng, B, D, N);
    const Q = Float64Array.from(p.Q);
    const K = Float64Array.from(p.K);
    const opts = { normalize: true, scale: 3, weighting: { sigma: 0.5 } };
    const unit = (X: Float64Array, rows: number) => Array.from({ length: rows }, (_, i) => X.subarray(i * D, (i + 1) * D)).map((r) => r.map((v) => v / Math.hypot(...r)));
    const q0 = unit(Q, B);
    const k0 = unit(K, N);
    const S = Float64Array.from({ length: B * N }, (_, e) => q0[Math.floor(e / N)].reduce((t, v, c) => t + v * k0[e % N][c], 0));
    const rowWeights = dclwWeights(S, B, N, 0.5, diag);
    const f = (q: Float64Array, k: Float64Array, scale = 3) => reference('decoupledContrastive', q, k, B, N, D, diag, { normalize: true, scale, rowWeights } as Opts).loss;
    const ref = reference('decoupledContrastive', Q, K, B, N, D, diag, opts);
    expect(fdGradCheck((x) => f(x, K), Q, ref.dQ).relErr).toBeLessThan(1e-7);
    expect(fdGradCheck((x) => f(Q, x), K, ref.dK).relErr).toBeLessThan(1e-7);
    expect(fdScalarCheck((s) => f(Q, K, s), 3, ref.dScale!).relErr).toBeLessThan(1e-7);
    const [q, k] = tensors(p);
    compare('decoupledContrastive', fl.decoupledContrastiveFromEmbeddings(q, k, { ...opts, gradScale: true }), { ...p, pos: diag }, { ...opts, gradScale: true });
  });

  it('grad: false computes the loss only; gradDtype float32 for half inputs', async () => {
    const rng = makeRng(31);
    const p = problem(rng, 6, 12, 90);
    const [q, k] = tensors(p);
    const full = fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { normalize: true, scale: 7 });
    const lossOnly = await fl.decoupledSoftmaxFromEmbeddingsAsync(q, k, p.pos, { normalize: true, scale: 7, grad: false });
    expect(lossOnly.loss).toBe(full.loss);
    expect('gradQueries' in lossOnly || 'gradKeys' in lossOnly).toBe(false);
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { grad: false, accumulate: true }), 'ERR_ARG', /accumulate/);
    const qh = fl.tensor(fl.float32ToBFloat16(p.Q), [p.B, p.D], { dtype: 'bfloat16' });
    const kh = fl.tensor(fl.float32ToBFloat16(p.K), [p.N, p.D], { dtype: 'bfloat16' });
    const r = fl.decoupledSoftmaxFromEmbeddings(qh, kh, p.pos, { gradDtype: 'float32' });
    expect(r.gradQueries.dtype).toBe('float32');
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(qh, kh, p.pos, { gradDtype: 'float16' }), 'ERR_DTYPE', /gradDtype/);
  });

  let canTrackPeak = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    canTrackPeak = false;
  }
  it.skipIf(!canTrackPeak)('decoupledSoftmaxFromEmbeddings stays within memoryBudget where the B×N scores would take 1 GiB', () => {
    const B = 8192;
    const D = 16;
    const N = 32768; // S: 8192 × 32768 fp32 = 1 GiB
    const rng = makeRng(12);
    const q = fl.tensor(Float32Array.from({ length: B * D }, () => rng.normal()), [B, D]);
    const k = fl.tensor(Float32Array.from({ length: N * D }, () => rng.normal()), [N, D]);
    const positives = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => 2 * i), cols: Int32Array.from({ length: 2 * B }, (_, e) => (e * 7919) % N) };
    const gradQueries = fl.tensor(new Float32Array(B * D).fill(0), [B, D]);
    const gradKeys = fl.tensor(new Float32Array(N * D).fill(0), [N, D]);
    const memoryBudget = 16 * 2 ** 20;
    const kib = (field: string) => Number(/(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field + ':'))!)![1]);
    const before = kib('VmRSS');
    writeFileSync('/proc/self/clear_refs', '5');
    const r = fl.decoupledSoftmaxFromEmbeddings(q, k, positives, { normalize: true, scale: 20, memoryBudget, gradQueries, gradKeys });
    const peakExtra = (kib('VmHWM') - before) * 1024;
    expect(Number.isFinite(r.loss)).toBe(true);
    // The budget, the small outputs (rowLoss) and some allocator and V8 slack; nothing near 1 GiB.
    expect(peakExtra, `peak ${(peakExtra / 2 ** 20).toFixed(1)} MiB beyond the inputs`).toBeLessThan(memoryBudget + 8 * 2 ** 20);
  });

  it('rejects bad shapes, dtypes, budgets and unknown options', async () => {
    const rng = makeRng(1);
    const p = problem(rng, 3, 4, 10);
    const [q, k] = tensors(p);
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(q, fl.tensor(new Float32Array(30), [10, 3]), p.pos), 'ERR_SHAPE', /keys\.shape/);
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(q, fl.tensor(new Uint16Array(40), [10, 4], { dtype: 'float16' }), p.pos), 'ERR_DTYPE', /keys\.dtype/);
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { normalise: true } as never), 'ERR_ARG', /did you mean 'normalize'/);
    expectCode(() => fl.multiLabelSoftmaxFromEmbeddings(q, k, p.pos, { memoryBudget: 1000 }), 'ERR_ARG', /memoryBudget/);
    expectCode(() => fl.binaryCrossEntropyFromEmbeddings(q, k, { rowPtr: new Int32Array([0, 1]), cols: new Int32Array([0]) }), 'ERR_SHAPE', /positives\.rowPtr/);
    expectCode(() => fl.binaryCrossEntropyFromEmbeddings(q, k, { rowPtr: new Int32Array([0, 1, 1, 1]), cols: new Int32Array([10]) }), 'ERR_CSR', /positives/);
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { accumulate: true }), 'ERR_ARG', /gradQueries/);
    await expectCodeAsync(fl.decoupledSoftmaxFromEmbeddingsAsync(q, k, p.pos, { gradKeys: fl.tensor(new Float32Array(4), [1, 4]) }), 'ERR_SHAPE', /gradKeys/);
    const bad = p.Q.slice();
    bad[5] = Number.NaN;
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(fl.tensor(bad, [3, 4]), k, { rowPtr: new Int32Array([0, 1, 2, 3]), cols: new Int32Array([0, 1, 2]) }), 'ERR_NON_FINITE', /query row 1/);
  });
});

/**
 * A memoryBudget that makes the driver take its column-tile plan with all `rows` rows in one
 * chunk and tiles of about `cols` columns (native/ops/embeddings.cpp): the smallest budget, read
 * from the error, is the fixed scratch plus one row of a 256-column tile and the row's state
 * (8·D + 160 bytes).
 */
function tileBudget(run: (memoryBudget: number) => unknown, rows: number, cols: number, D: number): number {
  const min = budgetForRows(run, 1, 0);
  const state = 8 * D + 160;
  return min - 4 * 256 - state + rows * (state + 4 * cols);
}

describe('the column-tile plan (a budget of a few rows of S, every row over tiles of K)', () => {
  const tiled = ['decoupledSoftmax', 'multiLabelSoftmax', 'binaryCrossEntropy', 'infoNCE', 'decoupledContrastive'] as const;
  for (const name of tiled) {
    const [op, opAsync] = OP[name];
    it(`${name}: odd sizes, empty rows, exclusions, over 8 tiles, against the float64 reference and the row-chunk plan`, async () => {
      oneEach = name === 'decoupledContrastive';
      try {
        const rng = makeRng(404);
        const [B, D, N] = [37, 19, 3001];
        const p = problem(rng, B, D, N, 4);
        const [q, k] = tensors(p);
        for (const base of [
          { normalize: true, scale: 10, gradScale: true },
          { reduction: 'none', scale: 3, gradScale: true, exclude: true },
          { reduction: 'sum', normalize: true, scale: 20, weighting: { sigma: 0.5 } },
        ] as (Opts & { exclude?: boolean })[]) {
          const o: Opts = { ...base, exclude: undefined };
          if (base.exclude) o.exclude = randomExclude(rng, B, N, p.pos, { max: 6 });
          if (base.reduction === 'none') o.gradOutput = Float32Array.from({ length: B }, () => rng.normal());
          if (name !== 'decoupledContrastive') delete o.weighting;
          const memoryBudget = tileBudget((m) => op(q, k, p.pos, { ...o, memoryBudget: m }), B, 400, D);
          const got = op(q, k, p.pos, { ...o, memoryBudget });
          compare(name, got, p, o);
          // The row-chunk plan (the whole of S fits the default budget) agrees to rounding.
          const rows = op(q, k, p.pos, o);
          expect(Math.abs(got.loss - rows.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(rows.loss));
          expect(l2Distance(hostValues(got.gradKeys), hostValues(rows.gradKeys))).toBeLessThanOrEqual(1e-6 * l2Norm(hostValues(rows.gradKeys)));
          // Several chunks of rows, each over the tiles: the same to rounding, and accumulate adds.
          const chunked = tileBudget((m) => op(q, k, p.pos, { ...o, memoryBudget: m }), 10, 300, D);
          const gq = fl.tensor(Float32Array.from({ length: B * D }, () => 1e-3 * rng.normal()), [B, D]);
          const gk = fl.tensor(Float32Array.from({ length: N * D }, () => 1e-3 * rng.normal()), [N, D]);
          const gq0 = hostValues(gq).slice();
          const gk0 = hostValues(gk).slice();
          const acc = await opAsync(q, k, p.pos, { ...o, memoryBudget: chunked, accumulate: true, gradQueries: gq, gradKeys: gk });
          expect(Math.abs(acc.loss - got.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(got.loss));
          // What was there rounds the sum: fp32's 6e-8 of it on top of the gradients' own 1e-5.
          const sub = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(a, (v, i) => v - b[i]);
          for (const [after, before, once] of [[gq, gq0, got.gradQueries], [gk, gk0, got.gradKeys]] as const)
            expect(l2Distance(sub(hostValues(after), before), hostValues(once))).toBeLessThanOrEqual(1e-5 * l2Norm(hostValues(once)) + 1e-7 * l2Norm(before));
        }
      } finally {
        oneEach = false;
      }
    });
  }

  it('names the query and key of a NaN score found in a tile', () => {
    const rng = makeRng(9);
    const p = problem(rng, 6, 8, 2000);
    const K = p.K.slice();
    K[1500 * 8 + 3] = Number.NaN;
    const [q] = tensors(p);
    const k = fl.tensor(K, [p.N, p.D]);
    const memoryBudget = tileBudget((m) => fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { memoryBudget: m }), 6, 300, p.D);
    expectCode(() => fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { memoryBudget }), 'ERR_NON_FINITE', /key row 1500/);
  });
});

describe('a per-key bias: S = Q·Kᵀ + b (cos(Q, K) + b with normalize), scale times all of it', () => {
  const names = ['decoupledSoftmax', 'multiLabelSoftmax', 'binaryCrossEntropy', 'infoNCE', 'softTopKLoss', 'decoupledContrastive'] as const;
  const biasFor = (rng: Rng, N: number, sd = 0.5) => Float32Array.from({ length: N }, () => sd * rng.normal());
  for (const name of names) {
    const [op, opAsync] = OP[name];
    it(`${name}: loss, dQ, dK, db and dScale against the float64 reference, normalised and not, over chunks`, () => {
      oneEach = name === 'decoupledContrastive';
      try {
        const cases: [number, number, number, Opts][] = [
          [7, 5, 97, { reduction: 'sum', scale: 2 }],
          [9, 33, 301, { normalize: true, scale: 20, weighting: { sigma: 0.5 } }],
          [11, 17, 211, { normalize: true, scale: 5, reduction: 'none' }],
        ];
        for (const [B, D, N, base] of cases) {
          const rng = makeRng(B * 100 + N);
          const p = problem(rng, B, D, N);
          const o: Opts = { ...base, gradScale: true, bias: biasFor(rng, N, base.normalize ? 2 : 0.5) };
          if (name !== 'decoupledContrastive') delete o.weighting;
          if (name === 'softTopKLoss') o.k = 3;
          if (base.reduction === 'none') o.gradOutput = Float32Array.from({ length: B }, () => rng.normal());
          const [q, k] = tensors(p);
          if (B === 11) o.memoryBudget = budgetForRows((memoryBudget) => op(q, k, p.pos, { ...o, memoryBudget }), 3, 4 * N + 8 * D);
          compare(name, op(q, k, p.pos, o), p, o);
        }
      } finally {
        oneEach = false;
      }
    });

    it(`${name}: finite differences confirm db of the reference; a bias tensor of another dtype is widened`, () => {
      oneEach = name === 'decoupledContrastive';
      try {
        const rng = makeRng(61);
        const p = problem(rng, 4, 5, 9);
        const b0 = Float64Array.from(biasFor(rng, p.N));
        const opts: Opts = { normalize: name !== 'binaryCrossEntropy', scale: 3 };
        if (name === 'softTopKLoss') opts.k = 3;
        const Q = Float64Array.from(p.Q);
        const K = Float64Array.from(p.K);
        const f = (b: Float64Array) => reference(name, Q, K, p.B, p.N, p.D, p.pos, { ...opts, bias: b } as never).loss;
        const ref = reference(name, Q, K, p.B, p.N, p.D, p.pos, { ...opts, bias: b0 } as never);
        expect(fdGradCheck(f, b0, ref.dB).relErr).toBeLessThan(1e-7);
        const [q, k] = tensors(p);
        const bias = Float32Array.from(b0);
        compare(name, op(q, k, p.pos, { ...opts, bias }), p, { ...opts, bias });
        // A float16 tensor: the same as its float32 values.
        const half = fl.float32ToFloat16(bias);
        const viaTensor = op(q, k, p.pos, { ...opts, bias: fl.tensor(half, [p.N], { dtype: 'float16' }) });
        compare(name, viaTensor, p, { ...opts, bias: fl.toFloat32(half, 'float16') });
      } finally {
        oneEach = false;
      }
    });

    it(`${name}: accumulate adds db into gradBias (async), grad: false gives none`, async () => {
      oneEach = name === 'decoupledContrastive';
      try {
        const rng = makeRng(12);
        const p = problem(rng, 6, 20, 70);
        const [q, k] = tensors(p);
        const bias = biasFor(rng, p.N);
        const o: Opts = { normalize: true, scale: 4, bias };
        if (name === 'softTopKLoss') o.k = 3;
        const once = op(q, k, p.pos, o);
        const gq = fl.tensor(new Float32Array(p.B * p.D), [p.B, p.D]);
        const gk = fl.tensor(new Float32Array(p.N * p.D), [p.N, p.D]);
        const gb = Float32Array.from({ length: p.N }, () => rng.normal());
        const gb0 = gb.slice();
        const b0 = bias.slice();
        const r = await opAsync(q, k, p.pos, { ...o, accumulate: true, gradQueries: gq, gradKeys: gk, gradBias: gb });
        expect(r.gradBias).toBe(gb);
        for (let j = 0; j < p.N; j++) expect(gb[j]).toBeCloseTo(gb0[j] + once.gradBias![j], 5);
        expect(bias).toEqual(b0);
        const lossOnly = op(q, k, p.pos, { ...o, grad: false });
        expect(lossOnly.gradBias).toBeUndefined();
        expect(Math.abs(lossOnly.loss - once.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(once.loss));
      } finally {
        oneEach = false;
      }
    });
  }

  it('symmetric InfoNCE: both halves and their db, over several chunks', () => {
    const rng = makeRng(22);
    for (const [B, D, o] of [
      [37, 9, { normalize: true, scale: 10, gradScale: true }],
      [300, 4, { reduction: 'sum', scale: 3, gradScale: true }],
    ] as [number, number, fl.InfoNCEEmbeddingsOptions][]) {
      const p = problem(rng, B, D, B);
      const opts: fl.InfoNCEEmbeddingsOptions = { ...o, symmetric: true, bias: biasFor(rng, B) };
      const [q, k] = tensors(p);
      if (B === 300) opts.memoryBudget = budgetForRows((memoryBudget) => fl.infoNCEFromEmbeddings(q, k, { ...opts, memoryBudget }), 40, 8 * B);
      const diag = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i), cols: Int32Array.from({ length: B }, (_, i) => i) };
      const once = fl.infoNCEFromEmbeddings(q, k, opts);
      compare('infoNCE', once, { ...p, pos: diag }, opts as Opts);
      // With accumulate only the gradient pass adds into gradBias (the statistics sweep adds nothing).
      const gb = Float32Array.from({ length: B }, () => rng.normal());
      const gb0 = gb.slice();
      const acc = fl.infoNCEFromEmbeddings(q, k, { ...opts, accumulate: true, gradQueries: fl.tensor(new Float32Array(B * D), [B, D]), gradKeys: fl.tensor(new Float32Array(B * D), [B, D]), gradBias: gb });
      expect(acc.gradBias).toBe(gb);
      // Chunk by chunk into what was there: fp32 rounding of a running sum, relative.
      for (let j = 0; j < B; j++) expect(Math.abs(gb[j] - (gb0[j] + once.gradBias![j]))).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(gb0[j]) + Math.abs(once.gradBias![j])));
    }
    const B = 5;
    const p = problem(rng, B, 3, B);
    const diag = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i), cols: Int32Array.from({ length: B }, (_, i) => i) };
    const b0 = Float64Array.from(biasFor(rng, B));
    const f = (b: Float64Array) => reference('infoNCE', p.Q, p.K, B, B, 3, diag, { symmetric: true, scale: 2, bias: b } as never).loss;
    expect(fdGradCheck(f, b0, reference('infoNCE', p.Q, p.K, B, B, 3, diag, { symmetric: true, scale: 2, bias: b0 } as never).dB).relErr).toBeLessThan(1e-7);
  });

  it('the column-tile plan adds b tile by tile and sums db over the tiles', () => {
    for (const name of ['decoupledSoftmax', 'binaryCrossEntropy', 'infoNCE', 'decoupledContrastive'] as const) {
      oneEach = name === 'decoupledContrastive';
      try {
        const [op] = OP[name];
        const rng = makeRng(405);
        const [B, D, N] = [13, 19, 3001];
        const p = problem(rng, B, D, N, 4);
        const [q, k] = tensors(p);
        const o: Opts = { normalize: true, scale: 10, gradScale: true, bias: biasFor(rng, N, 2) };
        if (name === 'decoupledContrastive') o.weighting = { sigma: 0.5 };
        const memoryBudget = tileBudget((m) => op(q, k, p.pos, { ...o, memoryBudget: m }), B, 400, D);
        compare(name, op(q, k, p.pos, { ...o, memoryBudget }), p, o);
      } finally {
        oneEach = false;
      }
    }
  });

  it('rejects a bias of the wrong length or not finite, and gradBias without bias or accumulate without gradBias', () => {
    const rng = makeRng(2);
    const p = problem(rng, 3, 4, 10);
    const [q, k] = tensors(p);
    const e = expectCode(() => fl.decoupledSoftmaxFromEmbeddings(q, k, p.pos, { bias: new Float32Array(9) }), 'ERR_SHAPE', /opts\.bias/);
    expect(e.message).toMatch(/10/);
    expectCode(() => fl.infoNCEFromEmbeddings(q, k, { bias: fl.tensor(new Float32Array(20), [2, 10]) }), 'ERR_SHAPE', /opts\.bias/);
    const nan = new Float32Array(10);
    nan[4] = Number.NaN;
    expectCode(() => fl.softTopKLossFromEmbeddings(q, k, p.pos, { bias: nan }), 'ERR_NON_FINITE', /opts\.bias\[4\]/);
    expectCode(() => fl.multiLabelSoftmaxFromEmbeddings(q, k, p.pos, { gradBias: new Float32Array(10) }), 'ERR_ARG', /opts\.gradBias/);
    const gq = fl.tensor(new Float32Array(12), [3, 4]);
    const gk = fl.tensor(new Float32Array(40), [10, 4]);
    expectCode(() => fl.binaryCrossEntropyFromEmbeddings(q, k, p.pos, { bias: new Float32Array(10), accumulate: true, gradQueries: gq, gradKeys: gk }), 'ERR_ARG', /opts\.gradBias/);
    expectCode(() => fl.decoupledContrastiveFromEmbeddings(q, k, { bias: new Float32Array(10), gradBias: new Float32Array(3) }), 'ERR_SHAPE', /opts\.gradBias/);
  });
});
