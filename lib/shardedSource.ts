/**
 * Where a sharded loss's local scores come from (lib/sharded.ts): the rank's score block
 * (B × N_r), or its key embeddings K_r (N_r × D) with the gathered queries Q (B × D), whose
 * block S = Q·K_rᵀ is never held beyond `memoryBudget` (docs/MATH.md §5, the section-6 form).
 *
 * The protocol reads the scores through two passes only, so one loss code serves both forms:
 * - `scan(f)`: f sees every row chunk of S in order (the partials, the Newton steps);
 * - `grad(f)`: f writes each chunk's dL/dS; the block form keeps it (the result's `grad`), the
 *   embeddings form folds it into dQ and dK_r with the GEMM core and drops it.
 * The block form has one chunk (the block itself) except where its gradient is converted (a
 * half gradient, or `inplace`), which goes by bounded chunks of rows.
 * @internal
 * @module
 */
import { float32ToBFloat16, float32ToFloat16, toFloat32 } from './half';
import { makeError } from './errors';
import type { DeviceBufferHandle } from './native';
import { embeddingFinish, embeddingGrad, embeddingScores, F32, gatherEntries, rowInvNorms, scatterEntries, type Block, type BlockTypes, type NativeShardedChunk } from './shardedMath';
import { dtypeCode, emptyDevice, Tensor, type DType, type HostArray } from './tensor';

/** f(S, r0, r1): the scores of rows [r0, r1), (r1 − r0) × n row-major float32 (a device buffer of the source's dtype for a device block). */
export type ChunkFn = (S: Block, r0: number, r1: number) => void;
/**
 * f(S, G, r0, r1, set): writes the chunk's dL/dS into G (zeroed, the chunk's shape) by the
 * native reads, and single entries (chunk-local flat index k) by set(k, v), after them.
 */
export type GradFn = (S: Block, G: Block, r0: number, r1: number, set: (k: number, v: number) => void) => void;

/** A host source's block (a device block never reaches the host reads: ERR_INTERNAL if it did). */
export function hostBlock(S: Block): Float32Array {
  if (!(S instanceof Float32Array)) throw makeError('ERR_INTERNAL', 'sharded loss: a host-only read of a device block');
  return S;
}

/** Entries of a CSR over the rows (local columns) read from a host chunk: out[q] for entry q. */
function hostPick(m: { rowPtr: Int32Array; cols: Int32Array }, n: number, out: Float32Array): ChunkFn {
  return (block, r0, r1) => {
    const S = hostBlock(block);
    for (let i = r0; i < r1; i++) for (let q = m.rowPtr[i]; q < m.rowPtr[i + 1]; q++) out[q] = S[(i - r0) * n + m.cols[q]];
  };
}

/** The gradient outputs a source attaches to the result. */
export interface SourceGrads {
  grad?: Tensor;
  gradQueries?: Tensor;
  gradKeys?: Tensor;
  gradBias?: Float32Array;
}

export interface ScoreSource {
  readonly rows: number;
  readonly n: number;
  /** A device block. */
  readonly device: boolean;
  /** The dtype codes the block reads see (a host block is float32: widened once) and the gradient's. */
  readonly types: BlockTypes;
  /** Runs f over the row chunks in order; with `wanted` (sorted rows), chunks without one may be skipped. */
  scan(f: ChunkFn, wanted?: Int32Array): void;
  /** A ChunkFn that reads the entries of a CSR over the rows (local columns) into out[q], for a scan. */
  pick(m: { rowPtr: Int32Array; cols: Int32Array }, out: Float32Array): ChunkFn;
  /** The gradient pass over every chunk; `keep` false: the gradient is only read by f's caller (dScale), not returned. */
  grad(f: GradFn, keep: boolean): void;
  /** The gradients of the last kept grad pass. */
  grads(): SourceGrads;
  /** Frees the source's scratch (device chunks) once the job is done. */
  release?(): void;
}

/** Rows of float32 scratch per converted chunk: 4 MiB. */
const CONVERT_FLOATS = 1 << 20;

function writeAs(dst: HostArray, dtype: DType, at: number, src: Float32Array): void {
  if (dtype === 'float32') (dst as Float32Array).set(src, at);
  else dst.set(dtype === 'float16' ? float32ToFloat16(src) : float32ToBFloat16(src), at);
}

/**
 * The score-block form. `data` is the block as given (any dtype; widened to float32 once), the
 * gradient goes to `target` (the caller's `out`, the scores' own memory with `inplace`) or a new
 * array, of `gradDtype`.
 */
