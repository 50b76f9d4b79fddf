// The lifetime rules of async calls (napi/job.h, README "Async calls and memory"): nothing a
// program does while an async op runs (transfer or detach a buffer, drop every reference and
// run GC, write into an input) makes native code read or write freed memory, and two calls
// that share a buffer one of them writes are refused (ERR_BUSY). The suite runs on the ASan
// addon in `npm run test:sanitize`, where a use-after-free aborts the run: the scenarios free
// the memory (the new owner of a transferred buffer is dropped and collected) and allocate
// again while the op runs. Workers terminated mid-flight: test/workers.test.ts; dispose() of a
// device tensor mid-flight: test/device.test.ts (CUDA).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { native } from '../dist/native.js';
import { expectCode, fl } from './helpers';
import { opsUnderTest, type Outputs } from './ops-under-test';

setFlagsFromString('--expose-gc');
// Under the sanitizers (slow) only the scenarios that free memory run; what an op computes is
// checked by the normal run.
const sanitized = process.env.FUSEDLOSS_SANITIZED === '1';
const gc = runInNewContext('gc') as () => void;

/** Moves `a`'s buffer away and drops its new owner: V8 frees the memory at the next GC. */
function transferAway(a: ArrayBufferView) {
  structuredClone(a.buffer, { transfer: [a.buffer] });
}

/** True once `a`'s buffer was detached (Node 20 has no ArrayBuffer.prototype.detached). */
const isDetached = (a: ArrayBufferView) => a.buffer.byteLength === 0 && a.byteLength === 0;

/** Collects garbage, then allocates and writes: freed memory is handed out and overwritten. */
function churn() {
  gc();
  const junk: Float32Array[] = [];
  for (let i = 0; i < 64; i++) junk.push(new Float32Array(1 << 18).fill(i));
  return junk.length;
}

/** 'ok' and the outputs, or the error's code. */
async function settle(p: Promise<Outputs>): Promise<{ code: string; out?: Outputs }> {
  try {
    return { code: 'ok', out: await p };
  } catch (e) {
    return { code: (e as { code?: string }).code ?? String(e) };
  }
}

function sameOutputs(a: Outputs, b: Outputs): boolean {
  return Object.keys(b).every((k) => {
    const x = a[k];
    const y = b[k];
    if (typeof x === 'number' || typeof y === 'number' || !x || !y) return Object.is(x, y);
    return Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)) === 0;
  });
}

/** The same inputs with the scores in the caller's own memory (heavy() puts them in addon memory). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function callerScores(i: any) {
  const data = (i.s.data as Float32Array).slice();
  return { ...i, s: { ...i.s, data, arg: fl.tensor(data, [i.s.rows, i.s.cols]) } };
}

/** A float32 host tensor of `rows`×`cols` in the caller's own memory. */
const callerTensor = (rows: number, cols: number) => fl.tensor(new Float32Array(rows * cols), [rows, cols]);

