// The float64 references themselves (test/reference/): against PyTorch's golden cases, against
// finite differences, against each other where two losses coincide, and on −∞ scores. Every
// kernel test trusts these, so they get checked from several independent directions.
import { describe, expect, it } from 'vitest';
import { bf16Bits, bf16Value, f16Bits, f16Value, fromBFloat16Bits, fromFloat16Bits, roundToFloat16, toBFloat16Bits, toFloat16Bits } from './reference/dtype.js';
import { fdGradCheck, fdScalarCheck } from './reference/fd.js';
import { loadGoldenCases, runReference } from './reference/golden.js';
import {
  dclwWeights,
  diagonalPositives,
  refBinaryCrossEntropy,
  refDecoupledContrastive,
  refDecoupledSoftmax,
  refInfoNCE,
  refMultiLabelSoftmax,
  refSoftmaxCrossEntropy,
  refSoftTopK,
  refSoftTopKLoss,
  refSoftTopKVjp,
  type RefDecoupledContrastiveOptions,
  type RefPositives,
  type RefResult,
} from './reference/index.js';
import { makeRng, randomExclude, randomPositives, randomScores, type Rng } from './reference/rng.js';

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let n = 0;
  let d = 0;
  for (let i = 0; i < b.length; i++) {
    n += (a[i] - b[i]) ** 2;
    d += b[i] ** 2;
  }
  return Math.sqrt(n / Math.max(d, 1e-300));
};
const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);
const sum = (a: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
};
const allFinite = (a: ArrayLike<number>): boolean => Array.prototype.every.call(a, (v: number) => Number.isFinite(v));
const scoresOf = (rng: Rng, B: number, N: number, sigma = 1): Float64Array => Float64Array.from(randomScores(rng, B, N, { sigma }));
const gradOutputOf = (rng: Rng, B: number): Float64Array => Float64Array.from({ length: B }, () => rng.normal());
const labelsOf = (rng: Rng, B: number, N: number): Int32Array => Int32Array.from({ length: B }, (_, i) => (i === 1 ? -100 : rng.int(0, N)));

/** S with every entry of `exclude` set to −∞. */
function withOut(S: Float64Array, N: number, exclude: RefPositives): Float64Array {
  const T = S.slice();
  for (let i = 0; i + 1 < exclude.rowPtr.length; i++) for (let e = exclude.rowPtr[i]; e < exclude.rowPtr[i + 1]; e++) T[i * N + exclude.cols[e]] = -Infinity;
  return T;
}

describe('golden cases (PyTorch float64)', () => {
  for (const c of loadGoldenCases())
    it(`${c.fn} ${c.shape.join('x')} ${JSON.stringify(c.opts).slice(0, 70)}`, () => {
      const r = runReference(c);
      // binaryCrossEntropy: torch's softplus is linear above 20 (threshold=20), so its golden
      // gradient has σ(z) = 1 exactly where the true value is 1 − e^{−z} ≈ 1 − 6e-10; that is
      // the 1e-10 gap in those two cases, inside the tolerance. Every other case agrees to 1e-15.
      expect(relL2(r.grad, c.grad)).toBeLessThanOrEqual(1e-9);
      if ('values' in r) {
        for (let i = 0; i < r.values.length; i++) expect(Math.abs(r.values[i] - c.values![i])).toBeLessThanOrEqual(1e-12);
        for (let i = 0; i < r.threshold.length; i++) expect(rel(r.threshold[i], c.threshold![i])).toBeLessThanOrEqual(1e-12);
      } else {
        expect(rel(r.loss, c.loss)).toBeLessThanOrEqual(1e-10);
        expect(Math.abs(r.dScale - c.dScale!)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(c.dScale!)));
      }
    });

  it('covers every loss', () => {
    expect(new Set(loadGoldenCases().map((c) => c.fn))).toEqual(
      new Set(['softmaxCrossEntropy', 'multiLabelSoftmax', 'infoNCE', 'decoupledSoftmax', 'decoupledContrastive', 'binaryCrossEntropy', 'softTopK', 'softTopKLoss']),
    );
  });

  it('DCLW weights come from the raw scores S, not from z = scale·S', () => {
    const c = loadGoldenCases().find((g) => g.fn === 'decoupledContrastive' && g.opts.weighting)!;
    const scale = c.opts.scale as number;
    // σ/scale applied to S is σ applied to z: that reading misses the golden loss by far.
    const onZ = refDecoupledContrastive(c.S, 7, 7, { scale, weighting: { sigma: 0.5 / scale } });
    expect(rel(onZ.loss, c.loss)).toBeGreaterThan(1e-3);
  });
});

/** One finite-difference setup: the loss as a function of S and of the scale. */
interface Setup {
  run: (S: Float64Array, scale: number) => RefResult;
  scale: number;
  /** Row weights of a 'none' reduction; the checked objective is then Σ_i g_i·ℓ_i. */
  gradOutput?: ArrayLike<number>;
  sigma?: number;
}

/** Registers a finite-difference test of grad and dScale for each variant. */
function fdSuite(name: string, variants: [string, number, number, (rng: Rng, B: number, N: number) => Setup][]): void {
  describe(`${name}: finite differences`, () => {
    variants.forEach(([label, B, N, make], v) =>
      it(`${label} (${B}x${N})`, () => {
        const rng = makeRng(1000 + 97 * v + name.length);
        const setup = make(rng, B, N);
        const S = scoresOf(rng, B, N, setup.sigma ?? 1);
        const objective = (r: RefResult) => (setup.gradOutput ? r.rowLoss.reduce((a, l, i) => a + l * setup.gradOutput![i], 0) : r.loss);
        const r = setup.run(S, setup.scale);
        expect(allFinite(r.grad) && Number.isFinite(r.loss) && Number.isFinite(r.dScale)).toBe(true);
        expect(r.rowLoss.length).toBe(B);
        const g = fdGradCheck((s) => objective(setup.run(s, setup.scale)), S, r.grad);
        expect(g.relErr, `grad max abs err ${g.maxAbsErr}`).toBeLessThanOrEqual(1e-8);
        const d = fdScalarCheck((scale) => objective(setup.run(S, scale)), setup.scale, r.dScale);
        expect(d.relErr, `dScale ${r.dScale}`).toBeLessThanOrEqual(1e-8);
      }),
    );
  });
}

