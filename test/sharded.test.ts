// Label-sharded losses (docs/MATH.md §5): R ∈ {1, 2, 3, 7} simulated ranks in one process, each with a
// block of columns, against the unsharded native call on the whole matrix: the loss, the row
// losses and each rank's gradient block to the docs/MATH.md §4 tolerances (fp32: 1e-5). Then the
// protocol's checks: shards that overlap or leave gaps, labels outside every shard, a broken
// all-reduce, options that differ across ranks.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectCode, expectCodeAsync, fl } from './helpers';
import { collective, columnBlock, offsetsOf, rng, runAll, unevenWidths } from './sharded-sim';

type Name = fl.ShardedLossName;
const RANKS = [1, 2, 3, 7];

const relErr = (a: number, b: number) => (a === b ? 0 : Math.abs(a - b) / Math.max(1e-30, Math.abs(b)));

function scores(B: number, N: number, seed: number, spread = 3): Float32Array {
  const r = rng(seed);
  const S = new Float32Array(B * N);
  for (let k = 0; k < S.length; k++) S[k] = (r() * 2 - 1) * spread;
  // A peaked row: one entry far above the rest (p − 1 must stay exact), and a flat one.
  if (B > 2) {
    S[1 * N + (N >> 1)] = 40;
    for (let j = 0; j < N; j++) S[2 * N + j] = 0.25;
  }
  return S;
}

/** Random positives (global columns): 0–4 per row, some rows with all positives in the first `clusterTo` columns. */
function positives(B: number, N: number, seed: number, { maxPer = 4, clusterTo = 0, weights = true } = {}): fl.Positives {
  const r = rng(seed);
  const rowPtr = new Int32Array(B + 1);
  const cols: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < B; i++) {
    const want = i === 0 ? 0 : 1 + Math.floor(r() * maxPer);
    const lim = clusterTo > 0 && i % 3 === 1 ? Math.min(clusterTo, N) : N;
    const set = new Set<number>();
    while (set.size < Math.min(want, lim - 1)) set.add(Math.floor(r() * lim));
    for (const c of set) {
      cols.push(c);
      w.push(0.5 + r());
    }
    rowPtr[i + 1] = cols.length;
  }
  return { rowPtr, cols: Int32Array.from(cols), weights: weights ? Float32Array.from(w) : undefined };
}

const unsharded: Record<Name, (S: fl.Tensor, t: any, o: any) => fl.LossResult & { lse?: Float32Array }> = {
  softmaxCrossEntropy: (S, t, o) => fl.softmaxCrossEntropy(S, t, o),
  multiLabelSoftmax: (S, t, o) => fl.multiLabelSoftmax(S, t, o),
  decoupledSoftmax: (S, t, o) => fl.decoupledSoftmax(S, t, o),
  binaryCrossEntropy: (S, t, o) => fl.binaryCrossEntropy(S, t, o),
  infoNCE: (S, t, o) => fl.infoNCE(S, { ...o, ...(t ? { positives: t } : {}) }),
  decoupledContrastive: (S, t, o) => fl.decoupledContrastive(S, { ...o, ...(t ? { positives: t } : {}) }),
  softTopKLoss: (S, t, o) => fl.softTopKLoss(S, t, o),
};

/**
 * Runs `name` sharded over `widths` and unsharded, and compares. `perRank(r, c0, c1)` gives rank
 * r's extra options (class weight slices).
 */
