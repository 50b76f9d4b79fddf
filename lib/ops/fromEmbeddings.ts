/**
 * The losses straight from embeddings (docs/MATH.md §3.9–3.10): `<loss>FromEmbeddings(queries, keys, positives,
 * opts)` computes a section-3 loss on S = queries·keysᵀ (or the cosine scores with
 * `normalize`) with the gradients for both inputs, without ever holding the B×N matrix.
 * @module
 */
import { csr, diagonalPositives, excludeArg, type NativeCsr, type Positives } from '../csr';
import { biasOptions, FreshGrads, gradBuffer, newGrad, PRODUCT_LOSS_KEYS, settle, settleAsync, productOptions, type LossResult, type ProductLossOptions } from '../loss';
import { call, callAsync, type NativeAddon, type NativeInput, type NativeLoss, type NativeProductLossArgs, type NativeTopKSolve, type Op } from '../native';
import { preparingAsync } from '../outputs';
import { asMatrix, Tensor, type TensorLike } from '../tensor';
import { bool, fail, optionKeys, options, positiveFinite } from '../validate';
import { kArg, solveOptions, type TopK } from './softTopK';

/** <loss>FromEmbeddings (napi/ops.cpp read_embeddings): queries, keys, gradQueries and gradKeys on one device, the rest host arrays; gradDtype is gradQueries' dtype code. */
export interface NativeEmbeddingsLoss extends NativeProductLossArgs {
  queries: NativeInput;
  keys: NativeInput;
  cols: number;
  normalize: boolean;
  bias?: Float32Array | undefined;
  gradQueries?: NativeInput | undefined;
  gradKeys?: NativeInput | undefined;
  gradBias?: Float32Array | undefined;
}

export interface NativePositivesEmbeddingsLoss extends NativeEmbeddingsLoss {
  positives: NativeCsr;
  exclude?: NativeCsr | undefined;
}

export interface NativeInfoNCEEmbeddingsLoss extends NativeEmbeddingsLoss {
  positives?: NativeCsr | undefined;
  exclude?: NativeCsr | undefined;
  symmetric: boolean;
}

export interface NativeDecoupledContrastiveEmbeddingsLoss extends NativeEmbeddingsLoss {
  positives?: NativeCsr | undefined;
  exclude?: NativeCsr | undefined;
  sigma: number;
}

export interface NativeSoftTopKLossEmbeddingsLoss extends NativeEmbeddingsLoss, NativeTopKSolve {
  positives: NativeCsr;
}

declare module '../native' {
  interface NativeAddon
    extends Op<'decoupledSoftmaxFromEmbeddings', NativePositivesEmbeddingsLoss, NativeLoss>,
      Op<'multiLabelSoftmaxFromEmbeddings', NativePositivesEmbeddingsLoss, NativeLoss>,
      Op<'binaryCrossEntropyFromEmbeddings', NativePositivesEmbeddingsLoss, NativeLoss>,
      Op<'infoNCEFromEmbeddings', NativeInfoNCEEmbeddingsLoss, NativeLoss>,
      Op<'decoupledContrastiveFromEmbeddings', NativeDecoupledContrastiveEmbeddingsLoss, NativeLoss>,
      Op<'softTopKLossFromEmbeddings', NativeSoftTopKLossEmbeddingsLoss, NativeLoss> {}
}

/** Options every `<loss>FromEmbeddings` takes (each loss adds its matrix form's own); 'mean' divides as the matrix form does. */
export interface EmbeddingsLossOptions extends ProductLossOptions {
  /** Cosine scores S = (Q/‖Q_i‖)·(K/‖K_j‖)ᵀ (CLIP, DEXML; F.normalize with eps 1e-12), gradients chained through the normalisation. Default false. */
  normalize?: boolean;
  /**
   * A per-key bias b (length N; a Float32Array, or a 1-D host tensor of any dtype, widened to
   * float32) added to the scores: S = Q·Kᵀ + b, or cos(Q, K) + b with `normalize`; `scale`
   * multiplies S, bias included (as linearCrossEntropy). A host array with CUDA inputs too. Default: none.
   */
  bias?: Float32Array | Tensor | TensorLike;
  /** Where dL/dbias goes (length N, float32, host); with `accumulate`, added into. Default: a new array (with `bias` only). */
  gradBias?: Float32Array;
  /** Where dL/dqueries goes (B×D, of gradDtype, on the queries' device); with `accumulate`, added into. Default: a new tensor. */
  gradQueries?: Tensor;
  /** Where dL/dkeys goes (N×D, float32, on the queries' device); with `accumulate`, added into. Default: a new tensor. */
  gradKeys?: Tensor;
}

