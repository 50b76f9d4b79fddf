// softTopKLoss: its float64 reference and its entries in the op registry, which scripts/ops.mjs
// collects from every file of scripts/ops/ (the fields of an entry are described there). It
// also holds the reference of the softTopK operator, on which the loss is built.
// Plain JS that node runs as it is; property-test parts take fast-check and the test helpers
// from the kit they are given.
import { chunked, embeddingsEntry, exclusions, rowPositives } from '../lib/embeddings-kit.mjs';
import { dtypes, reuseGrad, scoresTensor } from '../lib/op-kit.mjs';
import { makeRng } from '../lib/random.mjs';
import { entryWeight, logit, logSigmoid, markRow, OUT, reduceRows, rowCoefficients, scaledRow, sigmoid } from '../lib/reference.mjs';

// ---------- the softTopK operator ----------

/**
 * MATH softTopK (native/ops/soft_topk_math.h), the soft top-k operator in float64.
 *
 * Row i: find t_i with Σ_j σ(α(x_ij + t_i)) = k_i over the columns that are in (not excluded,
 * not −∞), x = scale·S (scale default 1, so x = S). Output p_ij = σ(α(x_ij + t_i)) ('prob')
 * or log p_ij = −softplus(−α(x_ij + t_i)) ('log'); out entries give 0 or −∞ and gradient 0.
 *
 * The root is found by bisection inside the bracket of MATH softTopK (native/ops/soft_topk_math.h), run until the bracket is an
 * ulp of the scores wide (≈ 55 halvings), so no tolerance on Σp − k is involved; the sign of
 * Σp − k is taken in the split form (softExcess), which resolves rows whose top entries
 * saturate (checked against 60-digit roots in test/fixtures/soft-topk-saturated.json).
 *
 * Backward (implicit differentiation, ∂t/∂x_m = −v_m/V), v_j = α p_j(1 − p_j), V = Σ_j v_j:
 *   'prob', upstream g: ∂/∂x_m = g_m v_m − v_m·(Σ_j g_j v_j)/V
 *   'log',  upstream g: u_j = α g_j (1 − p_j);  ∂/∂x_m = u_m − v_m·(Σ_j u_j)/V
 * and ∂/∂S = scale·∂/∂x.
 */
// interface RefSoftTopKOptions {
//   /** α > 0 (default 1). */
//   alpha?: number;
//   /** Default 'prob'. */
//   output?: 'prob' | 'log';
//   exclude?: RefPositives;
//   /** x = scale·S (default 1). */
//   scale?: number;
// }

// type TopK = number | Int32Array | number[];

export const kOfRow = (k, i) => (typeof k === 'number' ? k : k[i]);

/**
 * Σ_j σ(α(x_j + t)) − k over the entries that are in (σ(−∞) = 0 drops the rest), in the split
 * form (m − k) + Σ_{a<0} p − Σ_{a≥0} (1 − p), m = #{a ≥ 0}, each term to full relative precision:
 * on a row whose top entries saturate, Σσ − k summed plainly is pinned where σ rounds to 1,
 * units of t away from the root, while here the two tiny sides are compared exactly (to e^−708).
 */
function softExcess(x, alpha, t, k) {
  let m = 0;
  let lo = 0;
  let hi = 0;
  for (let j = 0; j < x.length; j++) {
    const a = alpha * (x[j] + t);
    if (a < 0) lo += sigmoid(a);
    else {
      m++;
      hi += sigmoid(-a);
    }
  }
  return m - k + (lo - hi);
}

/**
 * The threshold t with Σ_j σ(α(x_j + t)) = k, entries at −∞ being out. Requires
 * 0 < k < (number of entries that are in).
 */
export function solveThreshold(x, k, alpha) {
  let n = 0;
  let max = -Infinity;
  let min = Infinity;
  for (let j = 0; j < x.length; j++) {
    if (x[j] === -Infinity) continue;
    n++;
    if (x[j] > max) max = x[j];
    if (x[j] < min) min = x[j];
  }
  if (!(k > 0 && k < n)) throw new Error(`softTopK: need 0 < k < N_i, got k=${k}, N_i=${n}`);
  // At lo every σ is ≤ σ(α(max + lo)) = k/n, so the count is ≤ k; at hi every σ is ≥ k/n.
  const shift = logit(k / n) / alpha;
  let lo = -max + shift;
  let hi = -min + shift;
  // x_j + t is only resolved to an ulp of the larger of the two, so t needs no finer bracket
  // than that (a root near 0 would otherwise take ~1000 halvings down to subnormals).
  const resolution = Number.EPSILON * Math.max(Math.abs(max), Math.abs(min), Math.abs(lo), Math.abs(hi));
  while (hi - lo > resolution) {
    const mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) break; // lo and hi are adjacent doubles
    if (softExcess(x, alpha, mid, k) < 0) lo = mid;
    else hi = mid;
  }
  // Of the two ends of the final bracket, the one whose count is closer to k.
  return Math.abs(softExcess(x, alpha, lo, k)) <= Math.abs(softExcess(x, alpha, hi, k)) ? lo : hi;
}