fdSuite('softmaxCrossEntropy', [
  ['plain', 5, 11, (rng, B, N) => {
    const labels = labelsOf(rng, B, N);
    return { scale: 1, run: (S, scale) => refSoftmaxCrossEntropy(S, B, N, labels, { scale }) };
  }],
  ['scale', 7, 23, (rng, B, N) => {
    const labels = labelsOf(rng, B, N);
    return { scale: 2.5, run: (S, scale) => refSoftmaxCrossEntropy(S, B, N, labels, { scale }) };
  }],
  ['labelSmoothing', 3, 17, (rng, B, N) => {
    const labels = labelsOf(rng, B, N);
    return { scale: 1, run: (S, scale) => refSoftmaxCrossEntropy(S, B, N, labels, { scale, labelSmoothing: 0.2 }) };
  }],
  ['zLoss', 4, 29, (rng, B, N) => {
    const labels = labelsOf(rng, B, N);
    return { scale: 1.3, run: (S, scale) => refSoftmaxCrossEntropy(S, B, N, labels, { scale, zLoss: 0.01 }) };
  }],
  ['softcap', 5, 31, (rng, B, N) => {
    const labels = labelsOf(rng, B, N);
    return { scale: 1.5, sigma: 3, run: (S, scale) => refSoftmaxCrossEntropy(S, B, N, labels, { scale, softcap: 2 }) };
  }],
  ['classWeights + smoothing, sum', 6, 13, (rng, B, N) => {
    const labels = labelsOf(rng, B, N);
    const classWeights = Float64Array.from({ length: N }, () => 0.5 + rng.uniform());
    return { scale: 0.8, run: (S, scale) => refSoftmaxCrossEntropy(S, B, N, labels, { scale, classWeights, labelSmoothing: 0.1, reduction: 'sum' }) };
  }],
  ['everything, none + gradOutput, ignoreIndex 3', 7, 19, (rng, B, N) => {
    const classWeights = Float64Array.from({ length: N }, () => 0.5 + rng.uniform());
    const gradOutput = gradOutputOf(rng, B);
    const labels = Int32Array.from({ length: B }, (_, i) => (i % 3 === 0 ? 3 : 5 + i));
    const opts = { classWeights, gradOutput, labelSmoothing: 0.05, zLoss: 1e-3, softcap: 4, ignoreIndex: 3, reduction: 'none' as const };
    return { scale: 1.7, gradOutput, run: (S, scale) => refSoftmaxCrossEntropy(S, B, N, labels, { ...opts, scale }) };
  }],
]);

fdSuite('multiLabelSoftmax', [
  ['plain', 5, 11, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 3 });
    return { scale: 1, run: (S, scale) => refMultiLabelSoftmax(S, B, N, P, { scale }) };
  }],
  ['weighted + exclude, rows without positives', 7, 37, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 0, max: 4, weighted: true });
    const exclude = randomExclude(rng, B, N, P, { max: 6 });
    return { scale: 2.5, run: (S, scale) => refMultiLabelSoftmax(S, B, N, P, { scale, exclude }) };
  }],
  ['sum', 3, 53, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 2, max: 5, weighted: true });
    return { scale: 0.7, run: (S, scale) => refMultiLabelSoftmax(S, B, N, P, { scale, reduction: 'sum' }) };
  }],
  ['none + gradOutput + exclude', 6, 21, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 3, weighted: true });
    const exclude = randomExclude(rng, B, N, P, { max: 4 });
    const gradOutput = gradOutputOf(rng, B);
    return { scale: 1.3, gradOutput, run: (S, scale) => refMultiLabelSoftmax(S, B, N, P, { scale, exclude, reduction: 'none', gradOutput }) };
  }],
]);

fdSuite('infoNCE', [
  ['diagonal', 5, 11, () => ({ scale: 3, run: (S, scale) => refInfoNCE(S, 5, 11, { scale }) })],
  ['CSR weighted + exclude, rows without positives', 7, 29, (rng, B, N) => {
    const positives = randomPositives(rng, B, N, { min: 0, max: 3, weighted: true });
    const exclude = randomExclude(rng, B, N, positives, { max: 5 });
    return { scale: 2, run: (S, scale) => refInfoNCE(S, B, N, { scale, positives, exclude }) };
  }],
  ['none + gradOutput', 4, 13, (rng, B, N) => {
    const positives = randomPositives(rng, B, N, { min: 1, max: 3 });
    const gradOutput = gradOutputOf(rng, B);
    return { scale: 1.1, gradOutput, run: (S, scale) => refInfoNCE(S, B, N, { scale, positives, reduction: 'none', gradOutput }) };
  }],
  ['symmetric', 7, 7, () => ({ scale: 4, run: (S, scale) => refInfoNCE(S, 7, 7, { scale, symmetric: true }) })],
  ['symmetric sum + exclude', 5, 5, (rng, B, N) => {
    const exclude = randomExclude(rng, B, N, diagonalPositives(B), { max: 1 });
    return { scale: 2, run: (S, scale) => refInfoNCE(S, B, N, { scale, symmetric: true, exclude, reduction: 'sum' }) };
  }],
  ['symmetric none + gradOutput, CSR positives', 6, 6, (rng, B, N) => {
    const positives = randomPositives(rng, B, N, { min: 0, max: 2, weighted: true });
    const gradOutput = gradOutputOf(rng, B);
    return { scale: 1.5, gradOutput, run: (S, scale) => refInfoNCE(S, B, N, { scale, symmetric: true, positives, reduction: 'none', gradOutput }) };
  }],
]);

