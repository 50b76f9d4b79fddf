// Device memory: byte accounting, out-of-memory, use after dispose. Runs where the CUDA backend
// is live (the GPU machine, scripts/gpu/run.sh); elsewhere it is skipped and says why.
import { describe, expect, it } from 'vitest';
import { emptyDevice } from '../dist/tensor.js';
import { fl } from './helpers';

const info = fl.backendInfo();
const live = info.cuda.available;

describe.skipIf(!live)('device memory (CUDA)', () => {
  it('bytesInUse counts live device tensors and returns to baseline after dispose()', () => {
    const base = fl.backendInfo().cuda.bytesInUse;
    const host = fl.tensor(new Float32Array(1001 * 37).map((_, i) => Math.sin(i)), [1001, 37]);
    const a = fl.toDevice(host);
    const b = fl.toDevice(fl.tensor(fl.float32ToBFloat16(new Float32Array(513).fill(0.25)), [513], { dtype: 'bfloat16' }));
    expect(fl.backendInfo().cuda.bytesInUse - base).toBe(1001 * 37 * 4 + 513 * 2);
    a.dispose();
    expect(fl.backendInfo().cuda.bytesInUse - base).toBe(513 * 2);
    b[Symbol.dispose]();
    expect(fl.backendInfo().cuda.bytesInUse).toBe(base);
    a.dispose(); // a second dispose is a no-op
    expect(fl.backendInfo().cuda.bytesInUse).toBe(base);
  });

  it('an allocation larger than the device becomes ERR_CUDA_OOM and leaves the backend usable', () => {
    const base = fl.backendInfo().cuda.bytesInUse;
    const total = Math.max(...fl.backendInfo().cuda.devices.map((d) => d.totalMemory));
    const huge = Math.ceil((2 * total) / 4);
    expect(() => emptyDevice('float32', [huge])).toThrowError(expect.objectContaining({ code: 'ERR_CUDA_OOM' }));
    expect(fl.backendInfo().cuda.bytesInUse).toBe(base);
    const t = fl.toDevice(fl.tensor(new Float32Array([1.5, -2.25, 3.125]), [3]));
    expect(Array.from(fl.toHost(t).data as Float32Array)).toEqual([1.5, -2.25, 3.125]);
    t.dispose();
  });

  it('toDevice(t, { device }) puts the tensor on that device; an index past the last is ERR_ARG', () => {
    const host = fl.tensor(new Float32Array([1, 2, 3]), [3]);
    const t = fl.toDevice(host, { device: 0 });
    expect(Array.from(fl.toHost(t).data as Float32Array)).toEqual([1, 2, 3]);
    t.dispose();
    const count = fl.backendInfo().cuda.devices.length;
    expect(() => fl.toDevice(host, { device: count })).toThrowError(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringMatching(/device/) }));
    expect(fl.backendInfo().cuda.selectedDevice).toBe(0);
  });

  it('a disposed device tensor used again throws ERR_DISPOSED', () => {
    const t = fl.toDevice(fl.tensor(new Float32Array(7 * 11).map((_, i) => Math.cos(i)), [7, 11]));
    t.dispose();
    expect(() => fl.toHost(t)).toThrowError(expect.objectContaining({ code: 'ERR_DISPOSED' }));
    expect(() => fl.logSumExp(t)).toThrowError(expect.objectContaining({ code: 'ERR_DISPOSED' }));
    expect(() => fl.softmaxCrossEntropy(t, new Int32Array(7))).toThrowError(expect.objectContaining({ code: 'ERR_DISPOSED' }));
  });
});

describe.skipIf(live)('device memory without a GPU', () => {
  it(`reports why CUDA is not live (${info.cuda.reason ?? 'no reason'}) and holds no device bytes`, () => {
    expect(info.cuda.available).toBe(false);
    expect(info.cuda.bytesInUse).toBe(0);
    expect(() => fl.toDevice(fl.tensor(new Float32Array(3), [3]))).toThrowError(expect.objectContaining({ code: expect.stringMatching(/^ERR_CUDA/) }));
  });
  it('toDevice(t, { device }) checks the index before anything else', () => {
    const t = fl.tensor(new Float32Array(3), [3]);
    for (const device of [-1, 1.5, NaN, '1'])
      expect(() => fl.toDevice(t, { device } as never)).toThrowError(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringMatching(/opts\.device/) }));
  });
});
