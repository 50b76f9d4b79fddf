/**
 * multiLabelSoftmax: the multi-label softmax loss over CSR positives (DEXML "softmax", MATH multiLabelSoftmax, native/ops/positives_math.h).
 * @module
 */
import type { Positives } from '../csr';
import type { LossResult, ScoresInput, WithGrad } from '../loss';
import { positivesLoss, positivesLossAsync, type PositivesLossOptions } from './positivesLoss';

/** Options of {@link multiLabelSoftmax}. */
export type MultiLabelSoftmaxOptions = PositivesLossOptions;

/**
 * Multi-label softmax of `scores` (B×N) with CSR `positives`: the cross-entropy of every
 * positive against one softmax over the row. With z = scale·S and lse_i over the columns not
 * excluded (positives included),
 *   ℓ_i = Σ_p w_ip (lse_i − z_ip),   dℓ_i/dz_ij = W_i·p_ij − w_ij·[j ∈ P_i],  W_i = Σ_p w_ip.
 * `positives.weights` weight each positive (default 1). 'mean' divides by B (rows without
 * positives add 0).
 *
 * Throws ArgumentError (ERR_CSR for a malformed CSR or an exclusion that is also a positive,
 * ERR_SHAPE, ERR_ARG, ...) and NonFiniteError for NaN/+Infinity scores.
 */
export function multiLabelSoftmax<O extends MultiLabelSoftmaxOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): WithGrad<LossResult, O> {
  return positivesLoss('multiLabelSoftmax', scores, positives, opts) as WithGrad<LossResult, O>;
}

/** {@link multiLabelSoftmax} on a worker thread, leaving the event loop free. */
export function multiLabelSoftmaxAsync<O extends MultiLabelSoftmaxOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): Promise<WithGrad<LossResult, O>> {
  return positivesLossAsync('multiLabelSoftmax', scores, positives, opts) as Promise<WithGrad<LossResult, O>>;
}