fdSuite('decoupledSoftmax', [
  ['plain', 5, 11, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 3 });
    return { scale: 1, run: (S, scale) => refDecoupledSoftmax(S, B, N, P, { scale }) };
  }],
  ['weighted + exclude, rows without positives', 7, 41, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 0, max: 5, weighted: true });
    const exclude = randomExclude(rng, B, N, P, { max: 6 });
    return { scale: 4, run: (S, scale) => refDecoupledSoftmax(S, B, N, P, { scale, exclude }) };
  }],
  ['sum', 3, 23, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 2, max: 6 });
    return { scale: 0.6, run: (S, scale) => refDecoupledSoftmax(S, B, N, P, { scale, reduction: 'sum' }) };
  }],
  ['none + gradOutput', 6, 17, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 4, weighted: true });
    const gradOutput = gradOutputOf(rng, B);
    return { scale: 2, gradOutput, run: (S, scale) => refDecoupledSoftmax(S, B, N, P, { scale, reduction: 'none', gradOutput }) };
  }],
]);

/** One positive per row, at a random column. */
const singlePositives = (rng: Rng, B: number, N: number): RefPositives => ({
  rowPtr: Array.from({ length: B + 1 }, (_, i) => i),
  cols: Array.from({ length: B }, () => rng.int(0, N)),
});

/**
 * DCLW's w is a constant of the loss (no gradient through it), so finite differences must hold
 * it fixed: this run freezes the weights of the first S it sees (fdSuite's unperturbed S).
 */
function frozenDclw(B: number, N: number, sigma: number, opts: RefDecoupledContrastiveOptions): Setup['run'] {
  let w: Float64Array | undefined;
  return (S, scale) => {
    w ??= dclwWeights(S, B, N, sigma, opts.positives);
    return refDecoupledContrastive(S, B, N, { ...opts, scale, rowWeights: w });
  };
}

fdSuite('decoupledContrastive', [
  ['diagonal', 7, 7, () => ({ scale: 5, run: (S, scale) => refDecoupledContrastive(S, 7, 7, { scale }) })],
  ['DCLW', 5, 9, () => ({ scale: 3, run: frozenDclw(5, 9, 0.5, {}) })],
  ['DCLW sigma 0.3, CSR + exclude, sum', 6, 19, (rng, B, N) => {
    const positives = singlePositives(rng, B, N);
    const exclude = randomExclude(rng, B, N, positives, { max: 4 });
    return { scale: 2, run: frozenDclw(B, N, 0.3, { positives, exclude, reduction: 'sum' }) };
  }],
  ['DCLW none + gradOutput', 4, 11, (rng, B, N) => {
    const gradOutput = gradOutputOf(rng, B);
    return { scale: 1.5, gradOutput, run: frozenDclw(B, N, 0.7, { reduction: 'none', gradOutput }) };
  }],
]);

describe('decoupledContrastive: DCLW', () => {
  it('is DCL with the weights w_i = 2 − B·softmax_i(S_ip/σ) held constant', () => {
    const rng = makeRng(71);
    const B = 6, N = 10;
    const S = scoresOf(rng, B, N);
    const positives = singlePositives(rng, B, N);
    const w = dclwWeights(S, B, N, 0.4, positives);
    expect(rel(sum(w), B)).toBeLessThanOrEqual(1e-15); // Σ_i (2 − B·softmax_i) = 2B − B
    const a = refDecoupledContrastive(S, B, N, { scale: 2, positives, weighting: { sigma: 0.4 } });
    const b = refDecoupledContrastive(S, B, N, { scale: 2, positives, rowWeights: w });
    expect(a.loss).toBe(b.loss);
    expect(Array.from(a.grad)).toEqual(Array.from(b.grad));
    expect(a.dScale).toBe(b.dScale);
    // The weights do not depend on the scale (they read S, not z).
    expect(Array.from(dclwWeights(S.map((x) => 2 * x), B, N, 0.8, positives))).toEqual(Array.from(w));
  });
});

fdSuite('binaryCrossEntropy', [
  ['plain', 5, 11, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 0, max: 3 });
    return { scale: 1, run: (S, scale) => refBinaryCrossEntropy(S, B, N, P, { scale }) };
  }],
  ['exclude, scale', 7, 31, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 4 });
    const exclude = randomExclude(rng, B, N, P, { max: 6 });
    return { scale: 4, sigma: 2, run: (S, scale) => refBinaryCrossEntropy(S, B, N, P, { scale, exclude }) };
  }],
  ['soft targets (weights), sum', 3, 13, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 5, weighted: true });
    return { scale: 1.2, run: (S, scale) => refBinaryCrossEntropy(S, B, N, P, { scale, reduction: 'sum' }) };
  }],
  ['none + gradOutput', 6, 17, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 2 });
    const gradOutput = gradOutputOf(rng, B);
    return { scale: 0.9, gradOutput, run: (S, scale) => refBinaryCrossEntropy(S, B, N, P, { scale, reduction: 'none', gradOutput }) };
  }],
]);

fdSuite('softTopKLoss', [
  ['defaults (k 5, alpha 2)', 5, 23, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 3 });
    return { scale: 1, run: (S, scale) => refSoftTopKLoss(S, B, N, P, { scale }) };
  }],
  ['k per row, weighted + exclude, rows without positives', 7, 37, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 0, max: 4, weighted: true });
    const exclude = randomExclude(rng, B, N, P, { max: 6 });
    const k = Int32Array.from({ length: B }, () => rng.int(1, 9));
    return { scale: 1.5, run: (S, scale) => refSoftTopKLoss(S, B, N, P, { scale, exclude, k, alpha: 1 }) };
  }],
  ['numPositives, sum', 4, 19, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 5, weighted: true });
    return { scale: 0.8, run: (S, scale) => refSoftTopKLoss(S, B, N, P, { scale, k: 'numPositives', reduction: 'sum' }) };
  }],
  ['none + gradOutput, fractional k', 6, 29, (rng, B, N) => {
    const P = randomPositives(rng, B, N, { min: 1, max: 3 });
    const gradOutput = gradOutputOf(rng, B);
    return { scale: 2, gradOutput, run: (S, scale) => refSoftTopKLoss(S, B, N, P, { scale, k: 3.5, alpha: 3, reduction: 'none', gradOutput }) };
  }],
]);