/** Options of the losses over CSR positives from embeddings. */
export interface PositivesEmbeddingsOptions extends EmbeddingsLossOptions {
  /** Entries (i, j) removed from the loss exactly (CSR over B×N, no weights), as in the matrix form. */
  exclude?: Positives;
}

export interface EmbeddingsLossResult extends Omit<LossResult, 'grad'> {
  /** dL/dqueries, B×D (absent with `grad: false`). */
  gradQueries?: Tensor;
  /** dL/dkeys, N×D, float32 (absent with `grad: false`). */
  gradKeys?: Tensor;
  /** dL/dbias, length N (with `bias`, absent with `grad: false`). */
  gradBias?: Float32Array;
}

/** The result type for options O: `gradQueries` and `gradKeys` are present unless O says `grad: false`. */
export type WithEmbeddingsGrad<O, G = 'grad' extends keyof O ? O['grad' & keyof O] : undefined> = [G] extends [false]
  ? Omit<EmbeddingsLossResult, 'gradQueries' | 'gradKeys' | 'gradBias'>
  : [G] extends [true | undefined]
    ? EmbeddingsLossResult & { gradQueries: Tensor; gradKeys: Tensor }
    : EmbeddingsLossResult;

const EMBEDDINGS_KEYS = [...PRODUCT_LOSS_KEYS, ...optionKeys<Omit<EmbeddingsLossOptions, keyof ProductLossOptions>>({ normalize: true, bias: true, gradQueries: true, gradKeys: true, gradBias: true })];
const POSITIVES_KEYS = [...EMBEDDINGS_KEYS, 'exclude'];
/** Validates what every embeddings loss shares; returns the native arguments and the result builder. */
function prepareEmbeddings(fn: string, queriesArg: Tensor | TensorLike, keysArg: Tensor | TensorLike, o: EmbeddingsLossOptions) {
  const { t: queries, rows: B, cols: D } = asMatrix(queriesArg, 'queries');
  const { t: keys, rows: N, cols: DK } = asMatrix(keysArg, 'keys');
  if (queries.shape.length !== 2) fail('ERR_SHAPE', 'queries.shape', 'a 2-D shape [B, D]', `#[${queries.shape.join(', ')}]`);
  if (keys.shape.length !== 2) fail('ERR_SHAPE', 'keys.shape', 'a 2-D shape [N, D]', `#[${keys.shape.join(', ')}]`);
  if (DK !== D) fail('ERR_SHAPE', 'keys.shape', `[N, ${D}] (the queries' D)`, `#[${keys.shape.join(', ')}]`);
  if (N < 1) fail('ERR_SHAPE', 'keys.shape', 'at least one key', `#[${keys.shape.join(', ')}]`);
  if (keys.dtype !== queries.dtype) fail('ERR_DTYPE', 'keys.dtype', `the queries' dtype '${queries.dtype}'`, keys.dtype);
  if (keys.device !== queries.device) fail('ERR_DEVICE', 'keys', `a tensor on ${queries.device} (the queries' device)`, `#a tensor on ${keys.device}`);
  const device = queries.device;
  const fresh = new FreshGrads();
  const { common, wantGrad, gradDtype, accumulate } = productOptions(o, queries, B, D, "the queries'");
  const normalize = bool('opts.normalize', o.normalize, false);
  const { bias, gradBias } = biasOptions(o, N, wantGrad, accumulate);
  let gradQueries: Tensor | undefined;
  let gradKeys: Tensor | undefined;
  if (wantGrad) {
    gradQueries = o.gradQueries !== undefined ? gradBuffer('opts.gradQueries', o.gradQueries, [B, D], gradDtype, device) : undefined;
    gradKeys = o.gradKeys !== undefined ? gradBuffer('opts.gradKeys', o.gradKeys, [N, D], 'float32', device) : undefined;
    if (accumulate) {
      if (!gradQueries) fail('ERR_ARG', 'opts.gradQueries', 'the buffer to add into (accumulate: true)', undefined);
      if (!gradKeys) fail('ERR_ARG', 'opts.gradKeys', 'the buffer to add into (accumulate: true)', undefined);
    }
    gradQueries ??= fresh.add(newGrad(gradDtype, [B, D], device));
    gradKeys ??= fresh.add(newGrad('float32', [N, D], device));
  } else {
    for (const k of ['gradQueries', 'gradKeys', 'accumulate'] as const)
      if (o[k] !== undefined && o[k] !== false) fail('ERR_ARG', `opts.${k}`, 'no gradient buffers with grad: false', `#${k} given`);
  }
  const args: NativeEmbeddingsLoss = {
    ...common,
    queries: queries.nativeInput('queries'),
    keys: keys.nativeInput('keys'),
    cols: N,
    normalize,
    bias,
    gradQueries: gradQueries?.nativeInput('opts.gradQueries'),
    gradKeys: gradKeys?.nativeInput('opts.gradKeys'),
    gradBias,
  };
  const finish = fresh.finisher((r: { loss: number; dScale: number }): EmbeddingsLossResult => {
    const out: EmbeddingsLossResult = { loss: r.loss, rowLoss: common.rowLoss };
    if (gradQueries) out.gradQueries = gradQueries;
    if (gradKeys) out.gradKeys = gradKeys;
    if (gradBias) out.gradBias = gradBias;
    if (common.gradScale) out.dScale = r.dScale;
    return out;
  });
  return { args, finish, B, N };
}