export function blockSource(data: HostArray, dtype: DType, rows: number, n: number, gradDtype: DType, target: { data: HostArray; tensor?: Tensor } | undefined): ScoreSource {
  const S = data instanceof Float32Array ? data : toFloat32(data, dtype);
  let kept: Tensor | undefined;
  return {
    rows,
    n,
    device: false,
    types: F32,
    scan: (f) => f(S, 0, rows),
    pick: (m, out) => hostPick(m, n, out),
    grad(f, keep) {
      const dst = target?.data ?? (gradDtype === 'float32' ? new Float32Array(rows * n) : new Uint16Array(rows * n));
      const inplace = dst.buffer === data.buffer;
      if (gradDtype === 'float32' && !inplace) {
        const G = (dst as Float32Array).fill(0);
        f(S, G, 0, rows, (k, v) => (G[k] = v));
      } else {
        // Converted, or over the scores being read: by chunks, each written once f is done with its rows.
        const step = Math.max(1, Math.floor(CONVERT_FLOATS / Math.max(n, 1)));
        const G = new Float32Array(Math.min(rows, step) * n);
        for (let r0 = 0; r0 < rows; r0 += step) {
          const r1 = Math.min(rows, r0 + step);
          const g = G.subarray(0, (r1 - r0) * n).fill(0);
          f(S.subarray(r0 * n, r1 * n), g, r0, r1, (k, v) => (g[k] = v));
          writeAs(dst, gradDtype, r0 * n, g);
        }
      }
      if (keep) kept = target?.tensor ?? new Tensor(gradDtype, [rows, n], dst, undefined);
    },
    grads: () => (kept ? { grad: kept } : {}),
  };
}

/**
 * A block on the device, of any dtype: the partials and the gradient run as CUDA kernels over it
 * (cuda/sharded.cu) in its own dtype; the per-row statistics, the picked entries (labels',
 * positives' scores, widened to float32) and the finish's own entries cross to and from the
 * host, O(B + nnz) floats. The gradient (of `gradDtype`) goes to `target` (a device tensor: the
 * caller's `out`, or the scores themselves with `inplace`) or a new device tensor; every kernel
 * writes each entry it owns, so a new one needs no zeroing.
 */
export function deviceSource(t: Tensor, rows: number, n: number, gradDtype: DType, target: Tensor | undefined): ScoreSource {
  const S = t.nativeInput('localScores') as DeviceBufferHandle;
  const types: BlockTypes = { dtype: dtypeCode(t.dtype), gradDtype: dtypeCode(gradDtype) };
  let kept: Tensor | undefined;
  return {
    rows,
    n,
    device: true,
    types,
    scan: (f) => f(S, 0, rows),
    pick: (m, out) => (block, r0, r1) => {
      const q0 = m.rowPtr[r0], q1 = m.rowPtr[r1];
      const index = new Float64Array(q1 - q0);
      for (let i = r0; i < r1; i++) for (let q = m.rowPtr[i]; q < m.rowPtr[i + 1]; q++) index[q - q0] = (i - r0) * n + m.cols[q];
      gatherEntries(block, r1 - r0, n, index, out.subarray(q0, q1), types.dtype);
    },
    grad(f, keep) {
      const G = target ?? emptyDevice(gradDtype, [rows, n]);
      const g = G.nativeInput('opts.out') as DeviceBufferHandle;
      const at: number[] = [], values: number[] = [];
      f(S, g, 0, rows, (k, v) => {
        at.push(k);
        values.push(v);
      });
      // After the dense kernel (same stream): the entries the loss writes itself.
      scatterEntries(g, rows, n, Float64Array.from(at), Float32Array.from(values), types.gradDtype);
      if (keep) kept = G;
      else if (!target) G.dispose();
    },
    grads: () => (kept ? { grad: kept } : {}),
  };
}

/** What the key-embedding form reads (validated by lib/sharded.ts). */
export interface EmbeddingsInput {
  queries: Tensor;
  keys: Tensor;
  rows: number;
  n: number;
  dim: number;
  normalize: boolean;
  bias: Float32Array | undefined;
  memoryBudget: number;
  accumulate: boolean;
  gradDtype: DType;
  gradQueries: Tensor | undefined;
  gradKeys: Tensor | undefined;
  gradBias: Float32Array | undefined;
}

/** F.normalize's eps (native/ops/embeddings.cpp kNormEps): a shorter vector is divided by it, its gradient not projected. */
const NORM_EPS = 1e-12;
const TINY_INV = Math.fround(1 / NORM_EPS);
/** Rows of keys widened at a time in the O(N_r·D) passes. */
const KEY_BLOCK = 4096;

