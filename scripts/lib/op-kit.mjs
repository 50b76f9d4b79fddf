// The shared parts of the registry entries of the ops on a scores matrix (scripts/ops/<op>.mjs):
// input makers, the run on a backend, the entry builders of the loss families over CSR positives
// and of the contrastive losses, and their property-test parts. Plain JS with no dependencies.
import { makeRng, randomScores } from './random.mjs';
import { diagonalPositives } from './reference.mjs';

export function scoresTensor(fl, rng, c, edit) {
  const x = randomScores(rng, c.rows, c.cols, c.kind ?? 'normal');
  edit?.(x);
  const dtype = c.dtype ?? 'float32';
  const data = dtype === 'float32' ? x : dtype === 'float16' ? fl.float32ToFloat16(x) : fl.float32ToBFloat16(x);
  return fl.tensor(data, [c.rows, c.cols], { dtype });
}

/** Puts a host tensor where an op should run (the caller disposes device copies). */
export const place = (fl, t, device) => (device === 'cuda' ? fl.toDevice(t) : t);

export const dtypes = ['float32', 'float16', 'bfloat16'];

/** Labels in [0, cols), with about a fifth ignored (-100) when `ignore` is set. */
export function randomLabels(rng, rows, cols, ignore = false) {
  const y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) y[i] = ignore && rng.u() < 0.2 ? -100 : rng.int(0, cols);
  return y;
}

/**
 * Bench inputs timed as a training loop runs them: the gradient buffer is reused (opts.out), and
 * no dScale is asked for (the peers compute none; make() asks for it to compare backends).
 */
export const reuseGrad = (fl, inputs) => ({
  ...inputs,
  opts: { ...inputs.opts, gradScale: false, out: fl.tensor(new Float32Array(inputs.scores.size), inputs.scores.shape) },
});

/** Host values of a loss result's gradient (for comparisons across backends). */
const gradValues = (fl, g) => (g ? fl.toFloat32(fl.toHost(g).data, g.dtype) : new Float32Array(0));

/** The arguments of a call of `op` from an inputs object, `scores` in place of the scores. */
export const argsOf = (op, inputs, scores) => [scores, ...op.args.slice(1).map((kind) => inputs[kind]), inputs.opts];

/** `run` of every entry: the op on `device`, its outputs as host values. */
export function runOn(op, fl, inputs, device) {
  const s = place(fl, inputs.scores, device);
  try {
    const r = fl[op.fn](...argsOf(op, inputs, s));
    if (op.returns === 'lse') return { lse: r };
    const out = { loss: r.loss, dScale: r.dScale, grad: gradValues(fl, r.grad) };
    if (device === 'cuda' && r.grad) r.grad.dispose();
    return out;
  } finally {
    if (s !== inputs.scores) s.dispose();
  }
}

// ---------- losses over CSR positives: decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy ----------

/** `count` distinct columns per row (capped at cols), in random order, as CSR; weights in [0.5, 1.5) when asked. */
export function randomCsr(rng, rows, cols, count, { weighted = false, avoid } = {}) {
  const rowPtr = new Int32Array(rows + 1);
  const list = [];
  for (let r = 0; r < rows; r++) {
    const taken = new Set(avoid ? avoid.cols.subarray(avoid.rowPtr[r], avoid.rowPtr[r + 1]) : []);
    const want = Math.min(count, cols - taken.size);
    const row = new Set();
    while (row.size < want) {
      const c = rng.int(0, cols);
      if (!taken.has(c)) row.add(c);
    }
    list.push(...row);
    rowPtr[r + 1] = list.length;
  }
  const cols32 = Int32Array.from(list);
  return weighted ? { rowPtr, cols: cols32, weights: Float32Array.from(cols32, () => 0.5 + rng.u()) } : { rowPtr, cols: cols32 };
}