type PositivesMethod = 'decoupledSoftmaxFromEmbeddings' | 'multiLabelSoftmaxFromEmbeddings' | 'binaryCrossEntropyFromEmbeddings';

function preparePositives(fn: PositivesMethod, queries: Tensor | TensorLike, keys: Tensor | TensorLike, positives: Positives, opts: PositivesEmbeddingsOptions | undefined) {
  const o = options<PositivesEmbeddingsOptions>(`${fn}(): opts`, opts, POSITIVES_KEYS);
  const { args, finish, B, N } = prepareEmbeddings(fn, queries, keys, o);
  const pos: NativeCsr = csr('positives', positives, B, N);
  const exclude = excludeArg(o.exclude, B, N, pos);
  return { args: { ...args, positives: pos, exclude }, finish };
}

function positivesSync(fn: PositivesMethod, q: Tensor | TensorLike, k: Tensor | TensorLike, positives: Positives, opts: PositivesEmbeddingsOptions | undefined) {
  const { args, finish } = preparePositives(fn, q, k, positives, opts);
  return settle(finish, () => call((a) => a[fn](args)));
}
async function positivesAsync(fn: PositivesMethod, q: Tensor | TensorLike, k: Tensor | TensorLike, positives: Positives, opts: PositivesEmbeddingsOptions | undefined) {
  const { args, finish } = preparingAsync(() => preparePositives(fn, q, k, positives, opts));
  return settleAsync(finish, () => callAsync((a) => a[`${fn}Async`](args)));
}

type Embeddings = Tensor | TensorLike;

/**
 * decoupledSoftmax (DEXML, MATH decoupledSoftmax, native/ops/positives_math.h) on S = queries·keysᵀ (cosine scores with `normalize`):
 * the loss, dL/dqueries (B×D) and dL/dkeys (N×D, float32) in one call that holds only a bounded
 * chunk of S's rows (`memoryBudget`). Rows without positives cost no matrix work. Equal to
 * `decoupledSoftmax(queries·keysᵀ, positives, opts)` chained through the product. Queries
 * and keys are tensors of one dtype (float32, float16, bfloat16) on one device: the CPU, or a
 * CUDA GPU (gradQueries and gradKeys then on it too).
 *
 * Throws ArgumentError (ERR_SHAPE, ERR_DTYPE, ERR_CSR, ERR_ARG for a memoryBudget below one row
 * of scores, ...) and NonFiniteError when a score is NaN or +Infinity.
 */
