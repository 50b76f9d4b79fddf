/**
 * infoNCE: the InfoNCE / NT-Xent contrastive loss on a given score matrix, one-way or
 * symmetric (CLIP), loss and gradient in one call (MATH infoNCE, native/ops/contrastive_math.h).
 * @module
 */
import { csr, diagonalPositives, excludeArg, type Positives, type NativeCsr } from '../csr';
import { LOSS_OPTION_KEYS, type LossOptions, type LossResult, prepareLoss, runLoss, runLossAsync, type ScoresInput, type WithGrad } from '../loss';
import { call, callAsync, type NativeLossArgs, type NativeInput, type Op, type NativeLoss } from '../native';
import { preparingAsync } from '../outputs';
import { bool, fail, optionKeys } from '../validate';

/** positives absent: the diagonal. */
interface NativeInfoNCE extends NativeLossArgs {
  scores: NativeInput;
  positives?: NativeCsr | undefined;
  exclude?: NativeCsr | undefined;
  symmetric: boolean;
}

declare module '../native' {
  interface NativeAddon extends Op<'infoNCE', NativeInfoNCE, NativeLoss> {}
}

export interface InfoNCEOptions extends LossOptions {
  /**
   * CLIP's symmetric loss: (row-wise InfoNCE + column-wise InfoNCE)/2 on a square S whose
   * positives are the diagonal (query i ↔ key i), as in OpenCLIP's `ClipLoss`, which is
   * `(cross_entropy(S, arange(B)) + cross_entropy(Sᵀ, arange(B)))/2`. Both log-sum-exps come
   * from one read of S. 'mean' is (Σ r_i / B + Σ c_j / B)/2, 'sum' (Σ r_i + Σ c_j)/2;
   * `rowLoss[i]` is (r_i + c_i)/2, the pair's share, and with reduction 'none' `gradOutput[i]`
   * weights both halves of pair i. Not combinable with `positives` or `exclude` (ERR_ARG).
   * Default false.
   */
  symmetric?: boolean;
  /**
   * Each row's positives as CSR, with optional weights (one-way only). Row i's loss is then
   * SupCon's mean over its positives, ℓ_i = −(1/n_i) Σ_p w_ip (z_ip − lse_i), the positives
   * staying in the log-sum-exp (Khosla et al. 2020, L_out; with one positive per row this is
   * plain InfoNCE). n_i counts entries, not Σ w. A row without positives has loss 0 and
   * gradient 0 and leaves the 'mean' denominator. Default: the diagonal, row i ↔ column i
   * (needs N ≥ B).
   */
  positives?: Positives;
  /**
   * Entries removed from the loss exactly (CSR, no weights; one-way only): out of every
   * log-sum-exp, gradient exactly 0. An exclusion that is also a positive (the diagonal
   * included) is an ERR_CSR error. Default: none.
   */
  exclude?: Positives;
}

const KEYS = [...LOSS_OPTION_KEYS, ...optionKeys<Omit<InfoNCEOptions, keyof LossOptions>>({ symmetric: true, positives: true, exclude: true })];

function prepare(scores: ScoresInput, opts: InfoNCEOptions | undefined) {
  const { p, o } = prepareLoss('infoNCE', scores, opts, KEYS);
  const symmetric = bool('opts.symmetric', o.symmetric, false);
  if (symmetric && (o.positives !== undefined || o.exclude !== undefined))
    fail('ERR_ARG', 'opts.symmetric', 'the diagonal positives and no exclusions (CLIP)', `#${o.positives !== undefined ? 'opts.positives' : 'opts.exclude'} as well`);
  if (symmetric && p.rows !== p.cols) fail('ERR_SHAPE', 'scores', 'a square matrix with symmetric: true', `#shape [${p.rows}, ${p.cols}]`);
  const positives = o.positives === undefined ? undefined : csr('opts.positives', o.positives, p.rows, p.cols);
  if (!positives && p.cols < p.rows) fail('ERR_SHAPE', 'scores', `at least as many columns as rows for diagonal positives (row i's positive is column i)`, `#shape [${p.rows}, ${p.cols}]`);
  const exclude = o.exclude === undefined ? undefined : excludeArg(o.exclude, p.rows, p.cols, positives ?? diagonalPositives(p.rows), positives ? 'opts.positives' : 'the diagonal positives');
  const args: NativeInfoNCE = { ...p.common, scores: p.input, positives, exclude, symmetric };
  return { p, args };
}

/**
 * InfoNCE of the scores S (B×N; e.g. query·key similarities, z = scale·S with scale = 1/τ).
 * By default row i's positive is column i and the in-batch negatives are every other column:
 * ℓ_i = lse_j(z_ij) − z_ii, which is `F.cross_entropy(scale·S, arange(B))` in PyTorch; with
 * `positives`, SupCon's mean over each row's positives. 'mean' divides by the number of rows
 * that have a positive (B for the diagonal), as torch and SupCon do.
 *
 * Returns the loss, each row's loss, dL/dS (unless `grad: false`) and, with `gradScale: true`,
 * dL/dscale for a learnable temperature (CLIP's logit scale).
 *
 * Throws ArgumentError (ERR_SHAPE when N < B for diagonal positives, or `symmetric` on a
 * non-square S; ERR_CSR for malformed positives/exclude or an excluded positive; ERR_ARG, ...)
 * and NonFiniteError for NaN/+Infinity scores (−Infinity marks an entry out).
 */
export function infoNCE<O extends InfoNCEOptions | undefined = undefined>(scores: ScoresInput, opts?: O): WithGrad<LossResult, O> {
  const { p, args } = prepare(scores, opts);
  return runLoss(p, () => call((a) => a.infoNCE(args))) as WithGrad<LossResult, O>;
}

/** {@link infoNCE} on a worker thread, leaving the event loop free. */
export async function infoNCEAsync<O extends InfoNCEOptions | undefined = undefined>(scores: ScoresInput, opts?: O): Promise<WithGrad<LossResult, O>> {
  const { p, args } = preparingAsync(() => prepare(scores, opts));
  return runLossAsync(p, () => callAsync((a) => a.infoNCEAsync(args))) as Promise<WithGrad<LossResult, O>>;
}