describe('softTopK operator: finite differences of the vjp', () => {
  const variants: [string, number, number, number | Int32Array, { alpha?: number; output?: 'prob' | 'log'; scale?: number }, boolean][] = [
    ['prob', 5, 23, 5, {}, false],
    ['log', 5, 23, 5, { output: 'log' }, false],
    ['prob, k per row, alpha 2.5, exclude', 7, 41, Int32Array.from([1, 3, 5, 7, 9, 11, 2]), { alpha: 2.5 }, true],
    ['log, fractional k, alpha 0.7, scale 1.5, exclude', 4, 13, 2.5, { output: 'log', alpha: 0.7, scale: 1.5 }, true],
  ];
  variants.forEach(([label, B, N, k, o, excl], v) =>
    it(`${label} (${B}x${N})`, () => {
      const rng = makeRng(500 + v);
      const S = scoresOf(rng, B, N);
      const opts = { ...o, exclude: excl ? randomExclude(rng, B, N, undefined, { max: 4 }) : undefined };
      const upstream = Float64Array.from({ length: B * N }, () => rng.normal());
      const objective = (s: Float64Array) => {
        const { values } = refSoftTopK(s, B, N, k, opts);
        let total = 0;
        // Excluded entries' values are constants (0 or −∞): no gradient and no term.
        for (let i = 0; i < values.length; i++) if (values[i] !== -Infinity) total += upstream[i] * values[i];
        return total;
      };
      const grad = refSoftTopKVjp(S, B, N, k, opts, upstream);
      const g = fdGradCheck(objective, S, grad);
      expect(g.relErr, `max abs err ${g.maxAbsErr}`).toBeLessThanOrEqual(1e-8);
      if (opts.exclude)
        for (let i = 0; i < B; i++)
          for (let e = opts.exclude.rowPtr[i]; e < opts.exclude.rowPtr[i + 1]; e++) expect(grad[i * N + opts.exclude.cols[e]]).toBe(0);
    }),
  );
});

describe('softTopK operator: the threshold', () => {
  for (const kind of ['normal', 'flat', 'peaked'] as const)
    it(`Σ_j p_ij = k_i on ${kind} rows, log = log prob, excluded entries 0 / −∞`, () => {
      const rng = makeRng(kind.length);
      const B = 4, N = 301;
      const S = randomScores(rng, B, N, { kind });
      const k = Int32Array.from([1, 7, 150, 300 - 40]);
      const exclude = randomExclude(rng, B, N, undefined, { max: 40 });
      const prob = refSoftTopK(S, B, N, k, { alpha: 1.5, exclude });
      const log = refSoftTopK(S, B, N, k, { alpha: 1.5, exclude, output: 'log' });
      const out = withOut(new Float64Array(B * N), N, exclude);
      for (let i = 0; i < B; i++) {
        let total = 0;
        for (let j = 0; j < N; j++) {
          const p = prob.values[i * N + j];
          if (out[i * N + j] === -Infinity) {
            expect(p).toBe(0);
            expect(log.values[i * N + j]).toBe(-Infinity);
          } else if (p > 1e-300) expect(Math.abs(log.values[i * N + j] - Math.log(p))).toBeLessThanOrEqual(1e-14 * Math.max(1, Math.abs(Math.log(p))));
          total += p;
        }
        expect(rel(total, k[i])).toBeLessThanOrEqual(1e-12);
        expect(log.threshold[i]).toBe(prob.threshold[i]);
      }
    });

  it('a flat row of N = 300007 (the case where DEXML’s ±10/α bracket fails)', () => {
    const rng = makeRng(3);
    const N = 300007;
    const S = randomScores(rng, 1, N, { kind: 'flat' });
    const { values, threshold } = refSoftTopK(S, 1, N, 5, { alpha: 2 });
    expect(rel(sum(values), 5)).toBeLessThanOrEqual(1e-10);
    expect(threshold[0]).toBeLessThan(-10 / 2); // outside DEXML's bracket
  });

  it('log output stays finite far below the threshold', () => {
    const S = [100, 99, 98, -1000, -3e30];
    const { values } = refSoftTopK(S, 1, 5, 2, { output: 'log' });
    expect(allFinite(values)).toBe(true);
    expect(values[4]).toBeLessThan(-1e30);
  });

  it('rejects k outside (0, N_i)', () => {
    expect(() => refSoftTopK([1, 2, 3], 1, 3, 3)).toThrow(/0 < k < N_i/);
    expect(() => refSoftTopK([1, 2, -Infinity], 1, 3, 2)).toThrow(/N_i=2/);
  });
});