async function compare(name: Name, S: Float32Array, B: number, N: number, targets: unknown, opts: Record<string, unknown>, widths: number[], perRank?: (c0: number, c1: number) => Record<string, unknown>) {
  const off = offsetsOf(widths);
  const full = { ...opts, ...(perRank ? perRank(0, N) : {}) };
  const ref = unsharded[name](fl.tensor(S, [B, N]), targets, { ...full, gradScale: true, ...(name === 'softmaxCrossEntropy' ? { returnLse: true } : {}) });
  const refGrad = ref.grad!.data as Float32Array;
  const jobs = widths.map((w, r) =>
    fl.shardedLoss(name, columnBlock(S, B, N, off[r], off[r + 1]), targets as never, {
      ...opts,
      ...(perRank ? perRank(off[r], off[r + 1]) : {}),
      ...(name === 'softmaxCrossEntropy' ? { returnLse: true } : {}),
      gradScale: true,
      shape: [B, w],
      columnOffset: off[r],
      totalColumns: N,
    } as never),
  );
  const got = await runAll(jobs);
  const grad = new Float32Array(B * N);
  got.forEach((g, r) => {
    const w = widths[r];
    const block = g.grad!.data as Float32Array;
    for (let i = 0; i < B; i++) grad.set(block.subarray(i * w, (i + 1) * w), i * N + off[r]);
  });
  const ctx = `${name} R=${widths.length} widths=[${widths}] opts=${JSON.stringify(opts)}`;
  for (const g of got) {
    expect(relErr(g.loss, ref.loss), `${ctx}: loss ${g.loss} vs ${ref.loss}`).toBeLessThanOrEqual(1e-5);
    for (let i = 0; i < B; i++) expect(relErr(g.rowLoss[i], ref.rowLoss[i]), `${ctx}: row ${i} ${g.rowLoss[i]} vs ${ref.rowLoss[i]}`).toBeLessThanOrEqual(1e-5);
    expect(Math.abs(g.dScale! - ref.dScale!), `${ctx}: dScale ${g.dScale} vs ${ref.dScale}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.dScale!)));
    if (ref.lse) for (let i = 0; i < B; i++) expect(relErr(g.lse![i], ref.lse[i]), `${ctx}: lse ${i}`).toBeLessThanOrEqual(1e-5);
  }
  // Every rank's block and the whole gradient, relative to the reference's norm.
  let num = 0, den = 0;
  for (let k = 0; k < grad.length; k++) {
    num += (grad[k] - refGrad[k]) ** 2;
    den += refGrad[k] ** 2;
  }
  expect(Math.sqrt(num / Math.max(den, 1e-300)), `${ctx}: gradient`).toBeLessThanOrEqual(1e-5);
  for (let k = 0; k < grad.length; k++) expect(Math.abs(grad[k] - refGrad[k]), `${ctx}: grad[${Math.floor(k / N)}, ${k % N}]`).toBeLessThanOrEqual(1e-5 * Math.sqrt(den) + 1e-7);
  return got;
}

function splits(N: number, seed: number): number[][] {
  const r = rng(seed);
  return RANKS.flatMap((R) => (R === 1 ? [[N]] : [unevenWidths(N, R, r), unevenWidths(N, R, r, true)]));
}

describe('shardedLoss: exact against the unsharded call', () => {
  const B = 9, N = 61;
  const S = scores(B, N, 1);
  const pos = positives(B, N, 2, { clusterTo: 6 });
  const exclude = positives(B, N, 3, { maxPer: 2, weights: false });
  // Exclusions must not be positives.
  const excl = (() => {
    const rowPtr = new Int32Array(B + 1);
    const cols: number[] = [];
    for (let i = 0; i < B; i++) {
      const p = new Set(pos.cols.subarray(pos.rowPtr[i], pos.rowPtr[i + 1]));
      for (let e = exclude.rowPtr[i]; e < exclude.rowPtr[i + 1]; e++) if (!p.has(exclude.cols[e])) cols.push(exclude.cols[e]);
      rowPtr[i + 1] = cols.length;
    }
    return { rowPtr, cols: Int32Array.from(cols) };
  })();

  it('softmaxCrossEntropy: every option, labels in global indices, class-weight slices', async () => {
    const labels = Int32Array.from({ length: B }, (_, i) => (i * 17 + 3) % N);
    labels[4] = -100;
    labels[1] = N >> 1; // the peaked row's label at its maximum
    const w = Float32Array.from({ length: N }, (_, j) => 0.5 + ((j * 7) % 5) / 4);
    const optionSets: Record<string, unknown>[] = [
      {},
      { labelSmoothing: 0.1 },
      { labelSmoothing: 0.2, zLoss: 1e-3, reduction: 'sum' },
      { softcap: 5, scale: 2 },
      { reduction: 'none', gradOutput: Float32Array.from({ length: B }, (_, i) => i - 3), labelSmoothing: 0.1, softcap: 3 },
    ];
    for (const o of optionSets) for (const widths of splits(N, 7)) await compare('softmaxCrossEntropy', S, B, N, labels, o, widths);
    const labels7 = labels.map((y) => (y === -100 ? 7 : y));
    for (const widths of splits(N, 10)) await compare('softmaxCrossEntropy', S, B, N, labels7, { ignoreIndex: 7, zLoss: 0.01 }, widths);
    for (const o of [{}, { labelSmoothing: 0.15, zLoss: 1e-3 }, { labelSmoothing: 0.1, softcap: 4 }])
      for (const widths of splits(N, 8)) await compare('softmaxCrossEntropy', S, B, N, labels, o, widths, (c0, c1) => ({ classWeights: w.slice(c0, c1) }));
  });

  it('softmaxCrossEntropy: an all-ignored batch gives loss 0 and a zero gradient', async () => {
    const labels = new Int32Array(B).fill(-100);
    for (const widths of splits(N, 9)) {
      const got = await compare('softmaxCrossEntropy', S, B, N, labels, {}, widths);
      for (const g of got) {
        expect(g.loss).toBe(0);
        expect((g.grad!.data as Float32Array).every((v) => v === 0)).toBe(true);
      }
    }
  });

  for (const name of ['multiLabelSoftmax', 'decoupledSoftmax', 'binaryCrossEntropy', 'softTopKLoss'] as const) {
    it(`${name}: positives in one shard, in none of a shard, exclusions`, async () => {
      const optionSets: Record<string, unknown>[] = [{}, { scale: 2.5, reduction: 'sum' }, { exclude: excl }, { reduction: 'none', gradOutput: Float32Array.from({ length: B }, (_, i) => 1 + i / 3), exclude: excl }];
      if (name === 'softTopKLoss') optionSets.push({ k: 'numPositives', alpha: 1 }, { k: Int32Array.from({ length: B }, (_, i) => 1 + (i % 7)), alpha: 3, exclude: excl });
      for (const o of optionSets) for (const widths of splits(N, 11)) await compare(name, S, B, N, pos, o, widths);
    });
  }

  it('infoNCE one-way: diagonal and CSR positives', async () => {
    for (const o of [{}, { scale: 1 / 0.07 }, { exclude: excl }]) {
      for (const widths of splits(N, 12)) await compare('infoNCE', S, B, N, pos, o, widths);
    }
    const diagExcl = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i), cols: Int32Array.from({ length: B }, (_, i) => (i + 1) % N) };
    for (const o of [{}, { scale: 3, reduction: 'sum' }, { exclude: diagExcl }]) for (const widths of splits(N, 13)) await compare('infoNCE', S, B, N, undefined, o, widths);
  });

  it('infoNCE symmetric (CLIP): column softmaxes local, rows exchanged', async () => {
    const Bs = 13;
    const Ss = scores(Bs, Bs, 15);
    Ss[4 * Bs + 4] = 30; // a peaked pair: both halves' p − 1 near 0
    for (const o of [{ symmetric: true }, { symmetric: true, scale: 1 / 0.07 }, { symmetric: true, reduction: 'none', gradOutput: Float32Array.from({ length: Bs }, (_, i) => 0.5 + i / 7) }])
      for (const widths of splits(Bs, 16)) await compare('infoNCE', Ss, Bs, Bs, undefined, o, widths);
  });

  it('decoupledContrastive: DCL and DCLW, diagonal and CSR', async () => {
    const one = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => i), cols: Int32Array.from({ length: B }, (_, i) => (i * 13 + 5) % N) };
    for (const t of [undefined, one])
      for (const o of [{}, { weighting: {} }, { weighting: { sigma: 0.3 }, scale: 2 }, { reduction: 'sum' }])
        for (const widths of splits(N, 14)) await compare('decoupledContrastive', S, B, N, t, o, widths);
  });

  it('wide rows (N = 5003) and a saturated soft top-k row', async () => {
    const B2 = 4, N2 = 5003;
    const S2 = scores(B2, N2, 21, 6);
    for (let j = 0; j < 3; j++) S2[3 * N2 + j * 100] = 60; // three entries far above the rest
    const p2 = positives(B2, N2, 22);
    const labels = Int32Array.from([7, N2 >> 1, 4000, 300]);
    for (const R of [3, 7]) {
      const widths = unevenWidths(N2, R, rng(R));
      await compare('softmaxCrossEntropy', S2, B2, N2, labels, { labelSmoothing: 0.1 }, widths);
      await compare('decoupledSoftmax', S2, B2, N2, p2, {}, widths);
      await compare('softTopKLoss', S2, B2, N2, p2, { k: 3, alpha: 2 }, widths);
    }
  });
});

describe('shardedLoss: the protocol', () => {
  const B = 5, N = 20;
  const S = scores(B, N, 31);
  const labels = Int32Array.from([0, 5, 10, 15, 17]);
  const jobsFor = (widths: number[], offsets = offsetsOf(widths), opts: (r: number) => Record<string, unknown> = () => ({}), total = N) =>
    widths.map((w, r) => fl.shardedLoss('softmaxCrossEntropy', columnBlock(S, B, N, offsets[r], offsets[r] + w), labels, { shape: [B, w], columnOffset: offsets[r], totalColumns: total, ...opts(r) }));

  it('phases(): the same result when the caller schedules the rounds', async () => {
    const widths = [7, 0, 13];
    const byRun = await runAll(jobsFor(widths));
    const ar = collective(3);
    const byPhases = await Promise.all(
      jobsFor(widths).map(async (job, r) => {
        const steps = job.phases();
        let s = steps.next();
        while (!s.done) s = steps.next(await ar[r](s.value.buffer, s.value.op));
        return s.value;
      }),
    );
    for (let r = 0; r < 3; r++) {
      expect(byPhases[r].loss).toBe(byRun[r].loss);
      expect(byPhases[r].grad!.data).toEqual(byRun[r].grad!.data);
      expect(byPhases[r].exchange).toEqual({ rounds: 2, floats: 3 + B + 12 + 5 * B + 1 });
    }
  });

  it('opts.out: the gradient block goes into the caller\'s array, every entry written', async () => {
    const widths = [9, 11];
    const fresh = await runAll(jobsFor(widths));
    const outs = widths.map((w) => new Float32Array(B * w).fill(NaN));
    const reused = await runAll(jobsFor(widths, undefined, (r) => ({ out: outs[r] })));
    for (let r = 0; r < 2; r++) {
      expect(reused[r].grad!.data).toBe(outs[r]);
      expect(outs[r]).toEqual(fresh[r].grad!.data);
    }
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', S, labels, { shape: [B, N], columnOffset: 0, totalColumns: N, out: new Float32Array(3) }), 'ERR_SHAPE', /opts\.out/);
  });

  it('phases(): soft top-k\'s Newton rounds, step by step', async () => {
    const pos = { rowPtr: Int32Array.from([0, 2, 3, 3, 4, 5]), cols: Int32Array.from([1, 12, 7, 19, 0]) };
    const make = () => [[0, 5], [5, 5], [5, 20]].map(([a, b]) => fl.shardedLoss('softTopKLoss', columnBlock(S, B, N, a, b), pos, { shape: [B, b - a], columnOffset: a, totalColumns: N, k: 3, gradScale: true }));
    const byRun = await runAll(make());
    const ar = collective(3);
    const byPhases = await Promise.all(
      make().map(async (job, r) => {
        const steps = job.phases();
        let s = steps.next();
        while (!s.done) s = steps.next(await ar[r](s.value.buffer, s.value.op));
        return s.value;
      }),
    );
    expect(byRun[0].exchange.rounds).toBeGreaterThan(3);
    for (let r = 0; r < 3; r++) {
      expect(byPhases[r].rowLoss).toEqual(byRun[r].rowLoss);
      expect(byPhases[r].dScale).toBe(byRun[r].dScale);
      expect(byPhases[r].grad!.data).toEqual(byRun[r].grad!.data);
    }
  });

  it('a job runs once', async () => {
    const [job] = jobsFor([N]);
    await job.run(collective(1)[0]);
    await expectCodeAsync(job.run(collective(1)[0]), 'ERR_ARG', /already run/);
  });

  it('shards that overlap or leave gaps are refused on every rank', async () => {
    for (const [widths, offsets] of [
      [[10, 10], [0, 8]], // overlap, and a gap at the end
      [[10, 8], [0, 11]], // a gap
      [[10, 12], [0, 8]], // overlap, count too large
    ] as [number[], number[]][]) {
      const ar = collective(2);
      const res = await Promise.allSettled(jobsFor(widths, offsets, undefined, Math.max(...widths.map((w, r) => offsets[r] + w))).map((j, r) => j.run(ar[r])));
      for (const r of res) {
        expect(r.status).toBe('rejected');
        const e = (r as PromiseRejectedResult).reason;
        expect(e).toBeInstanceOf(fl.FusedLossError);
        expect(['ERR_ARG', 'ERR_LABEL_RANGE']).toContain(e.code);
      }
    }
    // The same count, one column moved: [0, 10) and [11, 21) of 21 miss column 10 and hold none twice… counted as 20 ≠ 21.
    // Overlap and gap of equal width: [0, 12) ∪ [10, 20) ∪ [22, 24) of 24: the count is 24, the checksum differs.
    const S3 = scores(B, 24, 32);
    const lab = Int32Array.from([0, 1, 2, 3, 4]);
    const ar = collective(3);
    const parts: [number, number][] = [[0, 12], [10, 20], [22, 24]];
    const res = await Promise.allSettled(
      parts.map(([a, b], r) => fl.shardedLoss('softmaxCrossEntropy', columnBlock(S3, B, 24, a, b), lab, { shape: [B, b - a], columnOffset: a, totalColumns: 24 }).run(ar[r])),
    );
    for (const r of res) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason.code).toBe('ERR_ARG');
      expect((r as PromiseRejectedResult).reason.message).toMatch(/do not tile/);
    }
  });

  it('a label or positive outside every shard', async () => {
    // Two shards of [0, 20) with a gap at [8, 10): the label 9 is in no shard (and the count is short).
    const ar = collective(2);
    const lab = Int32Array.from([9, 0, 1, 2, 3]);
    const res = await Promise.allSettled(
      [[0, 8], [10, 20]].map(([a, b], r) => fl.shardedLoss('softmaxCrossEntropy', columnBlock(S, B, N, a, b), lab, { shape: [B, b - a], columnOffset: a, totalColumns: N }).run(ar[r])),
    );
    for (const r of res) expect((r as PromiseRejectedResult).reason.code).toMatch(/ERR_LABEL_RANGE|ERR_ARG/);
    // A positive in the gap between two shards: every rank refuses.
    {
      const ar = collective(2);
      const pos = { rowPtr: Int32Array.from([0, 1, 1, 2, 2, 2]), cols: Int32Array.from([8, 15]) };
      const res = await Promise.allSettled(
        [[0, 8], [10, 20]].map(([a, b], r) => fl.shardedLoss('decoupledSoftmax', columnBlock(S, B, N, a, b), pos, { shape: [B, b - a], columnOffset: a, totalColumns: N }).run(ar[r])),
      );
      for (const r of res) expect((r as PromiseRejectedResult).reason.code).toMatch(/ERR_CSR|ERR_ARG/);
    }
    // Positives and labels outside [0, N) are argument errors before any exchange.
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', S, Int32Array.from([0, 1, 2, 3, N]), { shape: [B, N], columnOffset: 0, totalColumns: N }), 'ERR_LABEL_RANGE', /labels\[4\]/);
    expectCode(() => fl.shardedLoss('decoupledSoftmax', S, { rowPtr: Int32Array.from([0, 1, 1, 1, 1, 1]), cols: Int32Array.from([N]) }, { shape: [B, N], columnOffset: 0, totalColumns: N }), 'ERR_CSR', /positives\.cols\[0\]/);
  });

  it('an all-reduce that returns the wrong length, a non-finite value or no Float32Array', async () => {
    const widths = [8, 12];
    for (const [tamper, code, re] of [
      [(_r: number, _k: number, out: Float32Array) => out.subarray(1), 'ERR_SHAPE', /length/],
      [(_r: number, k: number, out: Float32Array) => (k === 2 ? (out.fill(NaN, 20, 21), out) : out), 'ERR_NON_FINITE', /allReduce: returned NaN/],
      [(_r: number, _k: number, out: Float32Array) => (out.fill(Infinity, 3, 4), out), 'ERR_NON_FINITE', /allReduce/],
      [(_r: number, _k: number, out: Float32Array) => Array.from(out) as unknown as Float32Array, 'ERR_TYPE', /Float32Array/],
    ] as const) {
      const ar = collective(2, tamper as never);
      const res = await Promise.allSettled(jobsFor(widths).map((j, r) => j.run(ar[r])));
      const reason = (res[0] as PromiseRejectedResult).reason;
      expect(reason.code, reason.message).toBe(code);
      expect(reason.message).toMatch(re);
    }
  });

  it('options or targets that differ across ranks', async () => {
    for (const opts of [(r: number) => ({ labelSmoothing: r * 0.1 }), (r: number) => ({ scale: 1 + r }), (r: number) => ({ reduction: r === 0 ? 'sum' : 'mean' })]) {
      const ar = collective(2);
      const res = await Promise.allSettled(jobsFor([10, 10], undefined, opts).map((j, r) => j.run(ar[r])));
      expect((res[0] as PromiseRejectedResult).reason.code).toBe('ERR_ARG');
      expect((res[0] as PromiseRejectedResult).reason.message).toMatch(/disagree/);
    }
    // Labels that differ across ranks.
    {
      const ar = collective(2);
      const res = await Promise.allSettled(
        [0, 10].map((a, r) => fl.shardedLoss('softmaxCrossEntropy', columnBlock(S, B, N, a, a + 10), r === 0 ? labels : labels.map((y) => (y + 1) % N), { shape: [B, 10], columnOffset: a, totalColumns: N }).run(ar[r])),
      );
      for (const r of res) expect((r as PromiseRejectedResult).reason.message).toMatch(/disagree/);
    }
    // BCE starts with a sum round: the fingerprint rides there.
    const pos = { rowPtr: Int32Array.from([0, 1, 1, 2, 2, 2]), cols: Int32Array.from([3, 15]) };
    const ar = collective(3);
    const res = await Promise.allSettled(
      [0, 7, 14].map((a, r) =>
        fl.shardedLoss('binaryCrossEntropy', columnBlock(S, B, N, a, Math.min(a + 7, N)), pos, { shape: [B, Math.min(a + 7, N) - a], columnOffset: a, totalColumns: N, scale: r === 1 ? 2 : 1 }).run(ar[r]),
      ),
    );
    for (const r of res) expect((r as PromiseRejectedResult).reason.message).toMatch(/disagree/);
  });

  it('NaN scores on one rank: every rank throws, that one names the entry', async () => {
    const widths = [8, 12];
    const jobs = widths.map((w, r) => {
      const block = columnBlock(S, B, N, r * 8, r * 8 + w);
      if (r === 1) block[2 * w + 3] = NaN;
      return fl.shardedLoss('decoupledSoftmax', block, { rowPtr: Int32Array.from([0, 1, 1, 1, 1, 1]), cols: Int32Array.from([2]) }, { shape: [B, w], columnOffset: r * 8, totalColumns: N });
    });
    const ar = collective(2);
    const res = await Promise.allSettled(jobs.map((j, r) => j.run(ar[r])));
    const [e0, e1] = res.map((r) => (r as PromiseRejectedResult).reason);
    expect(e0.code).toBe('ERR_NON_FINITE');
    expect(e0.message).toMatch(/another rank/);
    expect(e1.code).toBe('ERR_NON_FINITE');
    expect(e1.message).toMatch(/localScores\[2, 3\] \(global column 11\)/);
  });

  it('soft top-k: k checked against the row\'s entries over all shards, on every rank', async () => {
    const pos = { rowPtr: Int32Array.from([0, 1, 1, 1, 1, 2]), cols: Int32Array.from([3, 12]) };
    const run = (k: number | Int32Array) => {
      const ar = collective(2);
      return Promise.allSettled([[0, 6], [6, 20]].map(([a, b], r) => fl.shardedLoss('softTopKLoss', columnBlock(S, B, N, a, b), pos, { shape: [B, b - a], columnOffset: a, totalColumns: N, k }).run(ar[r])));
    };
    for (const r of await run(N)) expect((r as PromiseRejectedResult).reason.code).toBe('ERR_K_RANGE');
    for (const r of await run(Int32Array.from([3, 0, 0, 0, 20]))) expect((r as PromiseRejectedResult).reason.message).toMatch(/opts\.k\[4\]/);
    for (const r of await run(N - 1)) expect(r.status).toBe('fulfilled'); // k < N_i = N over both shards, though above each shard's width
  });

  it('bad arguments: unknown keys with a suggestion, offsets, names', () => {
    const base = { shape: [B, N], columnOffset: 0, totalColumns: N };
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', S, labels, { ...base, labelSmooting: 0.1 } as never), 'ERR_ARG', /did you mean 'labelSmoothing'/);
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', S, labels, { ...base, columnOffset: 1 }), 'ERR_ARG', /columnOffset/);
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', S, labels, { ...base, totalColumns: 0 }), 'ERR_ARG', /totalColumns/);
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', S, labels, { shape: [B, N] } as never), 'ERR_ARG', /totalColumns/);
    expectCode(() => fl.shardedLoss('nope' as never, S, labels, base), 'ERR_ARG', /one of/);
    expectCode(() => fl.shardedLoss('softmaxCrossEntropy', S, labels, { ...base, classWeights: new Float32Array(N + 1) }), 'ERR_SHAPE', /classWeights/);
    expectCode(() => fl.shardedLoss('decoupledContrastive', S, { rowPtr: Int32Array.from([0, 2, 2, 2, 2, 2]), cols: Int32Array.from([1, 2]) }, base), 'ERR_CSR', /exactly one/);
    expectCode(() => fl.shardedLoss('softTopKLoss', S, { rowPtr: new Int32Array(B + 1), cols: new Int32Array(0) }, { ...base, k: 1.5 }), 'ERR_ARG', /integer/);
  });
});

describe('shardedLoss: −Infinity entries (masked columns) as the unsharded call', () => {
  const B = 6, N = 23;
  const S = scores(B, N, 41);
  // Row 0 masked in a stretch spanning shards, row 3 entirely masked but for two entries, row 5 every entry out.
  for (let j = 4; j < 15; j++) S[j] = -Infinity;
  for (let j = 0; j < N; j++) if (j !== 2 && j !== 20) S[3 * N + j] = -Infinity;
  for (let j = 0; j < N; j++) S[5 * N + j] = -Infinity;
  const pos = { rowPtr: Int32Array.from([0, 2, 3, 4, 6, 7, 7]), cols: Int32Array.from([1, 16, 5, 9, 2, 20, 11]) };
  it('every loss, R = 2, 3, 7', async () => {
    for (const R of [2, 3, 7]) {
      const widths = unevenWidths(N, R, rng(100 + R), true);
      await compare('softmaxCrossEntropy', S, B, N, Int32Array.from([0, 1, 2, 20, 4, 3]), { labelSmoothing: 0.1 }, widths);
      await compare('softmaxCrossEntropy', S, B, N, Int32Array.from([5, 1, 2, 20, 4, -100]), { zLoss: 0.01 }, widths); // a label at −∞
      for (const name of ['multiLabelSoftmax', 'decoupledSoftmax', 'binaryCrossEntropy', 'infoNCE'] as const) await compare(name, S, B, N, pos, {}, widths);
      await compare('softTopKLoss', S, B, N, pos, { k: 1 }, widths);
    }
  });
});

describe('examples/sharded', () => {
  it('2 child processes train to the unsharded run\'s P@1 (a small run)', () => {
    const out = execFileSync(process.execPath, ['examples/sharded/train.mjs', '--ranks', '2', '--epochs', '1', '--labels', '200', '--docs', '1200'], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8', timeout: 120_000 });
    expect(out).toMatch(/sharded \(2 processes, labels per rank 100, 100\)/);
    expect(out).toMatch(/P@1 difference: 0\.00\d\d \(within 0\.01/);
  });
});