/** x = scale·S of row i with out entries (excluded or −∞) at −∞. */
function rowScores(S, N, i, scale, x, flags, exclude) {
  markRow(flags, exclude, i, OUT);
  scaledRow(S, N, i, scale, x, flags);
  markRow(flags, exclude, i, 0);
}

export function refSoftTopK(S, B, N, k, opts = {}) {
  const alpha = opts.alpha ?? 1;
  const scale = opts.scale ?? 1;
  const log = opts.output === 'log';
  const values = new Float64Array(B * N);
  const threshold = new Float64Array(B);
  const x = new Float64Array(N);
  const flags = new Uint8Array(N);
  for (let i = 0; i < B; i++) {
    rowScores(S, N, i, scale, x, flags, opts.exclude);
    const t = solveThreshold(x, kOfRow(k, i), alpha);
    threshold[i] = t;
    // −softplus(−a) keeps log p finite (≈ a) far below the threshold, where log σ(a) is log 0.
    for (let j = 0; j < N; j++) values[i * N + j] = log ? logSigmoid(alpha * (x[j] + t)) : sigmoid(alpha * (x[j] + t));
  }
  return { values, threshold };
}

/**
 * ∂x of Σ_j (upstream-weighted output) for one row, given the row (out entries −∞), its
 * threshold and the upstream gradient g of the outputs ('prob' or 'log'). Writes dx (0 at out
 * entries).
 */
export function softTopKRowVjp(x, t, alpha, log, g, dx) {
  let V = 0;
  let G = 0; // Σ g_j v_j ('prob') or Σ u_j ('log')
  for (let j = 0; j < x.length; j++) {
    dx[j] = 0;
    if (x[j] === -Infinity) continue;
    const a = alpha * (x[j] + t);
    // p(1 − p) as σ(a)σ(−a): 1 − σ(a) would lose everything once σ(a) rounds to 1.
    const v = alpha * sigmoid(a) * sigmoid(-a);
    V += v;
    const gj = g(j);
    if (log) {
      const u = alpha * gj * sigmoid(-a);
      dx[j] = u;
      G += u;
    } else {
      dx[j] = gj * v;
      G += gj * v;
    }
  }
  if (V === 0) return; // every entry saturated: t does not move
  for (let j = 0; j < x.length; j++) {
    if (x[j] === -Infinity) continue;
    const a = alpha * (x[j] + t);
    dx[j] -= (alpha * sigmoid(a) * sigmoid(-a) * G) / V;
  }
}

/** dL/dS for L = Σ_ij upstream_ij · values_ij (B×N, row-major). */
export function refSoftTopKVjp(S, B, N, k, opts, upstream) {
  const alpha = opts.alpha ?? 1;
  const scale = opts.scale ?? 1;
  const { threshold } = refSoftTopK(S, B, N, k, opts);
  const grad = new Float64Array(B * N);
  const x = new Float64Array(N);
  const dx = new Float64Array(N);
  const flags = new Uint8Array(N);
  for (let i = 0; i < B; i++) {
    rowScores(S, N, i, scale, x, flags, opts.exclude);
    softTopKRowVjp(x, threshold[i], alpha, opts.output === 'log', (j) => upstream[i * N + j], dx);
    for (let j = 0; j < N; j++) grad[i * N + j] = scale * dx[j];
  }
  return grad;
}

// ---------- softTopKLoss ----------

/**
 * MATH softTopKLoss (native/ops/soft_topk_math.h), the soft top-k loss (DEXML "topk") in float64:
 *   ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip · log p_ip,  p = softTopK(z, k_i, α) over the columns that
 *   are in (not excluded, not −∞), z = scale·S, n_i = |P_i| (a count, not Σ w).
 * k: a number, one per row, or 'numPositives' (k_i = ceil(Σ_p w_ip)); defaults k = 5, α = 2.
 * The gradient is the 'log' backward of MATH softTopK (native/ops/soft_topk_math.h) with upstream −w_ip/n_i on the positives, so
 * it is nonzero everywhere (through t_i); dScale = Σ_ij (∂L/∂z_ij)·S_ij is the total derivative
 * in scale, t_i moving with it. 'mean' divides by B. A row without positives adds 0 (and needs
 * no threshold).
 */