describe('semantics the contract leaves to the reference', () => {
  it('infoNCE mean divides by the rows that have a positive', () => {
    const rng = makeRng(11);
    const B = 5, N = 17;
    const S = scoresOf(rng, B, N);
    const positives = { rowPtr: [0, 2, 2, 3, 3, 5], cols: [1, 4, 0, 7, 9] };
    const mean = refInfoNCE(S, B, N, { positives });
    const total = refInfoNCE(S, B, N, { positives, reduction: 'sum' });
    expect(rel(mean.loss * 3, total.loss)).toBeLessThanOrEqual(1e-15);
    expect(relL2(mean.grad.map((g) => g * 3), total.grad)).toBeLessThanOrEqual(1e-15);
  });

  it("'none': loss = Σ rowLoss; grad = Σ_i gradOutput_i ∂ℓ_i; 'sum' and 'mean' report the same rowLoss", () => {
    const rng = makeRng(12);
    const B = 4, N = 15;
    const S = scoresOf(rng, B, N);
    const P = randomPositives(rng, B, N, { min: 1, max: 3, weighted: true });
    const g = gradOutputOf(rng, B);
    const losses: [string, (o: { reduction: 'none' | 'sum' | 'mean'; gradOutput?: Float64Array }) => RefResult][] = [
      ['softmaxCrossEntropy', (o) => refSoftmaxCrossEntropy(S, B, N, [1, 2, 3, 4], o)],
      ['multiLabelSoftmax', (o) => refMultiLabelSoftmax(S, B, N, P, o)],
      ['infoNCE', (o) => refInfoNCE(S, B, N, { ...o, positives: P })],
      ['infoNCE symmetric', (o) => refInfoNCE(S.subarray(0, B * B), B, B, { ...o, symmetric: true })],
      ['decoupledSoftmax', (o) => refDecoupledSoftmax(S, B, N, P, o)],
      ['decoupledContrastive', (o) => refDecoupledContrastive(S, B, N, { ...o, weighting: {} })],
      ['binaryCrossEntropy', (o) => refBinaryCrossEntropy(S, B, N, P, o)],
      ['softTopKLoss', (o) => refSoftTopKLoss(S, B, N, P, o)],
    ];
    for (const [name, f] of losses) {
      const none = f({ reduction: 'none' });
      const weighted = f({ reduction: 'none', gradOutput: g });
      const summed = f({ reduction: 'sum' });
      const mean = f({ reduction: 'mean' });
      expect(none.loss, name).toBe(sum(none.rowLoss));
      expect(weighted.loss, name).toBe(none.loss); // gradOutput weights the gradient only
      expect(Array.from(summed.rowLoss), name).toEqual(Array.from(none.rowLoss));
      expect(Array.from(mean.rowLoss), name).toEqual(Array.from(none.rowLoss));
      expect(rel(none.loss, summed.loss), name).toBeLessThanOrEqual(1e-15);
      expect(relL2(none.grad, summed.grad), name).toBeLessThanOrEqual(1e-15);
      // The gradient is linear in gradOutput: the weighted one is Σ_i g_i·(row i's gradient).
      const combined = new Float64Array(weighted.grad.length);
      for (let i = 0; i < B; i++) {
        const row = f({ reduction: 'none', gradOutput: Float64Array.from({ length: B }, (_, r) => (r === i ? 1 : 0)) });
        for (let j = 0; j < combined.length; j++) combined[j] += g[i] * row.grad[j];
      }
      expect(relL2(weighted.grad, combined), name).toBeLessThanOrEqual(1e-14);
    }
  });

  it('symmetric infoNCE is the mean of row-wise InfoNCE on S and on Sᵀ', () => {
    const rng = makeRng(13);
    const B = 6;
    const S = scoresOf(rng, B, B);
    const T = new Float64Array(B * B);
    for (let i = 0; i < B; i++) for (let j = 0; j < B; j++) T[j * B + i] = S[i * B + j];
    for (const reduction of ['mean', 'sum'] as const) {
      const sym = refInfoNCE(S, B, B, { scale: 3, symmetric: true, reduction });
      const rows = refInfoNCE(S, B, B, { scale: 3, reduction });
      const cols = refInfoNCE(T, B, B, { scale: 3, reduction });
      expect(rel(sym.loss, (rows.loss + cols.loss) / 2)).toBeLessThanOrEqual(1e-15);
      expect(rel(sym.dScale, (rows.dScale + cols.dScale) / 2)).toBeLessThanOrEqual(1e-14);
      const expected = rows.grad.map((g, ij) => (g + cols.grad[(ij % B) * B + Math.floor(ij / B)]) / 2);
      expect(relL2(sym.grad, expected)).toBeLessThanOrEqual(1e-15);
      for (let i = 0; i < B; i++) expect(rel(sym.rowLoss[i], (rows.rowLoss[i] + cols.rowLoss[i]) / 2)).toBeLessThanOrEqual(1e-15);
    }
  });

  it('one positive per row: infoNCE and multiLabelSoftmax are cross-entropy', () => {
    const rng = makeRng(14);
    const B = 7, N = 31;
    const S = scoresOf(rng, B, N, 2);
    const labels = Int32Array.from({ length: B }, () => rng.int(0, N));
    const positives = { rowPtr: Array.from({ length: B + 1 }, (_, i) => i), cols: Array.from(labels) };
    const ce = refSoftmaxCrossEntropy(S, B, N, labels, { scale: 2 });
    const nce = refInfoNCE(S, B, N, { scale: 2, positives });
    expect(rel(nce.loss, ce.loss)).toBeLessThanOrEqual(1e-14);
    expect(relL2(nce.grad, ce.grad)).toBeLessThanOrEqual(1e-14);
    expect(rel(nce.dScale, ce.dScale)).toBeLessThanOrEqual(1e-13);
    const ml = refMultiLabelSoftmax(S, B, N, positives, { scale: 2, reduction: 'sum' });
    const ceSum = refSoftmaxCrossEntropy(S, B, N, labels, { scale: 2, reduction: 'sum' });
    expect(rel(ml.loss, ceSum.loss)).toBeLessThanOrEqual(1e-14);
    expect(relL2(ml.grad, ceSum.grad)).toBeLessThanOrEqual(1e-14);
  });

  it('decoupled softmax drops the positives from the denominator; infoNCE keeps them', () => {
    // With a single positive: ℓ_dec = −log σ(z_p − Z) = log(1 + e^{Z − z_p}) = lse − z_p = ℓ_nce.
    const rng = makeRng(15);
    const S = scoresOf(rng, 3, 9);
    const one = { rowPtr: [0, 1, 2, 3], cols: [4, 0, 8] };
    expect(rel(refDecoupledSoftmax(S, 3, 9, one).loss, refInfoNCE(S, 3, 9, { positives: one }).loss)).toBeLessThanOrEqual(1e-14);
    const two = { rowPtr: [0, 2, 4, 6], cols: [4, 5, 0, 1, 7, 8] };
    expect(refDecoupledSoftmax(S, 3, 9, two).loss).toBeLessThan(refInfoNCE(S, 3, 9, { positives: two }).loss);
  });

  it('cross-entropy: every row ignored gives loss 0 and a zero gradient, not NaN', () => {
    const S = scoresOf(makeRng(16), 3, 7);
    const r = refSoftmaxCrossEntropy(S, 3, 7, [-100, -100, -100], { labelSmoothing: 0.1, zLoss: 1e-3 });
    expect(r.loss).toBe(0);
    expect(r.dScale).toBe(0);
    expect(r.grad.every((v) => v === 0)).toBe(true);
    expect(allFinite(r.lse!)).toBe(true);
  });

  it('BCE: confident entries keep full precision (e^{−z} well below an ulp of 1)', () => {
    // z = 40: softplus(−40) = 4.25e-18 and σ(40) − 1 = −4.25e-18, lost if formed as 1 − σ or z − softplus.
    const r = refBinaryCrossEntropy([40, -40], 1, 2, { rowPtr: [0, 1], cols: [0] }, { reduction: 'sum' });
    expect(rel(r.loss, 2 * Math.exp(-40))).toBeLessThanOrEqual(1e-14);
    expect(rel(r.grad[0], -Math.exp(-40))).toBeLessThanOrEqual(1e-14);
    expect(rel(r.grad[1], Math.exp(-40))).toBeLessThanOrEqual(1e-14);
  });
});

