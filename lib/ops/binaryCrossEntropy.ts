/**
 * binaryCrossEntropy: elementwise binary cross-entropy with logits over CSR positives
 * (DEXML "bce", MATH binaryCrossEntropy, native/ops/positives_math.h).
 * @module
 */
import type { Positives } from '../csr';
import type { LossResult, ScoresInput, WithGrad } from '../loss';
import { positivesLoss, positivesLossAsync, type PositivesLossOptions } from './positivesLoss';

/** Options of {@link binaryCrossEntropy}. */
export type BinaryCrossEntropyOptions = PositivesLossOptions;

/**
 * Binary cross-entropy with logits of `scores` (B×N): every positive is a target 1, every other
 * column a target 0. With z = scale·S, over the entries not excluded,
 *   ℓ_i = Σ_j softplus(z_ij) − Σ_p y_ip·z_ip,   dℓ_i/dz_ij = σ(z_ij) − y_ij,
 * where y_ip = 1, or the positive's weight when `positives.weights` is given (soft targets).
 * 'mean' divides by B·N, excluded entries included (the mean over the full matrix, as DEXML
 * takes it). Excluded entries get gradient exactly 0.
 *
 * Throws ArgumentError (ERR_CSR for a malformed CSR or an exclusion that is also a positive,
 * ERR_SHAPE, ERR_ARG, ...) and NonFiniteError for NaN/+Infinity scores.
 */
export function binaryCrossEntropy<O extends BinaryCrossEntropyOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): WithGrad<LossResult, O> {
  return positivesLoss('binaryCrossEntropy', scores, positives, opts) as WithGrad<LossResult, O>;
}

/** {@link binaryCrossEntropy} on a worker thread, leaving the event loop free. */
export function binaryCrossEntropyAsync<O extends BinaryCrossEntropyOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): Promise<WithGrad<LossResult, O>> {
  return positivesLossAsync('binaryCrossEntropy', scores, positives, opts) as Promise<WithGrad<LossResult, O>>;
}
