/**
 * Label-sharded losses (docs/MATH.md §5): each rank holds a block of columns of the score matrix,
 * [columnOffset, columnOffset + N_r) of N, and every row's targets in global column indices.
 * The loss, the row losses and each rank's gradient block equal the unsharded call's.
 *
 * The package never talks to a network: the caller brings an all-reduce with an elementwise
 * `'sum'` and `'max'` over a Float32Array (MPI_Allreduce, NCCL, gloo, a worker_threads ring,
 * IPC between processes). `shardedLoss()` validates the arguments and returns a job:
 *
 * - `await job.run(allReduce)` drives every round through `allReduce(buffer, op)`;
 * - `job.phases()` is the same protocol as an iterator of requests, for frameworks that
 *   schedule collectives themselves:
 *   ```ts
 *   const steps = job.phases();
 *   let s = steps.next();                 // phase 1 runs here
 *   while (!s.done) s = steps.next(await myAllReduce(s.value.buffer, s.value.op));
 *   const { loss, rowLoss, grad } = s.value;
 *   ```
 *   Every rank must issue the same requests in the same order; their lengths agree when the
 *   ranks' options and targets agree.
 *
 * **Rounds.** The softmax-type losses (softmaxCrossEntropy, multiLabelSoftmax, infoNCE,
 * decoupledSoftmax, decoupledContrastive) make two: a `'max'` round of the row maxima (B floats)
 * and a `'sum'` round of the row exp-sums rescaled to that maximum, the count of entries at the
 * maximum (so a dominant entry keeps its exact 1 and p − 1 stays exact, MATH §2), the raw
 * scores of the positives (labels) from the rank that holds them, and what the loss needs
 * besides (class weight of the label, smoothing sums, dScale sums). One round of mergeable
 * (max, sum) pairs would need the combine (m, s) ⊕ (m', s') = (M, s·e^{m−M} + s'·e^{m'−M}),
 * which an all-reduce with only sum and max cannot do: either the maximum is known first (the
 * two rounds) or every rank's pair is gathered (R·2B floats and a rank index the protocol does
 * not have). MPI could take a user-defined op; NCCL cannot. Two rounds of O(B) it is, as
 * Megatron's vocab-parallel cross-entropy does. binaryCrossEntropy makes one sum round. Soft
 * top-k makes a max round (bracket), a sum round (counts, positives), then one sum round of 5
 * floats per unsolved row per Newton step (the split sums m, Σp, Σ(1−p), and Σp(1−p) on each
 * side that the single-process solver's log-space Newton uses: two floats per row cannot carry
 * F − k without cancellation on saturated rows), rows leaving as they converge; plus one float
 * with `gradScale`. Every result reports `exchange: { rounds, floats }`.
 *
 * **Checks across ranks.** The first round carries a fingerprint of the name, shape, options
 * and targets (a mismatch is ERR_ARG on every rank), a flag for NaN/+∞ scores on any rank
 * (ERR_NON_FINITE on every rank; the rank holding it names the entry) and, in the first sum
 * round, the column count and three Fourier checksums of the covered columns
 * (Σ_j cos(ω·j), which the ranks compute in closed form from their interval): shards that
 * overlap or leave gaps are ERR_ARG on every rank. A label or positive held by no rank (or by
 * two) is ERR_LABEL_RANGE / ERR_CSR. Every failure after the first exchange is decided from
 * reduced values, so all ranks throw alike and none is left waiting in a collective. Argument
 * errors throw from `shardedLoss()` before any exchange, on the rank that has them.
 *
 * **Where the math runs.** The per-loss partials and finish (lib/shardedMath.ts) run in the
 * native addon over the block: one read of it for the partials (soft top-k: one more per Newton
 * step), one for the gradient. A host block runs on the addon's threads (fp32; half blocks are
 * widened first); a device block (cuda tensor, fp32/fp16/bf16, every loss, symmetric InfoNCE
 * too) runs as CUDA kernels in its own dtype (cuda/sharded.cu), its gradient stays on the
 * device (of `gradDtype`), and only the per-row statistics and picked entries make the host
 * round trip: O(B + nnz) floats, the size of the exchange itself. The key-embedding form on
 * cuda queries and keys forms each chunk of S on the device (the embeddings driver's GEMM,
 * cuda/sharded.cu) and reads it with the same kernels; its gradients stay on the device.
 * @module
 */
import { csr, diagonalPositives, excludeArg, type NativeCsr, type Positives } from './csr';
import { makeError } from './errors';
import type { Reduction, ScoresInput } from './loss';
import { asMatrix, Tensor, type DType, type HostArray, type TensorLike } from './tensor';
import { DEFAULT_MEMORY_BUDGET } from './ops/linearCrossEntropy';
import { kArg } from './ops/softTopK';
import { blockSource, deviceEmbeddingsSource, deviceSource, embeddingsSource, type ChunkFn, type ScoreSource } from './shardedSource';
import {
  bcePartials,
  columnPartials,
  decodeScore,
  dzOf,
  encodeScore,
  logSigmoid,
  lsePartials,
  pMinusOne,
  rangePartials,
  rescale,
  rowLse,
  sigmoidPair,
  softmaxGrad,
  symmetricGrad,
  topkSolverInit,
  topkGrad,
  topkSolverStep,
  topkSums,
  zOf,
  type BadEntry,
  type Block,
  type LocalCsr,
  type LocalPositives,
  type TopKSolver,
  type ZForm,
} from './shardedMath';
import { bool, fail, finiteInRange, float32Array, int32Array, nonNegativeFinite, oneOf, optionKeys, options, positiveFinite } from './validate';

/** The elementwise reductions a sharded loss asks of the collective. */
export type ReduceOp = 'sum' | 'max';

/**
 * The caller's all-reduce: every rank passes a buffer of the same length; each gets back the
 * elementwise sum (or max) over all ranks, as a Float32Array of that length (it may be the
 * same array, reduced in place).
 */
export type AllReduce = (buffer: Float32Array, op: ReduceOp) => Promise<Float32Array> | Float32Array;

/** One exchange the protocol needs: all-reduce `buffer` with `op` on every rank, hand back the result. */
export interface ShardedRequest {
  readonly buffer: Float32Array;
  readonly op: ReduceOp;
}

/** The phase-by-phase form of a job: `next()` first (no argument), then `next(reduced)` for each request. */
export type ShardedPhases = Generator<ShardedRequest, ShardedResult, Float32Array>;

/** What a sharded loss returns on each rank. */
export interface ShardedResult {
  /** The reduced loss over all N columns (the same on every rank). With reduction 'none', the sum of the row losses. */
  loss: number;
  /** Each row's loss ℓ_i over all N columns (the same on every rank). */
  rowLoss: Float32Array;
  /** Score-block form: dL/dS for this rank's columns, B × N_r of `gradDtype` (absent with `grad: false`). */
  grad?: Tensor;
  /**
   * Key-embedding form: this rank's part of dL/dQ, B × D of `gradDtype`: Σ over its columns of
   * G·K̂_r, chained through the normalisation. dL/dQ is the sum over the ranks: all-reduce it
   * (or reduce-scatter it back to the ranks whose queries were gathered). The job does not,
   * since how the queries were gathered is the caller's.
   */
  gradQueries?: Tensor;
  /** Key-embedding form: dL/dK_r, N_r × D float32, complete on this rank (its keys' columns are its own). */
  gradKeys?: Tensor;
  /** Key-embedding form with `bias`: dL/db for this rank's slice (length N_r). */
  gradBias?: Float32Array;
  /** dL/dscale over all columns (with `gradScale: true`). */
  dScale?: number;
  /** softmaxCrossEntropy with `returnLse`: each row's log-sum-exp over all N columns. */
  lse?: Float32Array;
  /** What this call exchanged: the number of all-reduce rounds and the floats sent per rank, in all. */
  exchange: { rounds: number; floats: number };
}

/** Options every sharded loss takes besides its own. */
export interface ShardedOptions {
  /** The global index of this rank's first column. Required. */
  columnOffset: number;
  /** N, the number of columns over all ranks. Required. */
  totalColumns: number;
  /** z = scale·S, as the unsharded losses. Default 1. */
  scale?: number;
  /** 'mean' (default), 'sum' or 'none'; 'mean' divides by what the unsharded loss divides by. */
  reduction?: Reduction;
  /** With reduction 'none': each row's upstream gradient (length B), the same on every rank. */
  gradOutput?: Float32Array;
  /** Compute this rank's gradient block. Default true. */
  grad?: boolean;
  /** Also return dScale = dL/dscale. Default false. */
  gradScale?: boolean;
  /**
   * Score-block form: where to write this rank's gradient block (B × N_r of `gradDtype`: a typed
   * array or a host Tensor for host scores, a Tensor on their device for cuda scores), reused
   * across steps; `grad` is then a tensor over it. Default: a new block per call.
   */
  out?: Float32Array | Uint16Array | Tensor;
  /** Score-block form: [B, N_r] when the local scores are a bare typed array. */
  shape?: readonly number[];
  /** Score-block form: the dtype of a bare Uint16Array of local scores (half precision is widened to float32 once for the reads). */
  dtype?: DType;
  /**
   * The gradient's dtype: the local scores' (score-block form) or queries' (key-embedding form)
   * dtype (default, as the unsharded calls) or 'float32'.
   */
  gradDtype?: DType;
  /** Score-block form: write the gradient over the local scores (they are destroyed), by bounded chunks of rows. Default false. */
  inplace?: boolean;
  /** Key-embedding form: cosine scores S = Q̂·K̂ᵀ (F.normalize, eps 1e-12), as `<loss>FromEmbeddings`. Default false. */
  normalize?: boolean;
  /**
   * Key-embedding form: bytes of score scratch: a chunk of rows of S and of its gradient,
   * 8·N_r bytes a row (the GEMM core's packed panels besides). Default 32 MiB. When the whole
   * B × N_r block fits, it is computed once; otherwise each pass (partials, each soft top-k
   * Newton step, the gradient) recomputes the chunks.
   */
  memoryBudget?: number;
  /** Key-embedding form: add the gradients into `gradQueries`, `gradKeys` (and `gradBias`). Default false. */
  accumulate?: boolean;
  /** Key-embedding form: where this rank's part of dL/dQ goes (B × D of gradDtype, on the queries' device). */
  gradQueries?: Tensor;
  /** Key-embedding form: where dL/dK_r goes (N_r × D, float32, on the queries' device). */
  gradKeys?: Tensor;
}