/** 1/max(‖v‖, eps) of each row of a rows × dim float32 matrix, the norm summed in double. */
function invNorms(v: Float32Array, rows: number, dim: number, out: Float32Array, at: number): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let k = r * dim; k < (r + 1) * dim; k++) s += v[k] * v[k];
    const norm = Math.sqrt(s);
    out[at + r] = norm < NORM_EPS ? TINY_INV : Math.fround(1 / norm);
  }
}

/** Rows [r0, r1) of the keys widened to float32 (a view for float32 keys). */
function keyRows(keys: Tensor, dim: number, r0: number, r1: number): Float32Array {
  const d = keys.data.subarray(r0 * dim, r1 * dim);
  return toFloat32(d, keys.dtype);
}

/**
 * The key-embedding form: S = Q̂·k̂ᵀ (+ the shard's bias) by chunks of rows that fit the budget
 * with their gradient (8·N_r bytes a row); when the whole B × N_r block fits, it is computed
 * once and read by every pass. The gradient pass folds each chunk's G into dQ (this rank's
 * part: Σ over its columns; the sum over ranks is dL/dQ) and dK_r, both float32 scratch until
 * the normalisation's chain rule and the dtype of gradQueries are applied at the end.
 */
export function embeddingsSource(e: EmbeddingsInput): ScoreSource {
  const { rows, n, dim } = e;
  const Qf = toFloat32(e.queries.data, e.queries.dtype);
  const Q = e.normalize && Qf === e.queries.data ? Float32Array.from(Qf) : Qf; // Q̂, float32
  let qInv: Float32Array | undefined;
  let kInv: Float32Array | undefined;
  if (e.normalize) {
    qInv = new Float32Array(rows);
    invNorms(Q, rows, dim, qInv, 0);
    for (let r = 0; r < rows; r++) for (let k = r * dim; k < (r + 1) * dim; k++) Q[k] = Math.fround(Q[k] * qInv[r]);
    kInv = new Float32Array(n);
    for (let j0 = 0; j0 < n; j0 += KEY_BLOCK) {
      const j1 = Math.min(n, j0 + KEY_BLOCK);
      invNorms(keyRows(e.keys, dim, j0, j1), j1 - j0, dim, kInv, j0);
    }
  }
  const chunkRows = n === 0 ? Math.max(rows, 1) : Math.floor(e.memoryBudget / (8 * n));
  const whole = chunkRows >= rows;
  const step = whole ? Math.max(rows, 1) : chunkRows;
  const chunk = (r0: number, r1: number): NativeShardedChunk => ({
    queries: Q,
    queriesDtype: 0,
    row0: r0,
    queryRows: rows,
    keys: n * dim > 0 ? e.keys.nativeInput('keys') : undefined,
    keysDtype: dtypeCode(e.keys.dtype),
    rows: r1 - r0,
    cols: n,
    dim,
    keyScale: kInv,
  });
  let cache: Float32Array | undefined;
  let buf: Float32Array | undefined;
  const scores = (r0: number, r1: number): Float32Array => {
    if (whole) {
      if (!cache) {
        cache = new Float32Array(rows * n);
        embeddingScores(chunk(0, rows), e.bias, cache);
      }
      return cache.subarray(r0 * n, r1 * n);
    }
    buf ??= new Float32Array(step * n);
    const S = buf.subarray(0, (r1 - r0) * n);
    embeddingScores(chunk(r0, r1), e.bias, S);
    return S;
  };
  let out: { dQ: Float32Array; dK: Float32Array; dBias: Float32Array | undefined } | undefined;
  let done: SourceGrads = {};
  return {
    rows,
    n,
    device: false,
    types: F32,
    pick: (m, out) => hostPick(m, n, out),
    scan(f, wanted) {
      let w = 0;
      for (let r0 = 0; r0 < rows; r0 += step) {
        const r1 = Math.min(rows, r0 + step);
        if (wanted) {
          while (w < wanted.length && wanted[w] < r0) w++;
          if (!(w < wanted.length && wanted[w] < r1)) continue;
        }
        f(scores(r0, r1), r0, r1);
      }
    },
    grad(f, keep) {
      const G = new Float32Array(Math.min(rows, step) * n);
      if (keep) out = { dQ: new Float32Array(rows * dim), dK: new Float32Array(n * dim), dBias: e.bias ? new Float32Array(n) : undefined };
      for (let r0 = 0; r0 < rows; r0 += step) {
        const r1 = Math.min(rows, r0 + step);
        const g = G.subarray(0, (r1 - r0) * n).fill(0);
        f(scores(r0, r1), g, r0, r1, (k, v) => (g[k] = v));
        if (out) embeddingGrad(chunk(r0, r1), g, out.dQ, out.dK, out.dBias);
      }
      if (out) done = finishGrads(e, Q, qInv, kInv, out.dQ, out.dK, out.dBias);
    },
    grads: () => done,
  };
}