describe('async calls never touch freed memory', () => {
  for (const op of opsUnderTest) {
    const isLoss = op.name !== 'logSumExp';

    it(`${op.name}Async: every input transferred away and collected while it runs`, async () => {
      // Scores in addon memory (the job holds it) and in the caller's (the job copied it).
      for (const inputs of [op.heavy(), callerScores(op.heavy())]) {
        const expected = op.sync(inputs);
        const pending = settle(op.async(inputs));
        for (const v of op.views(inputs)) transferAway(v);
        churn();
        // The op computed on memory that stayed valid: its result is right, or refused
        // (ERR_DETACHED) because an array argument of the call was detached. (Node 20 copies
        // addon memory instead of detaching it; lib/csr.ts reads CSR arrays into new ones.)
        const r = await pending;
        if (r.code === 'ok') expect(sameOutputs(r.out!, expected)).toBe(true);
        else expect(r.code === 'ERR_DETACHED' && op.views(inputs).some(isDetached)).toBe(true);
        if (isDetached(inputs.s.data)) expect(r.code).toBe('ERR_DETACHED');
      }
    });

    it(`${op.name}Async: every reference dropped and collected while it runs`, async () => {
      const expected = op.sync(op.heavy());
      const pending = settle(op.async(op.heavy()));
      churn();
      const r = await pending;
      expect(r.code).toBe('ok');
      expect(sameOutputs(r.out!, expected)).toBe(true);
    });

    it.skipIf(sanitized)(`${op.name}Async: caller-owned inputs overwritten while it runs: the op reads the values of the call`, async () => {
      const inputs = callerScores(op.heavy());
      const expected = op.sync(inputs);
      const pending = settle(op.async(inputs));
      for (const v of op.views(inputs)) new Uint8Array(v.buffer, v.byteOffset, v.byteLength).fill(0xff);
      const r = await pending;
      expect(r.code).toBe('ok');
      expect(sameOutputs(r.out!, expected)).toBe(true);
    });

    if (!isLoss) continue;

    it(`${op.name}Async: opts.out (the caller's memory, or a previous gradient) transferred away while it runs`, async () => {
      const inputs = op.heavy();
      const { rows, cols } = inputs.s;
      const previous = (op.sync({ ...inputs, opts: { ...inputs.opts, out: undefined } }).grad as Float32Array);
      for (const out of [callerTensor(rows, cols), fl.tensor(previous, [rows, cols])]) {
        const pending = settle(op.async({ ...inputs, opts: { ...inputs.opts, out } }));
        transferAway(out.data);
        churn();
        expect((await pending).code).toBe(isDetached(out.data) ? 'ERR_DETACHED' : 'ok');
      }
    });

    it(`${op.name}Async: in-place scores transferred away while it runs`, async () => {
      for (const inputs of [op.heavy(), callerScores(op.heavy())]) {
        const pending = settle(op.async({ ...inputs, opts: { ...inputs.opts, out: undefined, inplace: true } }));
        transferAway(inputs.s.data);
        churn();
        expect((await pending).code).toBe(isDetached(inputs.s.data) ? 'ERR_DETACHED' : 'ok');
      }
    });

    it.skipIf(sanitized)(`${op.name}: calls sharing opts.out or in-place scores with an async call in flight are refused (ERR_BUSY)`, async () => {
      const inputs = op.heavy();
      const { rows, cols } = inputs.s;
      const out = callerTensor(rows, cols);
      const withOut = { ...inputs, opts: { ...inputs.opts, out } };
      const expected = op.sync(withOut);
      const first = op.async(withOut);
      expect((await settle(op.async(withOut))).code).toBe('ERR_BUSY');
      // A sync call that would write the same buffer is refused too, and so is one that reads it.
      expectCode(() => op.sync(withOut), 'ERR_BUSY', /being written/);
      expect((await settle(first)).code).toBe('ok');
      expect(sameOutputs(op.sync(withOut), expected)).toBe(true); // free again once the first call settled

      const inplace = { ...inputs, opts: { ...inputs.opts, out: undefined, inplace: true } };
      const running = op.async(inplace);
      expect((await settle(op.async(inplace))).code).toBe('ERR_BUSY');
      expectCode(() => op.sync({ ...inputs, opts: { ...inputs.opts, out: undefined } }), 'ERR_BUSY', /being written/);
      expect((await settle(running)).code).toBe('ok');
    });
  }

  it('softTopKAsync and the native vjp: inputs and outputs transferred away while they run', async () => {
    const rows = 64, cols = 65536;
    const make = () => {
      const x = new Float32Array(rows * cols);
      for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 3;
      return x;
    };
    const x = make();
    const pending = fl.softTopKAsync(fl.tensor(x, [rows, cols]), 5, { alpha: 2 }).then(
      () => 'ok',
      (e) => (e as { code: string }).code,
    );
    transferAway(x);
    churn();
    expect(await pending).toBe('ERR_DETACHED');

    const y = make();
    const r = fl.softTopK(fl.tensor(y, [rows, cols]), 5, { alpha: 2 });
    const addon = native().addon;
    const g = new Float32Array(rows * cols).fill(1);
    const grad = new Float32Array(rows * cols);
    const call = addon.softTopKVjpAsync({ scores: y, dtype: 0, rows, cols, scale: 1, alpha: 2, output: 0, threshold: r.threshold, gradOutput: g, grad, gradDtype: 0 });
    for (const v of [y, g, grad, r.threshold]) transferAway(v);
    churn();
    await expect(call).rejects.toMatchObject({ code: 'ERR_DETACHED' });
    expect(r.values.data.length).toBe(rows * cols);
  });

  it('logSumExpAsync: its output transferred away while it runs (native call)', async () => {
    const rows = 64, cols = 262147;
    const x = new Float32Array(rows * cols).fill(0.5);
    for (const out of [new Float32Array(rows), new Float32Array(native().addon.hostAlloc(rows * 4))]) {
      const call = native().addon.logSumExpAsync({ scores: x, dtype: 0, rows, cols, scale: 1, out }).then(() => 'ok', (e) => e.code);
      transferAway(out);
      churn();
      expect(await call).toBe(isDetached(out) ? 'ERR_DETACHED' : 'ok');
    }
  });

  it.skipIf(sanitized)('an async call over a caller-owned array leaves it untouched until it completes, then writes the result', async () => {
    const op = opsUnderTest.find((o) => o.name === 'softmaxCrossEntropy')!;
    const inputs = op.heavy();
    const { rows, cols } = inputs.s;
    const out = callerTensor(rows, cols);
    const expected = op.sync({ ...inputs, opts: { ...inputs.opts, out: undefined } });
    const pending = op.async({ ...inputs, opts: { ...inputs.opts, out } });
    expect((out.data as Float32Array).every((v) => v === 0)).toBe(true);
    const got = await pending;
    expect(sameOutputs(got, expected)).toBe(true);
    expect(Buffer.compare(Buffer.from(out.data.buffer), Buffer.from((expected.grad as Float32Array).buffer, (expected.grad as Float32Array).byteOffset, (expected.grad as Float32Array).byteLength))).toBe(0);
  });
});

