// The shared parts of the registry entries of the ops on queries and keys (the forms from
// embeddings, docs/MATH.md §3.10, and linearCrossEntropy, §3.9), scripts/ops/<op>.mjs: B×D queries
// (hidden rows), N×D keys (classes), their backend run and the entry builder. Plain JS.
import { dtypes } from './op-kit.mjs';

/** A rows × dim tensor of N(0, σ²) values in `dtype`. */
export function matrix(fl, rng, rows, dim, dtype, sigma = 1) {
  const x = new Float32Array(rows * dim);
  for (let i = 0; i < x.length; i++) x[i] = sigma * rng.normal();
  const data = dtype === 'float32' ? x : dtype === 'float16' ? fl.float32ToFloat16(x) : fl.float32ToBFloat16(x);
  return fl.tensor(data, [rows, dim], { dtype });
}

/** `perRow` distinct positives per row (some rows none when `gaps`), weights when `weighted`. */
export function rowPositives(rng, rows, cols, perRow, { gaps = false, weighted = false } = {}) {
  const rowPtr = new Int32Array(rows + 1);
  const out = [];
  for (let i = 0; i < rows; i++) {
    const n = gaps && i % 5 === 3 ? 0 : perRow;
    const seen = new Set();
    while (seen.size < Math.min(n, cols)) seen.add(rng.int(0, cols));
    out.push(...seen);
    rowPtr[i + 1] = out.length;
  }
  const p = { rowPtr, cols: Int32Array.from(out) };
  if (weighted) p.weights = Float32Array.from(out, () => rng.u());
  return p;
}

/** One exclusion per row at a column that is not one of its positives (or none given). */
export function exclusions(rng, rows, cols, pos) {
  const rowPtr = new Int32Array(rows + 1), out = [];
  for (let i = 0; i < rows; i++) {
    const taken = new Set(pos ? pos.cols.subarray(pos.rowPtr[i], pos.rowPtr[i + 1]) : [i]);
    for (let t = 0; t < 8; t++) {
      const c = rng.int(0, cols);
      if (!taken.has(c)) { out.push(c); break; }
    }
    rowPtr[i + 1] = out.length;
  }
  return { rowPtr, cols: Int32Array.from(out) };
}

const hostValues = (fl, t) => (t ? fl.toFloat32(fl.toHost(t).data, t.dtype) : new Float32Array(0));

/**
 * Runs fn(queries, keys) on `device` (the inputs moved there, device outputs brought back and
 * freed). `cudaBudget`: the scratch budget on CUDA (small, so that the GPU takes several chunks);
 * the CPU keeps its default (its budget also pays for its GEMM panels).
 */
export async function runEmbeddings(fl, inputs, device, call) {
  const place = (t) => (device === 'cuda' ? fl.toDevice(t) : t);
  const q = place(inputs.queries), k = place(inputs.keys);
  const opts = { ...inputs.opts };
  if (device === 'cuda' && inputs.cudaBudget) opts.memoryBudget = inputs.cudaBudget;
  // Buffers added into (accumulate): each run gets its own copy of the caller's values.
  const copy = (t) => (device === 'cuda' ? fl.toDevice(t) : fl.tensor(t.data.slice(), t.shape, { dtype: t.dtype }));
  for (const g of ['gradQueries', 'gradKeys', 'gradHidden', 'gradWeight']) if (opts[g]) opts[g] = copy(opts[g]);
  if (opts.gradBias) opts.gradBias = Float32Array.from(opts.gradBias);  // a host array on every device
  try {
    const r = await call(q, k, opts);
    const out = { loss: r.loss, rowLoss: r.rowLoss };
    if (r.dScale !== undefined) out.dScale = r.dScale;
    for (const g of ['gradQueries', 'gradKeys', 'gradHidden', 'gradWeight']) if (r[g]) out[g] = hostValues(fl, r[g]);
    if (r.gradBias) out.gradBias = Float32Array.from(r.gradBias);
    if (r.lse) out.lse = r.lse;
    if (device === 'cuda') for (const g of ['gradQueries', 'gradKeys', 'gradHidden', 'gradWeight']) r[g]?.dispose();
    return out;
  } finally {
    if (device === 'cuda') {
      q.dispose();
      k.dispose();
      for (const g of ['gradQueries', 'gradKeys', 'gradHidden', 'gradWeight']) if (opts[g] && opts[g] !== inputs.opts[g]) opts[g].dispose();
    }
  }
}

/** An accumulate case: gradient buffers with values in them, added into. */
export function accumulateInto(fl, rng, c, names) {
  const [qName, kName] = names;
  const gdt = c.gradDtype ?? c.dtype;
  return {
    [qName]: matrix(fl, rng, c.rows, c.dim, gdt, 0.01),
    [kName]: matrix(fl, rng, c.cols, c.dim, 'float32', 0.01),
    accumulate: true,
  };
}

export const embeddingsTol = { float32: 2e-4, float16: 1e-2, bfloat16: 2e-2 };

/** An entry of a <loss>FromEmbeddings: `args` names what comes between keys and opts. */
export function embeddingsEntry(name, { args = [], cases, make, gpu }) {
  return {
    name,
    fn: name,
    asyncFn: `${name}Async`,
    args: ['queries', 'keys', ...args],
    cases: cases.flatMap((c) => dtypes.map((dtype) => ({ ...c, dtype }))),
    make(fl, rng, c) {
      const queries = matrix(fl, rng, c.rows, c.dim, c.dtype, c.sigma ?? 0.3);
      const keys = matrix(fl, rng, c.cols, c.dim, c.dtype, c.sigma ?? 0.3);
      const extra = make?.(fl, rng, c) ?? {};
      const opts = { gradScale: true, scale: c.scale ?? 1, normalize: !!c.normalize, ...(c.opts ?? {}), ...(extra.opts ?? {}) };
      if (c.accumulate) Object.assign(opts, accumulateInto(fl, rng, c, ['gradQueries', 'gradKeys']));
      // A per-key bias (a host array on every device), and with accumulate its gradient's buffer.
      if (c.bias) {
        opts.bias = Float32Array.from({ length: c.cols }, () => 0.5 * rng.normal());
        if (c.accumulate) opts.gradBias = Float32Array.from({ length: c.cols }, () => 0.01 * rng.normal());
      }
      if (c.gradDtype) opts.gradDtype = c.gradDtype;
      return { queries, keys, ...extra, opts, cudaBudget: c.cudaBudget };
    },
    run(fl, inputs, device, async = false) {
      return runEmbeddings(fl, inputs, device, (q, k, opts) => (async ? fl[`${name}Async`] : fl[name])(q, k, ...args.map((a) => inputs[a]), opts));
    },
    tol: embeddingsTol,
    gpu,
  };
}

// Budgets that give the GPU several chunks at the cases' N (a row of S is 4·N bytes).
export const chunked = (cols, rows) => 4 * cols * rows + 64 * 1024;
