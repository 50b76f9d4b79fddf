// softmaxCrossEntropy: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there).
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { dtypes, randomLabels, reuseGrad, scoresTensor } from '../lib/op-kit.mjs';
import { makeRng, randomScores } from '../lib/random.mjs';
import { reduceRows, rowCoefficients } from '../lib/reference.mjs';

/**
 * MATH softmaxCrossEntropy (native/ops/cross_entropy_math.h) in float64, straight from the formulas (torch F.cross_entropy semantics plus z-loss
 * and softcap).
 *
 * A score of −∞ is out: probability 0, gradient 0 and no dScale term. In the label-smoothing
 * term ε·(1/N)Σ_j w_j(lse − z_j) an out entry keeps its w_j·lse part and drops its −w_j·z_j
 * part (z_j is taken as 0 there, as the kernels do), so the smoothing loss stays finite and
 * w̄ stays the mean over all N classes. An ignored row still reports its lse. A row whose
 * every logit is −∞ (and that is not ignored) has loss +∞ and gradient 0.
 */
// interface RefCrossEntropyOptions extends RefCommonOptions {
//   /** Label marking an ignored row (default −100). */
//   ignoreIndex?: number;
//   /** ε in [0, 1]. */
//   labelSmoothing?: number;
//   /** w, length N (default all 1). */
//   classWeights?: ArrayLike<number>;
//   /** λ of the z-loss λ·lse². */
//   zLoss?: number;
//   /** c of the softcap z = c·tanh(scale·S/c). */
//   softcap?: number;
// }

