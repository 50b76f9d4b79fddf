// Unknown option keys are errors (ERR_ARG naming the key and the nearest valid one): a typo
// such as `lableSmoothing` must not silently train without smoothing.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import * as adapter from '../lib/tfjs';
import { LOSS_OPTION_KEYS } from '../dist/loss.js';
import { makeRng } from '../scripts/lib/random.mjs';
import { argsOf, ops } from '../scripts/ops.mjs';
import { expectCode, fl } from './helpers';

const S = () => fl.tensor(new Float32Array([0.5, -1, 2, 0, 1, 3]), [2, 3]);
const y = new Int32Array([2, 0]);
const positives = { rowPtr: new Int32Array([0, 1, 2]), cols: new Int32Array([2, 0]) };
const square = () => fl.tensor(new Float32Array([1, 0, 0, 1]), [2, 2]);

describe('unknown options', () => {
  const cases: [string, () => unknown, string, string][] = [
    ['softmaxCrossEntropy', () => fl.softmaxCrossEntropy(S(), y, { lableSmoothing: 0.1 } as never), 'lableSmoothing', 'labelSmoothing'],
    ['softmaxCrossEntropy (case)', () => fl.softmaxCrossEntropy(S(), y, { zloss: 1e-4 } as never), 'zloss', 'zLoss'],
    ['decoupledSoftmax', () => fl.decoupledSoftmax(S(), positives, { redution: 'sum' } as never), 'redution', 'reduction'],
    ['multiLabelSoftmax', () => fl.multiLabelSoftmax(S(), positives, { exlude: positives } as never), 'exlude', 'exclude'],
    ['binaryCrossEntropy', () => fl.binaryCrossEntropy(S(), positives, { gradOuptut: new Float32Array(2) } as never), 'gradOuptut', 'gradOutput'],
    ['softTopKLoss', () => fl.softTopKLoss(S(), positives, { aplha: 2 } as never), 'aplha', 'alpha'],
    ['infoNCE', () => fl.infoNCE(square(), { symetric: true } as never), 'symetric', 'symmetric'],
    ['decoupledContrastive', () => fl.decoupledContrastive(square(), { weigthing: { sigma: 1 } } as never), 'weigthing', 'weighting'],
    ['decoupledContrastive weighting', () => fl.decoupledContrastive(square(), { weighting: { sgima: 1 } } as never), 'sgima', 'sigma'],
    ['softTopK', () => fl.softTopK(S(), 1, { ouptut: 'log' } as never), 'ouptut', 'output'],
    ['logSumExp', () => fl.logSumExp(S(), { scal: 2 } as never), 'scal', 'scale'],
    ['tensor', () => fl.tensor(new Float32Array(2), [2], { dype: 'float32' } as never), 'dype', 'dtype'],
    // Checked before CUDA is looked for, so this holds on a machine without a GPU too.
    ['toDevice', () => fl.toDevice(fl.tensor(new Float32Array(2), [2]), { devcie: 0 } as never), 'devcie', 'device'],
  ];
  for (const [what, call, key, near] of cases)
    it(`${what}: '${key}' is ERR_ARG, suggesting '${near}'`, () => {
      expectCode(call, 'ERR_ARG', new RegExp(`unknown option '${key}'`), new RegExp(`did you mean '${near}'\\?`));
    });

  it('async twins reject the same way', async () => {
    await expect(fl.softmaxCrossEntropyAsync(S(), y, { lableSmoothing: 0.1 } as never)).rejects.toMatchObject({ code: 'ERR_ARG' });
    await expect(fl.softTopKAsync(S(), 1, { aplha: 1 } as never)).rejects.toMatchObject({ code: 'ERR_ARG' });
  });

  it('a key far from every option is named without a guess, with the valid ones listed', () => {
    const e = expectCode(() => fl.logSumExp(S(), { temperature: 0.07 } as never), 'ERR_ARG', /unknown option 'temperature'/, /'scale', 'shape', 'dtype'/);
    expect(e.message).not.toMatch(/did you mean/);
  });

  it('an undefined value still counts as given (a misspelt key is caught even when unset)', () => {
    expectCode(() => fl.softmaxCrossEntropy(S(), y, { lableSmoothing: undefined } as never), 'ERR_ARG', /lableSmoothing/);
  });

  it('the tfjs adapter', () => {
    const logits = tf.tensor2d([0.5, -1, 2, 0, 1, 3], [2, 3]);
    // lib/tfjs is loaded from source here, so its error classes are not dist's: match code and message.
    expect(() => adapter.softmaxCrossEntropy(logits, y, { lableSmoothing: 0.1 } as never)).toThrow(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringMatching(/did you mean 'labelSmoothing'/) }));
    expect(() => adapter.infoNCE(tf.tensor2d([1, 0, 0, 1], [2, 2]), { symetric: true } as never)).toThrow(expect.objectContaining({ code: 'ERR_ARG', message: expect.stringMatching(/did you mean 'symmetric'/) }));
    logits.dispose();
  });
});

describe('the op registry (scripts/ops.mjs)', () => {
  it("lists each op's own options: those it accepts beyond the common ones", () => {
    for (const op of ops) {
      const inputs = op.make(fl, makeRng(1), { ...op.cases[0], dtype: 'float32' });
      const call = () => fl[op.fn as 'logSumExp'](...(argsOf(op, { ...inputs, opts: { noSuchOption: 1 } }, inputs.scores) as [never]));
      const message = expectCode(call, 'ERR_ARG').message;
      const known = [...message.slice(message.indexOf('expected one of')).matchAll(/'(\w+)'/g)].map((m) => m[1]);
      const common: readonly string[] = op.returns === 'loss' ? LOSS_OPTION_KEYS : ['shape', 'dtype'];
      expect(known.filter((k) => !common.includes(k)).sort(), op.name).toEqual([...op.options].sort());
    }
  });
});