describe('−∞ scores: out of the loss, gradient exactly 0, never NaN', () => {
  const B = 5, N = 19;
  const rng = makeRng(21);
  const S = scoresOf(rng, B, N, 2);
  const P = randomPositives(rng, B, N, { min: 1, max: 3, weighted: true });
  const single = singlePositives(rng, B, N);
  const exclude = randomExclude(rng, B, N, P, { max: 4 });
  const exclude1 = randomExclude(rng, B, N, single, { max: 4 });
  const wSingle = dclwWeights(S, B, N, 0.5, single); // frozen, so finite differences apply
  const cases: [string, RefPositives, (S: Float64Array, exclude?: RefPositives) => RefResult][] = [
    ['multiLabelSoftmax', exclude, (s, e) => refMultiLabelSoftmax(s, B, N, P, { scale: 1.5, exclude: e })],
    ['infoNCE', exclude, (s, e) => refInfoNCE(s, B, N, { scale: 1.5, positives: P, exclude: e })],
    ['decoupledSoftmax', exclude, (s, e) => refDecoupledSoftmax(s, B, N, P, { scale: 1.5, exclude: e })],
    ['decoupledContrastive', exclude1, (s, e) => refDecoupledContrastive(s, B, N, { scale: 1.5, positives: single, exclude: e, rowWeights: wSingle })],
    ['binaryCrossEntropy', exclude, (s, e) => refBinaryCrossEntropy(s, B, N, P, { scale: 1.5, exclude: e })],
    ['softTopKLoss', exclude, (s, e) => refSoftTopKLoss(s, B, N, P, { scale: 1.5, exclude: e, k: 3 })],
  ];
  for (const [name, excl, f] of cases)
    it(`${name}: an entry at −∞ is the same as an excluded one`, () => {
      const a = f(S, excl);
      const Sout = withOut(S, N, excl);
      const b = f(Sout);
      expect(allFinite(b.grad) && Number.isFinite(b.loss) && Number.isFinite(b.dScale)).toBe(true);
      expect(rel(b.loss, a.loss)).toBeLessThanOrEqual(1e-15);
      expect(relL2(b.grad, a.grad)).toBeLessThanOrEqual(1e-15);
      expect(rel(b.dScale, a.dScale)).toBeLessThanOrEqual(1e-14);
      for (let ij = 0; ij < B * N; ij++) if (Sout[ij] === -Infinity) expect(b.grad[ij]).toBe(0);
      const g = fdGradCheck((s) => f(s).loss, Sout.slice(), b.grad);
      expect(g.relErr).toBeLessThanOrEqual(1e-8);
    });

  it('softmaxCrossEntropy: an entry at −∞ is the same as a class that is not there', () => {
    const labels = [0, 2, -100, 5, 1];
    const Sout = S.slice();
    for (let i = 0; i < B; i++) Sout[i * N + N - 1 - i] = -Infinity;
    Sout[2 * N + 3] = -Infinity;
    for (const opts of [{}, { zLoss: 1e-3 }, { softcap: 3, scale: 2 }]) {
      const r = refSoftmaxCrossEntropy(Sout, B, N, labels, opts);
      expect(allFinite(r.grad) && Number.isFinite(r.loss) && Number.isFinite(r.dScale)).toBe(true);
      for (let i = 0; i < B; i++) {
        // Row i alone, with its −∞ columns removed.
        const kept: number[] = [];
        let y = -100;
        for (let j = 0; j < N; j++) {
          if (Sout[i * N + j] === -Infinity) continue;
          if (j === labels[i]) y = kept.length;
          kept.push(Sout[i * N + j]);
        }
        const alone = refSoftmaxCrossEntropy(kept, 1, kept.length, [labels[i] === -100 ? -100 : y], { ...opts, reduction: 'sum' });
        expect(rel(r.rowLoss[i], alone.loss)).toBeLessThanOrEqual(1e-15);
        expect(rel(r.lse![i], alone.lse![0])).toBeLessThanOrEqual(1e-15);
      }
      for (let ij = 0; ij < B * N; ij++) if (Sout[ij] === -Infinity) expect(r.grad[ij]).toBe(0);
      const sm = refSoftmaxCrossEntropy(Sout, B, N, labels, { ...opts, labelSmoothing: 0.1 });
      expect(allFinite(sm.grad) && Number.isFinite(sm.loss)).toBe(true);
      expect(fdGradCheck((s) => refSoftmaxCrossEntropy(s, B, N, labels, { ...opts, labelSmoothing: 0.1 }).loss, Sout.slice(), sm.grad).relErr).toBeLessThanOrEqual(1e-8);
    }
  });

  it('a positive at −∞ costs +∞ but leaves the gradient finite; a row all at −∞ gives no NaN', () => {
    const Sp = S.slice();
    Sp[0 * N + P.cols[P.rowPtr[0]]] = -Infinity; // row 0's first positive
    for (let j = 0; j < N; j++) Sp[4 * N + j] = -Infinity; // row 4 entirely out
    const Sd = S.slice();
    Sd[0 * N + single.cols[0]] = -Infinity;
    for (let j = 0; j < N; j++) Sd[4 * N + j] = -Infinity;
    const results: [string, RefResult][] = [
      ['softmaxCrossEntropy', refSoftmaxCrossEntropy(Sp, B, N, [P.cols[0], 1, 2, 3, 4], { labelSmoothing: 0.1, zLoss: 1e-3 })],
      ['multiLabelSoftmax', refMultiLabelSoftmax(Sp, B, N, P)],
      ['infoNCE', refInfoNCE(Sp, B, N, { positives: P })],
      ['decoupledSoftmax', refDecoupledSoftmax(Sp, B, N, P)],
      ['decoupledContrastive', refDecoupledContrastive(Sd, B, N, { positives: single, weighting: {} })],
      ['binaryCrossEntropy', refBinaryCrossEntropy(Sp, B, N, P)],
    ];
    for (const [name, r] of results) {
      expect(r.rowLoss[0], name).toBe(Infinity);
      expect(r.rowLoss.some(Number.isNaN), name).toBe(false);
      expect(allFinite(r.grad), name).toBe(true);
      expect(Number.isNaN(r.dScale), name).toBe(false);
      for (let j = 0; j < N; j++) expect(r.grad[4 * N + j], name).toBe(0);
    }
    // softTopKLoss needs k < N_i, so only the −∞ positive here.
    const t = refSoftTopKLoss(Sp.subarray(0, 4 * N), 4, N, { rowPtr: P.rowPtr.subarray(0, 5), cols: P.cols, weights: P.weights }, { k: 3 });
    expect(t.rowLoss[0]).toBe(Infinity);
    expect(allFinite(t.grad)).toBe(true);
  });
});

