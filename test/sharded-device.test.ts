// shardedLoss on device blocks, the TS side, without a GPU: the addon's device buffers are
// simulated (a fake DeviceBufferHandle over host memory), and the sharded block ops, given such
// a buffer, run the CPU op on its widened contents and write the gradient back rounded to its
// dtype, as cuda/sharded.cu does. So every loss's device path (what lib/sharded.ts sends, in
// which dtype, the gathers of picked entries, the scatters of the loss's own entries, soft
// top-k's read-back of its positives' dense values, binaryCrossEntropy's NaN search) is checked
// against the same ranks on host blocks. The kernels themselves are checked on a GPU by
// scripts/backend-ops.mjs --op shardedLoss.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCode, expectCodeAsync, fl } from './helpers';
import { collective, columnBlock, offsetsOf, rng, runAll } from './sharded-sim';

// The modules dist/index.js itself loads (Node's require cache, not the test runner's copies):
// its Tensor class and its loaded addon.
const require = createRequire(import.meta.url);
const { native } = require('../dist/native.js') as typeof import('../dist/native.js');
const { Tensor } = require('../dist/tensor.js') as typeof import('../dist/tensor.js');

const DTYPES = ['float32', 'float16', 'bfloat16'] as const;
const relErrOf = (a: number, b: number) => Math.abs(a - b) / Math.max(1, Math.abs(b));
type DT = (typeof DTYPES)[number];