/**
 * The key-embedding form on the device (queries and keys cuda tensors of one dtype): the same
 * chunks as embeddingsSource, each S = Q̂·K̂ᵀ + b a float32 device block formed by the GEMM of
 * the embeddings driver (cuda/sharded.cu sharded_scores: the norms, taken once on the device,
 * and the bias in its epilogue), read by the device block kernels; the gradient pass folds each
 * chunk's G into dQ̂ and A (float32 device scratch, A the first chunk's written, the next ones'
 * added) and ends with the chain rule into gradQueries (gradDtype) and gradKeys (float32), device
 * tensors. Only the norms, the per-row statistics and the bias gradient cross to the host.
 */
export function deviceEmbeddingsSource(e: EmbeddingsInput): ScoreSource {
  const { rows, n, dim } = e;
  const code = dtypeCode(e.queries.dtype);
  const Q = e.queries.nativeInput('localScores.queries');
  const K = e.keys.nativeInput('localScores.keys');
  const qInv = e.normalize ? rowInvNorms(Q, code, rows, dim) : undefined;
  const kInv = e.normalize ? rowInvNorms(K, code, n, dim) : undefined;
  const chunkRows = n === 0 ? Math.max(rows, 1) : Math.floor(e.memoryBudget / (8 * n));
  const whole = chunkRows >= rows;
  const step = whole ? Math.max(rows, 1) : chunkRows;
  const chunk = (r0: number, r1: number): NativeShardedChunk => ({
    queries: Q,
    queriesDtype: code,
    row0: r0,
    queryRows: rows,
    keys: K,
    keysDtype: code,
    rows: r1 - r0,
    cols: n,
    dim,
    keyScale: kInv,
    queryScale: qInv?.subarray(r0, r1),
  });
  // Device float32 scratch of a chunk's shape (the last chunk may be shorter), freed at the end.
  const scratch = new Map<string, Tensor>();
  const buffer = (tag: string, r: number): DeviceBufferHandle => {
    const key = `${tag}${r}`;
    let t = scratch.get(key);
    if (!t) scratch.set(key, (t = emptyDevice('float32', [r, n])));
    return t.nativeInput(tag) as DeviceBufferHandle;
  };
  let cached = false;
  const scores = (r0: number, r1: number): DeviceBufferHandle => {
    const S = buffer('scores', r1 - r0);
    if (!whole || !cached) embeddingScores(chunk(r0, r1), e.bias, S);
    cached = whole;
    return S;
  };
  const free = () => {
    for (const t of scratch.values()) t.dispose();
    scratch.clear();
    cached = false;
  };
  let done: SourceGrads = {};
  return {
    rows,
    n,
    device: true,
    types: F32,
    pick: (m, out) => (block, r0, r1) => {
      const q0 = m.rowPtr[r0], q1 = m.rowPtr[r1];
      const index = new Float64Array(q1 - q0);
      for (let i = r0; i < r1; i++) for (let q = m.rowPtr[i]; q < m.rowPtr[i + 1]; q++) index[q - q0] = (i - r0) * n + m.cols[q];
      gatherEntries(block, r1 - r0, n, index, out.subarray(q0, q1));
    },
    scan(f, wanted) {
      let w = 0;
      for (let r0 = 0; r0 < rows; r0 += step) {
        const r1 = Math.min(rows, r0 + step);
        if (wanted) {
          while (w < wanted.length && wanted[w] < r0) w++;
          if (!(w < wanted.length && wanted[w] < r1)) continue;
        }
        f(scores(r0, r1), r0, r1);
      }
    },
    grad(f, keep) {
      const dQ = keep ? emptyDevice('float32', [rows, dim]) : undefined;
      const gk = keep ? (e.gradKeys && !e.accumulate ? e.gradKeys : emptyDevice('float32', [n, dim])) : undefined;
      const dBias = keep && e.bias ? new Float32Array(n) : undefined;
      try {
        for (let r0 = 0; r0 < rows; r0 += step) {
          const r1 = Math.min(rows, r0 + step);
          const G = buffer('grad', r1 - r0);
          const at: number[] = [], values: number[] = [];
          f(scores(r0, r1), G, r0, r1, (k, v) => {
            at.push(k);
            values.push(v);
          });
          scatterEntries(G, r1 - r0, n, Float64Array.from(at), Float32Array.from(values));
          if (dQ && gk) embeddingGrad(chunk(r0, r1), G, dQ.nativeInput('dQ'), gk.nativeInput('gradKeys'), dBias, r0 === 0);
        }
        if (!dQ || !gk) return;
        if (rows === 0) (gk.nativeInput('gradKeys') as DeviceBufferHandle).copyFromHost(new Float32Array(n * dim)); // no chunk ran: A = 0
        const gq = e.gradQueries ?? emptyDevice(e.gradDtype, [rows, dim]);
        const out = e.gradKeys ?? gk;
        embeddingFinish({
          queries: Q, keys: K, dtype: code, rows, cols: n, dim, queryScale: qInv, keyScale: kInv,
          gradQueriesIn: dQ.nativeInput('dQ'), gradQueries: gq.nativeInput('opts.gradQueries'), gradDtype: dtypeCode(e.gradDtype),
          gradKeysIn: gk.nativeInput('gradKeys'), gradKeys: out.nativeInput('opts.gradKeys'), accumulate: e.accumulate,
        });
        if (gk !== out) gk.dispose();
        done = { gradQueries: gq, gradKeys: out };
        if (dBias) {
          const b = e.gradBias ?? dBias;
          if (b !== dBias) {
            if (e.accumulate) for (let j = 0; j < n; j++) b[j] += dBias[j];
            else b.set(dBias);
          }
          done.gradBias = b;
        }
      } finally {
        dQ?.dispose();
        free();
      }
    },
    grads: () => done,
    release: free,
  };
}