describe('large rows run in reasonable time (N = 300007)', () => {
  it('every loss on 2 × 300007', () => {
    const rng = makeRng(31);
    const B = 2, N = 300007;
    const S = randomScores(rng, B, N, { kind: 'normal' });
    const P = randomPositives(rng, B, N, { min: 3, max: 8, weighted: true });
    const exclude = randomExclude(rng, B, N, P, { max: 100 });
    const t0 = performance.now();
    const results = [
      refSoftmaxCrossEntropy(S, B, N, [5, 299999], { labelSmoothing: 0.1, zLoss: 1e-4, softcap: 20 }),
      refMultiLabelSoftmax(S, B, N, P, { exclude }),
      refInfoNCE(S, B, N, { positives: P, exclude }),
      refDecoupledSoftmax(S, B, N, P, { exclude }),
      refDecoupledContrastive(S, B, N, { exclude: randomExclude(rng, B, N, diagonalPositives(B), { max: 100 }), weighting: {} }),
      refBinaryCrossEntropy(S, B, N, P, { exclude }),
      refSoftTopKLoss(S, B, N, P, { exclude, k: 'numPositives' }),
    ];
    const seconds = (performance.now() - t0) / 1000;
    for (const r of results) expect(allFinite(r.grad) && Number.isFinite(r.loss)).toBe(true);
    expect(seconds).toBeLessThan(20);
  });
});

describe('test helpers', () => {
  it('rng: the same seed gives the same scores; scores are fp32 values', () => {
    const a = randomScores(makeRng(7), 3, 50, { kind: 'peaked' });
    const b = randomScores(makeRng(7), 3, 50, { kind: 'peaked' });
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(randomScores(makeRng(8), 3, 50, { kind: 'peaked' })));
    const u = Array.from({ length: 1000 }, makeRng(9).uniform);
    expect(Math.min(...u)).toBeGreaterThan(0);
    expect(Math.max(...u)).toBeLessThan(1);
  });

  it('randomPositives / randomExclude: unique sorted columns, counts in range, disjoint', () => {
    const rng = makeRng(10);
    const B = 50, N = 23;
    const P = randomPositives(rng, B, N, { min: 1, max: 6, weighted: true });
    const E = randomExclude(rng, B, N, P, { max: 30 });
    expect(P.rowPtr.length).toBe(B + 1);
    expect(P.weights!.length).toBe(P.cols.length);
    for (const w of P.weights!) expect(w >= 0.5 && w < 1.5).toBe(true);
    for (let i = 0; i < B; i++) {
      const p = Array.from(P.cols.subarray(P.rowPtr[i], P.rowPtr[i + 1]));
      const e = Array.from(E.cols.subarray(E.rowPtr[i], E.rowPtr[i + 1]));
      expect(p.length >= 1 && p.length <= 6).toBe(true);
      expect(e.length).toBeLessThanOrEqual(Math.floor((N - p.length) / 2));
      for (const cols of [p, e]) {
        for (let k = 1; k < cols.length; k++) expect(cols[k]).toBeGreaterThan(cols[k - 1]);
        for (const c of cols) expect(c >= 0 && c < N).toBe(true);
      }
      for (const c of e) expect(p.includes(c)).toBe(false);
    }
    expect(E.cols.length).toBeGreaterThan(0);
  });

  it('fdGradCheck and fdScalarCheck: agree with a known derivative, catch a wrong one', () => {
    const f = (S: Float64Array) => S.reduce((a, x) => a + Math.sin(x) * x * x, 0);
    const S = Float64Array.from([0.3, -1.2, 2.5, 4, -3]);
    const good = S.map((x) => Math.cos(x) * x * x + 2 * x * Math.sin(x));
    expect(fdGradCheck(f, S, good).relErr).toBeLessThan(1e-10);
    expect(Array.from(S)).toEqual([0.3, -1.2, 2.5, 4, -3]); // restored
    const bad = good.slice();
    bad[3] += 1e-4;
    expect(fdGradCheck(f, S, bad).maxAbsErr).toBeGreaterThan(0.9e-4);
    // A sample of all 5 entries is a permutation of them: the same verdict.
    expect(fdGradCheck(f, S, bad, { sample: 5, seed: 3 }).maxAbsErr).toBe(fdGradCheck(f, S, bad).maxAbsErr);
    const sampled = fdGradCheck(f, S, bad, { sample: 2, seed: 3 }).maxAbsErr;
    expect(sampled < 1e-9 || sampled > 0.9e-4).toBe(true);
    expect(fdScalarCheck((x) => Math.exp(2 * x), 0.7, 2 * Math.exp(1.4)).relErr).toBeLessThan(1e-10);
    // −∞ entries must carry an analytic gradient of exactly 0.
    expect(fdGradCheck(() => 0, Float64Array.from([-Infinity]), [0.5]).maxAbsErr).toBe(0.5);
  });
});