class FakeBuffer {
  disposed = false;
  readonly mem: ArrayBuffer;
  constructor(readonly bytes: number) {
    this.mem = new ArrayBuffer(bytes);
  }
  dispose() {
    this.disposed = true;
  }
  copyFromHost(a: ArrayBufferView) {
    new Uint8Array(this.mem).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  copyToHost(a: ArrayBufferView) {
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(new Uint8Array(this.mem, 0, a.byteLength));
  }
}
const widen = (b: FakeBuffer, code: number) => (code === 0 ? new Float32Array(b.mem).slice() : fl.toFloat32(new Uint16Array(b.mem), DTYPES[code]));
function store(b: FakeBuffer, code: number, v: Float32Array) {
  if (code === 0) new Float32Array(b.mem).set(v);
  else new Uint16Array(b.mem).set(code === 1 ? fl.float32ToFloat16(v) : fl.float32ToBFloat16(v));
}
function deviceTensor(data: Float32Array | Uint16Array, shape: number[], dtype: DT): fl.Tensor {
  const b = new FakeBuffer(data.byteLength);
  b.copyFromHost(data);
  return new Tensor(dtype, shape, undefined, b as never) as unknown as fl.Tensor;
}

/** The ops a device block reaches, by name: [score key, grad key, dtype key of the grad or the block]. */
const BLOCK_OPS: Record<string, { scores: string; grad?: string }> = {
  shardedRowStats: { scores: 'localScores' },
  shardedSoftmaxGrad: { scores: 'localScores', grad: 'grad' },
  shardedColumnStats: { scores: 'localScores' },
  shardedSymmetricGrad: { scores: 'localScores', grad: 'grad' },
  shardedTopKRange: { scores: 'localScores' },
  shardedTopKSums: { scores: 'localScores' },
  shardedTopKGrad: { scores: 'localScores', grad: 'grad' },
  shardedGather: { scores: 'localScores' },
  binaryCrossEntropy: { scores: 'scores', grad: 'grad' },
};
/** Each call with a simulated device buffer: the op and the dtype codes it was sent. */
let calls: { op: string; dtype: number; gradDtype?: number }[] = [];
type Op = (o: Record<string, unknown>) => unknown;
let realAddon: unknown;

// The addon's exports are read-only: the loaded addon is replaced by a proxy that answers the
// simulated ops and passes everything else to the real one.
beforeAll(() => {
  const loaded = native() as unknown as { addon: Record<string, unknown> };
  const real = (realAddon = loaded.addon) as Record<string, Op>;
  const own: Record<string, unknown> = { deviceAlloc: (bytes: number) => new FakeBuffer(bytes) };
  for (const [name, k] of Object.entries(BLOCK_OPS))
    own[name] = (o: Record<string, unknown>) => {
      const S = o[k.scores];
      if (!(S instanceof FakeBuffer)) return real[name](o);
      const code = o.dtype as number, gcode = (o.gradDtype as number | undefined) ?? 0;
      calls.push({ op: name, dtype: code, ...(k.grad && o[k.grad] ? { gradDtype: gcode } : {}) });
      const G = k.grad ? (o[k.grad] as FakeBuffer | undefined) : undefined;
      if (G !== undefined) expect(G).toBeInstanceOf(FakeBuffer); // the gradient stays on the block's device
      const g = G ? new Float32Array(G.bytes / (gcode === 0 ? 4 : 2)) : undefined;
      const out = real[name]({ ...o, [k.scores]: widen(S, code), dtype: 0, ...(k.grad ? { [k.grad]: g, gradDtype: 0 } : {}) });
      if (G && g) store(G, gcode, g);
      return out;
    };
  own.shardedScatter = (o: Record<string, unknown>) => {
    const G = o.grad;
    if (!(G instanceof FakeBuffer)) return real.shardedScatter(o);
    calls.push({ op: 'shardedScatter', dtype: o.dtype as number });
    const g = widen(G, o.dtype as number);
    real.shardedScatter({ ...o, grad: g, dtype: 0 });
    store(G, o.dtype as number, g);
    return undefined;
  };
  // The key-embedding form's device ops: the CPU ops on host views (they take query_scale and
  // row0 as the CUDA ones do), the finish (CUDA only) in JS as cuda/sharded.cu forms it.
  const raw = (b: FakeBuffer, code: number) => (code === 0 ? new Float32Array(b.mem) : new Uint16Array(b.mem));
  const f32 = (b: unknown) => new Float32Array((b as FakeBuffer).mem);
  for (const name of ['shardedScores', 'shardedEmbeddingsGrad'])
    own[name] = (o: Record<string, unknown>) => {
      if (!(o.queries instanceof FakeBuffer)) return real[name](o);
      calls.push({ op: name, dtype: o.queriesDtype as number });
      const keys = o.keys instanceof FakeBuffer ? raw(o.keys, o.keysDtype as number) : o.keys;
      const dev = name === 'shardedScores' ? { scores: f32(o.scores) } : { grad: f32(o.grad), gradQueries: f32(o.gradQueries), gradKeys: f32(o.gradKeys) };
      return real[name]({ ...o, queries: widen(o.queries, o.queriesDtype as number), queriesDtype: 0, keys, ...dev });
    };
  own.shardedNorms = (o: Record<string, unknown>) => {
    if (!(o.x instanceof FakeBuffer)) return real.shardedNorms(o);
    calls.push({ op: 'shardedNorms', dtype: o.dtype as number });
    return real.shardedNorms({ ...o, x: raw(o.x, o.dtype as number) });
  };
  own.shardedEmbeddingsFinish = (o: Record<string, any>) => {
    calls.push({ op: 'shardedEmbeddingsFinish', dtype: o.dtype, gradDtype: o.gradDtype });
    const { rows: B, cols: N, dim: D } = o;
    const q = widen(o.queries, o.dtype), k = widen(o.keys, o.dtype), dq = f32(o.gradQueriesIn), A = f32(o.gradKeysIn);
    const TINY = Math.fround(1e12);
    const prev = widen(o.gradQueries, o.gradDtype), out = new Float32Array(B * D);
    for (let r = 0; r < B; r++) {
      const inv = o.queryScale ? o.queryScale[r] : 1;
      let dot = 0;
      if (o.queryScale && inv !== TINY) for (let c = 0; c < D; c++) dot += Math.fround(q[r * D + c] * inv) * dq[r * D + c];
      for (let c = 0; c < D; c++) {
        let v = dq[r * D + c];
        if (o.queryScale) v = Math.fround((v - Math.fround(q[r * D + c] * inv) * dot) * inv);
        out[r * D + c] = o.accumulate ? prev[r * D + c] + v : v;
      }
    }
    store(o.gradQueries, o.gradDtype, out);
    if (o.keyScale)
      for (let j = 0; j < N; j++) {
        const inv = o.keyScale[j];
        if (inv === TINY) continue;
        let s = 0;
        for (let c = 0; c < D; c++) s += k[j * D + c] * A[j * D + c];
        for (let c = 0; c < D; c++) A[j * D + c] = A[j * D + c] - k[j * D + c] * inv * (s * inv);
      }
    if (o.gradKeys !== o.gradKeysIn) {
      const g = f32(o.gradKeys);
      for (let e = 0; e < N * D; e++) g[e] = o.accumulate ? g[e] + A[e] : A[e];
    }
    return undefined;
  };
  loaded.addon = new Proxy({} as Record<string, unknown>, {
    get: (_, key) => {
      if (typeof key === 'string' && key in own) return own[key];
      const v = Reflect.get(real, key);
      return typeof v === 'function' ? v.bind(real) : v;
    },
  });
});
afterAll(() => {
  (native() as unknown as { addon: unknown }).addon = realAddon;
});

const B = 9, N = 23;
function scores(seed: number, n = N): Float32Array {
  const r = rng(seed);
  const S = Float32Array.from({ length: B * n }, () => (r() * 2 - 1) * 3);
  S[1 * n + 7] = 30; // a dominant entry
  S[4 * n + 2] = -Infinity; // an entry out
  return S;
}
function positives(seed: number): fl.Positives {
  const r = rng(seed);
  const rowPtr = new Int32Array(B + 1), cols: number[] = [], w: number[] = [];
  for (let i = 0; i < B; i++) {
    const set = new Set<number>();
    while (set.size < 1 + (i % 3)) set.add(Math.floor(r() * N));
    for (const c of [...set].sort((a, b) => a - b)) {
      cols.push(c);
      w.push(0.5 + r());
    }
    rowPtr[i + 1] = cols.length;
  }
  return { rowPtr, cols: Int32Array.from(cols), weights: Float32Array.from(w) };
}
const exclude: fl.Positives = { rowPtr: Int32Array.from({ length: B + 1 }, (_, i) => Math.min(i, 3)), cols: Int32Array.from([22, 0, 11]) };

type Case = { name: fl.ShardedLossName; targets: unknown; opts: Record<string, unknown>; square?: boolean };
const CASES: Case[] = [
  { name: 'softmaxCrossEntropy', targets: Int32Array.from({ length: B }, (_, i) => (i === 3 ? -100 : (i * 5) % N)), opts: { labelSmoothing: 0.1, zLoss: 1e-3 } },
  { name: 'multiLabelSoftmax', targets: positives(2), opts: {} },
  { name: 'decoupledSoftmax', targets: positives(3), opts: { scale: 1.5 } },
  { name: 'binaryCrossEntropy', targets: positives(4), opts: { exclude } },
  { name: 'infoNCE', targets: undefined, opts: {} },
  { name: 'infoNCE', targets: undefined, opts: { symmetric: true, scale: 2 }, square: true },
  { name: 'decoupledContrastive', targets: undefined, opts: { weighting: { sigma: 0.5 } } },
  { name: 'softTopKLoss', targets: positives(5), opts: { k: 3, exclude } },
];
const WIDTHS = [7, 0, 9, 7];

async function run(c: Case, S: Float32Array, dtype: DT, device: boolean, gradDtype?: DT) {
  const n = c.square ? B : N;
  const widths = c.square ? [4, 0, 5] : WIDTHS;
  const off = offsetsOf(widths);
  const jobs = widths.map((w, r) => {
    const blk = columnBlock(S, B, n, off[r], off[r + 1]);
    const data = dtype === 'float32' ? blk : dtype === 'float16' ? fl.float32ToFloat16(blk) : fl.float32ToBFloat16(blk);
    const t = device ? deviceTensor(data, [B, w], dtype) : fl.tensor(data, [B, w], { dtype });
    return fl.shardedLoss(c.name, t, c.targets as never, { ...c.opts, gradScale: true, gradDtype, columnOffset: off[r], totalColumns: n } as never);
  });
  const res = await runAll(jobs);
  const grad = new Float32Array(B * n);
  res.forEach((x, r) => {
    const w = widths[r];
    expect(x.grad!.device).toBe(device ? 'cuda' : 'cpu');
    expect(x.grad!.dtype).toBe(gradDtype ?? dtype);
    const g = device ? widen((x.grad as unknown as { nativeInput(n: string): FakeBuffer }).nativeInput('grad'), DTYPES.indexOf(x.grad!.dtype)) : fl.toFloat32(x.grad!.data, x.grad!.dtype);
    for (let i = 0; i < B; i++) grad.set(g.subarray(i * w, (i + 1) * w), i * n + off[r]);
  });
  return { loss: res[0].loss, rowLoss: res[0].rowLoss, dScale: res[0].dScale, grad };
}

describe('shardedLoss on (simulated) device blocks', () => {
  for (const c of CASES)
    for (const dtype of DTYPES)
      it(`${c.name}${c.opts.symmetric ? ' symmetric' : ''} ${dtype}: every block read on the device, equal to the host blocks`, async () => {
        const S = scores(11, c.square ? B : N);
        calls = [];
        const dev = await run(c, S, dtype, true);
        const host = await run(c, S, dtype, false);
        // Every read of the blocks went to the device ops, in the block's dtype.
        expect(calls.length).toBeGreaterThan(0);
        for (const k of calls) expect([k.op, k.dtype]).toEqual([k.op, DTYPES.indexOf(dtype)]);
        for (const k of calls) if (k.gradDtype !== undefined) expect([k.op, k.gradDtype]).toEqual([k.op, DTYPES.indexOf(dtype)]);
        expect(dev.loss).toBe(host.loss);
        expect(Array.from(dev.rowLoss)).toEqual(Array.from(host.rowLoss));
        expect(dev.dScale).toBe(host.dScale);
        if (dtype === 'float32' || c.name !== 'softTopKLoss') expect(Array.from(dev.grad)).toEqual(Array.from(host.grad));
        else {
          // Soft top-k's positives add their term to the dense value read back in the block's
          // dtype (the host adds it in float32 and rounds once): one rounding more.
          let num = 0, den = 0;
          for (let k = 0; k < dev.grad.length; k++) {
            num += (dev.grad[k] - host.grad[k]) ** 2;
            den += host.grad[k] ** 2;
          }
          expect(Math.sqrt(num / den)).toBeLessThan(1e-2);
        }
        const ops = new Set(calls.map((k) => k.op));
        if (c.name === 'softTopKLoss') for (const op of ['shardedTopKRange', 'shardedTopKSums', 'shardedTopKGrad', 'shardedGather']) expect(ops).toContain(op);
        if (c.opts.symmetric) for (const op of ['shardedRowStats', 'shardedColumnStats', 'shardedSymmetricGrad', 'shardedGather', 'shardedScatter']) expect(ops).toContain(op);
        if (c.name === 'binaryCrossEntropy') expect(ops).toContain('binaryCrossEntropy');
      });

  it('a float32 gradient of a half device block, into the caller\'s device out', async () => {
    const S = scores(12);
    const c = CASES[1];
    const dev = await run(c, S, 'bfloat16', true, 'float32');
    const host = await run(c, S, 'bfloat16', false, 'float32');
    expect(Array.from(dev.grad)).toEqual(Array.from(host.grad));
    const blk = deviceTensor(fl.float32ToFloat16(columnBlock(S, B, N, 0, N)), [B, N], 'float16');
    const out = deviceTensor(new Uint16Array(B * N), [B, N], 'float16');
    const [r] = await runAll([fl.shardedLoss('multiLabelSoftmax', blk, c.targets as never, { out, columnOffset: 0, totalColumns: N })]);
    expect(r.grad).toBe(out);
    const wrong = deviceTensor(new Float32Array(B * N), [B, N], 'float32');
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', blk, c.targets as never, { out: wrong, columnOffset: 0, totalColumns: N }), 'ERR_TYPE', /opts\.out/, /float16/);
  });

  it('binaryCrossEntropy: a NaN on a device block is named by the rank that holds it, and every rank throws', async () => {
    const S = scores(13);
    S[5 * N + 12] = NaN; // rank 2 holds columns [7, 16): its local column 5
    const off = offsetsOf(WIDTHS);
    const jobs = WIDTHS.map((w, r) => fl.shardedLoss('binaryCrossEntropy', deviceTensor(columnBlock(S, B, N, off[r], off[r + 1]), [B, w], 'float32'), positives(4), { columnOffset: off[r], totalColumns: N }));
    const ar = collective(WIDTHS.length);
    const runs = jobs.map((j, r) => j.run(ar[r]));
    await Promise.allSettled(runs);
    await expectCodeAsync(runs[2], 'ERR_NON_FINITE', /localScores\[5, 5\]/, /global column 12/);
    for (const r of [0, 1, 3]) await expectCodeAsync(runs[r], 'ERR_NON_FINITE', /another rank/);
  });

  // The key-embedding form: device queries and keys against the same ranks on host ones.
  const D = 6;
  const emb = (rows: number, seed: number) => {
    const r = rng(seed);
    const x = Float32Array.from({ length: rows * D }, () => r() * 2 - 1);
    x.fill(0, 0, D); // a zero row: the norm's eps (no projection)
    return x;
  };
  const half = (x: Float32Array, dtype: DT) => (dtype === 'float32' ? x : dtype === 'float16' ? fl.float32ToFloat16(x) : fl.float32ToBFloat16(x));
  async function runEmbeddings(c: Case, dtype: DT, device: boolean, o: Record<string, unknown>) {
    const n = c.square ? B : N;
    const widths = c.square ? [4, 0, 5] : WIDTHS;
    const off = offsetsOf(widths);
    const Qh = emb(B, 21), Kh = emb(n, 22);
    const make = (x: Float32Array, rows: number) => (device ? deviceTensor(half(x, dtype), [rows, D], dtype) : fl.tensor(half(x, dtype), [rows, D], { dtype }));
    const Q = make(Qh, B);
    const accumulate = o.accumulate === true;
    const jobs = widths.map((w, r) => {
      const extra: Record<string, unknown> = {};
      if (accumulate) {
        const gq = Float32Array.from({ length: B * D }, (_, i) => (i % 7) / 8);
        const gk = Float32Array.from({ length: w * D }, (_, i) => (i % 5) / 4);
        extra.gradQueries = device ? deviceTensor(gq, [B, D], 'float32') : fl.tensor(gq, [B, D]);
        extra.gradKeys = device ? deviceTensor(gk, [w, D], 'float32') : fl.tensor(gk, [w, D]);
        extra.gradDtype = 'float32';
      }
      if (o.bias) extra.bias = Float32Array.from({ length: w }, (_, j) => ((off[r] + j) % 3) / 4);
      return fl.shardedLoss(c.name, { queries: Q, keys: make(Kh.slice(off[r] * D, off[r + 1] * D), w) }, c.targets as never, { ...c.opts, ...o, ...extra, gradScale: true, columnOffset: off[r], totalColumns: n } as never);
    });
    const res = await runAll(jobs);
    const host = (t: fl.Tensor) => (device ? widen((t as unknown as { nativeInput(n: string): FakeBuffer }).nativeInput('t'), DTYPES.indexOf(t.dtype)) : fl.toFloat32(t.data, t.dtype));
    const dQ = new Float32Array(B * D);
    const dK = new Float32Array(n * D);
    res.forEach((x, r) => {
      expect(x.gradQueries!.device).toBe(device ? 'cuda' : 'cpu');
      expect(x.gradKeys!.device).toBe(device ? 'cuda' : 'cpu');
      host(x.gradQueries!).forEach((v, i) => (dQ[i] += v));
      dK.set(host(x.gradKeys!), off[r] * D);
    });
    return { loss: res[0].loss, rowLoss: res[0].rowLoss, dScale: res[0].dScale!, dQ, dK, dBias: o.bias ? res.flatMap((x) => Array.from(x.gradBias!)) : [] };
  }
  const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
    let num = 0, den = 0;
    for (let i = 0; i < b.length; i++) {
      num += (a[i] - b[i]) ** 2;
      den += b[i] ** 2;
    }
    expect(Math.sqrt(num / Math.max(den, 1e-30))).toBeLessThan(tol);
  };
  const embCases: [Case, Record<string, unknown>][] = [
    [CASES[0], { normalize: true, bias: true }],
    [CASES[1], { memoryBudget: 8 * 9 * 4 }], // chunks of 4 rows: A written by the first, added by the next
    [CASES[3], { normalize: true, accumulate: true }],
    [CASES[5], { normalize: true }],
    [CASES[7], { memoryBudget: 8 * 9 * 3, normalize: true }],
  ];
  for (const [c, o] of embCases)
    for (const dtype of ['float32', 'bfloat16'] as const)
      it(`key-embedding form ${c.name}${c.opts.symmetric ? ' symmetric' : ''} ${dtype} ${Object.keys(o).join(',')}: device queries and keys, equal to the host form`, async () => {
        calls = [];
        const dev = await runEmbeddings(c, dtype, true, o);
        const ops = new Set(calls.map((k) => k.op));
        for (const op of ['shardedScores', 'shardedEmbeddingsGrad', 'shardedEmbeddingsFinish']) expect(ops).toContain(op);
        expect(ops.has(c.name === 'binaryCrossEntropy' ? 'binaryCrossEntropy' : 'shardedGather')).toBe(true);
        if (o.normalize) expect(ops).toContain('shardedNorms');
        for (const k of calls) if (k.op !== 'shardedScatter' && !k.op.startsWith('shardedEmbeddings') && k.op !== 'shardedScores' && k.op !== 'shardedNorms') expect([k.op, k.dtype]).toEqual([k.op, 0]); // the chunks are float32
        const host = await runEmbeddings(c, dtype, false, o);
        const tol = dtype === 'float32' ? 1e-5 : 1e-2;
        expect(relErrOf(dev.loss, host.loss)).toBeLessThan(tol);
        near(dev.rowLoss, host.rowLoss, tol);
        expect(relErrOf(dev.dScale, host.dScale)).toBeLessThan(tol);
        near(dev.dQ, host.dQ, tol);
        near(dev.dK, host.dK, tol);
        near(dev.dBias, host.dBias, tol);
      });

  it('the key-embedding form: keys on another device than the queries, or host gradient buffers, are ERR_DEVICE', () => {
    const q = deviceTensor(new Float32Array(B * 4), [B, 4], 'float32');
    const k = fl.tensor(new Float32Array(N * 4), [N, 4]);
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', { queries: q, keys: k }, positives(2), { columnOffset: 0, totalColumns: N }), 'ERR_DEVICE', /localScores\.keys/);
    const kd = deviceTensor(new Float32Array(N * 4), [N, 4], 'float32');
    expectCode(() => fl.shardedLoss('multiLabelSoftmax', { queries: q, keys: kd }, positives(2), { columnOffset: 0, totalColumns: N, gradKeys: fl.tensor(new Float32Array(N * 4), [N, 4]) }), 'ERR_DEVICE', /opts\.gradKeys/);
  });
});
