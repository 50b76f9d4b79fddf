// The float64 references themselves: against PyTorch's golden cases and finite differences.
import { describe, expect, it } from 'vitest';
import { fdGradCheck, fdScalarCheck } from './reference/fd.js';
import { loadGoldenCases } from './reference/golden.js';
import { makeRng, randomScores } from './reference/rng.js';
import { refSoftmaxCrossEntropy, type RefCrossEntropyOptions } from './reference/softmaxCrossEntropy.js';

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let n = 0, d = 0;
  for (let i = 0; i < b.length; i++) { n += (a[i] - b[i]) ** 2; d += b[i] ** 2; }
  return Math.sqrt(n / Math.max(d, 1e-300));
};

describe('reference softmaxCrossEntropy', () => {
  for (const c of loadGoldenCases().filter((g) => g.fn === 'softmaxCrossEntropy'))
    it(`golden ${JSON.stringify(c.opts).slice(0, 60)}`, () => {
      const r = refSoftmaxCrossEntropy(c.S, c.shape[0], c.shape[1], c.labels!, c.opts as RefCrossEntropyOptions);
      expect(Math.abs(r.loss - c.loss) / Math.abs(c.loss)).toBeLessThan(1e-12);
      expect(relL2(r.grad, c.grad)).toBeLessThan(1e-12);
      expect(Math.abs(r.dScale - c.dScale!)).toBeLessThan(1e-12 * Math.max(1, Math.abs(c.dScale!)));
    });

  const variants: RefCrossEntropyOptions[] = [
    {}, { scale: 2.5 }, { labelSmoothing: 0.2 }, { zLoss: 0.01 }, { softcap: 2, scale: 1.5 },
    { reduction: 'sum', classWeights: [0.5, 1, 1.5, 2, 0.7, 0.9, 1.1, 1.3, 0.6, 0.8, 1.2] },
    { reduction: 'none', gradOutput: [0.3, -1.2, 2, 0.7, 1.1], labelSmoothing: 0.1, zLoss: 1e-3, softcap: 4 },
  ];
  variants.forEach((opts, k) =>
    it(`finite differences ${JSON.stringify(opts).slice(0, 60)}`, () => {
      const rng = makeRng(100 + k);
      const B = 5, N = 11;
      const S = Float64Array.from(randomScores(rng, B, N, { sigma: 1.5 }));
      const labels = [3, -100, 0, 10, 7];
      const total = (r: { rowLoss: Float64Array; loss: number }) =>
        opts.reduction === 'none' ? r.rowLoss.reduce((a, l, i) => a + l * Number(opts.gradOutput![i]), 0) : r.loss;
      const ref = refSoftmaxCrossEntropy(S, B, N, labels, opts);
      expect(fdGradCheck((s) => total(refSoftmaxCrossEntropy(s, B, N, labels, opts)), S, ref.grad)).toBeLessThan(1e-7);
      expect(fdScalarCheck((sc) => total(refSoftmaxCrossEntropy(S, B, N, labels, { ...opts, scale: sc })), opts.scale ?? 1, ref.dScale)).toBeLessThan(1e-7);
    }),
  );
});
