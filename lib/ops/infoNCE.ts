/**
 * infoNCE: the InfoNCE / NT-Xent contrastive loss on a given score matrix, one-way or
 * symmetric (CLIP), loss and gradient in one call (SPEC 3.3).
 * @module
 */
import { type LossOptions, type LossResult, prepareLoss, runLoss, runLossAsync, type ScoresInput } from '../loss';
import { call, callAsync } from '../native';
import { bool, fail } from '../validate';

export interface InfoNCEOptions extends LossOptions {
  /**
   * CLIP's symmetric loss: (row-wise InfoNCE + column-wise InfoNCE)/2 on a square S whose
   * positives are the diagonal (query i ↔ key i), as in OpenCLIP's `ClipLoss`, which is
   * `(cross_entropy(S, arange(B)) + cross_entropy(Sᵀ, arange(B)))/2`. Both log-sum-exps come
   * from one read of S. `rowLoss[i]` is (r_i + c_i)/2, the pair's share, and with reduction
   * 'none' `gradOutput[i]` weights both halves of pair i. Default false.
   */
  symmetric?: boolean;
}

function prepare(scores: ScoresInput, opts: InfoNCEOptions | undefined) {
  const { p, o } = prepareLoss('infoNCE', scores, opts);
  const symmetric = bool('opts.symmetric', o.symmetric, false);
  if (symmetric && p.rows !== p.cols) fail('ERR_SHAPE', 'scores', 'a square matrix with symmetric: true', `#shape [${p.rows}, ${p.cols}]`);
  if (p.cols < p.rows) fail('ERR_SHAPE', 'scores', `at least as many columns as rows for diagonal positives (row i's positive is column i)`, `#shape [${p.rows}, ${p.cols}]`);
  const args = [p.input, { ...p.common, symmetric }, p.gradOutput, p.gradTarget, p.rowLoss] as const;
  return { p, args };
}

/**
 * InfoNCE of the scores S (B×N; e.g. query·key similarities, z = scale·S with scale = 1/τ)
 * with row i's positive in column i, the in-batch negatives being every other column:
 * ℓ_i = lse_j(z_ij) − z_ii, which is `F.cross_entropy(scale·S, arange(B))` in PyTorch.
 * 'mean' divides by B (by the number of rows with a positive), as torch does.
 *
 * Returns the loss, each row's loss, dL/dS (unless `grad: false`) and, with `gradScale: true`,
 * dL/dscale for a learnable temperature (CLIP's logit scale).
 *
 * Throws ArgumentError (ERR_SHAPE when N < B, or `symmetric` on a non-square S; ERR_ARG, ...)
 * and NonFiniteError for NaN/+Infinity scores (−Infinity marks an entry out).
 */
export function infoNCE(scores: ScoresInput, opts?: InfoNCEOptions): LossResult {
  const { p, args } = prepare(scores, opts);
  return runLoss(p, () => call((a) => a.infoNCE(...args)));
}

/** {@link infoNCE} on a worker thread, leaving the event loop free. */
export async function infoNCEAsync(scores: ScoresInput, opts?: InfoNCEOptions): Promise<LossResult> {
  const { p, args } = prepare(scores, opts);
  return runLossAsync(p, () => callAsync((a) => a.infoNCEAsync(...args)));
}