export function decoupledSoftmaxFromEmbeddings<O extends PositivesEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): WithEmbeddingsGrad<O> {
  return positivesSync('decoupledSoftmaxFromEmbeddings', queries, keys, positives, opts) as WithEmbeddingsGrad<O>;
}
/** {@link decoupledSoftmaxFromEmbeddings} on a worker thread, leaving the event loop free. */
export async function decoupledSoftmaxFromEmbeddingsAsync<O extends PositivesEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): Promise<WithEmbeddingsGrad<O>> {
  return (await positivesAsync('decoupledSoftmaxFromEmbeddings', queries, keys, positives, opts)) as WithEmbeddingsGrad<O>;
}

/** multiLabelSoftmax (DEXML "softmax", MATH multiLabelSoftmax, native/ops/positives_math.h) on S = queries·keysᵀ; see {@link decoupledSoftmaxFromEmbeddings}. */
export function multiLabelSoftmaxFromEmbeddings<O extends PositivesEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): WithEmbeddingsGrad<O> {
  return positivesSync('multiLabelSoftmaxFromEmbeddings', queries, keys, positives, opts) as WithEmbeddingsGrad<O>;
}
/** {@link multiLabelSoftmaxFromEmbeddings} on a worker thread. */
export async function multiLabelSoftmaxFromEmbeddingsAsync<O extends PositivesEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): Promise<WithEmbeddingsGrad<O>> {
  return (await positivesAsync('multiLabelSoftmaxFromEmbeddings', queries, keys, positives, opts)) as WithEmbeddingsGrad<O>;
}

/** binaryCrossEntropy (DEXML "bce", MATH binaryCrossEntropy, native/ops/positives_math.h; 'mean' divides by B·N) on S = queries·keysᵀ; see {@link decoupledSoftmaxFromEmbeddings}. Every row costs matrix work. */
export function binaryCrossEntropyFromEmbeddings<O extends PositivesEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): WithEmbeddingsGrad<O> {
  return positivesSync('binaryCrossEntropyFromEmbeddings', queries, keys, positives, opts) as WithEmbeddingsGrad<O>;
}
/** {@link binaryCrossEntropyFromEmbeddings} on a worker thread. */
export async function binaryCrossEntropyFromEmbeddingsAsync<O extends PositivesEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): Promise<WithEmbeddingsGrad<O>> {
  return (await positivesAsync('binaryCrossEntropyFromEmbeddings', queries, keys, positives, opts)) as WithEmbeddingsGrad<O>;
}

/** Options of {@link infoNCEFromEmbeddings}. */
export interface InfoNCEEmbeddingsOptions extends EmbeddingsLossOptions {
  /**
   * CLIP's symmetric loss, (row-wise + column-wise InfoNCE)/2, with B = N and the diagonal
   * positives; the column log-sum-exps take a statistics sweep over S first, so S is computed
   * twice. Not combinable with `positives` or `exclude`. Default false.
   */
  symmetric?: boolean;
  /** Each query's positive keys as CSR (SupCon's mean over positives). Default: the diagonal, query i ↔ key i (needs N ≥ B). */
  positives?: Positives;
  /** Entries removed from the loss exactly (CSR, no weights). */
  exclude?: Positives;
}

/** Options of {@link softTopKLossFromEmbeddings}: softTopKLoss's own, plus the embeddings options. */
export interface SoftTopKLossEmbeddingsOptions extends PositivesEmbeddingsOptions {
  /** A number (default 5), an Int32Array with one k per row, or 'numPositives' (k_i = ceil(Σ_p w_ip)). */
  k?: TopK | 'numPositives';
  /** Sharpness α > 0 of σ(α(z + t)). Default 2 (DEXML). */
  alpha?: number;
  /** Stop the threshold search when |Σ_j p_ij − k_i| ≤ tol·k_i. Default 1e-5. */
  tol?: number;
  /** At most this many passes over a row at a trial threshold. Default 100. */
  maxIter?: number;
}

const INFO_NCE_KEYS = [...EMBEDDINGS_KEYS, 'symmetric', 'positives', 'exclude'];
const TOPK_KEYS = [...POSITIVES_KEYS, 'k', 'alpha', 'tol', 'maxIter'];

