import { describe, expect, it } from 'vitest';
import { expectCode, expectCodeAsync, fl, hasCuda } from './helpers';

// A seeded generator so that failures reproduce.
function rng(seed: number) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  return { u, normal: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) };
}

function refLse(x: ArrayLike<number>, rows: number, cols: number, scale: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let c = 0; c < cols; c++) m = Math.max(m, scale * x[r * cols + c]);
    let s = 0;
    if (m !== -Infinity) for (let c = 0; c < cols; c++) s += Math.exp(scale * x[r * cols + c] - m);
    out.push(m === -Infinity ? m : m + Math.log(s));
  }
  return out;
}

function scores(seed: number, rows: number, cols: number, kind: 'normal' | 'flat' | 'peaked'): Float32Array {
  const g = rng(seed);
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) x[i] = g.normal() * (kind === 'flat' ? 0.05 : 3);
  if (kind === 'peaked') for (let r = 0; r < rows; r++) for (let k = 0; k < 3; k++) x[r * cols + Math.floor(g.u() * cols)] *= 20;
  return x;
}

const shapes: [number, number][] = [[1, 2], [7, 97], [3, 50257], [2, 70001]];

describe('logSumExp (CPU)', () => {
  for (const [rows, cols] of shapes)
    for (const kind of ['normal', 'flat', 'peaked'] as const)
      it(`matches float64 on ${rows}x${cols} ${kind}`, () => {
        const x = scores(rows * cols, rows, cols, kind);
        for (const scale of [1, 1 / 0.07]) {
          const got = fl.logSumExp(fl.tensor(x, [rows, cols]), { scale });
          const ref = refLse(x, rows, cols, scale);
          for (let r = 0; r < rows; r++) expect(Math.abs(got[r] - ref[r]) / Math.max(1, Math.abs(ref[r]))).toBeLessThan(1e-6);
        }
      });

  it('accepts {dtype, shape, data} objects and bare arrays with a shape', () => {
    const x = new Float32Array([0, 1, 2, -1, -2, -Infinity]);
    const a = fl.logSumExp({ dtype: 'float32', shape: [2, 3], data: x });
    const b = fl.logSumExp(x, { shape: [2, 3] });
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(a[1]).toBeCloseTo(Math.log(Math.exp(-1) + Math.exp(-2)), 6);
  });

  it('reads float16 and bfloat16 bits', () => {
    // 1.5 and -2 are exact in both formats: float16 0x3e00, 0xc000; bfloat16 0x3fc0, 0xc000.
    const ref = Math.log(Math.exp(1.5) + Math.exp(-2));
    expect(fl.logSumExp(fl.tensor(new Uint16Array([0x3e00, 0xc000]), [1, 2], { dtype: 'float16' }))[0]).toBeCloseTo(ref, 6);
    expect(fl.logSumExp(fl.tensor(new Uint16Array([0x3fc0, 0xc000]), [1, 2], { dtype: 'bfloat16' }))[0]).toBeCloseTo(ref, 6);
  });

  it('async twin gives the same bits', async () => {
    const x = scores(5, 4, 40001, 'normal');
    const sync = fl.logSumExp(x, { shape: [4, 40001] });
    const asyncOut = await fl.logSumExpAsync(x, { shape: [4, 40001] });
    expect(Array.from(asyncOut)).toEqual(Array.from(sync));
  });

  it('rejects bad input with precise errors', () => {
    const x = new Float32Array(6);
    expectCode(() => fl.logSumExp(x, { shape: [4, 2] }), 'ERR_SHAPE', /scores\.data/, /8 elements/, /received 6/);
    expectCode(() => fl.logSumExp(x), 'ERR_SHAPE', /opts\.shape/);
    expectCode(() => fl.logSumExp(x, { shape: [2, 3], scale: 0 }), 'ERR_ARG', /opts\.scale/, /> 0/, /received 0/);
    expectCode(() => fl.logSumExp(x, { shape: [2, 3], scale: Number.NaN }), 'ERR_ARG', /received NaN/);
    expectCode(() => fl.logSumExp(new Uint16Array(6), { shape: [2, 3] }), 'ERR_DTYPE', /float32/);
    expectCode(() => fl.logSumExp({ dtype: 'int8', shape: [1], data: new Float32Array(1) }), 'ERR_DTYPE', /received "int8"/);
    expectCode(() => fl.logSumExp(x, { shape: [1, 2, 3] }), 'ERR_SHAPE', /2-D/);
    expectCode(() => fl.logSumExp(x, 'fast' as never), 'ERR_TYPE', /options object/);
    const bad = new Float32Array([0, 1, Number.NaN, 2]);
    const e = expectCode(() => fl.logSumExp(bad, { shape: [2, 2] }), 'ERR_NON_FINITE', /\[1, 0\]/);
    expect(e).toBeInstanceOf(fl.NonFiniteError);
    expectCode(() => fl.logSumExp(new Float32Array([Infinity]), { shape: [1, 1] }), 'ERR_NON_FINITE');
  });

  it('rejects a detached buffer', async () => {
    const x = new Float32Array(4);
    const t = fl.tensor(x, [2, 2]);
    structuredClone(x.buffer, { transfer: [x.buffer] });
    expectCode(() => fl.logSumExp(t), 'ERR_DETACHED', /detached/);
    await expectCodeAsync(fl.logSumExpAsync(t), 'ERR_DETACHED');
  });
});

describe.skipIf(!hasCuda())('logSumExp (CUDA)', () => {
  it('matches the CPU on odd shapes and survives a host-device round trip', () => {
    for (const [rows, cols] of shapes) {
      const x = scores(rows + cols, rows, cols, 'peaked');
      using d = fl.toDevice(fl.tensor(x, [rows, cols]));
      expect(d.device).toBe('cuda');
      const back = fl.toHost(d).data;
      expect(Buffer.compare(Buffer.from(back.buffer), Buffer.from(x.buffer))).toBe(0);
      const cpu = fl.logSumExp(x, { shape: [rows, cols], scale: 2 });
      const gpu = fl.logSumExp(d, { scale: 2 });
      for (let r = 0; r < rows; r++) expect(Math.abs(gpu[r] - cpu[r]) / Math.max(1, Math.abs(cpu[r]))).toBeLessThan(1e-5);
    }
  });
});