/** The chain rule through the normalisation (MATH §3.9), then into the caller's buffers (added with `accumulate`). */
function finishGrads(e: EmbeddingsInput, Q: Float32Array, qInv: Float32Array | undefined, kInv: Float32Array | undefined, dQ: Float32Array, dK: Float32Array, dBias: Float32Array | undefined): SourceGrads {
  const { rows, n, dim } = e;
  if (qInv)
    // dq = (dq̂ − q̂ (q̂·dq̂)) / ‖q‖ (plain dq̂/eps for a vector shorter than eps).
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      let dot = 0;
      if (qInv[r] !== TINY_INV) for (let k = 0; k < dim; k++) dot += Q[o + k] * dQ[o + k];
      for (let k = 0; k < dim; k++) dQ[o + k] = (dQ[o + k] - Q[o + k] * dot) * qInv[r];
    }
  if (kInv)
    // dK holds A = diag(1/‖k‖)·dK̂ (native: G scaled before the GEMM): dk_j = A_j − k̂_j (k̂_j·A_j).
    for (let j0 = 0; j0 < n; j0 += KEY_BLOCK) {
      const j1 = Math.min(n, j0 + KEY_BLOCK);
      const K = keyRows(e.keys, dim, j0, j1);
      for (let j = j0; j < j1; j++) {
        const inv = kInv[j];
        if (inv === TINY_INV) continue;
        const o = j * dim, ko = (j - j0) * dim;
        let dot = 0;
        for (let k = 0; k < dim; k++) dot += K[ko + k] * inv * dK[o + k];
        for (let k = 0; k < dim; k++) dK[o + k] -= K[ko + k] * inv * dot;
      }
    }
  const gq = e.gradQueries ?? new Tensor(e.gradDtype, [rows, dim], e.gradDtype === 'float32' ? new Float32Array(rows * dim) : new Uint16Array(rows * dim), undefined);
  if (e.accumulate) {
    const prev = toFloat32(gq.data, gq.dtype);
    for (let k = 0; k < dQ.length; k++) dQ[k] += prev[k];
  }
  writeAs(gq.data, gq.dtype, 0, dQ);
  const gk = e.gradKeys ?? new Tensor('float32', [n, dim], dK, undefined);
  if (gk.data !== dK) {
    const t = gk.data as Float32Array;
    if (e.accumulate) for (let k = 0; k < dK.length; k++) t[k] += dK[k];
    else t.set(dK);
  }
  const r: SourceGrads = { gradQueries: gq, gradKeys: gk };
  if (dBias) {
    const b = e.gradBias ?? dBias;
    if (b !== dBias) {
      if (e.accumulate) for (let j = 0; j < n; j++) b[j] += dBias[j];
      else b.set(dBias);
    }
    r.gradBias = b;
  }
  return r;
}