export function refSoftmaxCrossEntropy(S, B, N, labels, opts = {}) {
  const scale = opts.scale ?? 1;
  const eps = opts.labelSmoothing ?? 0;
  const lambda = opts.zLoss ?? 0;
  const cap = opts.softcap;
  const ignore = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  const cw = opts.classWeights;
  const w = (j) => (cw ? cw[j] : 1);

  let wMean = 0;
  for (let j = 0; j < N; j++) wMean += w(j);
  wMean /= N;
  // torch's 'mean' divides by the total weight of the rows that count.
  let wSum = 0;
  for (let i = 0; i < B; i++) if (labels[i] !== ignore) wSum += w(labels[i]);
  const coef = rowCoefficients(reduction, B, wSum, opts.gradOutput);

  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  const lseOut = new Float64Array(B);
  let dScale = 0;
  const z = new Float64Array(N);
  const dzdx = new Float64Array(N); // ∂z/∂S (chain through softcap and scale)
  const dzds = new Float64Array(N); // ∂z/∂scale
  for (let i = 0; i < B; i++) {
    let m = -Infinity;
    for (let j = 0; j < N; j++) {
      const x = S[i * N + j];
      if (x === -Infinity) {
        // The softcap would map −∞ to −c, a finite logit; out entries must stay out.
        z[j] = -Infinity;
        dzdx[j] = 0;
        dzds[j] = 0;
        continue;
      }
      if (cap !== undefined) {
        const u = (scale * x) / cap;
        // sech² as 1/cosh², not 1 − tanh²: the latter is exactly 0 once tanh rounds to ±1.
        const sech2 = 1 / Math.cosh(u) ** 2;
        z[j] = cap * Math.tanh(u);
        dzdx[j] = scale * sech2;
        dzds[j] = x * sech2;
      } else {
        z[j] = scale * x;
        dzdx[j] = scale;
        dzds[j] = x;
      }
      if (z[j] > m) m = z[j];
    }
    // Two-pass stable log-sum-exp; −∞ entries contribute exp(−∞) = 0. The sum is kept as
    // 1 + rest, rest summed without the first maximal entry: in a confident row (rest ~ 1e-12)
    // 1 + rest in float64 would keep only 4 digits of rest, and so would lse − z_y and p_y − 1.
    let rest = 0;
    let lin = 0; // Σ_j w_j z_j over entries that are in
    let jmax = -1;
    if (m !== -Infinity)
      for (let j = 0; j < N; j++) {
        if (z[j] === -Infinity) continue;
        if (jmax < 0 && z[j] === m) jmax = j;
        else rest += Math.exp(z[j] - m);
        lin += w(j) * z[j];
      }
    const lse = m === -Infinity ? -Infinity : m + Math.log1p(rest);
    lseOut[i] = lse;
    const y = labels[i];
    if (y === ignore) continue;
    if (lse === -Infinity) {
      rowLoss[i] = Infinity; // nothing left to put probability on
      continue;
    }
    const wy = w(y);
    // lse − z_y and p_y − 1, exact also where p_y ≈ 1.
    const margin = m - z[y] + Math.log1p(rest);
    const pyMinusOne = z[y] === m ? -rest / (1 + rest) : Math.expm1(-margin);
    // A label term of weight 0 (ε = 1 or w_y = 0) is absent, also where its logit is −∞ (not 0·∞).
    const wNll = wy * (1 - eps);
    rowLoss[i] = (wNll !== 0 ? wNll * margin : 0) + (eps > 0 ? eps * (wMean * lse - lin / N) : 0) + lambda * lse * lse;
    const u = coef[i];
    const pCoef = wy * (1 - eps) + eps * wMean + 2 * lambda * lse;
    for (let j = 0; j < N; j++) {
      if (z[j] === -Infinity) continue;
      // exp(z − m)/(1 + rest) ≤ 1 always; it underflows to 0 rather than overflowing.
      const p = Math.exp(z[j] - m) / (1 + rest);
      let d = pCoef * p - (eps * w(j)) / N;
      // At the label, (1−ε)w_y(p_y − 1) keeps its digits when p_y ≈ 1.
      if (j === y) d = (1 - eps) * wy * pyMinusOne + (eps * wMean + 2 * lambda * lse) * p - (eps * w(j)) / N;
      grad[i * N + j] = u * d * dzdx[j];
      dScale += u * d * dzds[j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, wSum), rowLoss, grad, dScale, lse: lseOut };
}

export const entries = [
  {
    name: 'softmaxCrossEntropy',
    fn: 'softmaxCrossEntropy',
    asyncFn: 'softmaxCrossEntropyAsync',
    args: ['scores', 'labels'],
    options: ['ignoreIndex', 'labelSmoothing', 'classWeights', 'zLoss', 'softcap', 'returnLse'],
    returns: 'loss',
    reference: refSoftmaxCrossEntropy,
    cases: [
      { rows: 7, cols: 97, kind: 'normal', opts: {} },
      { rows: 5, cols: 50257, kind: 'peaked', opts: { labelSmoothing: 0.1, zLoss: 1e-4 } },
      { rows: 300, cols: 32771, kind: 'normal', opts: { scale: 1.5, softcap: 30 } },
      { rows: 2, cols: 300007, kind: 'flat', opts: { reduction: 'sum', classWeights: true } },
      // Confident rows: the label's logit 24 above the rest, so p_y − 1 ≈ −3·10^-6 must survive.
      { rows: 33, cols: 50257, kind: 'normal', confident: 24, opts: {} },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      const opts = { ...(c.opts ?? {}), gradScale: true };
      if (opts.classWeights === true) opts.classWeights = new Float32Array(c.cols).map(() => 0.5 + rng.u());
      const labels = randomLabels(rng, c.rows, c.cols, c.rows > 2 && !c.confident);
      const raise = (x) => labels.forEach((y, i) => (x[i * c.cols + y] += c.confident));
      return { scores: scoresTensor(fl, rng, c, c.confident ? raise : undefined), labels, opts };
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      sizes: [
        { rows: 256, cols: 32768 },
        { rows: 8, cols: 1_000_003 },
        { rows: 1, cols: 10_000_003 }, // one row: the pool splits it into tiles (two-level reduction)
      ],
      bytes: (c) => c.rows * c.cols * 8, // one read of the logits, one write of the gradient
      prepare: reuseGrad,
      peers: {
        'tfjs-wasm': ({ tf }, inputs) => {
          const [rows, cols] = inputs.scores.shape;
          const x = tf.tensor2d(inputs.scores.data, [rows, cols]);
          const onehot = tf.oneHot(tf.tensor1d(inputs.labels, 'int32'), cols);
          const lossAndGrad = tf.valueAndGrad((logits) => tf.losses.softmaxCrossEntropy(onehot, logits));
          return {
            fn: () => {
              const { value, grad } = lossAndGrad(x);
              value.dataSync();
              grad.dataSync();
              value.dispose();
              grad.dispose();
            },
            dispose: () => { x.dispose(); onehot.dispose(); },
          };
        },
        'plain-js': (_ctx, inputs) => {
          const [rows, cols] = inputs.scores.shape;
          const x = inputs.scores.data;
          const g = new Float32Array(rows * cols);
          return {
            fn: () => {
              for (let r = 0; r < rows; r++) {
                const o = r * cols;
                let m = -Infinity;
                for (let c = 0; c < cols; c++) m = Math.max(m, x[o + c]);
                let s = 0;
                for (let c = 0; c < cols; c++) s += Math.exp(x[o + c] - m);
                const lse = m + Math.log(s);
                for (let c = 0; c < cols; c++) g[o + c] = Math.exp(x[o + c] - lse) / rows;
                g[o + inputs.labels[r]] -= 1 / rows;
              }
            },
          };
        },
      },
    },
    gpu: { shapes: [[8192, 32768], [4096, 131072], [16, 50257]] },
    property: softmaxCrossEntropyProperty,
  },
];

function softmaxCrossEntropyProperty(kit, entry) {
  const { fc, fl, makeRefRng, scoresCase, makeScores, heavyScores, inAddonMemory, withElement, scoresMutations, optionMutations, checkElementwise, checkGradient, checkDScale, rowMaxAbs } = kit;
  const reference = entry.reference;
  const outputs = (r) => {
    const o = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0, lse: r.lse };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };

  const op = {
    outputs,
    cases: fc
      .record({
        c: scoresCase,
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        labelSmoothing: fc.option(fc.constantFrom(0.1, 0.5, 1), { nil: undefined }),
        zLoss: fc.option(fc.constantFrom(1e-4, 1e-2), { nil: undefined }),
        softcap: fc.option(fc.constantFrom(3, 30), { nil: undefined }),
        classWeights: fc.boolean(),
        ignoreSome: fc.boolean(),
        reduction: fc.constantFrom('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => ({ ...c, ...rest })),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x27d4eb2f);
      // With no classes (N = 0) every row must be ignored.
      const labels = Int32Array.from({ length: c.rows }, () => (c.cols === 0 || (c.ignoreSome && rng.uniform() < 0.3) ? -100 : rng.int(0, c.cols)));
      const opts = { gradScale: true, returnLse: true, reduction: c.reduction };
      for (const k of ['scale', 'labelSmoothing', 'zLoss', 'softcap']) if (c[k] !== undefined) opts[k] = c[k];
      // No softcap on ±6e4 scores: tanh saturates there, and the float64 reference's 1 − tanh²
      // underflows to 0 where the kernel's sech² keeps 1e-18; with smoothing, the fp32 rounding of
      // z = c·tanh(·) then decides the gradient. softmaxCrossEntropy.test.ts covers huge softcapped logits.
      // Nor smoothing: its term ε(w̄·lse − Σ_j w_j z_j / N) is a difference of two sums of size
      // |z| ~ 6e4 that cancel when N is tiny (N = 1: exactly), so fp32 sums leave ~1e-3 of a loss of 0.
      if (c.kind === 'large') {
        delete opts.softcap;
        delete opts.labelSmoothing;
      }
      if (c.classWeights) opts.classWeights = Float32Array.from({ length: c.cols }, () => 0.25 + 2 * rng.uniform());
      if (c.reduction === 'none') opts.gradOutput = Float32Array.from({ length: c.rows }, () => rng.normal());
      return { s, labels, opts };
    },
    // Without a softcap, the float64 loss of the z = scale·S the kernel works on, z rounded to
    // fp32 as the kernel rounds it (at |z| ~ 1e6 that rounding alone moves a probability), then
    // dL/dS = scale·dL/dz and dScale = Σ dL/dz·S. A softcap bounds z, so it goes in as it is.
    reference: (i) => {
      const o = { ...i.opts };
      if (i.opts.softcap !== undefined) {
        const r = reference(i.s.values, i.s.rows, i.s.cols, i.labels, o);
        return { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale, grad: r.grad, lse: r.lse };
      }
      const scale = Math.fround(i.opts.scale ?? 1);
      const z = i.s.values.map((v) => Math.fround(scale * v));
      const r = reference(z, i.s.rows, i.s.cols, i.labels, { ...o, scale: 1 });
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * i.s.values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale), lse: r.lse };
    },
    check(got, ref, i) {
      const why =
        checkElementwise('loss', new Float32Array([got.loss]), [ref.loss], 1e-5) ??
        checkElementwise('rowLoss', got.rowLoss, ref.rowLoss, 1e-5) ??
        checkElementwise('lse', got.lse, ref.lse, 1e-5);
      if (why) return why;
      // dScale sums the dense part in fp32 lanes and corrects the label in double: that cancels
      // up to u_i·w_max·max_j |S_ij| per row, rounded in fp32.
      const cw = i.opts.classWeights;
      const wMax = cw ? cw.reduce((a, b) => Math.max(a, b), 0) : 1;
      let cancel = 0;
      for (let r = 0; r < i.s.rows; r++) {
        if (i.labels[r] === -100) continue;
        const u = i.opts.reduction === 'none' ? Math.abs(i.opts.gradOutput[r]) : 1;
        cancel += u * wMax * rowMaxAbs(i.s, r);
      }
      if (i.opts.reduction === 'mean') cancel /= Math.max(1e-30, [...i.labels].filter((y) => y !== -100).reduce((a, y) => a + (cw ? cw[y] : 1), 0));
      return checkGradient(got.grad, ref.grad, i.s.dtype, 0) ?? checkDScale(got.dScale, ref.dScale, cancel);
    },
    views: (i) => [i.s.data, i.labels, ...(i.opts.classWeights ? [i.opts.classWeights] : []), ...(i.opts.gradOutput ? [i.opts.gradOutput] : [])],
    mutations: [
      // A scores mutation may turn empty scores into 1×1; the labels follow the new shape.
      ...scoresMutations().map((m) => ({
        ...m,
        apply: (i) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows && j.s.cols === i.s.cols ? j : { ...j, labels: new Int32Array(j.s.rows), opts: { gradScale: true } };
        },
      })),
      ...optionMutations(),
      { name: 'labels missing', code: 'ERR_TYPE', apply: (i) => ({ ...i, labels: undefined }) },
      { name: 'labels a plain array', code: 'ERR_TYPE', apply: (i) => ({ ...i, labels: Array.from(i.labels) }) },
      { name: 'labels one too many', code: 'ERR_SHAPE', apply: (i) => ({ ...i, labels: new Int32Array(i.labels.length + 1) }) },
      // On empty scores, a 1×1 matrix (with default options) to hold the bad label.
      { name: 'a label of N', code: 'ERR_LABEL_RANGE', apply: (i) => (i.s.rows ? { ...i, labels: new Int32Array(i.s.rows).fill(i.s.cols) } : { s: withElement(i.s, 0, 0), labels: new Int32Array([1]), opts: {} }) },
      { name: 'a label of −1', code: 'ERR_LABEL_RANGE', apply: (i) => (i.s.rows ? { ...i, labels: new Int32Array(i.s.rows).fill(-1) } : { s: withElement(i.s, 0, 0), labels: new Int32Array([-1]), opts: {} }) },
      { name: 'labelSmoothing 1.5', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, labelSmoothing: 1.5 } }) },
      { name: 'softcap 0', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, softcap: 0 } }) },
      { name: 'classWeights one too many', code: 'ERR_SHAPE', apply: (i) => ({ ...i, opts: { ...i.opts, classWeights: new Float32Array(i.s.cols + 1).fill(1) } }) },
      { name: 'an unknown reduction', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, reduction: 'avg', gradOutput: undefined } }) },
    ],
    heavy() {
      // 128 × 32771 fp32 (17 MB): tens of ms per call on two cores, the gradient into a reused
      // `out` as in a training loop.
      const rows = 128, cols = 32771;
      const x = randomScores(makeRng(11), rows, cols, 'normal');
      const labels = Int32Array.from({ length: rows }, (_, r) => (r * 7919) % cols);
      const out = fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]);
      return { s: heavyScores(x, rows, cols), labels, opts: { out } };
    },
    small: () => op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, labelSmoothing: 0.1, zLoss: 1e-4, softcap: 30, classWeights: true, ignoreSome: true, reduction: 'none' }),
  };
  return op;
}