// interface RefSoftTopKLossOptions extends RefCommonOptions {
//   /** Default 5. */
//   k?: number | Int32Array | number[] | 'numPositives';
//   /** Default 2. */
//   alpha?: number;
//   exclude?: RefPositives;
// }

export function refSoftTopKLoss(S, B, N, positives, opts = {}) {
  const scale = opts.scale ?? 1;
  const alpha = opts.alpha ?? 2;
  const kOpt = opts.k ?? 5;
  const reduction = opts.reduction ?? 'mean';
  const coef = rowCoefficients(reduction, B, B, opts.gradOutput);
  const rowLoss = new Float64Array(B);
  const grad = new Float64Array(B * N);
  let dScale = 0;
  const z = new Float64Array(N);
  const dz = new Float64Array(N);
  const upstream = new Float64Array(N); // ∂L/∂(log p_ij) of the current row
  const flags = new Uint8Array(N);

  for (let i = 0; i < B; i++) {
    const p0 = positives.rowPtr[i];
    const p1 = positives.rowPtr[i + 1];
    const n = p1 - p0;
    if (n === 0) continue;
    let k;
    if (kOpt === 'numPositives') {
      let W = 0;
      for (let e = p0; e < p1; e++) W += entryWeight(positives, e);
      k = Math.ceil(W);
    } else k = typeof kOpt === 'number' ? kOpt : kOpt[i];

    markRow(flags, opts.exclude, i, OUT);
    scaledRow(S, N, i, scale, z, flags);
    markRow(flags, opts.exclude, i, 0);
    const t = solveThreshold(z, k, alpha);

    let loss = 0;
    for (let e = p0; e < p1; e++) {
      const j = positives.cols[e];
      const wp = entryWeight(positives, e);
      // log p = −softplus(−α(z + t)): a positive far below the threshold costs ≈ α·distance,
      // finite, where log σ would be log 0.
      if (wp !== 0) loss -= (wp / n) * logSigmoid(alpha * (z[j] + t));
      upstream[j] = (-coef[i] * wp) / n;
    }
    rowLoss[i] = loss;
    softTopKRowVjp(z, t, alpha, true, (j) => upstream[j], dz);
    for (let e = p0; e < p1; e++) upstream[positives.cols[e]] = 0;
    for (let j = 0; j < N; j++) {
      if (dz[j] === 0) continue;
      grad[i * N + j] = scale * dz[j];
      dScale += dz[j] * S[i * N + j];
    }
  }
  return { loss: reduceRows(rowLoss, reduction, B), rowLoss, grad, dScale };
}

