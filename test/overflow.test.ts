// Never NaN from finite inputs: finite scores whose scale·x overflows float32 are refused with
// ERR_NON_FINITE naming the entry and the scale (every loss, every dtype, sync and async), or
// give the right answer in their stable form (softcap bounds z; −overflow is an entry out).
import { describe, expect, it } from 'vitest';
import { expectCode, fl } from './helpers';

type DType = 'float32' | 'float16' | 'bfloat16';
// A finite score in each dtype and a scale that makes it overflow float32.
const BIG: Record<DType, { x: number; scale: number }> = {
  float32: { x: 3e37, scale: 100 },
  bfloat16: { x: 3e37, scale: 100 },
  float16: { x: 6e4, scale: 1e35 },
};

function scores(dtype: DType, values: number[], rows: number, cols: number) {
  const f = new Float32Array(values);
  const data = dtype === 'float32' ? f : dtype === 'float16' ? fl.float32ToFloat16(f) : fl.float32ToBFloat16(f);
  return fl.tensor(data, [rows, cols], { dtype });
}

const pos = { rowPtr: new Int32Array([0, 1, 2]), cols: new Int32Array([1, 2]) };
type Call = (s: fl.Tensor, o: Record<string, unknown>) => unknown;
const losses: [string, Call, Call, boolean][] = [
  ['softmaxCrossEntropy', (s, o) => fl.softmaxCrossEntropy(s, new Int32Array([1, 2]), o), (s, o) => fl.softmaxCrossEntropyAsync(s, new Int32Array([1, 2]), o), false],
  ['decoupledSoftmax', (s, o) => fl.decoupledSoftmax(s, pos, o), (s, o) => fl.decoupledSoftmaxAsync(s, pos, o), false],
  ['multiLabelSoftmax', (s, o) => fl.multiLabelSoftmax(s, pos, o), (s, o) => fl.multiLabelSoftmaxAsync(s, pos, o), false],
  ['binaryCrossEntropy', (s, o) => fl.binaryCrossEntropy(s, pos, o), (s, o) => fl.binaryCrossEntropyAsync(s, pos, o), false],
  ['softTopKLoss', (s, o) => fl.softTopKLoss(s, pos, { k: 2, ...o }), (s, o) => fl.softTopKLossAsync(s, pos, { k: 2, ...o }), false],
  ['infoNCE', (s, o) => fl.infoNCE(s, o), (s, o) => fl.infoNCEAsync(s, o), true],
  ['infoNCE symmetric', (s, o) => fl.infoNCE(s, { symmetric: true, ...o }), (s, o) => fl.infoNCEAsync(s, { symmetric: true, ...o }), true],
  ['decoupledContrastive', (s, o) => fl.decoupledContrastive(s, o), (s, o) => fl.decoupledContrastiveAsync(s, o), true],
  ['logSumExp', (s, o) => fl.logSumExp(s, o), (s, o) => fl.logSumExpAsync(s, o), false],
];

describe('finite scores whose scale·x overflows float32', () => {
  for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[])
    for (const [name, sync, async, square] of losses)
      it(`${name} (${dtype}): ERR_NON_FINITE naming the entry and the scale, sync and async`, async () => {
        const { x, scale } = BIG[dtype];
        // The overflowing entry is a negative of row 1 (not its label or positive).
        const make = () => (square ? scores(dtype, [1, 0.5, x, 2], 2, 2) : scores(dtype, [1, 0.5, -1, 0, x, 1, 0, 2], 2, 4));
        const at = square ? /scores\[1, 0\]/ : name === 'softmaxCrossEntropy' ? /logits\[1, 0\]/ : /scores\[1, 0\]/;
        expectCode(() => sync(make(), { scale }), 'ERR_NON_FINITE', at, new RegExp(`scale ${String(scale).replace('+', '\\+')}`), /overflows float32/);
        await expect(async(make(), { scale }) as Promise<unknown>).rejects.toMatchObject({ code: 'ERR_NON_FINITE', message: expect.stringMatching(/overflows float32/) });
      });

  it('in place (the scores are overwritten): ERR_NON_FINITE naming the scale instead of a NaN loss', () => {
    const { x, scale } = BIG.float32;
    expectCode(() => fl.softmaxCrossEntropy(scores('float32', [1, 0.5, -1, 0, x, 1, 0, 2], 2, 4), new Int32Array([1, 2]), { scale, inplace: true }), 'ERR_NON_FINITE', /logits: the loss came out NaN/, /scale 100/, /without inplace/);
  });

  it('softcap bounds z: the right, finite answer (cross-entropy, every dtype)', () => {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[]) {
      const { x, scale } = BIG[dtype];
      const row1 = [0, 1, x, 2];
      const r = fl.softmaxCrossEntropy(scores(dtype, [1, 0.5, -1, 0, ...row1], 2, 4), new Int32Array([1, 2]), { scale, softcap: 30, gradDtype: 'float32' });
      expect(Number.isFinite(r.loss)).toBe(true);
      // Row 1 in float64: z = 30·tanh(scale·x/30), the overflowing entry's z is 30 (its label).
      const v = fl.toFloat32(scores(dtype, row1, 1, 4).data, dtype);
      const z = Array.from(v, (e) => 30 * Math.tanh((scale * e) / 30));
      const want = Math.log(z.reduce((a, e) => a + Math.exp(e - 30), 0));
      expect(Math.abs(r.rowLoss[1] - want)).toBeLessThan(1e-5 * Math.max(1, want));
      expect(Array.from(r.grad!.data as Float32Array).every(Number.isFinite)).toBe(true);
    }
  });

  it('a score that overflows to −∞ is an entry out: finite loss and gradient', () => {
    const r = fl.softmaxCrossEntropy(scores('float32', [1, 0.5, -1, 0, 0, 1, -3e37, 2], 2, 4), new Int32Array([1, 3]), { scale: 100 });
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(Array.from(r.grad!.data as Float32Array).every(Number.isFinite)).toBe(true);
  });

  it('an infinite loss that is right stays (a label on a −Infinity logit): no overflow to report', () => {
    const r = fl.softmaxCrossEntropy(scores('float32', [1, 0.5, -Infinity, 0], 1, 4), new Int32Array([2]), { scale: 100 });
    expect(r.loss).toBe(Infinity);
  });
});