/**
 * The key-embedding form's local input: this rank's keys K_r (N_r × D; its columns are
 * [columnOffset, columnOffset + N_r)) and the queries Q (B × D, the same on every rank: gathered),
 * tensors of one dtype on one device (host, or cuda: the chunks are then formed and read on the
 * device). S = Q·K_rᵀ is taken by chunks of rows within `memoryBudget`.
 */
export interface ShardedEmbeddings {
  queries: Tensor | TensorLike;
  keys: Tensor | TensorLike;
}

/** softmaxCrossEntropy: labels are global class indices (Int32Array of length B). */
export interface ShardedCrossEntropyOptions extends ShardedOptions {
  ignoreIndex?: number;
  /** ε: the smoothing term averages over all N columns (not the shard's), as unsharded. */
  labelSmoothing?: number;
  /** This rank's slice of the class weights: length N_r, for columns [columnOffset, columnOffset + N_r). */
  classWeights?: Float32Array;
  zLoss?: number;
  softcap?: number;
  returnLse?: boolean;
  /** Key-embedding form: this rank's slice of the linear layer's bias (length N_r), as linearCrossEntropy's. */
  bias?: Float32Array;
  /** Key-embedding form with `bias`: where dL/db goes (length N_r); with `accumulate`, added into. */
  gradBias?: Float32Array;
}
/** Losses over CSR positives (global columns). `exclude`: CSR in global columns too. */
export interface ShardedPositivesOptions extends ShardedOptions {
  exclude?: Positives;
}
export interface ShardedInfoNCEOptions extends ShardedPositivesOptions {
  /** CLIP's (row-wise + column-wise InfoNCE)/2 on a square B × B matrix (totalColumns = B), diagonal positives. Default false. */
  symmetric?: boolean;
}
export interface ShardedDecoupledContrastiveOptions extends ShardedPositivesOptions {
  weighting?: { sigma?: number };
}
export interface ShardedSoftTopKLossOptions extends ShardedPositivesOptions {
  k?: number | Int32Array | 'numPositives';
  alpha?: number;
  tol?: number;
  maxIter?: number;
}

/** The losses that can be sharded, with their targets and options. */
export interface ShardedLosses {
  softmaxCrossEntropy: { targets: Int32Array; options: ShardedCrossEntropyOptions };
  multiLabelSoftmax: { targets: Positives; options: ShardedPositivesOptions };
  decoupledSoftmax: { targets: Positives; options: ShardedPositivesOptions };
  binaryCrossEntropy: { targets: Positives; options: ShardedPositivesOptions };
  /** targets: the positives as CSR, or undefined for the diagonal (row i ↔ column i). `symmetric: true`: CLIP on a square matrix, targets undefined. */
  infoNCE: { targets: Positives | undefined; options: ShardedInfoNCEOptions };
  /** targets: one positive per row as CSR, or undefined for the diagonal. */
  decoupledContrastive: { targets: Positives | undefined; options: ShardedDecoupledContrastiveOptions };
  softTopKLoss: { targets: Positives; options: ShardedSoftTopKLossOptions };
}
export type ShardedLossName = keyof ShardedLosses;

const COMMON_KEYS = optionKeys<ShardedOptions>({
  columnOffset: true,
  totalColumns: true,
  scale: true,
  reduction: true,
  gradOutput: true,
  grad: true,
  gradScale: true,
  out: true,
  shape: true,
  dtype: true,
  gradDtype: true,
  inplace: true,
  normalize: true,
  memoryBudget: true,
  accumulate: true,
  gradQueries: true,
  gradKeys: true,
});
const BLOCK_ONLY = ['out', 'shape', 'dtype', 'inplace'] as const;
const EMBEDDINGS_ONLY = ['normalize', 'memoryBudget', 'accumulate', 'gradQueries', 'gradKeys', 'bias', 'gradBias'] as const;
const KEYS: Record<ShardedLossName, readonly string[]> = {
  softmaxCrossEntropy: [...COMMON_KEYS, 'ignoreIndex', 'labelSmoothing', 'classWeights', 'zLoss', 'softcap', 'returnLse', 'bias', 'gradBias'],
  multiLabelSoftmax: [...COMMON_KEYS, 'exclude'],
  decoupledSoftmax: [...COMMON_KEYS, 'exclude'],
  binaryCrossEntropy: [...COMMON_KEYS, 'exclude'],
  infoNCE: [...COMMON_KEYS, 'exclude', 'symmetric'],
  decoupledContrastive: [...COMMON_KEYS, 'exclude', 'weighting'],
  softTopKLoss: [...COMMON_KEYS, 'exclude', 'k', 'alpha', 'tol', 'maxIter'],
};

// ---------------------------------------------------------------------------------------------
// The exchange: header fields of the first rounds and the checks on every reduced buffer.

/** FNV-1a over strings and typed arrays: the fingerprint of what must agree across ranks. */
function fingerprint(parts: readonly (string | number | ArrayBufferView | undefined)[]): number {
  let h = 0x811c9dc5;
  const byte = (b: number) => {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  };
  for (const p of parts) {
    if (p === undefined) byte(0xff);
    else if (typeof p === 'string' || typeof p === 'number') for (const ch of String(p)) byte(ch.charCodeAt(0) & 0xff);
    else for (const b of new Uint8Array(p.buffer, p.byteOffset, p.byteLength)) byte(b);
    byte(0x1f);
  }
  return h >>> 0;
}

/** Frequencies of the coverage checksums Σ_j cos(ω·j); incommensurate, so a moved column changes at least one. */
const OMEGAS = [0.7548776662466927, 1.3247179572447458, 2.23606797749979];
/** Σ_{j=a}^{b−1} cos(ω·j) in closed form (telescoping: F(b) − F(a)). */
const cosSum = (w: number, a: number, b: number) => (Math.sin(w * (b - 0.5)) - Math.sin(w * (a - 0.5))) / (2 * Math.sin(w / 2));

/** Header: [failed, fp, −fp] on the first max round; [failed, 1, h1, h1², h2, h2², h3, h3², N_r, cs1, cs2, cs3] on the first sum round. */
const MAX_HEADER = 3;
const SUM_HEADER = 12;

class Exchange {
  rounds = 0;
  floats = 0;
  private maxSeen = false;
  private sumSeen = false;
  /** Set by phase 1 when the local scores hold NaN or +∞: [row, local column]. */
  bad: BadEntry;
  constructor(
    private readonly fp: number,
    private readonly offset: number,
    private readonly width: number,
    private readonly total: number,
    /** The key-embedding form: a bad entry is named by query and key. */
    private readonly embeddings = false,
  ) {}

  private header(op: ReduceOp): number {
    return op === 'max' ? (this.maxSeen ? 0 : MAX_HEADER) : this.sumSeen ? 0 : SUM_HEADER;
  }

  /** A zeroed buffer for a round of `n` floats of payload; the payload view is returned. */
  alloc(op: ReduceOp, n: number): Float32Array {
    const h = this.header(op);
    return new Float32Array(h + n).subarray(h);
  }

  /** One all-reduce of `body` (from alloc): yields the request, checks the answer, returns its payload. */
  *round(op: ReduceOp, body: Float32Array): Generator<ShardedRequest, Float32Array, Float32Array> {
    const h = this.header(op);
    const full = new Float32Array(body.buffer, body.byteOffset - 4 * h, h + body.length);
    const failed = this.bad ? 1 : 0;
    if (failed && h === 0) throw makeError('ERR_INTERNAL', 'sharded loss: a phase-1 failure after the first round');
    if (failed) body.fill(0); // whatever phase 1 left there may be non-finite
    if (h === MAX_HEADER) {
      const f = this.fp & 0xffffff; // exact in float32
      full.set([failed, f, -f]);
    } else if (h === SUM_HEADER) {
      const [a, b, c] = [this.fp & 0xff, (this.fp >>> 8) & 0xff, (this.fp >>> 16) & 0xff];
      const off = this.offset, end = this.offset + this.width;
      full.set([failed, 1, a, a * a, b, b * b, c, c * c, this.width, ...OMEGAS.map((w) => cosSum(w, off, end))]);
    }
    const reduced = yield { buffer: full, op };
    if (!(reduced instanceof Float32Array))
      throw makeError('ERR_TYPE', `allReduce: expected to resolve to a Float32Array, received ${reduced === null ? 'null' : typeof reduced === 'object' ? ((reduced as object).constructor?.name ?? 'object') : typeof reduced}`);
    if (reduced.length !== full.length)
      throw makeError('ERR_SHAPE', `allReduce: expected a Float32Array of length ${full.length} (the length of the buffer it was given, round ${this.rounds + 1}, op '${op}'), received length ${reduced.length}`);
    for (let k = 0; k < reduced.length; k++)
      if (!Number.isFinite(reduced[k]))
        throw makeError('ERR_NON_FINITE', `allReduce: returned ${reduced[k]} at index ${k} of round ${this.rounds + 1} (op '${op}'); every value sent is finite, so the transport or its reduction corrupted it`);
    this.rounds += 1;
    this.floats += full.length;
    if (h > 0) this.checkHeader(op, reduced);
    if (op === 'max') this.maxSeen = true;
    else this.sumSeen = true;
    return reduced.subarray(h);
  }