export function positivesLossOp(name, reference) {
  return {
    name,
    fn: name,
    asyncFn: `${name}Async`,
    args: ['scores', 'positives'],
    options: ['exclude'],
    returns: 'loss',
    reference,
    cases: [
      { rows: 7, cols: 97, kind: 'normal', positives: 1, opts: {} },
      { rows: 64, cols: 4099, kind: 'peaked', positives: 4, weighted: true, exclude: 8, opts: { scale: 1 / 0.07 } },
      { rows: 300, cols: 32771, kind: 'normal', positives: 3, exclude: 3, opts: { scale: 20, reduction: 'sum' } },
      { rows: 2, cols: 300007, kind: 'flat', positives: 2, weighted: true, opts: { reduction: 'none' } },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      const positives = randomCsr(rng, c.rows, c.cols, c.positives ?? 3, { weighted: c.weighted });
      const opts = { ...(c.opts ?? {}), gradScale: true };
      if (c.exclude) opts.exclude = randomCsr(rng, c.rows, c.cols, c.exclude, { avoid: positives });
      if (opts.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { scores: scoresTensor(fl, rng, c), positives, opts };
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      // DEXML's shape on the CPU: 256 queries × 32768 labels, 3 positives per row.
      sizes: [{ rows: 256, cols: 32768, positives: 3 }],
      bytes: (c) => c.rows * c.cols * 8, // one read of the scores, one write of the gradient
      prepare: reuseGrad,
      peers: {},
    },
    // Three positives per row (DEXML's setting).
    gpu: { shapes: [[4096, 131072]], positivesPerRow: 3 },
    property: positivesProperty,
  };
}

// ---------- infoNCE and decoupledContrastive ----------

/** The options of a contrastive case: `positives`/`exclude` as counts become random CSR. */
function contrastiveOpts(rng, c, dcl) {
  const opts = { ...(c.opts ?? {}), gradScale: true };
  if (typeof opts.positives === 'number') opts.positives = randomCsr(rng, c.rows, c.cols, opts.positives, { weighted: !dcl });
  if (typeof opts.exclude === 'number') {
    const diagonal = { rowPtr: Int32Array.from({ length: c.rows + 1 }, (_, i) => i), cols: Int32Array.from({ length: c.rows }, (_, i) => i) };
    opts.exclude = randomCsr(rng, c.rows, c.cols, opts.exclude, { avoid: opts.positives ?? diagonal });
  }
  if (opts.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
  return opts;
}

export function contrastiveEntry(name, { options, reference, rowWeights, cases, bench, gpu }) {
  const dcl = name === 'decoupledContrastive';
  return {
    name,
    fn: name,
    asyncFn: `${name}Async`,
    args: ['scores'],
    options,
    returns: 'loss',
    reference,
    rowWeights,
    cases: cases.flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make: (fl, rng, c) => ({ scores: scoresTensor(fl, rng, c), opts: contrastiveOpts(rng, c, dcl) }),
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench,
    gpu,
    property: contrastiveProperty,
  };
}


// ---------- the property-test parts (op.property) ----------
//
// Each takes the kit of test/ops-under-test.ts (fast-check, the addon, the float64 references,
// the shared scores cases, mutations and checks) and this entry.

// ---------- losses over CSR positives: decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy ----------

/** The empty CSR of `rows` rows (used when a mutation turns empty scores into a 1×1 matrix). */
const emptyCsr = (rows) => ({ rowPtr: new Int32Array(rows + 1), cols: new Int32Array(0) });

function positivesProperty(kit, entry) {
  const { fc, fl, makeRefRng, randomPositives, randomExclude, scoresCase, makeScores, heavyScores, inAddonMemory, scoresMutations, optionMutations, checkElementwise, checkGradient, checkDScale, rowMaxAbs } = kit;
  const reference = entry.reference;
  const outputs = (r) => {
    const o = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0 };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };
  const csrMutation = (mname, code, f) => ({
    name: mname,
    code,
    apply: (i) => ({ ...i, positives: f(i.positives, i.s.rows, i.s.cols) }),
  });
  const op = {
    outputs,
    cases: fc
      .record({
        c: scoresCase,
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        maxPositives: fc.integer({ min: 0, max: 4 }),
        weighted: fc.boolean(),
        exclude: fc.boolean(),
        reduction: fc.constantFrom('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => ({ ...c, ...rest })),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x5bd1e995);
      const positives = randomPositives(rng, c.rows, c.cols, { min: Math.min(1, c.maxPositives), max: c.maxPositives, weighted: c.weighted });
      const opts = { gradScale: true, reduction: c.reduction };
      if (c.scale !== undefined) opts.scale = c.scale;
      if (c.exclude) opts.exclude = randomExclude(rng, c.rows, c.cols, positives, { max: 5 });
      if (c.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { s, positives, opts };
    },
    // The float64 loss of the z = scale·S the kernel works on: scale and z rounded to fp32 as
    // the kernel rounds them (at |z| ~ 2e4, that rounding alone moves a probability by 1e-3).
    // Then dL/dS = scale·dL/dz and dScale = Σ dL/dz·S.
    reference: (i) => {
      const scale = Math.fround(i.opts.scale ?? 1);
      const z = i.s.values.map((v) => Math.fround(scale * v));
      const r = reference(z, i.s.rows, i.s.cols, i.positives, { ...i.opts, scale: 1 });
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * i.s.values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale) };
    },
    check(got, ref, i) {
      const why =
        checkElementwise('loss', new Float32Array([got.loss]), [ref.loss], 1e-5) ??
        checkElementwise('rowLoss', got.rowLoss, ref.rowLoss, 1e-5);
      if (why) return why;
      // dScale sums the dense part over the row in fp32 lanes, then corrects the positives in
      // double: that cancels up to u_i·W_i·max_j |S_ij| per row (W_i = Σ w_p), rounded in fp32.
      // The gradient's own cancellation (W_i·p_j − w_ij at a positive) is of order u_i·W_i·scale:
      // a gradient that is exactly 0 in float64 comes out as ~1e-29 in fp32, and that is not an error.
      let cancel = 0, gradScaleOfRows = 0;
      const scale = Math.fround(i.opts.scale ?? 1);
      for (let r = 0; r < i.s.rows; r++) {
        const red = i.opts.reduction;
        const u = red === 'sum' ? 1 : red === 'none' ? Math.abs(i.opts.gradOutput[r]) : 1 / i.s.rows;
        let W = 0;
        for (let e = i.positives.rowPtr[r]; e < i.positives.rowPtr[r + 1]; e++) W += i.positives.weights?.[e] ?? 1;
        cancel += u * W * rowMaxAbs(i.s, r);
        gradScaleOfRows += u * W * scale;
      }
      return checkGradient(got.grad, ref.grad, i.s.dtype, 1e-7 * gradScaleOfRows) ?? checkDScale(got.dScale, ref.dScale, cancel);
    },
    views: (i) => {
      const x = i.opts.exclude;
      return [i.s.data, i.positives.rowPtr, i.positives.cols, ...(i.positives.weights ? [i.positives.weights] : []), ...(x ? [x.rowPtr, x.cols] : [])];
    },
    mutations: [
      // A scores mutation may turn empty scores into 1×1; the positives follow the new shape.
      ...scoresMutations().map((m) => ({
        ...m,
        apply: (i) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows ? j : { ...j, positives: emptyCsr(j.s.rows), opts: { ...j.opts, exclude: undefined, gradOutput: undefined } };
        },
      })),
      ...optionMutations(),
      csrMutation('positives missing', 'ERR_TYPE', () => undefined),
      csrMutation('positives a plain object of arrays', 'ERR_TYPE', (p) => ({ rowPtr: Array.from(p.rowPtr), cols: Array.from(p.cols) })),
      csrMutation('rowPtr one short', 'ERR_SHAPE', (p, rows) => ({ ...p, rowPtr: new Int32Array(rows) })),
      csrMutation('rowPtr[0] not 0', 'ERR_CSR', (p) => ({ ...p, rowPtr: p.rowPtr.map((v, k) => (k === 0 ? 1 : v)) })),
      csrMutation('a column out of range', 'ERR_CSR', (p, rows, cols) => ({
        rowPtr: p.rowPtr.map((v, k) => (k === rows && rows > 0 ? v + 1 : v)),
        cols: Int32Array.from([...p.cols, cols]),
      })),
      csrMutation('weights of the wrong length', 'ERR_SHAPE', (p) => ({ ...p, weights: new Float32Array(p.cols.length + 1).fill(1) })),
      { name: 'exclude with weights', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, exclude: { ...emptyCsr(i.s.rows), weights: new Float32Array(0) } } }) },
    ],
    heavy() {
      // 128 × 32768 fp32 (16 MB), 3 positives per row: tens of ms per call on two cores. The
      // gradient goes into a reused `out`, as in a training loop: a fresh 16 MB output per call
      // (allocated and poisoned on the main thread) would itself stall the event loop.
      const rows = 128, cols = 32768;
      const rng = makeRng(9);
      const x = randomScores(rng, rows, cols, 'normal');
      const positives = randomPositives(makeRefRng(9), rows, cols, { min: 3, max: 3 });
      const out = fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]);
      return { s: heavyScores(x, rows, cols), positives, opts: { out } };
    },
    small: () => op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, maxPositives: 3, weighted: true, exclude: true, reduction: 'none' }),
  };
  return op;
}