describe('dtype conversions (round to nearest even)', () => {
  const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
  const isNaNbf = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

  it('float16: every bit pattern survives bits → float32 → bits (NaNs stay NaN)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = toFloat16Bits(fromFloat16Bits(all));
    for (let h = 0; h < 65536; h++) {
      if (isNaN16(h)) expect(isNaN16(back[h])).toBe(true);
      else if (back[h] !== h) throw new Error(`0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    }
  });

  it('bfloat16: every bit pattern survives bits → float32 → bits (NaNs stay NaN)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = toBFloat16Bits(fromBFloat16Bits(all));
    for (let h = 0; h < 65536; h++) {
      if (isNaNbf(h)) expect(isNaNbf(back[h])).toBe(true);
      else if (back[h] !== h) throw new Error(`0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    }
  });

  it('ties, overflow, subnormals and signed zeros', () => {
    const f16 = (x: number) => f16Bits(x);
    expect(f16(1 + 2 ** -11)).toBe(0x3c00); // tie, down to even
    expect(f16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, up to even
    expect(f16(65504)).toBe(0x7bff);
    expect(f16(65519)).toBe(0x7bff); // below the midpoint 65520
    expect(f16(65520)).toBe(0x7c00); // the midpoint rounds to even, which is the overflow
    expect(f16(-1e10)).toBe(0xfc00);
    expect(f16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f16(2 ** -25)).toBe(0x0000); // tie with 0, to even
    expect(f16(3 * 2 ** -25)).toBe(0x0002);
    expect(f16(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f16(2 ** -14 - 2 ** -24)).toBe(0x03ff); // largest subnormal
    expect(f16(-0)).toBe(0x8000);
    expect(f16(1e-45)).toBe(0); // an fp32 subnormal
    expect(f16(Infinity)).toBe(0x7c00);
    expect(isNaN16(f16(Number.NaN))).toBe(true);
    expect(f16Value(0x7bff)).toBe(65504);
    expect(Object.is(f16Value(0x8000), -0)).toBe(true);

    const bf = (x: number) => bf16Bits(x);
    expect(bf(1 + 2 ** -8)).toBe(0x3f80);
    expect(bf(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bf(-Infinity)).toBe(0xff80);
    expect(bf(3.4028234663852886e38)).toBe(0x7f80); // fp32 max rounds past bf16's max
    expect(bf(2 ** -149)).toBe(0x0000); // fp32's smallest subnormal is below half of bf16's
    expect(bf(2 ** -133)).toBe(0x0001); // bf16's smallest subnormal
    expect(bf(3 * 2 ** -134)).toBe(0x0002); // tie, up to even
    expect(bf(-0)).toBe(0x8000);
    expect(isNaNbf(bf(Number.NaN))).toBe(true);
    expect(bf16Value(0x3fc0)).toBe(1.5);
    expect(bf16Value(0xc000)).toBe(-2);
  });

  it('float16 of random float32 values is the nearest float16, ties to even', () => {
    const rng = makeRng(41);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    for (let n = 0; n < 200000; n++) {
      let x: number;
      if (n % 3 === 0) {
        u32[0] = rng.int(0, 2 ** 32); // any float32 bit pattern
        x = f32[0];
      } else if (n % 3 === 1) x = Math.fround((rng.uniform() * 2 - 1) * 2 ** rng.int(-27, 17)); // inside float16's range
      else {
        // Exact midpoints between neighbouring float16 values (12 significant bits: exact in fp32).
        const h = rng.int(0, 0x7bff);
        x = ((f16Value(h) + f16Value(h + 1)) / 2) * (rng.uniform() < 0.5 ? -1 : 1);
      }
      if (Number.isNaN(x)) continue;
      const h = f16Bits(x);
      const v = f16Value(h);
      const a = Math.abs(x);
      // Neighbours of the magnitude; 0x7c00 stands for 2^16 (IEEE rounds as if the exponent were unbounded).
      const mag = (m: number) => (m === 0x7c00 ? 65536 : f16Value(m));
      const m = h & 0x7fff;
      const va = m === 0x7c00 ? 65536 : Math.abs(v);
      if (m === 0x7c00 && a < 65520) throw new Error(`${x} overflowed to infinity`);
      for (const nb of [m - 1, m + 1]) {
        if (nb < 0 || nb > 0x7c00) continue;
        const d0 = Math.abs(a - va);
        const d1 = Math.abs(a - mag(nb));
        if (d1 < d0) throw new Error(`${x} rounded to 0x${h.toString(16)} but 0x${nb.toString(16)} is nearer`);
        if (d1 === d0 && m % 2 === 1) throw new Error(`${x}: a tie rounded to odd 0x${h.toString(16)}`);
      }
      if (x !== 0 && v !== 0 && Math.sign(v) !== Math.sign(x)) throw new Error(`${x}: sign lost`);
      if (!Object.is(roundToFloat16(x), v)) throw new Error(`${x}: roundToFloat16 disagrees with the bits`);
    }
  });

  it('bfloat16 of random float32 values matches the bit-level rounding rule', () => {
    const rng = makeRng(42);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    for (let n = 0; n < 200000; n++) {
      // Any bit pattern; half of them with the low 16 bits set to a tie (0x8000).
      const any = rng.int(0, 2 ** 32);
      const u = n % 2 ? any : ((any & 0xffff0000) | 0x8000) >>> 0;
      u32[0] = u;
      if (Number.isNaN(f32[0])) continue;
      // Add half an ulp minus one, plus the lowest kept bit (ties to even), then truncate.
      const expected = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
      if (bf16Bits(f32[0]) !== expected) throw new Error(`0x${u.toString(16)}: got 0x${bf16Bits(f32[0]).toString(16)}, expected 0x${expected.toString(16)}`);
    }
  });
});