  private checkHeader(op: ReduceOp, r: Float32Array): void {
    if (r[0] > 0) {
      if (this.bad)
        throw makeError(
          'ERR_NON_FINITE',
          this.embeddings
            ? `localScores: the score of query ${this.bad[0]} and key ${this.bad[1]} (global column ${this.offset + this.bad[1]}) is NaN or +Infinity, expected finite (check the embeddings, bias and scale)`
            : `localScores[${this.bad[0]}, ${this.bad[1]}] (global column ${this.offset + this.bad[1]}): expected a finite score or -Infinity, received NaN or +Infinity`,
        );
      throw makeError('ERR_NON_FINITE', 'localScores: another rank\'s scores hold NaN or +Infinity (that rank\'s error names the entry)');
    }
    const mismatch = () => {
      throw makeError('ERR_ARG', 'shardedLoss(): the ranks disagree on the loss, B, totalColumns, the options or the targets (their fingerprints differ); every rank must pass the same ones');
    };
    if (op === 'max') {
      if (r[1] !== -r[2]) mismatch();
      return;
    }
    const ranks = r[1];
    for (const k of [2, 4, 6]) if (ranks * r[k + 1] !== r[k] * r[k]) mismatch(); // all equal iff R·Σh² = (Σh)²
    const count = r[8];
    if (count !== this.total)
      throw makeError('ERR_ARG', `opts.columnOffset: the ${ranks} ranks' shards hold ${count} columns in all, expected totalColumns = ${this.total}: shards overlap or leave gaps`);
    OMEGAS.forEach((w, k) => {
      if (Math.abs(r[9 + k] - cosSum(w, 0, this.total)) > 1e-5 * Math.max(ranks, 1) + 1e-6)
        throw makeError('ERR_ARG', `opts.columnOffset: the ranks' shards do not tile [0, ${this.total}) (their coverage checksum differs): some overlap and leave a gap as wide`);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Shared preparation.

interface Common {
  name: ShardedLossName;
  /** The local scores: the block, or chunks of Q·K_rᵀ (lib/shardedSource.ts). */
  src: ScoreSource;
  rows: number;
  n: number;
  offset: number;
  total: number;
  scale: number;
  reduction: Reduction;
  gradOutput: Float32Array | undefined;
  wantGrad: boolean;
  wantDScale: boolean;
  /** What the fingerprint adds for the form (its options that must agree across ranks). */
  form: (string | number)[];
  o: Record<string, unknown>;
  /** Key-embedding form: the shard's bias slice (softmaxCrossEntropy). */
  bias?: Float32Array;
}

/** The key-embedding form's local input: an object with queries and keys, not a tensor or typed array. */
function isEmbeddings(local: unknown): local is ShardedEmbeddings {
  return typeof local === 'object' && local !== null && !(local instanceof Tensor) && !ArrayBuffer.isView(local) && 'queries' in local && 'keys' in local;
}

/** A gradient buffer of the key-embedding form: a Tensor on the embeddings' device. */
function gradBuffer(name: string, v: unknown, shape: readonly number[], dtype: DType, device: string): Tensor {
  const t = v instanceof Tensor ? v : fail('ERR_TYPE', name, `a Tensor on ${device} (the embeddings' device)`, v);
  if (t.device !== device) fail('ERR_DEVICE', name, `a tensor on ${device} (the embeddings' device)`, `#a tensor on ${t.device}`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) fail('ERR_SHAPE', name, `shape [${shape.join(', ')}]`, `#[${t.shape.join(', ')}]`);
  if (t.dtype !== dtype) fail('ERR_DTYPE', name, `dtype '${dtype}'`, t.dtype);
  return t;
}

function prepare(name: ShardedLossName, local: ScoresInput | ShardedEmbeddings, optsArg: unknown): Common {
  const o = options<Record<string, unknown>>(`shardedLoss('${name}'): opts`, optsArg, KEYS[name]) as Record<string, unknown>;
  const embeddings = isEmbeddings(local);
  for (const k of embeddings ? BLOCK_ONLY : EMBEDDINGS_ONLY)
    if (o[k] !== undefined)
      fail('ERR_ARG', `opts.${k}`, embeddings ? 'none with the key-embedding form ({ queries, keys })' : 'the key-embedding form ({ queries, keys }) as localScores', `#opts.${k} with ${embeddings ? '{ queries, keys }' : 'a score block'}`);
  const total = o.totalColumns;
  if (typeof total !== 'number' || !Number.isSafeInteger(total) || total < 1 || total >= 2 ** 31) fail('ERR_ARG', 'opts.totalColumns', 'an integer in [1, 2^31)', total);
  const reduction = oneOf('opts.reduction', o.reduction, ['mean', 'sum', 'none'] as const, 'mean');
  const wantGrad = bool('opts.grad', o.grad, true);
  let src: ScoreSource, rows: number, cols: number;
  const form: (string | number)[] = [];
  let bias: Float32Array | undefined;
  if (embeddings) {
    const { t: queries, rows: B, cols: D } = asMatrix(local.queries, 'localScores.queries');
    const { t: keys, rows: N, cols: DK } = asMatrix(local.keys, 'localScores.keys');
    if (queries.shape.length !== 2) fail('ERR_SHAPE', 'localScores.queries.shape', 'a 2-D shape [B, D]', `#[${queries.shape.join(', ')}]`);
    if (keys.shape.length !== 2) fail('ERR_SHAPE', 'localScores.keys.shape', 'a 2-D shape [N_r, D]', `#[${keys.shape.join(', ')}]`);
    if (DK !== D) fail('ERR_SHAPE', 'localScores.keys.shape', `[N_r, ${D}] (the queries' D)`, `#[${keys.shape.join(', ')}]`);
    if (keys.dtype !== queries.dtype) fail('ERR_DTYPE', 'localScores.keys.dtype', `the queries' dtype '${queries.dtype}'`, keys.dtype);
    if (keys.device !== queries.device) fail('ERR_DEVICE', 'localScores.keys', `the queries' device (${queries.device})`, `#a tensor on ${keys.device}`);
    rows = B;
    cols = N;
    const gradDtype = oneOf('opts.gradDtype', o.gradDtype, ['float32', 'float16', 'bfloat16'] as const, queries.dtype);
    if (gradDtype !== 'float32' && gradDtype !== queries.dtype) fail('ERR_DTYPE', 'opts.gradDtype', `'float32' or the queries' dtype '${queries.dtype}'`, gradDtype);
    const normalize = bool('opts.normalize', o.normalize, false);
    const memoryBudget = o.memoryBudget === undefined ? DEFAULT_MEMORY_BUDGET : o.memoryBudget;
    if (typeof memoryBudget !== 'number' || !Number.isSafeInteger(memoryBudget) || memoryBudget <= 0) fail('ERR_ARG', 'opts.memoryBudget', 'a whole number of bytes > 0', memoryBudget);
    if (memoryBudget < 8 * N) fail('ERR_ARG', 'opts.memoryBudget', `at least ${8 * N} bytes (one row of N_r = ${N} scores and of their gradient, float32)`, memoryBudget);
    if (o.bias !== undefined) {
      bias = float32Array('opts.bias', o.bias, N);
      for (let j = 0; j < N; j++) if (!Number.isFinite(bias[j])) fail('ERR_NON_FINITE', `opts.bias[${j}]`, 'a finite number', bias[j]);
    }
    const accumulate = bool('opts.accumulate', o.accumulate, false);
    let gradQueries: Tensor | undefined, gradKeys: Tensor | undefined, gradBias: Float32Array | undefined;
    if (wantGrad) {
      if (o.gradQueries !== undefined) gradQueries = gradBuffer('opts.gradQueries', o.gradQueries, [B, D], gradDtype, queries.device);
      if (o.gradKeys !== undefined) gradKeys = gradBuffer('opts.gradKeys', o.gradKeys, [N, D], 'float32', queries.device);
      if (o.gradBias !== undefined) {
        if (!bias) fail('ERR_ARG', 'opts.gradBias', 'opts.bias as well (without a bias there is no gradient for it)', o.gradBias);
        gradBias = float32Array('opts.gradBias', o.gradBias, N);
      }
      if (accumulate) {
        if (!gradQueries) fail('ERR_ARG', 'opts.gradQueries', 'the buffer to add into (accumulate: true)', undefined);
        if (!gradKeys) fail('ERR_ARG', 'opts.gradKeys', 'the buffer to add into (accumulate: true)', undefined);
        if (bias && !gradBias) fail('ERR_ARG', 'opts.gradBias', 'the buffer to add into (accumulate: true with a bias)', undefined);
      }
    } else {
      for (const k of ['gradQueries', 'gradKeys', 'gradBias', 'accumulate'] as const)
        if (o[k] !== undefined && o[k] !== false) fail('ERR_ARG', `opts.${k}`, 'no gradient buffers with grad: false', `#${k} given`);
    }
    form.push('embeddings', D, String(normalize), String(bias !== undefined));
    const input = { queries, keys, rows: B, n: N, dim: D, normalize, bias, memoryBudget, accumulate, gradDtype, gradQueries, gradKeys, gradBias };
    src = queries.device === 'cpu' ? embeddingsSource(input) : deviceEmbeddingsSource(input);
  } else {
    const m = asMatrix(local, 'localScores', o.shape as number[] | undefined, o.dtype as DType | undefined);
    const t = m.t;
    rows = m.rows;
    cols = m.cols;
    const onDevice = t.device !== 'cpu';
    const gradDtype = oneOf('opts.gradDtype', o.gradDtype, ['float32', 'float16', 'bfloat16'] as const, t.dtype);
    if (gradDtype !== 'float32' && gradDtype !== t.dtype) fail('ERR_DTYPE', 'opts.gradDtype', `'float32' or the scores' dtype '${t.dtype}'`, gradDtype);
    const inplace = bool('opts.inplace', o.inplace, false);
    let target: { data: HostArray; tensor?: Tensor } | undefined;
    if (inplace) {
      if (!wantGrad) fail('ERR_ARG', 'opts.inplace', 'grad: true (in place means the gradient overwrites the scores)', '#grad: false');
      if (gradDtype !== t.dtype) fail('ERR_ARG', 'opts.inplace', `gradDtype equal to the scores' dtype '${t.dtype}'`, gradDtype);
      if (o.out !== undefined) fail('ERR_ARG', 'opts.out', 'no out with inplace: true (the gradient goes over the scores)', '#out given');
      target = onDevice ? { data: new Float32Array(0), tensor: t } : { data: t.data, tensor: local instanceof Tensor ? local : undefined };
    } else if (o.out !== undefined && onDevice) {
      const ot = o.out instanceof Tensor && o.out.device === t.device && o.out.dtype === gradDtype ? o.out : fail('ERR_TYPE', 'opts.out', `a ${gradDtype} tensor on ${t.device} (gradDtype, on the scores' device)`, o.out);
      if (ot.shape.length !== 2 || ot.shape[0] !== rows || ot.shape[1] !== cols) fail('ERR_SHAPE', 'opts.out', `shape [${rows}, ${cols}]`, `#[${ot.shape.join(', ')}]`);
      target = { data: new Float32Array(0), tensor: ot };
    } else if (o.out !== undefined) {
      const ot = o.out instanceof Tensor ? o.out : undefined;
      const v = ot ? (ot.device === 'cpu' ? ot.data : undefined) : o.out;
      if (!(v instanceof Float32Array || v instanceof Uint16Array)) fail('ERR_TYPE', 'opts.out', `a typed array or a host Tensor of gradDtype '${gradDtype}'`, o.out);
      if (ot && ot.dtype !== gradDtype) fail('ERR_DTYPE', 'opts.out', `dtype '${gradDtype}'`, ot.dtype);
      if ((v instanceof Float32Array) !== (gradDtype === 'float32')) fail('ERR_DTYPE', 'opts.out', `a ${gradDtype === 'float32' ? 'Float32Array' : 'Uint16Array'} (gradDtype '${gradDtype}')`, v);
      if (v.length !== rows * cols) fail('ERR_SHAPE', 'opts.out', `length B·N_r = ${rows * cols}`, `#length ${v.length}`);
      if (v.buffer === (t.data as ArrayBufferView).buffer) fail('ERR_ARG', 'opts.out', 'memory other than the local scores (use inplace: true for that)', '#the scores\' memory');
      target = { data: v, tensor: ot };
    }
    form.push('block');
    src = onDevice ? deviceSource(t, rows, cols, gradDtype, target?.tensor) : blockSource(t.data, t.dtype, rows, cols, gradDtype, target);
  }
  const offset = o.columnOffset;
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0 || offset + cols > total)
    fail('ERR_ARG', 'opts.columnOffset', `an integer in [0, totalColumns − N_r] = [0, ${total - cols}]`, offset);
  let gradOutput: Float32Array | undefined;
  if (o.gradOutput !== undefined) {
    if (reduction !== 'none') fail('ERR_ARG', 'opts.gradOutput', "reduction 'none' (it weights per-row losses)", `#reduction '${reduction}'`);
    gradOutput = float32Array('opts.gradOutput', o.gradOutput, rows);
  }
  return {
    name,
    src,
    rows,
    n: cols,
    offset,
    total,
    // float32, as the kernels take it: z = fround(scale·S) then matches their z bit for bit.
    scale: Math.fround(positiveFinite('opts.scale', o.scale, 1)),
    reduction,
    gradOutput,
    wantGrad,
    wantDScale: bool('opts.gradScale', o.gradScale, false),
    form,
    o,
    bias,
  };
}

/** The options that must agree across ranks, in a fixed order, for the fingerprint. */
function agreed(c: Common, extra: readonly (string | number | ArrayBufferView | undefined)[]): number {
  return fingerprint([c.name, c.rows, c.total, c.scale, c.reduction, String(c.wantGrad), String(c.wantDScale), c.gradOutput, ...c.form, ...extra]);
}

/** The rows' positives (and exclusions) that fall in this shard, in local columns; `skipPositives` adds the positives to the skip lists. */
function localTargets(c: Common, pos: NativeCsr | undefined, excl: NativeCsr | undefined, skipPositives: boolean): { lp: LocalPositives; skip: LocalCsr | undefined } {
  const { rows, offset, n } = c;
  const inShard = (col: number) => col >= offset && col < offset + n;
  const lpPtr = new Int32Array(rows + 1);
  const skPtr = new Int32Array(rows + 1);
  const lpCols: number[] = [], lpW: number[] = [], lpE: number[] = [], skCols: number[] = [];
  for (let i = 0; i < rows; i++) {
    const row: number[] = [];
    if (pos)
      for (let e = pos.rowPtr[i]; e < pos.rowPtr[i + 1]; e++)
        if (inShard(pos.cols[e])) {
          lpCols.push(pos.cols[e] - offset);
          lpW.push(pos.weights ? pos.weights[e] : 1);
          lpE.push(e);
          if (skipPositives) row.push(pos.cols[e] - offset);
        }
    if (excl) for (let e = excl.rowPtr[i]; e < excl.rowPtr[i + 1]; e++) if (inShard(excl.cols[e])) row.push(excl.cols[e] - offset);
    row.sort((a, b) => a - b);
    for (const x of row) skCols.push(x);
    lpPtr[i + 1] = lpCols.length;
    skPtr[i + 1] = skCols.length;
  }
  return {
    lp: { rowPtr: lpPtr, cols: Int32Array.from(lpCols), weights: Float64Array.from(lpW), entry: Int32Array.from(lpE) },
    skip: skCols.length ? { rowPtr: skPtr, cols: Int32Array.from(skCols) } : undefined,
  };
}

/** Each row's upstream factor u_i: 1/D for 'mean', 1 for 'sum', gradOutput[i] (default 1) for 'none'. */
function upstream(c: Common, D: number): (i: number) => number {
  if (c.reduction === 'mean') {
    const u = D > 0 ? 1 / D : 0; // every row ignored (D = 0): loss 0, zero gradient
    return () => u;
  }
  if (c.reduction === 'sum' || !c.gradOutput) return () => 1;
  const g = c.gradOutput;
  return (i) => g[i];
}

function result(c: Common, rowLoss: Float64Array, D: number, dScale: number, ex: Exchange, extra: object = {}): ShardedResult {
  let sum = 0;
  for (let i = 0; i < c.rows; i++) sum += rowLoss[i];
  const loss = c.reduction === 'mean' ? (D > 0 ? sum / D : 0) : sum;
  const r: ShardedResult = { loss, rowLoss: Float32Array.from(rowLoss), exchange: { rounds: ex.rounds, floats: ex.floats }, ...extra };
  if (c.wantGrad) Object.assign(r, c.src.grads());
  if (c.wantDScale) r.dScale = dScale;
  c.src.release?.();
  return r;
}

/** Rows [r0, r1) of a CSR over the rows, re-based at 0 (the native reads take a CSR over their own rows). */
function rowsOf(m: LocalCsr | undefined, r0: number, r1: number): LocalCsr | undefined {
  if (!m || (r0 === 0 && r1 === m.rowPtr.length - 1)) return m;
  const b = m.rowPtr[r0];
  return { rowPtr: m.rowPtr.slice(r0, r1 + 1).map((x) => x - b), cols: m.cols.subarray(b, m.rowPtr[r1]) };
}
function positivesOf(lp: LocalPositives, r0: number, r1: number): LocalPositives {
  if (r0 === 0 && r1 === lp.rowPtr.length - 1) return lp;
  const b = lp.rowPtr[r0], e = lp.rowPtr[r1];
  return { rowPtr: lp.rowPtr.slice(r0, r1 + 1).map((x) => x - b), cols: lp.cols.subarray(b, e), weights: lp.weights.subarray(b, e), entry: lp.entry.subarray(b, e) };
}

/** The softmax-type partials over every chunk (lsePartials per chunk); `also` runs on each chunk too. */
function partials(c: Common, f: ZForm, skip: LocalCsr | undefined, smooth: { w: Float32Array | undefined } | undefined, also?: ChunkFn) {
  const { rows, n } = c;
  const m = new Float64Array(rows), rest = new Float64Array(rows);
  const E = c.wantDScale ? new Float64Array(rows) : undefined;
  const WZ = smooth ? new Float64Array(rows) : undefined;
  const WS = smooth && c.wantDScale ? new Float64Array(rows) : undefined;
  let bad: BadEntry;
  c.src.scan((S, r0, r1) => {
    const p = lsePartials(S, r1 - r0, n, f, rowsOf(skip, r0, r1), c.wantDScale, smooth, c.src.types);
    m.set(p.m, r0);
    rest.set(p.rest, r0);
    if (E) E.set(p.E!, r0);
    if (WZ) WZ.set(p.WZ!, r0);
    if (WS) WS.set(p.WS!, r0);
    if (p.bad && !bad) bad = [p.bad[0] + r0, p.bad[1]];
    also?.(S, r0, r1);
  });
  return { m, rest, E, WZ, WS, bad };
}

/** The raw scores of the positives this rank holds (lpS, picked in phase 1), at their global CSR entry: a gather by sum (the others add 0). */
function gatherPositives(lp: LocalPositives, lpS: Float32Array, out: Float32Array): void {
  for (let q = 0; q < lp.cols.length; q++) out[lp.entry[q]] = encodeScore(lpS[q]);
}

/** ERR_CSR unless every positive of every row was held by exactly one rank (the gathered counts). */
function checkOwned(pos: NativeCsr, owned: (i: number) => number, what = 'positives'): void {
  for (let i = 0; i < pos.rowPtr.length - 1; i++) {
    const want = pos.rowPtr[i + 1] - pos.rowPtr[i];
    if (owned(i) !== want)
      throw makeError('ERR_CSR', `${what} row ${i}: expected each of its ${want} columns in exactly one rank's shard, received ${owned(i)} held in all (a column outside every shard, or shards that overlap)`);
  }
}

// ---------------------------------------------------------------------------------------------
// softmaxCrossEntropy

function* crossEntropy(c: Common, labels: Int32Array, x: { ignoreIndex: number; eps: number; zLoss: number; softcap: number; weights: Float32Array | undefined; returnLse: boolean }, ex: Exchange): ShardedPhases {
  const { rows, n, offset } = c;
  const f: ZForm = { scale: c.scale, softcap: x.softcap };
  const smoothing = x.eps > 0;
  const ignored = (i: number) => labels[i] === x.ignoreIndex;
  // The labels this rank holds (local columns), whose raw scores phase 1 picks.
  const held = { rowPtr: new Int32Array(rows + 1), cols: new Int32Array(rows) };
  for (let i = 0; i < rows; i++) {
    const y = labels[i] - offset;
    const k = held.rowPtr[i];
    if (!ignored(i) && y >= 0 && y < n) held.cols[k] = y;
    held.rowPtr[i + 1] = !ignored(i) && y >= 0 && y < n ? k + 1 : k;
  }
  const heldS = new Float32Array(rows);
  // Phase 1: one pass over the block.
  const P = partials(c, f, undefined, smoothing ? { w: x.weights } : undefined, c.src.pick(held, heldS));
  ex.bad = P.bad;
  const b1 = ex.alloc('max', rows);
  for (let i = 0; i < rows; i++) b1[i] = encodeScore(P.m[i]);
  const r1 = yield* ex.round('max', b1);
  const M = Float64Array.from(r1, decodeScore);
  // Per row: count at M, tail, owner count, the label's raw score, its class weight, [Σ w·z], [E, Σ w·dz/dscale]; then [Σ_j w_j] over the shard.
  const F = 5 + (smoothing ? 1 : 0) + (c.wantDScale ? 1 + (smoothing ? 1 : 0) : 0);
  const b2 = ex.alloc('sum', F * rows + 1);
  for (let i = 0; i < rows; i++) {
    const o = F * i;
    const [cnt, tail, E] = rescale(M[i], P.m[i], P.rest[i], P.E ? P.E[i] : 0);
    b2[o] = cnt;
    b2[o + 1] = tail;
    if (ignored(i)) continue;
    if (held.rowPtr[i + 1] > held.rowPtr[i]) {
      const q = held.rowPtr[i];
      b2[o + 2] = 1;
      b2[o + 3] = encodeScore(heldS[q]);
      b2[o + 4] = x.weights ? x.weights[held.cols[q]] : 1;
    }
    let k = 5;
    if (smoothing) b2[o + k++] = P.WZ![i];
    if (c.wantDScale) {
      b2[o + k++] = E;
      if (smoothing) b2[o + k++] = P.WS![i];
    }
  }
  if (x.weights) {
    let w = 0;
    for (let j = 0; j < n; j++) w += x.weights[j];
    b2[F * rows] = w;
  }
  const r2 = yield* ex.round('sum', b2);
  // Phase 2: global row statistics, then the local gradient block.
  for (let i = 0; i < rows; i++)
    if (!ignored(i) && r2[F * i + 2] !== 1)
      throw makeError('ERR_LABEL_RANGE', `labels[${i}]: expected a class held by exactly one rank's shard, received ${labels[i]}, held by ${r2[F * i + 2]} ranks (shards overlap, or leave it out)`);
  const N = c.total;
  const wSum = x.weights ? r2[F * rows] : N;
  const wBar = wSum / N;
  let D = 0;
  for (let i = 0; i < rows; i++) if (!ignored(i)) D += r2[F * i + 4];
  const u = upstream(c, D);
  const rowLoss = new Float64Array(rows);
  const lseOut = x.returnLse ? new Float32Array(rows) : undefined;
  const rTotal = new Float64Array(rows);
  const coef = new Float64Array(rows);
  const lin = new Float64Array(rows);
  let dScale = 0;
  const Sy = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const o = F * i;
    const { lse, rTotal: rt, gap } = rowLse(M[i], r2[o], r2[o + 1]);
    if (lseOut) lseOut[i] = lse;
    if (ignored(i)) {
      M[i] = -Infinity; // no gradient
      continue;
    }
    rTotal[i] = rt;
    Sy[i] = decodeScore(r2[o + 3]);
    const zy = zOf(f, Sy[i]);
    const wy = r2[o + 4];
    let k = 5;
    const wz = smoothing ? r2[o + k++] : 0;
    let l = (1 - x.eps) * wy * gap(zy);
    if (smoothing) l += (x.eps / N) * (lse * wSum - wz);
    if (x.zLoss > 0) l += x.zLoss * lse * lse;
    rowLoss[i] = lse === -Infinity ? Infinity : l;
    if (lse === -Infinity) continue; // every logit out: gradient 0
    const ui = u(i);
    const A = (1 - x.eps) * wy + x.eps * wBar + 2 * x.zLoss * lse;
    coef[i] = ui * A;
    lin[i] = (ui * x.eps) / N;
    if (c.wantDScale) {
      const E = r2[o + k++];
      const ws = smoothing ? r2[o + k++] : 0;
      const dy = Sy[i] === -Infinity ? 0 : dzOf(f, Sy[i]).dScale;
      dScale += ui * ((A * E) / (1 + rt) - (1 - x.eps) * wy * dy - (x.eps / N) * ws);
    }
  }
  if (c.wantGrad)
    c.src.grad((S, G, r0, r1, set) => {
      const sub = (a: Float64Array) => a.subarray(r0, r1);
      softmaxGrad(S, G, r1 - r0, n, f, undefined, sub(M), sub(rTotal), sub(coef), smoothing ? { factor: sub(lin), w: x.weights } : undefined, c.src.types);
      // The label's entry: A·p − (1−ε)·w_y − ε·w_y/N, with p − 1 exact near p = 1.
      for (let i = r0; i < r1; i++) {
      const y = labels[i] - offset;
      if (ignored(i) || y < 0 || y >= n || M[i] === -Infinity) continue;
      const z = zOf(f, Sy[i]);
      if (z === -Infinity) continue;
      const o = F * i;
      const wy = r2[o + 4];
      const lse = M[i] + Math.log1p(rTotal[i]);
      const ui = u(i);
      const A = (1 - x.eps) * wy + x.eps * wBar + 2 * x.zLoss * lse;
      const g = A * pMinusOne(z, M[i], lse, rTotal[i]) + (A - (1 - x.eps) * wy) - (x.eps * wy) / N;
      set((i - r0) * n + y, ui * g * dzOf(f, Sy[i]).dS);
      }
    }, true);
  return result(c, rowLoss, D, dScale, ex, lseOut ? { lse: lseOut } : {});
}

// ---------------------------------------------------------------------------------------------
// multiLabelSoftmax, infoNCE (one-way), decoupledSoftmax, decoupledContrastive: a softmax over a
// row's columns that are in, and positives gathered from the ranks that hold them.

type SoftmaxKind = 'multiLabelSoftmax' | 'infoNCE' | 'decoupledSoftmax' | 'decoupledContrastive';

function* positivesSoftmax(c: Common, kind: SoftmaxKind, pos: NativeCsr, excl: NativeCsr | undefined, sigma: number, ex: Exchange): ShardedPhases {
  const { rows, n } = c;
  const f: ZForm = { scale: c.scale, softcap: 0 };
  const decoupled = kind === 'decoupledSoftmax' || kind === 'decoupledContrastive';
  const { lp, skip } = localTargets(c, pos, excl, decoupled);
  const lpS = new Float32Array(lp.cols.length);
  const P = partials(c, f, skip, undefined, c.src.pick(lp, lpS));
  ex.bad = P.bad;
  const b1 = ex.alloc('max', rows);
  for (let i = 0; i < rows; i++) b1[i] = encodeScore(P.m[i]);
  const r1 = yield* ex.round('max', b1);
  const M = Float64Array.from(r1, decodeScore);
  // Per row: count at M, tail, positives held, [E]; then the raw score of every positive (nnz).
  const F = 3 + (c.wantDScale ? 1 : 0);
  const nnz = pos.cols.length;
  const b2 = ex.alloc('sum', F * rows + nnz);
  for (let i = 0; i < rows; i++) {
    const [cnt, tail, E] = rescale(M[i], P.m[i], P.rest[i], P.E ? P.E[i] : 0);
    b2[F * i] = cnt;
    b2[F * i + 1] = tail;
    b2[F * i + 2] = lp.rowPtr[i + 1] - lp.rowPtr[i];
    if (c.wantDScale) b2[F * i + 3] = E;
  }
  gatherPositives(lp, lpS, b2.subarray(F * rows));
  const r2 = yield* ex.round('sum', b2);
  checkOwned(pos, (i) => r2[F * i + 2], kind === 'infoNCE' || kind === 'decoupledContrastive' ? 'positives (targets)' : 'positives');
  const Sp = Float64Array.from(r2.subarray(F * rows), decodeScore);
  // Phase 2.
  let D = rows;
  if (kind === 'infoNCE') {
    D = 0;
    for (let i = 0; i < rows; i++) if (pos.rowPtr[i + 1] > pos.rowPtr[i]) D += 1;
  }
  const u = upstream(c, D);
  // DCLW: w_i = 2 − B·softmax over the rows of S_ip/σ (raw scores), a constant.
  let dclw: Float64Array | undefined;
  if (kind === 'decoupledContrastive' && sigma > 0) {
    dclw = new Float64Array(rows);
    let mx = -Infinity;
    for (let i = 0; i < rows; i++) mx = Math.max(mx, Sp[i] / sigma);
    let sum = 0;
    for (let i = 0; i < rows; i++) sum += Sp[i] === -Infinity ? 0 : Math.exp(Sp[i] / sigma - mx);
    for (let i = 0; i < rows; i++) dclw[i] = 2 - (rows * (Sp[i] === -Infinity ? 0 : Math.exp(Sp[i] / sigma - mx))) / sum;
  }
  const rowLoss = new Float64Array(rows);
  const rTotal = new Float64Array(rows);
  const coef = new Float64Array(rows);
  /** Per positive entry: its gradient dL/dz before u and the scale (the softmax part is added for non-decoupled losses). */
  const posG = new Float64Array(nnz);
  let dScale = 0;
  for (let i = 0; i < rows; i++) {
    const e0 = pos.rowPtr[i], e1 = pos.rowPtr[i + 1];
    const cnt = e1 - e0;
    const { lse, rTotal: rt, gap } = rowLse(M[i], r2[F * i], r2[F * i + 1]);
    rTotal[i] = rt;
    const ui = u(i);
    const E = c.wantDScale ? r2[F * i + 3] : 0;
    let ds = 0;
    if (kind === 'multiLabelSoftmax' || kind === 'infoNCE') {
      if (cnt === 0) continue;
      const inv = kind === 'infoNCE' ? 1 / cnt : 1;
      let W = 0, l = 0;
      for (let e = e0; e < e1; e++) {
        const w = pos.weights ? pos.weights[e] : 1;
        W += w;
        l += w * gap(zOf(f, Sp[e]));
        ds -= w * (Sp[e] === -Infinity ? 0 : Sp[e]);
      }
      rowLoss[i] = l * inv;
      coef[i] = ui * W * inv;
      for (let e = e0; e < e1; e++) {
        const w = pos.weights ? pos.weights[e] : 1;
        const z = zOf(f, Sp[e]);
        posG[e] = z === -Infinity || lse === -Infinity ? 0 : inv * (W * pMinusOne(z, M[i], lse, rt) + W - w);
      }
      ds = (W * E) / (1 + rt) + ds;
      dScale += ui * inv * ds;
    } else if (kind === 'decoupledSoftmax') {
      if (cnt === 0) continue;
      let l = 0, C = 0;
      for (let e = e0; e < e1; e++) {
        const w = pos.weights ? pos.weights[e] : 1;
        const z = zOf(f, Sp[e]);
        l -= w * logSigmoid(-gap(z));
        const s = sigmoidPair(lse - z)[0]; // σ(Z − z_p)
        C += w * s;
        posG[e] = (-w * s) / cnt;
        ds -= ((w * s) / cnt) * (Sp[e] === -Infinity ? 0 : Sp[e]);
      }
      rowLoss[i] = l / cnt;
      coef[i] = (ui * C) / cnt;
      if (lse > -Infinity) ds += ((C / cnt) * E) / (1 + rt);
      dScale += ui * ds;
    } else {
      const w = dclw ? dclw[i] : 1;
      const z = zOf(f, Sp[e0]);
      rowLoss[i] = -w * z + lse;
      coef[i] = ui;
      posG[e0] = -w;
      if (lse > -Infinity) ds += E / (1 + rt);
      dScale += ui * (ds - w * Sp[e0]);
    }
  }
  if (c.wantGrad)
    c.src.grad((S, G, r0, r1, set) => {
      softmaxGrad(S, G, r1 - r0, n, f, rowsOf(skip, r0, r1), M.subarray(r0, r1), rTotal.subarray(r0, r1), coef.subarray(r0, r1), undefined, c.src.types);
      for (let i = r0; i < r1; i++) {
        const ui = u(i) * f.scale;
        for (let q = lp.rowPtr[i]; q < lp.rowPtr[i + 1]; q++) set((i - r0) * n + lp.cols[q], ui * posG[lp.entry[q]]);
      }
    }, true);
  return result(c, rowLoss, D, dScale, ex);
}

// ---------------------------------------------------------------------------------------------
// infoNCE symmetric (CLIP): a square B × B matrix with diagonal positives. A rank holds whole
// columns, so each column's softmax over the rows is local (its statistics need no exchange);
// the rows' softmax takes the two rounds, and the column losses c_i and the columns' share of
// dScale ride in the sum round from the rank that holds column i.

function* symmetricInfoNCE(c: Common, ex: Exchange): ShardedPhases {
  const { rows, n, offset, scale } = c;
  const f: ZForm = { scale, softcap: 0 };
  // Row i's positive is column i: held here for rows [offset, offset + n).
  const diag = { rowPtr: Int32Array.from({ length: rows + 1 }, (_, i) => Math.min(Math.max(i - offset, 0), n)), cols: Int32Array.from({ length: n }, (_, j) => j) };
  const diagS = new Float32Array(n);
  const pickDiag = c.src.pick(diag, diagS);
  // Each column's softmax over the rows, merged over the chunks of rows as the rows' over ranks.
  const C = { max: new Float64Array(n).fill(-Infinity), rest: new Float64Array(n), bad: undefined as BadEntry };
  const P = partials(c, f, undefined, undefined, (S, r0, r1) => {
    pickDiag(S, r0, r1);
    const part = columnPartials(S, r1 - r0, n, scale, c.src.types);
    if (part.bad && !C.bad) C.bad = [part.bad[0] + r0, part.bad[1]];
    for (let j = 0; j < n; j++) {
      const m = part.max[j], M = C.max[j];
      if (m === -Infinity) continue;
      if (M === -Infinity) [C.max[j], C.rest[j]] = [m, part.rest[j]];
      else if (m > M) [C.max[j], C.rest[j]] = [m, (1 + C.rest[j]) * Math.exp(M - m) + part.rest[j]];
      else if (m < M) C.rest[j] += (1 + part.rest[j]) * Math.exp(m - M);
      else C.rest[j] += 1 + part.rest[j];
    }
  });
  ex.bad = P.bad;
  const u = upstream(c, rows);
  ex.bad ??= C.bad;
  // Each held column's loss c_j = lse_col − z_jj, and the columns' share of dScale:
  // Σ_j (u_j/2)·(Σ_i q_ij·S_ij − S_jj), q the column softmax.
  const colStats = Array.from({ length: n }, (_, j) => rowLse(C.max[j], C.max[j] === -Infinity ? 0 : 1, C.rest[j]));
  const colCoef = Float64Array.from({ length: n }, (_, j) => u(offset + j) / 2 / (1 + colStats[j].rTotal));
  let dScaleCols = 0;
  if (c.wantDScale && !ex.bad) {
    const zero = new Float64Array(rows);
    c.src.scan((S, r0, r1) => {
      dScaleCols += symmetricGrad(S, undefined, r1 - r0, n, scale, P.m.subarray(r0, r1), zero.subarray(r0, r1), C.max, colCoef, c.src.types);
    });
  }
  const b1 = ex.alloc('max', rows);
  for (let i = 0; i < rows; i++) b1[i] = encodeScore(P.m[i]);
  const r1 = yield* ex.round('max', b1);
  const M = Float64Array.from(r1, decodeScore);
  // Per row: count at M, tail, column i held, S_ii, c_i, [E]; then the columns' dScale.
  const F = 5 + (c.wantDScale ? 1 : 0);
  const b2 = ex.alloc('sum', F * rows + 1);
  for (let i = 0; i < rows; i++) {
    const [cnt, tail, E] = rescale(M[i], P.m[i], P.rest[i], P.E ? P.E[i] : 0);
    b2[F * i] = cnt;
    b2[F * i + 1] = tail;
    if (c.wantDScale) b2[F * i + 5] = E;
    const j = i - offset;
    if (j < 0 || j >= n || ex.bad) continue;
    const sii = diagS[j];
    b2[F * i + 2] = 1;
    b2[F * i + 3] = encodeScore(sii);
    b2[F * i + 4] = colStats[j].gap(Math.fround(scale * sii));
    if (c.wantDScale) dScaleCols -= (u(i) / 2) * sii;
  }
  b2[F * rows] = dScaleCols;
  const r2 = yield* ex.round('sum', b2);
  for (let i = 0; i < rows; i++)
    if (r2[F * i + 2] !== 1) throw makeError('ERR_ARG', `opts.columnOffset: column ${i} (row ${i}'s positive) is held by ${r2[F * i + 2]} ranks, expected exactly one`);
  const rowLoss = new Float64Array(rows);
  const rTotal = new Float64Array(rows);
  const rowCoef = new Float64Array(rows);
  let dScale = r2[F * rows];
  for (let i = 0; i < rows; i++) {
    const { rTotal: rt, gap } = rowLse(M[i], r2[F * i], r2[F * i + 1]);
    rTotal[i] = rt;
    const sii = decodeScore(r2[F * i + 3]);
    rowLoss[i] = (gap(Math.fround(scale * sii)) + r2[F * i + 4]) / 2;
    rowCoef[i] = u(i) / 2 / (1 + rt);
    if (c.wantDScale) dScale += (u(i) / 2) * (r2[F * i + 5] / (1 + rt) - sii);
  }
  if (c.wantGrad)
    c.src.grad((S, G, r0, r1, set) => {
      symmetricGrad(S, G, r1 - r0, n, scale, M.subarray(r0, r1), rowCoef.subarray(r0, r1), C.max, colCoef, c.src.types);
      // The diagonal: both halves' p − 1, each exact near p = 1.
      for (let i = Math.max(r0, offset); i < Math.min(r1, offset + n); i++) {
        const j = i - offset;
        const z = Math.fround(scale * diagS[j]);
        if (z === -Infinity) continue;
        const cs = colStats[j];
        const pr = pMinusOne(z, M[i], M[i] + Math.log1p(rTotal[i]), rTotal[i]);
        const pc = pMinusOne(z, C.max[j], cs.lse, cs.rTotal);
        set((i - r0) * n + j, (u(i) / 2) * scale * (pr + pc));
      }
    }, true);
  return result(c, rowLoss, rows, dScale, ex);
}

// ---------------------------------------------------------------------------------------------
// binaryCrossEntropy: every entry is its own logistic problem, so the gradient is local and one
// sum round of the row losses' parts suffices.

function* binaryCrossEntropy(c: Common, pos: NativeCsr, excl: NativeCsr | undefined, ex: Exchange): ShardedPhases {
  const { rows, n, scale } = c;
  const { lp, skip: exclude } = localTargets(c, pos, excl, false);
  const u = upstream(c, rows * c.total);
  const up = Float32Array.from({ length: rows }, (_, i) => u(i));
  const loss = new Float64Array(rows), inf = new Float64Array(rows);
  let dScale = 0, bad: BadEntry;
  // One pass: the gradient is local, so it is formed (and folded, in the key-embedding form) here.
  const chunk = (S: Block, G: Block | undefined, r0: number, r1: number) => {
    const p = bcePartials(S, r1 - r0, n, scale, rowsOf(exclude, r0, r1), positivesOf(lp, r0, r1), up.subarray(r0, r1), G, c.wantDScale, c.src.types);
    loss.set(p.loss, r0);
    inf.set(p.inf, r0);
    dScale += p.dScale;
    if (p.bad && !bad) bad = [p.bad[0] + r0, p.bad[1]];
  };
  if (c.wantGrad || c.wantDScale) c.src.grad(chunk, c.wantGrad);
  else c.src.scan((S, r0, r1) => chunk(S, undefined, r0, r1));
  ex.bad = bad;
  // Per row: the loss part, positives held, positives at −∞ with y > 0 (their loss is +∞); then dScale.
  const b = ex.alloc('sum', 3 * rows + 1);
  for (let i = 0; i < rows; i++) {
    b[3 * i] = loss[i];
    b[3 * i + 1] = lp.rowPtr[i + 1] - lp.rowPtr[i];
    b[3 * i + 2] = inf[i];
  }
  b[3 * rows] = dScale;
  const r = yield* ex.round('sum', b);
  checkOwned(pos, (i) => r[3 * i + 1]);
  const rowLoss = new Float64Array(rows);
  for (let i = 0; i < rows; i++) rowLoss[i] = r[3 * i + 2] > 0 ? Infinity : r[3 * i];
  return result(c, rowLoss, rows * c.total, r[3 * rows], ex);
}

// ---------------------------------------------------------------------------------------------
// softTopKLoss

function* softTopKLoss(c: Common, pos: NativeCsr, excl: NativeCsr | undefined, x: { k: number | Int32Array | 'numPositives'; alpha: number; tol: number; maxIter: number }, ex: Exchange): ShardedPhases {
  const { rows, n, scale } = c;
  const { lp, skip } = localTargets(c, pos, excl, false);
  const hasPositives = (i: number) => pos.rowPtr[i + 1] > pos.rowPtr[i];
  // Phase 1: per row, max and min of z over the entries that are in, and their count; the positives' scores.
  const zmax = new Float64Array(rows), zmin = new Float64Array(rows), count = new Float64Array(rows);
  const lpS = new Float32Array(lp.cols.length);
  const pick = c.src.pick(lp, lpS);
  let bad: BadEntry;
  c.src.scan((S, r0, r1) => {
    const p = rangePartials(S, r1 - r0, n, scale, x.alpha, rowsOf(skip, r0, r1), c.src.types);
    zmax.set(p.zmax, r0);
    zmin.set(p.zmin, r0);
    count.set(p.count, r0);
    if (p.bad && !bad) bad = [p.bad[0] + r0, p.bad[1]];
    pick(S, r0, r1);
  });
  ex.bad = bad;
  const b1 = ex.alloc('max', 2 * rows);
  for (let i = 0; i < rows; i++) {
    b1[2 * i] = encodeScore(zmax[i]);
    b1[2 * i + 1] = encodeScore(-zmin[i]);
  }
  const r1 = yield* ex.round('max', b1);
  const nnz = pos.cols.length;
  const b2 = ex.alloc('sum', 2 * rows + nnz);
  for (let i = 0; i < rows; i++) {
    b2[2 * i] = count[i];
    b2[2 * i + 1] = lp.rowPtr[i + 1] - lp.rowPtr[i];
  }
  gatherPositives(lp, lpS, b2.subarray(2 * rows));
  const r2 = yield* ex.round('sum', b2);
  checkOwned(pos, (i) => r2[2 * i + 1]);
  const Sp = Float64Array.from(r2.subarray(2 * rows), decodeScore);
  // k per row, checked against the global N_i (the same on every rank).
  let kv = x.k;
  if (kv === 'numPositives') {
    const kr = new Int32Array(rows);
    for (let i = 0; i < rows; i++) {
      let w = 0;
      for (let e = pos.rowPtr[i]; e < pos.rowPtr[i + 1]; e++) w += pos.weights ? pos.weights[e] : 1;
      kr[i] = Math.ceil(w);
    }
    kv = kr;
  }
  const kOf = (i: number) => (typeof kv === 'number' ? kv : (kv as Int32Array)[i]);
  const solvers: (TopKSolver | undefined)[] = new Array(rows);
  for (let i = 0; i < rows; i++) {
    if (!hasPositives(i)) continue;
    const Ni = r2[2 * i], k = kOf(i);
    if (!(k > 0 && k < Ni)) throw makeError('ERR_K_RANGE', `opts.k${typeof kv === 'number' ? '' : `[${i}]`}: expected 0 < k < ${Ni} (row ${i}'s entries in, over all shards), received ${k}`);
    solvers[i] = topkSolverInit(decodeScore(r1[2 * i]), -decodeScore(r1[2 * i + 1]), k, Ni, x.alpha, x.tol);
  }
  // Newton steps: one sum round of the split sums of every row still searching.
  for (;;) {
    const active = Int32Array.from(solvers.flatMap((s, i) => (s && !s.done ? [i] : [])));
    if (active.length === 0) break;
    const t = Float64Array.from(active, (i) => solvers[i]!.t);
    const b = ex.alloc('sum', 5 * active.length);
    // Each chunk with searching rows: their sums at their trial thresholds.
    let a0 = 0;
    c.src.scan((S, r0, r1) => {
      while (a0 < active.length && active[a0] < r0) a0++;
      let a1 = a0;
      while (a1 < active.length && active[a1] < r1) a1++;
      if (a1 > a0) topkSums(S, r1 - r0, n, scale, rowsOf(skip, r0, r1), x.alpha, active.subarray(a0, a1).map((i) => i - r0), t.subarray(a0, a1), b.subarray(5 * a0, 5 * a1), c.src.types);
      a0 = a1;
    }, active);
    const r = yield* ex.round('sum', b);
    active.forEach((i, a) => topkSolverStep(solvers[i]!, r[5 * a], r[5 * a + 1], r[5 * a + 2], r[5 * a + 3], r[5 * a + 4], x.maxIter));
  }
  // Phase 2: loss and U from the gathered positives; the gradient block in one pass.
  const u = upstream(c, rows);
  const rowLoss = new Float64Array(rows);
  const factor = new Float64Array(rows); // U/V
  const th = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const s = solvers[i];
    if (!s) continue;
    const e0 = pos.rowPtr[i], e1 = pos.rowPtr[i + 1];
    const cnt = e1 - e0;
    let l = 0, U = 0;
    for (let e = e0; e < e1; e++) {
      const w = pos.weights ? pos.weights[e] : 1;
      const a = x.alpha * (Math.fround(scale * Sp[e]) + s.t);
      l -= w * logSigmoid(a);
      U += x.alpha * (-w / cnt) * sigmoidPair(a)[1];
    }
    rowLoss[i] = l / cnt;
    const V = x.alpha * (s.sums[3] + s.sums[4]);
    factor[i] = V > 0 ? U / V : 0;
    th[i] = s.t;
  }
  let dScale = 0;
  if (c.wantGrad || c.wantDScale) {
    const solved = Uint8Array.from(solvers, (sv) => (sv ? 1 : 0));
    const nPos = Int32Array.from({ length: rows }, (_, i) => pos.rowPtr[i + 1] - pos.rowPtr[i]);
    const up = Float64Array.from({ length: rows }, (_, i) => u(i));
    c.src.grad((S, G, r0, r1, set) => {
      const sub = <T extends Float64Array | Int32Array | Uint8Array>(a: T) => a.subarray(r0, r1) as T;
      dScale += topkGrad(S, G, r1 - r0, n, scale, rowsOf(skip, r0, r1), positivesOf(lp, r0, r1), lpS.subarray(lp.rowPtr[r0], lp.rowPtr[r1]), sub(nPos), x.alpha, sub(solved), sub(th), sub(factor), sub(up), set, c.src.types);
    }, c.wantGrad);
  }
  if (c.wantDScale) {
    const b = ex.alloc('sum', 1);
    b[0] = dScale;
    dScale = (yield* ex.round('sum', b))[0];
  }
  return result(c, rowLoss, rows, dScale, ex);
}

// ---------------------------------------------------------------------------------------------
// The API.

/**
 * A sharded loss call, ready to exchange. Run it once: with {@link ShardedJob.run} over an
 * all-reduce, or step by step with {@link ShardedJob.phases}.
 */
export class ShardedJob {
  #protocol: ShardedPhases | undefined;
  /** @internal */
  constructor(protocol: ShardedPhases) {
    this.#protocol = protocol;
  }