// ---------- infoNCE (one-way, CSR positives, symmetric) and decoupledContrastive ----------

function contrastiveProperty(kit, entry) {
  const { fc, fl, makeRefRng, randomPositives, randomExclude, scoresCase, makeScores, heavyScores, inAddonMemory, scoresMutations, optionMutations, checkElementwise, checkGradient, checkDScale, rowMaxAbs } = kit;
  const dclwWeights = entry.rowWeights;
  const reference = entry.reference;
  const dcl = entry.name === 'decoupledContrastive';
  const outputs = (r) => {
    const o = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0 };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };
  // A call that must fail whatever the case: small scores of its own and one bad option.
  const broken = (mname, code, rows, cols, opts) => ({
    name: mname,
    code,
    apply: (i) => {
      const x = new Float32Array(rows * cols).map((_, k) => (k % 5) / 3);
      return { s: { ...i.s, arg: fl.tensor(x, [rows, cols]), formOpts: {}, rows, cols }, opts: { scale: 2, ...opts } };
    },
  });
  const csr = (rowPtr, cols) => ({ rowPtr: Int32Array.from(rowPtr), cols: Int32Array.from(cols) });
  const op = {
    outputs,
    cases: fc
      .record({
        c: scoresCase,
        variant: dcl ? fc.constantFrom('diagonal', 'csr') : fc.constantFrom('diagonal', 'csr', 'symmetric'),
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        exclude: fc.boolean(),
        weighted: fc.boolean(),
        sigma: dcl ? fc.option(fc.constantFrom(0.5, 0.1, 2), { nil: undefined }) : fc.constant(undefined),
        reduction: fc.constantFrom('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => {
        // Symmetric needs a square S (up to 300×300: two column strips), diagonal positives
        // N ≥ B, DCL's CSR one column per row.
        if (rest.variant === 'symmetric') {
          const n = Math.min(Math.max(c.rows, c.cols), 300);
          return { ...c, ...rest, rows: n, cols: n };
        }
        const cols = rest.variant === 'diagonal' ? Math.max(c.cols, c.rows) : dcl && c.rows > 0 ? Math.max(c.cols, 1) : c.cols;
        return { ...c, ...rest, cols };
      }),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x27d4eb2f);
      const opts = { gradScale: true, reduction: c.reduction };
      if (c.scale !== undefined) opts.scale = c.scale;
      if (c.sigma !== undefined) opts.weighting = { sigma: c.sigma };
      if (c.variant === 'symmetric') opts.symmetric = true;
      let positives;
      if (c.variant === 'csr') {
        positives = dcl ? randomPositives(rng, c.rows, c.cols, { min: 1, max: 1 }) : randomPositives(rng, c.rows, c.cols, { min: 0, max: 4, weighted: c.weighted });
        opts.positives = positives;
      }
      if (c.exclude && c.variant !== 'symmetric') {
        const taken = positives ?? diagonalPositives(c.rows);
        opts.exclude = randomExclude(rng, c.rows, c.cols, taken, { max: 5 });
      }
      if (c.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { s, opts };
    },
    // The float64 loss of the z = scale·S the kernel works on, z rounded to fp32 as the kernel
    // rounds it; DCLW's weights from the raw scores, as the kernel takes them.
    reference: (i) => {
      const { rows, cols, values } = i.s;
      const scale = Math.fround(i.opts.scale ?? 1);
      const z = values.map((v) => Math.fround(scale * v));
      const o = { ...i.opts, scale: 1 };
      let r;
      if (dcl) {
        const sigma = i.opts.weighting?.sigma;
        const rowWeights = sigma === undefined || rows === 0 ? undefined : dclwWeights(values, rows, cols, sigma, i.opts.positives ?? diagonalPositives(rows));
        r = reference(z, rows, cols, { ...o, rowWeights });
      } else {
        r = reference(z, rows, cols, o);
      }
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale) };
    },
    check(got, ref, i) {
      // −∞ + ∞ (a DCL row with no negative left beside a row whose positive is −∞) is NaN in
      // both; every row loss is still compared.
      const bothNaN = Number.isNaN(got.loss) && Number.isNaN(ref.loss);
      const why =
        (bothNaN ? undefined : checkElementwise('loss', new Float32Array([got.loss]), [ref.loss], 1e-5)) ??
        checkElementwise('rowLoss', got.rowLoss, ref.rowLoss, 1e-5);
      if (why) return why;
      // The float64 reference has its own rounding: p − 1 at a positive holding all but 1e-30
      // of the probability is 0 there (the kernel keeps it), so allow 1e-15 of the row factors.
      const red = i.opts.reduction;
      const go = i.opts.gradOutput;
      const u = (r) => (red === 'sum' ? 1 : red === 'none' ? Math.abs(go[r]) : 1 / i.s.rows);
      let uSum = 0;
      for (let r = 0; r < i.s.rows; r++) uSum += u(r);
      const floor = 1e-15 * (i.opts.scale ?? 1) * uSum;
      // dScale sums dense terms in fp32 lanes and corrects the positives in double: that
      // cancels up to 4·u_i·max_j |S_ij| per row (Σ_j |dℓ_i/dz_ij| ≤ 4: two softmaxes, or DCLW's
      // |w| ≤ 2 plus one), rounded in fp32.
      let cancel = 0;
      for (let r = 0; r < i.s.rows; r++) cancel += 4 * u(r) * rowMaxAbs(i.s, r) * (i.opts.positives ? 4 : 1);
      return checkGradient(got.grad, ref.grad, i.s.dtype, floor) ?? checkDScale(got.dScale, ref.dScale, cancel);
    },
    views: (i) => {
      const p = i.opts.positives;
      const x = i.opts.exclude;
      const go = i.opts.gradOutput;
      return [i.s.data, ...(p ? [p.rowPtr, p.cols, ...(p.weights ? [p.weights] : [])] : []), ...(x ? [x.rowPtr, x.cols] : []), ...(go ? [go] : [])];
    },
    mutations: [
      // A scores mutation may turn empty scores into 1×1: the options fall back to the diagonal.
      ...scoresMutations().map((m) => ({
        ...m,
        apply: (i) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows ? j : { ...j, opts: { ...j.opts, positives: undefined, exclude: undefined, gradOutput: undefined } };
        },
      })),
      ...optionMutations(),
      broken('diagonal positives with N < B', 'ERR_SHAPE', 3, 2, {}),
      broken('an exclusion that is also a (diagonal) positive', 'ERR_CSR', 2, 3, { exclude: csr([0, 1, 1], [0]) }),
      broken('positives rowPtr one short', 'ERR_SHAPE', 2, 3, { positives: csr([0, 1], [0]) }),
      broken('positives column out of range', 'ERR_CSR', 2, 3, { positives: csr([0, 1, 2], [0, 3]) }),
      broken('positives a plain object of arrays', 'ERR_TYPE', 2, 3, { positives: { rowPtr: [0, 1, 2], cols: [0, 1] } }),
      ...(dcl
        ? [
            broken('sigma 0', 'ERR_ARG', 2, 3, { weighting: { sigma: 0 } }),
            broken('negative sigma', 'ERR_ARG', 2, 3, { weighting: { sigma: -0.5 } }),
            broken('two positives in a row', 'ERR_CSR', 2, 3, { positives: csr([0, 2, 3], [0, 1, 2]) }),
            broken('weighted positives', 'ERR_ARG', 2, 3, { positives: { ...csr([0, 1, 2], [0, 1]), weights: new Float32Array([1, 1]) } }),
          ]
        : [
            broken('symmetric on a non-square matrix', 'ERR_SHAPE', 2, 3, { symmetric: true }),
            broken('symmetric with CSR positives', 'ERR_ARG', 3, 3, { symmetric: true, positives: csr([0, 1, 2, 3], [0, 1, 2]) }),
          ]),
    ],
    heavy() {
      // Symmetric InfoNCE (or DCL) on 2048 × 2048 fp32 (16 MB): tens of ms per call on two
      // cores. The gradient goes into a reused `out`, as in a training loop.
      const n = 2048;
      const x = randomScores(makeRng(9), n, n, 'normal');
      const out = fl.tensor(inAddonMemory(new Float32Array(n * n)), [n, n]);
      return { s: heavyScores(x, n, n), opts: dcl ? { out, scale: 20 } : { out, scale: 20, symmetric: true } };
    },
    small: () =>
      op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, variant: 'csr', exclude: true, weighted: true, sigma: dcl ? 0.5 : undefined, reduction: 'none' }),
  };
  return op;
}