export const entries = [
  {
    name: 'softTopKLoss',
    fn: 'softTopKLoss',
    asyncFn: 'softTopKLossAsync',
    args: ['scores', 'positives'],
    options: ['k', 'alpha', 'tol', 'maxIter', 'exclude'],
    returns: 'loss',
    reference: refSoftTopKLoss,
    cases: [
      { rows: 7, cols: 97, kind: 'normal', opts: { k: 3, alpha: 1 } },
      { rows: 5, cols: 50257, kind: 'peaked', opts: {} },
      { rows: 9, cols: 32771, kind: 'normal', opts: { k: 'numPositives', alpha: 5, scale: 0.7, exclude: true } },
      { rows: 2, cols: 300007, kind: 'flat', opts: { k: 50, reduction: 'sum' } },
      // CUDA layouts: one block (≤ ~56K columns), a cluster (≤ ~450K), re-read passes (wider).
      { rows: 3, cols: 1000003, kind: 'normal', opts: { exclude: true } },
    ].flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      // 1 to 3 positives per row, distinct columns; with `exclude`, 5 more columns per row out.
      const rowPtr = new Int32Array(c.rows + 1);
      const cols = [];
      const excl = [];
      for (let i = 0; i < c.rows; i++) {
        const taken = new Set();
        const n = 1 + rng.int(0, 3);
        while (taken.size < n) taken.add(rng.int(0, c.cols));
        cols.push(...[...taken].sort((a, b) => a - b));
        rowPtr[i + 1] = cols.length;
        if (c.opts?.exclude) {
          const out = new Set();
          while (out.size < 5) {
            const j = rng.int(0, c.cols);
            if (!taken.has(j)) out.add(j);
          }
          excl.push([...out]);
        }
      }
      const opts = { ...(c.opts ?? {}), gradScale: true };
      if (opts.exclude) {
        const ptr = new Int32Array(c.rows + 1).map((_, i) => 5 * i);
        opts.exclude = { rowPtr: ptr, cols: Int32Array.from(excl.flat()) };
      }
      return { scores: scoresTensor(fl, rng, c), positives: { rowPtr, cols: Int32Array.from(cols) }, opts };
    },
    tol: { float32: 1e-4, float16: 1e-2, bfloat16: 2e-2 },
    bench: {
      // DEXML's configuration: k = 5, α = 2 (the defaults).
      sizes: [{ rows: 64, cols: 131072 }],
      bytes: (c) => c.rows * c.cols * 8, // one read of the scores, one write of the gradient
      prepare: reuseGrad,
      peers: {},
    },
    // One positive per row (the label), DEXML's k = 5, α = 2.
    gpu: { shapes: [[4096, 131072]], positivesPerRow: 1 },
    property: softTopKLossProperty,
  },
  embeddingsEntry('softTopKLossFromEmbeddings', {
    args: ['positives'],
    cases: [
      { rows: 37, dim: 48, cols: 1031, normalize: true, scale: 10, perRow: 3 },
      { rows: 70, dim: 64, cols: 2003, scale: 1, perRow: 2, exclude: true, bias: true, cudaBudget: chunked(2003, 20) },
    ],
    make: (fl, rng, c) => {
      const pos = rowPositives(rng, c.rows, c.cols, c.perRow, { gaps: true });
      const opts = { k: 5, alpha: 2 };
      if (c.exclude) opts.exclude = exclusions(rng, c.rows, c.cols, pos);
      return { positives: pos, opts };
    },
    // DEXML-style: B = 4096, D = 768, N = 262144 keys, 3 positives per row.
    gpu: { shapes: [[4096, 768, 262_144]], opts: { normalize: true, scale: 10, k: 5, alpha: 2, memoryBudget: 2 ** 29 }, positivesPerRow: 3 },
  }),
];

/** 0 to 3 positives per row (distinct columns), weights on odd seeds. */
function topKPositives(rows, cols, seed) {
  const rng = makeRng(seed);
  const rowPtr = new Int32Array(rows + 1);
  const c = [];
  for (let i = 0; i < rows; i++) {
    const taken = new Set();
    const n = rng.int(0, 4);
    while (taken.size < n) taken.add(rng.int(0, cols));
    c.push(...taken);
    rowPtr[i + 1] = c.length;
  }
  const cs = Int32Array.from(c);
  return seed % 2 ? { rowPtr, cols: cs, weights: Float32Array.from(cs, () => 0.5 + rng.u()) } : { rowPtr, cols: cs };
}

/** ln σ(a), stable. */
const logSig = (a) => (a >= 0 ? -Math.log1p(Math.exp(-a)) : a - Math.log1p(Math.exp(a)));

/** MATH softTopKLoss (native/ops/soft_topk_math.h) in float64 (mean reduction, scale 1): the threshold by bisection, then loss and gradient. */
function refTopKLoss(i) {
  const { rows, cols, values } = i.s;
  const alpha = i.opts.alpha;
  const grad = new Float64Array(rows * cols);
  let loss = 0;
  const sig = (a) => (a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a)));
  for (let r = 0; r < rows; r++) {
    const e0 = i.positives.rowPtr[r], e1 = i.positives.rowPtr[r + 1];
    if (e0 === e1) continue;
    const x = values.subarray(r * cols, (r + 1) * cols);
    let W = 0;
    for (let e = e0; e < e1; e++) W += i.positives.weights ? i.positives.weights[e] : 1;
    const k = i.opts.k === 'numPositives' ? Math.ceil(W) : i.opts.k;
    let max = -Infinity, min = Infinity;
    for (const v of x) { max = Math.max(max, v); min = Math.min(min, v); }
    const shift = Math.log(k / (cols - k)) / alpha;
    let lo = -max + shift, hi = -min + shift;
    for (let it = 0; it < 100 && hi - lo > 1e-12 * Math.max(1, Math.abs(lo)); it++) {
      const t = (lo + hi) / 2;
      let f = 0;
      for (const v of x) f += sig(alpha * (v + t));
      if (f < k) lo = t;
      else hi = t;
    }
    const t = (lo + hi) / 2;
    const n = e1 - e0;
    let U = 0, V = 0;
    for (let e = e0; e < e1; e++) {
      const w = i.positives.weights ? i.positives.weights[e] : 1;
      const a = alpha * (x[i.positives.cols[e]] + t);
      loss -= (w / n) * logSig(a) / rows;
      const u = (alpha * (-w / n / rows)) * sig(-a);
      grad[r * cols + i.positives.cols[e]] = u;
      U += u;
    }
    for (const v of x) V += alpha * sig(alpha * (v + t)) * sig(-alpha * (v + t));
    for (let j = 0; j < cols; j++) grad[r * cols + j] -= (alpha * sig(alpha * (x[j] + t)) * sig(-alpha * (x[j] + t)) * U) / V;
  }
  return { loss, grad };
}