function prepareInfoNCE(queries: Embeddings, keys: Embeddings, opts: InfoNCEEmbeddingsOptions | undefined) {
  const o = options<InfoNCEEmbeddingsOptions>('infoNCEFromEmbeddings(): opts', opts, INFO_NCE_KEYS);
  const { args, finish, B, N } = prepareEmbeddings('infoNCEFromEmbeddings', queries, keys, o);
  const symmetric = bool('opts.symmetric', o.symmetric, false);
  if (symmetric && (o.positives !== undefined || o.exclude !== undefined))
    fail('ERR_ARG', 'opts.symmetric', 'the diagonal positives and no exclusions (CLIP)', `#${o.positives !== undefined ? 'opts.positives' : 'opts.exclude'} as well`);
  if (symmetric && B !== N) fail('ERR_SHAPE', 'keys.shape', `[${B}, ${args.dim}] (as many keys as queries with symmetric: true)`, `#[${N}, ${args.dim}]`);
  const positives = o.positives === undefined ? undefined : csr('opts.positives', o.positives, B, N);
  if (!positives && N < B) fail('ERR_SHAPE', 'keys.shape', `at least as many keys as queries for diagonal positives (query i's positive is key i)`, `#[${N}, ${args.dim}]`);
  const exclude = o.exclude === undefined ? undefined : excludeArg(o.exclude, B, N, positives ?? diagonalPositives(B), positives ? 'opts.positives' : 'the diagonal positives');
  return { args: { ...args, positives, exclude, symmetric }, finish };
}

function prepareTopK(queries: Embeddings, keys: Embeddings, positives: Positives, opts: SoftTopKLossEmbeddingsOptions | undefined) {
  const o = options<SoftTopKLossEmbeddingsOptions>('softTopKLossFromEmbeddings(): opts', opts, TOPK_KEYS);
  const { args, finish, B, N } = prepareEmbeddings('softTopKLossFromEmbeddings', queries, keys, o);
  const pos = csr('positives', positives, B, N);
  const { alpha, tol, maxIter, exclude } = solveOptions(o as Record<string, unknown>, B, N, 2, pos);
  const noPositives = (i: number) => pos.rowPtr[i] === pos.rowPtr[i + 1];
  let kValue: unknown = o.k === undefined ? 5 : o.k;
  if (kValue === 'numPositives') {
    const kr = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      let w = 0;
      for (let e = pos.rowPtr[i]; e < pos.rowPtr[i + 1]; e++) w += pos.weights ? pos.weights[e] : 1;
      kr[i] = Math.ceil(w);
    }
    kValue = kr;
  }
  const { k, kRows } = kArg('opts.k', kValue, B, N, exclude, noPositives);
  return { args: { ...args, positives: pos, alpha, k: kRows ?? k, tol, maxIter, exclude }, finish };
}

/**
 * InfoNCE (MATH infoNCE, native/ops/contrastive_math.h) on S = queries·keysᵀ (cosine scores with `normalize`; a temperature τ is
 * `scale: 1/τ`): one-way with the diagonal or CSR positives, or CLIP's `symmetric` form, with
 * dL/dqueries and dL/dkeys, holding only a bounded chunk of S's rows. One-way rows without
 * positives cost no matrix work. On the CPU or a CUDA GPU, as the inputs.
 */
export function infoNCEFromEmbeddings<O extends InfoNCEEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, opts?: O): WithEmbeddingsGrad<O> {
  const { args, finish } = prepareInfoNCE(queries, keys, opts);
  return settle(finish, () => call((a: NativeAddon) => a.infoNCEFromEmbeddings(args))) as WithEmbeddingsGrad<O>;
}
/** {@link infoNCEFromEmbeddings} on a worker thread. */
export async function infoNCEFromEmbeddingsAsync<O extends InfoNCEEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, opts?: O): Promise<WithEmbeddingsGrad<O>> {
  const { args, finish } = preparingAsync(() => prepareInfoNCE(queries, keys, opts));
  return (await settleAsync(finish, () => callAsync((a: NativeAddon) => a.infoNCEFromEmbeddingsAsync(args)))) as WithEmbeddingsGrad<O>;
}