  #take(): ShardedPhases {
    const p = this.#protocol;
    if (!p) throw makeError('ERR_ARG', 'ShardedJob: already run (a job runs once; make a new one with shardedLoss())');
    this.#protocol = undefined;
    return p;
  }

  /**
   * The protocol as an iterator: `next()` runs phase 1 and yields the first `{ buffer, op }`;
   * all-reduce `buffer` with `op` across the ranks and pass the result to `next(reduced)`,
   * until it is done; its value is the result. Every rank makes the same requests.
   */
  phases(): ShardedPhases {
    return this.#take();
  }

  /** Drives every round through `allReduce(buffer, op)` and resolves to this rank's result. */
  async run(allReduce: AllReduce): Promise<ShardedResult> {
    if (typeof allReduce !== 'function') fail('ERR_TYPE', 'allReduce', 'a function (buffer: Float32Array, op: \'sum\' | \'max\') => Promise<Float32Array>', allReduce);
    const steps = this.#take();
    let s = steps.next();
    while (!s.done) s = steps.next(await allReduce(s.value.buffer, s.value.op));
    return s.value;
  }
}

function diagonalOrCsr(name: string, v: unknown, rows: number, total: number, onePerRow: boolean): NativeCsr {
  if (v === undefined) {
    if (total < rows) fail('ERR_SHAPE', 'opts.totalColumns', `at least B = ${rows} columns for diagonal positives (row i's positive is column i)`, total);
    return diagonalPositives(rows);
  }
  const p = csr(name, v, rows, total, { weights: !onePerRow });
  if (onePerRow)
    for (let i = 0; i < rows; i++) {
      const k = p.rowPtr[i + 1] - p.rowPtr[i];
      if (k !== 1) fail('ERR_CSR', `${name} row ${i}`, 'exactly one positive per row', `#${k} positives`);
    }
  return p;
}