function softTopKLossProperty(kit) {
  const { fc, fl, makeScores, heavyScores, inAddonMemory, scoresMutations, optionMutations, DTYPES } = kit;
  const op = {
    // Normal and flat rows (peaked rows whose top entries saturate, and ±6e4 magnitudes, put the
    // root where float64 bisection cannot resolve it: test/softTopK.test.ts covers those).
    cases: fc
      .tuple(
        fc.oneof(
          { weight: 8, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 6 }), cols: fc.integer({ min: 9, max: 300 }) }) },
          { weight: 1, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 2 }), cols: fc.integer({ min: 32760, max: 70001 }) }) },
        ),
        fc.constantFrom(...DTYPES),
        fc.constantFrom('normal', 'flat'),
        fc.constantFrom('tensor', 'like', 'bare'),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant('numPositives')),
        fc.constantFrom(1, 2, 5),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      )
      .map(([s, dtype, kind, form, seed, k, alpha, positivesSeed]) => ({ ...s, dtype, kind, form, seed, k, alpha, positivesSeed })),
    make(c) {
      return { s: makeScores(c), positives: topKPositives(c.rows, c.cols, c.positivesSeed), opts: { k: c.k, alpha: c.alpha } };
    },
    outputs: (r) => ({ loss: r.loss, grad: fl.toFloat32(r.grad.data, r.grad.dtype) }),
    reference: (i) => refTopKLoss(i),
    check(got, ref, i) {
      const loss = got.loss, rl = ref.loss;
      if (!(Math.abs(loss - rl) <= 1e-4 * Math.max(1e-3, Math.abs(rl)))) return `loss ${loss}, expected ${rl}`;
      const g = got.grad, rg = ref.grad;
      let num = 0, den = 0;
      for (let j = 0; j < rg.length; j++) {
        if (Number.isNaN(g[j])) return `grad[${j}] is NaN`;
        num += (g[j] - rg[j]) ** 2;
        den += rg[j] ** 2;
      }
      const tol = i.s.dtype === 'float32' ? 1e-4 : i.s.dtype === 'float16' ? 3e-3 : 2e-2;
      const err = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
      return den > 0 && err > tol ? `grad relative L2 error ${err.toExponential(2)} > ${tol}` : undefined;
    },
    views: (i) => [i.s.data, i.positives.rowPtr, i.positives.cols],
    mutations: [
      ...scoresMutations(),
      ...optionMutations(),
      { name: 'k 0', code: 'ERR_K_RANGE', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows) }, opts: { ...i.opts, k: 0 } }) },
      { name: 'k = N', code: 'ERR_K_RANGE', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows) }, opts: { ...i.opts, k: i.s.cols } }) },
      { name: 'k array of the wrong length', code: 'ERR_SHAPE', apply: (i) => ({ ...i, opts: { ...i.opts, k: new Int32Array(i.s.rows + 1).fill(1) } }) },
      { name: 'alpha 0', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, alpha: 0 } }) },
      { name: 'alpha NaN', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, alpha: Number.NaN } }) },
      { name: 'a positive column out of range', code: 'ERR_CSR', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows).fill(i.s.cols) } }) },
      { name: 'positives not an object', code: 'ERR_TYPE', apply: (i) => ({ ...i, positives: 7 }) },
    ],
    heavy() {
      // 64 × 131072 fp32 (32 MB), DEXML's k = 5, α = 2: tens of ms per call on two cores. The
      // gradient goes into a reused tensor (opts.out), as in a training loop: the main thread
      // then only validates and launches.
      const rows = 64, cols = 131072;
      const rng = makeRng(8);
      const x = new Float32Array(rows * cols);
      for (let j = 0; j < x.length; j++) x[j] = rng.normal() * 3;
      const s = heavyScores(x, rows, cols);
      return { s, positives: topKPositives(rows, cols, 2), opts: { k: 5, alpha: 2, out: fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]) } };
    },
    small: () => op.make({ rows: 3, cols: 29, dtype: 'bfloat16', kind: 'normal', form: 'tensor', seed: 3, k: 3, alpha: 2, positivesSeed: 5 }),
  };
  return op;
}
