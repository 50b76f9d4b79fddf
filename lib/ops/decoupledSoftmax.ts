/**
 * decoupledSoftmax: DEXML's decoupled softmax over CSR positives (MATH decoupledSoftmax, native/ops/positives_math.h).
 * @module
 */
import type { Positives } from '../csr';
import type { LossResult, ScoresInput, WithGrad } from '../loss';
import { positivesLoss, positivesLossAsync, type PositivesLossOptions } from './positivesLoss';

/** Options of {@link decoupledSoftmax}. */
export type DecoupledSoftmaxOptions = PositivesLossOptions;

/**
 * Decoupled softmax (DEXML) of `scores` (B×N) with CSR `positives`: each positive competes only
 * with the row's negatives. With z = scale·S, Z_i the log-sum-exp over the columns that are
 * neither positive nor excluded, and n_i the number of positives of row i,
 *   ℓ_i = −(1/n_i) Σ_p w_ip · log σ(z_ip − Z_i).
 * `positives.weights` weight each positive (default 1; n_i counts entries, not weights).
 * 'mean' divides by B (rows without positives add 0); a row with no negatives costs 0.
 * One read of the scores for Z_i, O(n_i) per row for the positives, one write of the gradient.
 *
 * Throws ArgumentError (ERR_CSR for a malformed CSR or an exclusion that is also a positive,
 * ERR_SHAPE, ERR_ARG, ...) and NonFiniteError for NaN/+Infinity scores.
 */
export function decoupledSoftmax<O extends DecoupledSoftmaxOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): WithGrad<LossResult, O> {
  return positivesLoss('decoupledSoftmax', scores, positives, opts) as WithGrad<LossResult, O>;
}

/** {@link decoupledSoftmax} on a worker thread, leaving the event loop free. */
export function decoupledSoftmaxAsync<O extends DecoupledSoftmaxOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): Promise<WithGrad<LossResult, O>> {
  return positivesLossAsync('decoupledSoftmax', scores, positives, opts) as Promise<WithGrad<LossResult, O>>;
}