/**
 * A label-sharded loss on this rank's block of scores `localScores` (B × N_r: columns
 * [columnOffset, columnOffset + N_r) of the B × N matrix), with `targets` in global columns
 * (labels for softmaxCrossEntropy, CSR positives otherwise; the same on every rank). Returns a
 * job; `await job.run(allReduce)` gives `{ loss, rowLoss, grad, dScale? }`: the loss and row
 * losses of the whole matrix and dL/dS for this rank's columns, equal to the unsharded call's
 * (docs/MATH.md §4 tolerances). Options are the unsharded loss's (infoNCE: one-way only), where
 * `classWeights` is this rank's slice and `exclude` is in global columns.
 *
 * The key-embedding form: `localScores` is `{ queries, keys }` with this rank's keys K_r
 * (N_r × D) and the queries (B × D, gathered: the same on every rank); S = Q·K_rᵀ (cosine with
 * `normalize`, plus the shard's `bias` for softmaxCrossEntropy) is taken by row chunks within
 * `memoryBudget`, and the result has `gradQueries` (this rank's part: all-reduce it),
 * `gradKeys` and `gradBias` in place of `grad`. It equals `<loss>FromEmbeddings` (and
 * linearCrossEntropy for softmaxCrossEntropy) on all the keys.
 *
 * Throws ArgumentError for bad arguments here, before any exchange; the job's run throws the
 * cross-rank errors (mismatched options, shards that overlap or leave gaps, a label in no
 * shard, a broken all-reduce) on every rank alike.
 */
