// The label-sharded losses' key-embedding form (docs/MATH.md §5, the section-6 form): each of R ∈
// {1, 2, 3, 7} simulated ranks holds keys K_r (N_r × D) and the gathered queries Q, against the
// unsharded <loss>FromEmbeddings (linearCrossEntropy for softmaxCrossEntropy) on all the keys:
// loss, row losses, dScale, dK_r per rank and Σ_r dQ_r to the §4 tolerances (fp32: 1e-5), with
// chunks of rows smaller than the batch and the whole block at once. Then the score-block form's
// gradDtype and inplace, and the errors.
import { describe, expect, it } from 'vitest';
import { expectCode, fl, relL2 } from './helpers';
import { collective, offsetsOf, rng, runAll, unevenWidths } from './sharded-sim';

type Name = fl.ShardedLossName;
const RANKS = [1, 2, 3, 7];
const relErr = (a: number, b: number) => (a === b ? 0 : Math.abs(a - b) / Math.max(1e-30, Math.abs(b)));

function matrix(rows: number, cols: number, seed: number, spread = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: rows * cols }, () => (r() * 2 - 1) * spread);
}

/** Random positives (global columns): 1–4 per row (row 0 none), rows i % 3 = 1 all in the first `clusterTo` columns. */
function positives(B: number, N: number, seed: number, { maxPer = 4, clusterTo = 0, weights = true, onePerRow = false } = {}): fl.Positives {
  const r = rng(seed);
  const rowPtr = new Int32Array(B + 1);
  const cols: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < B; i++) {
    const want = onePerRow ? 1 : i === 0 ? 0 : 1 + Math.floor(r() * maxPer);
    const lim = clusterTo > 0 && i % 3 === 1 ? Math.min(clusterTo, N) : N;
    const set = new Set<number>();
    while (set.size < want) set.add(Math.floor(r() * lim));
    for (const c of [...set].sort((a, b) => a - b)) {
      cols.push(c);
      w.push(0.5 + r());
    }
    rowPtr[i + 1] = cols.length;
  }
  return { rowPtr, cols: Int32Array.from(cols), weights: weights ? Float32Array.from(w) : undefined };
}

/** The unsharded call on all the keys, with gradScale. */
function unsharded(name: Name, Q: fl.Tensor, K: fl.Tensor, t: any, o: Record<string, any>) {
  const opts = { ...o, gradScale: true };
  switch (name) {
    case 'softmaxCrossEntropy': {
      const r = fl.linearCrossEntropy(Q, K, t, opts);
      return { ...r, gradQueries: r.gradHidden!, gradKeys: r.gradWeight!, gradBias: r.gradBias };
    }
    case 'multiLabelSoftmax':
      return fl.multiLabelSoftmaxFromEmbeddings(Q, K, t, opts);
    case 'decoupledSoftmax':
      return fl.decoupledSoftmaxFromEmbeddings(Q, K, t, opts);
    case 'binaryCrossEntropy':
      return fl.binaryCrossEntropyFromEmbeddings(Q, K, t, opts);
    case 'infoNCE':
      return fl.infoNCEFromEmbeddings(Q, K, { ...opts, ...(t ? { positives: t } : {}) });
    case 'decoupledContrastive':
      return fl.decoupledContrastiveFromEmbeddings(Q, K, { ...opts, ...(t ? { positives: t } : {}) });
    case 'softTopKLoss':
      return fl.softTopKLossFromEmbeddings(Q, K, t, opts);
  }
}

const keysOf = (K: Float32Array, D: number, j0: number, j1: number) => fl.tensor(K.slice(j0 * D, j1 * D), [j1 - j0, D]);

