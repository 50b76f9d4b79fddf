import { describe, expect, it } from 'vitest';
import { expectCode, fl, hasCuda } from './helpers';

describe('tensors', () => {
  it('wraps host data without copying', () => {
    const x = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t = fl.tensor(x, [2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.shape).toEqual([2, 3]);
    expect(t.device).toBe('cpu');
    expect(t.size).toBe(6);
    expect(t.data).toBe(x);
    expect(fl.toHost(t)).toBe(t);
  });

  it('data is a property, as in the { dtype, shape, data } input form', () => {
    const x = new Float32Array([1, 2, 3, 4, 5, 6]);
    const r = fl.softmaxCrossEntropy({ dtype: 'float32', shape: [2, 3], data: x }, Int32Array.from([0, 2]));
    expect(r.grad.data).toBeInstanceOf(Float32Array);
    expect(Array.from(r.grad.data.slice(0, 3))).toEqual(Array.from(r.grad.data).slice(0, 3));
    // A Tensor passes where the { dtype, shape, data } form does, and back.
    const { dtype, shape, data } = r.grad;
    expect(fl.softmaxCrossEntropy({ dtype, shape, data }, Int32Array.from([1, 1])).loss).toBeGreaterThan(0);
  });

  it('validates dtype, shape and data', () => {
    expectCode(() => fl.tensor(new Float32Array(5), [2, 3]), 'ERR_SHAPE', /6 elements/, /received 5/);
    expectCode(() => fl.tensor(new Uint16Array(6), [2, 3]), 'ERR_DTYPE', /opts\.dtype/);
    expectCode(() => fl.tensor(new Float32Array(6), [2, 3], { dtype: 'float16' }), 'ERR_DTYPE', /Uint16Array/);
    expectCode(() => fl.tensor(new Float32Array(6), [2, -3]), 'ERR_SHAPE', /non-negative integers/);
    expectCode(() => fl.tensor(new Float32Array(6), [2, 3], { dtype: 'float64' as never }), 'ERR_DTYPE', /float64/);
    const half = fl.tensor(new Uint16Array(6), [3, 2], { dtype: 'bfloat16' });
    expect(half.dtype).toBe('bfloat16');
  });

  it('host tensors support dispose() and `using` as no-ops', () => {
    const t = fl.tensor(new Float32Array(1), [1]);
    t.dispose();
    { using u = fl.tensor(new Float32Array(1), [1]); expect(u.disposed).toBe(false); }
    expect(t.disposed).toBe(false);
  });
});

describe('backendInfo', () => {
  it('reports the CPU pool, the SIMD level and the CUDA state', () => {
    const info = fl.backendInfo();
    expect(info.cpu.threads).toBeGreaterThanOrEqual(1);
    expect(['sse2', 'avx2', 'avx512']).toContain(info.cpu.simd);
    expect(typeof info.cuda.compiled).toBe('boolean');
    expect(Array.isArray(info.cuda.devices)).toBe(true);
    expect(info.loader.file).toMatch(/\.node$/);
    if (!info.cuda.available) expect(info.cuda.reason).toBeTruthy();
  });
});

describe.skipIf(hasCuda())('without a GPU', () => {
  it('toDevice throws ERR_CUDA_UNAVAILABLE and says why', () => {
    const e = expectCode(() => fl.toDevice(fl.tensor(new Float32Array(3), [3])), 'ERR_CUDA_UNAVAILABLE', /CUDA is not available/);
    expect(e).toBeInstanceOf(fl.CudaError);
  });
});

describe.skipIf(!hasCuda())('device memory', () => {
  it('round-trips every dtype, counts bytes and frees on dispose', () => {
    const before = fl.backendInfo().cuda.bytesInUse;
    const x = new Uint16Array(1001).map((_, i) => (i * 2654435761) & 0xffff);
    const d = fl.toDevice(fl.tensor(x, [7, 143], { dtype: 'float16' }));
    expect(fl.backendInfo().cuda.bytesInUse).toBe(before + 2002);
    expect(Array.from(fl.toHost(d).data)).toEqual(Array.from(x));
    d.dispose();
    expect(d.disposed).toBe(true);
    expect(fl.backendInfo().cuda.bytesInUse).toBe(before);
    expectCode(() => fl.toHost(d), 'ERR_DISPOSED');
  });
});