export function shardedLoss<K extends ShardedLossName>(name: K, localScores: ScoresInput | ShardedEmbeddings, targets: ShardedLosses[K]['targets'], opts: ShardedLosses[K]['options']): ShardedJob {
  if (typeof name !== 'string' || !(name in KEYS)) fail('ERR_ARG', 'shardedLoss(): name', `one of ${Object.keys(KEYS).map((k) => `'${k}'`).join(', ')}`, name);
  if (opts === undefined) fail('ERR_ARG', `shardedLoss('${name}'): opts`, 'an object with columnOffset and totalColumns', opts);
  const c = prepare(name, localScores, opts);
  const { o, rows, total } = c;
  switch (name as ShardedLossName) {
    case 'softmaxCrossEntropy': {
      const labels = int32Array('labels', targets, rows);
      const ignoreIndex = o.ignoreIndex === undefined ? -100 : o.ignoreIndex;
      if (typeof ignoreIndex !== 'number' || !Number.isInteger(ignoreIndex) || ignoreIndex < -(2 ** 31) || ignoreIndex >= 2 ** 31) fail('ERR_ARG', 'opts.ignoreIndex', 'a 32-bit integer', ignoreIndex);
      for (let i = 0; i < rows; i++)
        if (labels[i] !== ignoreIndex && (labels[i] < 0 || labels[i] >= total)) fail('ERR_LABEL_RANGE', `labels[${i}]`, `a class in [0, ${total}) or ignoreIndex (${ignoreIndex})`, labels[i]);
      const eps = finiteInRange('opts.labelSmoothing', o.labelSmoothing, 0, 1, 0);
      const zLoss = nonNegativeFinite('opts.zLoss', o.zLoss, 0);
      const softcap = o.softcap === undefined ? 0 : positiveFinite('opts.softcap', o.softcap);
      const weights = o.classWeights === undefined ? undefined : float32Array('opts.classWeights', o.classWeights, c.n);
      if (weights) for (let j = 0; j < weights.length; j++) if (!(weights[j] >= 0 && Number.isFinite(weights[j]))) fail('ERR_ARG', `opts.classWeights[${j}]`, 'a finite weight >= 0', weights[j]);
      const returnLse = bool('opts.returnLse', o.returnLse, false);
      const ex = new Exchange(agreed(c, [labels, ignoreIndex, eps, zLoss, softcap, String(weights !== undefined), String(returnLse)]), c.offset, c.n, total, c.form[0] === 'embeddings');
      return new ShardedJob(crossEntropy(c, labels, { ignoreIndex, eps, zLoss, softcap, weights, returnLse }, ex));
    }
    case 'binaryCrossEntropy':
    case 'multiLabelSoftmax':
    case 'decoupledSoftmax': {
      const pos = csr('positives', targets, rows, total);
      const excl = excludeArg(o.exclude, rows, total, pos);
      const ex = new Exchange(agreed(c, [pos.rowPtr, pos.cols, pos.weights, excl?.rowPtr, excl?.cols]), c.offset, c.n, total, c.form[0] === 'embeddings');
      return new ShardedJob(name === 'binaryCrossEntropy' ? binaryCrossEntropy(c, pos, excl, ex) : positivesSoftmax(c, name as SoftmaxKind, pos, excl, 0, ex));
    }
    case 'infoNCE':
    case 'decoupledContrastive': {
      const dcl = name === 'decoupledContrastive';
      if (!dcl && bool('opts.symmetric', o.symmetric, false)) {
        if (targets !== undefined || o.exclude !== undefined)
          fail('ERR_ARG', 'opts.symmetric', 'the diagonal positives (targets undefined) and no exclusions (CLIP)', `#${targets !== undefined ? 'targets' : 'opts.exclude'} as well`);
        if (total !== rows) fail('ERR_SHAPE', 'opts.totalColumns', `B = ${rows} with symmetric: true (a square matrix)`, total);
        return new ShardedJob(symmetricInfoNCE(c, new Exchange(agreed(c, ['symmetric']), c.offset, c.n, total, c.form[0] === 'embeddings')));
      }
      const pos = diagonalOrCsr('positives', targets, rows, total, dcl);
      const excl = excludeArg(o.exclude, rows, total, pos, targets === undefined ? 'the diagonal positives' : 'positives');
      let sigma = 0;
      if (dcl && o.weighting !== undefined) {
        const w = options<{ sigma?: number }>('opts.weighting', o.weighting, ['sigma']);
        sigma = positiveFinite('opts.weighting.sigma', w.sigma, 0.5);
      }
      const ex = new Exchange(agreed(c, [pos.rowPtr, pos.cols, pos.weights, excl?.rowPtr, excl?.cols, sigma]), c.offset, c.n, total, c.form[0] === 'embeddings');
      return new ShardedJob(positivesSoftmax(c, name as SoftmaxKind, pos, excl, sigma, ex));
    }
    case 'softTopKLoss': {
      const pos = csr('positives', targets, rows, total);
      const excl = excludeArg(o.exclude, rows, total, pos);
      const alpha = positiveFinite('opts.alpha', o.alpha, 2);
      const tol = positiveFinite('opts.tol', o.tol, 1e-5);
      if (tol >= 1) fail('ERR_ARG', 'opts.tol', 'a number in (0, 1)', tol);
      const maxIter = o.maxIter === undefined ? 100 : o.maxIter;
      if (typeof maxIter !== 'number' || !Number.isInteger(maxIter) || maxIter < 1 || maxIter > 10000) fail('ERR_ARG', 'opts.maxIter', 'an integer in [1, 10000]', maxIter);
      let k = o.k === undefined ? 5 : o.k;
      if (k !== 'numPositives') {
        // The range check against each row's N_i needs the other shards: it happens after the exchange.
        kArg('opts.k', k, rows, Number.MAX_SAFE_INTEGER, undefined, () => true);
        if (typeof k === 'number' && !(Number.isInteger(k) && k > 0)) fail('ERR_K_RANGE', 'opts.k', 'an integer > 0', k);
        if (k instanceof Int32Array) k = k.slice(); // the rounds read it later: a copy the caller cannot change meanwhile
      }
      const kk = k as number | Int32Array | 'numPositives';
      const ex = new Exchange(agreed(c, [pos.rowPtr, pos.cols, pos.weights, excl?.rowPtr, excl?.cols, kk, alpha, tol, maxIter]), c.offset, c.n, total, c.form[0] === 'embeddings');
      return new ShardedJob(softTopKLoss(c, pos, excl, { k: kk, alpha, tol, maxIter }, ex));
    }
  }
  return fail('ERR_ARG', 'shardedLoss(): name', 'a known loss', name);
}
