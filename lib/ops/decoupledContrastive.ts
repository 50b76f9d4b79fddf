/**
 * decoupledContrastive: the decoupled contrastive loss DCL and its weighted form DCLW
 * (Yeh et al., "Decoupled Contrastive Learning", ECCV 2022), loss and gradient in one call
 * (SPEC 3.5).
 * @module
 */
import { type LossOptions, type LossResult, prepareLoss, runLoss, runLossAsync, type ScoresInput } from '../loss';
import { call, callAsync } from '../native';
import { fail, options, positiveFinite } from '../validate';

export interface DecoupledContrastiveOptions extends LossOptions {
  /**
   * DCLW: weight each row's positive term by w_i = 2 − B·softmax_i(S_ii / σ), the softmax
   * taken over the batch (rows) of the raw positive scores S (not scale·S), as the DCL
   * authors' code does. w is a constant: no gradient flows through it. `sigma` > 0, default
   * 0.5 (the paper's). Default: no weighting (plain DCL, w_i = 1).
   */
  weighting?: { sigma?: number };
}

function prepare(scores: ScoresInput, opts: DecoupledContrastiveOptions | undefined) {
  const { p, o } = prepareLoss('decoupledContrastive', scores, opts);
  let sigma = 0;
  if (o.weighting !== undefined) {
    const w = options<{ sigma?: number }>('opts.weighting', o.weighting);
    sigma = positiveFinite('opts.weighting.sigma', w.sigma, 0.5);
  }
  if (p.cols < p.rows) fail('ERR_SHAPE', 'scores', `at least as many columns as rows for diagonal positives (row i's positive is column i)`, `#shape [${p.rows}, ${p.cols}]`);
  const args = [p.input, { ...p.common, sigma }, p.gradOutput, p.gradTarget, p.rowLoss] as const;
  return { p, args };
}

/**
 * DCL on the scores S (B×N, z = scale·S): row i's positive is column i and is left out of the
 * denominator (the decoupling):
 *   ℓ_i = −w_i·z_ii + log Σ_{j ≠ i} exp(z_ij),
 * with w_i = 1 (DCL) or DCLW's weights (`weighting`). 'mean' divides by B.
 *
 * Throws ArgumentError (ERR_SHAPE when N < B; ERR_ARG for a sigma that is not > 0, ...) and
 * NonFiniteError for NaN/+Infinity scores (−Infinity marks an entry out).
 */
export function decoupledContrastive(scores: ScoresInput, opts?: DecoupledContrastiveOptions): LossResult {
  const { p, args } = prepare(scores, opts);
  return runLoss(p, () => call((a) => a.decoupledContrastive(...args)));
}

/** {@link decoupledContrastive} on a worker thread, leaving the event loop free. */
export async function decoupledContrastiveAsync(scores: ScoresInput, opts?: DecoupledContrastiveOptions): Promise<LossResult> {
  const { p, args } = prepare(scores, opts);
  return runLossAsync(p, () => callAsync((a) => a.decoupledContrastiveAsync(...args)));
}