/** Runs `name` sharded over `widths` (key-embedding form) and unsharded, and compares. */
async function compare(name: Name, Qd: Float32Array, Kd: Float32Array, B: number, N: number, D: number, targets: unknown, opts: Record<string, any>, widths: number[], budgetRows?: number) {
  const off = offsetsOf(widths);
  const Q = fl.tensor(Qd, [B, D]);
  const { bias, ...rest } = opts;
  const ref = unsharded(name, Q, fl.tensor(Kd, [N, D]), targets, opts);
  const maxW = Math.max(...widths);
  const jobs = widths.map((w, r) =>
    fl.shardedLoss(name, { queries: Q, keys: keysOf(Kd, D, off[r], off[r + 1]) }, targets as never, {
      ...rest,
      ...(bias ? { bias: bias.slice(off[r], off[r + 1]) } : {}),
      ...(budgetRows ? { memoryBudget: 8 * Math.max(maxW, 1) * budgetRows } : {}),
      gradScale: true,
      columnOffset: off[r],
      totalColumns: N,
    } as never),
  );
  const got = await runAll(jobs);
  const ctx = `${name} R=${widths.length} widths=[${widths}] budgetRows=${budgetRows} opts=${JSON.stringify(rest)}`;
  for (const g of got) {
    expect(relErr(g.loss, ref.loss), `${ctx}: loss ${g.loss} vs ${ref.loss}`).toBeLessThanOrEqual(1e-5);
    for (let i = 0; i < B; i++) expect(relErr(g.rowLoss[i], ref.rowLoss[i]), `${ctx}: row ${i} ${g.rowLoss[i]} vs ${ref.rowLoss[i]}`).toBeLessThanOrEqual(1e-5);
    expect(Math.abs(g.dScale! - ref.dScale!), `${ctx}: dScale ${g.dScale} vs ${ref.dScale}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.dScale!)));
  }
  if (opts.grad === false) {
    for (const g of got) expect(g.gradQueries ?? g.gradKeys).toBeUndefined();
    return got;
  }
  // dQ: the sum of the ranks' parts (the caller's all-reduce); dK and db: the ranks' blocks side by side.
  const dQ = new Float64Array(B * D);
  const dK = new Float32Array(N * D);
  const db = new Float32Array(N);
  got.forEach((g, r) => {
    const q = fl.toFloat32(g.gradQueries!.data, g.gradQueries!.dtype);
    for (let k = 0; k < q.length; k++) dQ[k] += q[k];
    dK.set(g.gradKeys!.data as Float32Array, off[r] * D);
    if (bias) db.set(g.gradBias!, off[r]);
    expect(g.gradKeys!.shape).toEqual([widths[r], D]);
  });
  const refQ = fl.toFloat32(ref.gradQueries!.data, ref.gradQueries!.dtype);
  expect(relL2(dQ, refQ), `${ctx}: gradQueries`).toBeLessThanOrEqual(1e-5);
  expect(relL2(dK, ref.gradKeys!.data as Float32Array), `${ctx}: gradKeys`).toBeLessThanOrEqual(1e-5);
  if (bias) expect(relL2(db, ref.gradBias!), `${ctx}: gradBias`).toBeLessThanOrEqual(1e-5);
  return got;
}

function splits(N: number, seed: number): number[][] {
  const r = rng(seed);
  return RANKS.flatMap((R) => (R === 1 ? [[N]] : [unevenWidths(N, R, r), unevenWidths(N, R, r, true)]));
}

describe('shardedLoss key-embedding form: exact against <loss>FromEmbeddings', () => {
  const B = 9, N = 61, D = 7;
  const Q = matrix(B, D, 1, 1.5);
  const K = matrix(N, D, 2, 1.5);
  const pos = positives(B, N, 3, { clusterTo: 6 });
  const widthSets = splits(N, 4);
  // Chunks of 2 rows (5 chunks of the 9), and the whole block computed once.
  const budgets = [2, undefined];

  it('softmaxCrossEntropy: labels, bias slices, smoothing, z-loss, softcap, class weights, ignored rows', async () => {
    const labels = Int32Array.from({ length: B }, (_, i) => (i * 17 + 3) % N);
    labels[4] = -100;
    const bias = matrix(1, N, 5, 0.5);
    const w = Float32Array.from({ length: N }, (_, j) => 0.5 + ((j * 7) % 5) / 4);
    for (const o of [{ bias }, { labelSmoothing: 0.1, zLoss: 1e-3, bias, scale: 2 }, { softcap: 3, reduction: 'sum' }])
      for (const widths of widthSets) for (const b of budgets) await compare('softmaxCrossEntropy', Q, K, B, N, D, labels, o, widths, b);
    // Class weights are per rank (slices): compare one split by hand.
    const widths = [20, 0, 41];
    const off = offsetsOf(widths);
    const ref = fl.linearCrossEntropy(fl.tensor(Q, [B, D]), fl.tensor(K, [N, D]), labels, { classWeights: w, labelSmoothing: 0.2 });
    const got = await runAll(
      widths.map((_, r) =>
        fl.shardedLoss('softmaxCrossEntropy', { queries: fl.tensor(Q, [B, D]), keys: keysOf(K, D, off[r], off[r + 1]) }, labels, { classWeights: w.slice(off[r], off[r + 1]), labelSmoothing: 0.2, columnOffset: off[r], totalColumns: N, memoryBudget: 8 * 41 * 3 }),
      ),
    );
    expect(relErr(got[0].loss, ref.loss)).toBeLessThanOrEqual(1e-5);
    const dK = new Float32Array(N * D);
    got.forEach((g, r) => dK.set(g.gradKeys!.data as Float32Array, off[r] * D));
    expect(relL2(dK, ref.gradWeight!.data as Float32Array)).toBeLessThanOrEqual(1e-5);
  });

  it('softmaxCrossEntropy: an all-ignored batch gives loss 0 and zero gradients', async () => {
    const labels = new Int32Array(B).fill(-100);
    const got = await compare('softmaxCrossEntropy', Q, K, B, N, D, labels, {}, [30, 31], 2);
    for (const g of got) {
      expect(g.loss).toBe(0);
      expect((g.gradKeys!.data as Float32Array).every((v) => v === 0)).toBe(true);
    }
  });

  for (const name of ['multiLabelSoftmax', 'decoupledSoftmax', 'binaryCrossEntropy', 'softTopKLoss'] as const)
    it(`${name}: positives in one shard and in none of a shard, exclusions, normalize`, async () => {
      // Two exclusions a row that are not its positives, one of them in the first shard's columns.
      const cols: number[] = [];
      const rowPtr = new Int32Array(B + 1);
      for (let i = 0; i < B; i++) {
        const p = new Set(pos.cols.subarray(pos.rowPtr[i], pos.rowPtr[i + 1]));
        for (const c of [(i * 5) % 20, 40 + i]) if (!p.has(c)) cols.push(c);
        rowPtr[i + 1] = cols.length;
      }
      const excl = { rowPtr, cols: Int32Array.from(cols) };
      const extra = name === 'softTopKLoss' ? { k: 3 } : {};
      for (const o of [{ ...extra }, { ...extra, normalize: true, scale: 4, exclude: excl }, { ...extra, reduction: 'none', gradOutput: Float32Array.from({ length: B }, (_, i) => i - 2) }])
        for (const widths of widthSets) for (const b of budgets) await compare(name, Q, K, B, N, D, pos, o, widths, b);
    });

  it('infoNCE: one-way (diagonal and CSR) and CLIP symmetric with column statistics across ranks and chunks', async () => {
    for (const o of [{}, { normalize: true, scale: 10 }]) for (const widths of widthSets) for (const b of budgets) await compare('infoNCE', Q, K, B, N, D, undefined, o, widths, b);
    for (const widths of widthSets) await compare('infoNCE', Q, K, B, N, D, pos, { scale: 2 }, widths, 2);
    const Ks = K.slice(0, B * D);
    for (const widths of splits(B, 8)) for (const b of budgets) await compare('infoNCE', Q, Ks, B, B, D, undefined, { symmetric: true, normalize: true, scale: 5 }, widths, b);
  });

  it('decoupledContrastive: DCL and DCLW, diagonal and CSR', async () => {
    const one = positives(B, N, 9, { onePerRow: true, weights: false, clusterTo: 6 });
    for (const o of [{}, { weighting: { sigma: 0.5 }, normalize: true, scale: 3 }])
      for (const widths of widthSets) for (const b of budgets) {
        await compare('decoupledContrastive', Q, K, B, N, D, undefined, o, widths, b);
        await compare('decoupledContrastive', Q, K, B, N, D, one, o, widths, b);
      }
  });

  it('grad: false, accumulate into given buffers, gradDtype float32 for bfloat16 inputs', async () => {
    await compare('decoupledSoftmax', Q, K, B, N, D, pos, { grad: false }, [10, 51], 2);
    const widths = [25, 36];
    const off = offsetsOf(widths);
    const run = (o: (r: number) => Record<string, unknown>) =>
      runAll(widths.map((_, r) => fl.shardedLoss('multiLabelSoftmax', { queries: fl.tensor(Q, [B, D]), keys: keysOf(K, D, off[r], off[r + 1]) }, pos, { columnOffset: off[r], totalColumns: N, ...o(r) })));
    const once = await run(() => ({}));
    const gq = widths.map(() => fl.tensor(new Float32Array(B * D).fill(1), [B, D]));
    const gk = widths.map((w) => fl.tensor(new Float32Array(w * D).fill(-2), [w, D]));
    const acc = await run((r) => ({ accumulate: true, gradQueries: gq[r], gradKeys: gk[r] }));
    acc.forEach((g, r) => {
      expect(g.gradQueries).toBe(gq[r]);
      const a = g.gradQueries!.data as Float32Array, b = once[r].gradQueries!.data as Float32Array;
      for (let k = 0; k < a.length; k++) expect(a[k]).toBeCloseTo(b[k] + 1, 6);
      const ka = g.gradKeys!.data as Float32Array, kb = once[r].gradKeys!.data as Float32Array;
      for (let k = 0; k < ka.length; k++) expect(ka[k]).toBeCloseTo(kb[k] - 2, 6);
    });
    // bfloat16 embeddings: the same math as the unsharded bfloat16 call (gradQueries in float32).
    const Qb = fl.tensor(fl.float32ToBFloat16(Q), [B, D], { dtype: 'bfloat16' });
    const Kb = fl.float32ToBFloat16(K);
    const ref = fl.decoupledSoftmaxFromEmbeddings(Qb, fl.tensor(Kb, [N, D], { dtype: 'bfloat16' }), pos, { gradDtype: 'float32' });
    const got = await runAll(
      widths.map((w, r) => fl.shardedLoss('decoupledSoftmax', { queries: Qb, keys: fl.tensor(Kb.slice(off[r] * D, off[r + 1] * D), [w, D], { dtype: 'bfloat16' }) }, pos, { columnOffset: off[r], totalColumns: N, gradDtype: 'float32', memoryBudget: 8 * 36 * 4 })),
    );
    expect(relErr(got[0].loss, ref.loss)).toBeLessThanOrEqual(1e-5);
    const dQ = new Float64Array(B * D);
    for (const g of got) {
      expect(g.gradQueries!.dtype).toBe('float32');
      (g.gradQueries!.data as Float32Array).forEach((v, k) => (dQ[k] += v));
    }
    expect(relL2(dQ, ref.gradQueries!.data as Float32Array)).toBeLessThanOrEqual(1e-5);
  });

  it('bad inputs: FusedLossError naming the argument', () => {
    const q = fl.tensor(Q, [B, D]);
    const k = keysOf(K, D, 0, 30);
    const base = { columnOffset: 0, totalColumns: N };
    expectCode(() => fl.shardedLoss('decoupledSoftmax', { queries: q, keys: fl.tensor(K.slice(0, 30 * 5), [30, 5]) }, pos, base), 'ERR_SHAPE', /localScores\.keys\.shape/, /\[N_r, 7\]/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', { queries: q, keys: fl.tensor(fl.float32ToFloat16(K.slice(0, 30 * D)), [30, D], { dtype: 'float16' }) }, pos, base), 'ERR_DTYPE', /localScores\.keys\.dtype/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', { queries: q, keys: k }, pos, { ...base, memoryBudget: 100 }), 'ERR_ARG', /opts\.memoryBudget/, /at least 240 bytes/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', { queries: q, keys: k }, pos, { ...base, out: new Float32Array(B * 30) }), 'ERR_ARG', /opts\.out/, /key-embedding form/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', new Float32Array(B * 30), pos, { ...base, shape: [B, 30], normalize: true }), 'ERR_ARG', /opts\.normalize/, /key-embedding form/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', { queries: q, keys: k }, pos, { ...base, accumulate: true }), 'ERR_ARG', /opts\.gradQueries/, /accumulate/);
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', { queries: q, keys: k }, new Int32Array(B), { ...base, gradBias: new Float32Array(30) }), 'ERR_ARG', /opts\.gradBias/, /opts\.bias/);
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', { queries: q, keys: k }, new Int32Array(B), { ...base, bias: new Float32Array(29) }), 'ERR_SHAPE', /opts\.bias/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', { queries: q, keys: k }, pos, { ...base, gradQueries: fl.tensor(new Float32Array(B * D), [B, D]), gradDtype: 'float16' }), 'ERR_DTYPE', /opts\.gradDtype/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', { queries: q, keys: k }, pos, { ...base, gradKeys: fl.tensor(new Float32Array(31 * D), [31, D]) }), 'ERR_SHAPE', /opts\.gradKeys/, /\[30, 7\]/);
  });

  it('a NaN key fails on every rank, the rank holding it naming the entry', async () => {
    const Kn = K.slice();
    Kn[45 * D + 2] = Number.NaN;
    const widths = [30, 31];
    const off = offsetsOf(widths);
    const jobs = widths.map((_, r) => fl.shardedLoss('decoupledSoftmax', { queries: fl.tensor(Q, [B, D]), keys: keysOf(Kn, D, off[r], off[r + 1]) }, pos, { columnOffset: off[r], totalColumns: N, memoryBudget: 8 * 31 * 2 }));
    const ar = collective(2);
    const settled = await Promise.allSettled(jobs.map((j, r) => j.run(ar[r])));
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      expect((s as PromiseRejectedResult).reason.code).toBe('ERR_NON_FINITE');
    }
    expect((settled[1] as PromiseRejectedResult).reason.message).toMatch(/query \d+ and key 15 \(global column 45\)/);
  });
});

describe('shardedLoss score-block form: gradDtype and inplace', () => {
  const B = 7, N = 40;
  const S = matrix(B, N, 11, 3);
  const pos = positives(B, N, 12);
  const widths = [13, 0, 27];
  const off = offsetsOf(widths);
  const block = (src: Float32Array, r: number) => {
    const w = widths[r];
    const out = new Float32Array(B * w);
    for (let i = 0; i < B; i++) out.set(src.subarray(i * N + off[r], i * N + off[r + 1]), i * w);
    return out;
  };

  it('bfloat16 blocks: the gradient in bfloat16 (default) or float32, equal to the unsharded call', async () => {
    const Sb = fl.float32ToBFloat16(S);
    const ref = fl.decoupledSoftmax(fl.tensor(Sb, [B, N], { dtype: 'bfloat16' }), pos, { gradDtype: 'float32' });
    const refHalf = fl.decoupledSoftmax(fl.tensor(Sb, [B, N], { dtype: 'bfloat16' }), pos);
    expect(refHalf.grad!.dtype).toBe('bfloat16');
    for (const gradDtype of [undefined, 'float32'] as const) {
      const got = await runAll(widths.map((w, r) => fl.shardedLoss('decoupledSoftmax', fl.float32ToBFloat16(block(fl.toFloat32(Sb, 'bfloat16'), r)), pos, { shape: [B, w], dtype: 'bfloat16', columnOffset: off[r], totalColumns: N, gradDtype })));
      const full = new Float32Array(B * N);
      got.forEach((g, r) => {
        expect(g.grad!.dtype).toBe(gradDtype ?? 'bfloat16');
        const v = fl.toFloat32(g.grad!.data, g.grad!.dtype);
        for (let i = 0; i < B; i++) full.set(v.subarray(i * widths[r], (i + 1) * widths[r]), i * N + off[r]);
      });
      expect(relErr(got[0].loss, ref.loss)).toBeLessThanOrEqual(1e-5);
      const want = gradDtype ? (ref.grad!.data as Float32Array) : fl.toFloat32(refHalf.grad!.data, 'bfloat16');
      expect(relL2(full, want)).toBeLessThanOrEqual(gradDtype ? 1e-5 : 4e-3);
    }
  });

  it('inplace: the gradient over the local scores (float32 and float16), out of gradDtype', async () => {
    const ref = fl.multiLabelSoftmax(fl.tensor(S, [B, N]), pos);
    const blocks = widths.map((_, r) => block(S, r));
    const got = await runAll(blocks.map((b, r) => fl.shardedLoss('multiLabelSoftmax', fl.tensor(b, [B, widths[r]]), pos, { columnOffset: off[r], totalColumns: N, inplace: true })));
    const full = new Float32Array(B * N);
    got.forEach((g, r) => {
      expect(g.grad!.data).toBe(blocks[r]);
      for (let i = 0; i < B; i++) full.set(blocks[r].subarray(i * widths[r], (i + 1) * widths[r]), i * N + off[r]);
    });
    expect(relL2(full, ref.grad!.data as Float32Array)).toBeLessThanOrEqual(1e-5);
    const h = widths.map((_, r) => fl.float32ToFloat16(block(S, r)));
    const outs = widths.map((w) => new Float32Array(B * w));
    const gh = await runAll(h.map((b, r) => fl.shardedLoss('multiLabelSoftmax', b, pos, { shape: [B, widths[r]], dtype: 'float16', columnOffset: off[r], totalColumns: N, gradDtype: 'float32', out: outs[r] })));
    gh.forEach((g, r) => expect(g.grad!.data).toBe(outs[r]));
    const gi = await runAll(h.map((b, r) => fl.shardedLoss('multiLabelSoftmax', b, pos, { shape: [B, widths[r]], dtype: 'float16', columnOffset: off[r], totalColumns: N, inplace: true })));
    gi.forEach((g, r) => {
      expect(g.grad!.data).toBe(h[r]);
      const a = fl.toFloat32(h[r], 'float16');
      for (let k = 0; k < a.length; k++) expect(Math.abs(a[k] - outs[r][k])).toBeLessThanOrEqual(1e-3 * Math.abs(outs[r][k]) + 1e-7);
    });
  });

  it('bad gradient options', () => {
    const b = block(S, 0);
    const base = { shape: [B, 13], columnOffset: 0, totalColumns: N };
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', b, pos, { ...base, inplace: true, grad: false }), 'ERR_ARG', /opts\.inplace/);
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', fl.float32ToFloat16(b), pos, { ...base, dtype: 'float16', inplace: true, gradDtype: 'float32' }), 'ERR_ARG', /opts\.inplace/);
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', b, pos, { ...base, gradDtype: 'bfloat16' }), 'ERR_DTYPE', /opts\.gradDtype/);
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', fl.float32ToFloat16(b), pos, { ...base, dtype: 'float16', out: new Float32Array(B * 13) }), 'ERR_DTYPE', /opts\.out/);
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', b, pos, { ...base, out: new Float32Array(5) }), 'ERR_SHAPE', /opts\.out/);
  });
});