/** softTopKLoss (DEXML "topk", MATH softTopKLoss, native/ops/soft_topk_math.h) on S = queries·keysᵀ; see {@link decoupledSoftmaxFromEmbeddings}. */
export function softTopKLossFromEmbeddings<O extends SoftTopKLossEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): WithEmbeddingsGrad<O> {
  const { args, finish } = prepareTopK(queries, keys, positives, opts);
  return settle(finish, () => call((a: NativeAddon) => a.softTopKLossFromEmbeddings(args))) as WithEmbeddingsGrad<O>;
}
/** {@link softTopKLossFromEmbeddings} on a worker thread. */
export async function softTopKLossFromEmbeddingsAsync<O extends SoftTopKLossEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, positives: Positives, opts?: O): Promise<WithEmbeddingsGrad<O>> {
  const { args, finish } = preparingAsync(() => prepareTopK(queries, keys, positives, opts));
  return (await settleAsync(finish, () => callAsync((a: NativeAddon) => a.softTopKLossFromEmbeddingsAsync(args)))) as WithEmbeddingsGrad<O>;
}

/** Options of {@link decoupledContrastiveFromEmbeddings}. */
export interface DecoupledContrastiveEmbeddingsOptions extends EmbeddingsLossOptions {
  /** DCLW: w_i = 2 − B·softmax over the rows of S_{i,p(i)}/σ (held constant). `sigma` default 0.5. Default: plain DCL (w_i = 1). */
  weighting?: { sigma?: number };
  /** Each query's one positive key as CSR (unweighted, exactly one per row). Default: the diagonal (needs N ≥ B). */
  positives?: Positives;
  /** Entries removed from the loss exactly (CSR, no weights). */
  exclude?: Positives;
}

const DCL_KEYS = [...EMBEDDINGS_KEYS, 'weighting', 'positives', 'exclude'];

function prepareDcl(queries: Embeddings, keys: Embeddings, opts: DecoupledContrastiveEmbeddingsOptions | undefined) {
  const o = options<DecoupledContrastiveEmbeddingsOptions>('decoupledContrastiveFromEmbeddings(): opts', opts, DCL_KEYS);
  const { args, finish, B, N } = prepareEmbeddings('decoupledContrastiveFromEmbeddings', queries, keys, o);
  let sigma = 0;
  if (o.weighting !== undefined) {
    const w = options<{ sigma?: number }>('opts.weighting', o.weighting, ['sigma']);
    sigma = positiveFinite('opts.weighting.sigma', w.sigma, 0.5);
  }
  let positives: NativeCsr | undefined;
  if (o.positives !== undefined) {
    positives = csr('opts.positives', o.positives, B, N, { weights: false });
    for (let i = 0; i < B; i++) {
      const n = positives.rowPtr[i + 1] - positives.rowPtr[i];
      if (n !== 1) fail('ERR_CSR', `opts.positives row ${i}`, 'exactly one positive per row', `#${n} positives`);
    }
  } else if (N < B) fail('ERR_SHAPE', 'keys.shape', `at least as many keys as queries for diagonal positives (query i's positive is key i)`, `#[${N}, ${args.dim}]`);
  const exclude = o.exclude === undefined ? undefined : excludeArg(o.exclude, B, N, positives ?? diagonalPositives(B), positives ? 'opts.positives' : 'the diagonal positives');
  return { args: { ...args, positives, exclude, sigma }, finish };
}

/**
 * Decoupled contrastive loss (DCL, DCLW; MATH decoupledContrastive, native/ops/contrastive_math.h) on S = queries·keysᵀ (cosine scores with
 * `normalize`): the positive leaves the denominator. DCLW's weights are formed over all B rows
 * first (B dot products), then S is taken in bounded chunks of rows. On the CPU or a CUDA GPU, as the inputs.
 */
export function decoupledContrastiveFromEmbeddings<O extends DecoupledContrastiveEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, opts?: O): WithEmbeddingsGrad<O> {
  const { args, finish } = prepareDcl(queries, keys, opts);
  return settle(finish, () => call((a: NativeAddon) => a.decoupledContrastiveFromEmbeddings(args))) as WithEmbeddingsGrad<O>;
}
/** {@link decoupledContrastiveFromEmbeddings} on a worker thread. */
export async function decoupledContrastiveFromEmbeddingsAsync<O extends DecoupledContrastiveEmbeddingsOptions | undefined = undefined>(queries: Embeddings, keys: Embeddings, opts?: O): Promise<WithEmbeddingsGrad<O>> {
  const { args, finish } = preparingAsync(() => prepareDcl(queries, keys, opts));
  return (await settleAsync(finish, () => callAsync((a: NativeAddon) => a.decoupledContrastiveFromEmbeddingsAsync(args)))) as WithEmbeddingsGrad<O>;
}
