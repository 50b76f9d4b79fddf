/**
 * decoupledContrastive: the decoupled contrastive loss DCL and its weighted form DCLW
 * (Yeh et al., "Decoupled Contrastive Learning", ECCV 2022), loss and gradient in one call
 * (MATH decoupledContrastive, native/ops/contrastive_math.h).
 * @module
 */
import { csr, diagonalPositives, excludeArg, type Positives, type NativeCsr } from '../csr';
import { LOSS_OPTION_KEYS, type LossOptions, type LossResult, prepareLoss, runLoss, runLossAsync, type ScoresInput, type WithGrad } from '../loss';
import { call, callAsync, type NativeLossArgs, type NativeInput, type Op, type NativeLoss } from '../native';
import { preparingAsync } from '../outputs';
import { fail, optionKeys, options, positiveFinite } from '../validate';

/** positives absent: the diagonal; sigma: DCLW's σ, or 0 for plain DCL. */
interface NativeDecoupledContrastive extends NativeLossArgs {
  scores: NativeInput;
  positives?: NativeCsr | undefined;
  exclude?: NativeCsr | undefined;
  sigma: number;
}

declare module '../native' {
  interface NativeAddon extends Op<'decoupledContrastive', NativeDecoupledContrastive, NativeLoss> {}
}

export interface DecoupledContrastiveOptions extends LossOptions {
  /**
   * DCLW: weight each row's positive term by w_i = 2 − B·softmax_i(S_ii / σ), the softmax
   * taken over the batch (rows) of the raw positive scores S (not scale·S), as the DCL
   * authors' code does. w is a constant: no gradient flows through it. `sigma` > 0, default
   * 0.5 (the paper's). Default: no weighting (plain DCL, w_i = 1).
   */
  weighting?: { sigma?: number };
  /**
   * Each row's positive as CSR: exactly one column per row, no weights. Default: the
   * diagonal, row i ↔ column i (needs N ≥ B).
   */
  positives?: Positives;
  /**
   * Entries removed from the loss exactly (CSR, no weights): out of the negatives'
   * log-sum-exp, gradient exactly 0 (e.g. other views of the same instance). An exclusion that
   * is also the row's positive is an ERR_CSR error. Default: none.
   */
  exclude?: Positives;
}

const KEYS = [...LOSS_OPTION_KEYS, ...optionKeys<Omit<DecoupledContrastiveOptions, keyof LossOptions>>({ weighting: true, positives: true, exclude: true })];

function prepare(scores: ScoresInput, opts: DecoupledContrastiveOptions | undefined) {
  const { p, o } = prepareLoss('decoupledContrastive', scores, opts, KEYS);
  let sigma = 0;
  if (o.weighting !== undefined) {
    const w = options<{ sigma?: number }>('opts.weighting', o.weighting, ['sigma']);
    sigma = positiveFinite('opts.weighting.sigma', w.sigma, 0.5);
  }
  let positives;
  if (o.positives !== undefined) {
    positives = csr('opts.positives', o.positives, p.rows, p.cols, { weights: false });
    for (let i = 0; i < p.rows; i++) {
      const n = positives.rowPtr[i + 1] - positives.rowPtr[i];
      if (n !== 1) fail('ERR_CSR', `opts.positives row ${i}`, 'exactly one positive per row', `#${n} positives`);
    }
  } else if (p.cols < p.rows) {
    fail('ERR_SHAPE', 'scores', `at least as many columns as rows for diagonal positives (row i's positive is column i)`, `#shape [${p.rows}, ${p.cols}]`);
  }
  const exclude = o.exclude === undefined ? undefined : excludeArg(o.exclude, p.rows, p.cols, positives ?? diagonalPositives(p.rows), positives ? 'opts.positives' : 'the diagonal positives');
  const args: NativeDecoupledContrastive = { ...p.common, scores: p.input, positives, exclude, sigma };
  return { p, args };
}

/**
 * DCL on the scores S (B×N, z = scale·S): row i's positive p (column i by default) is left
 * out of the denominator (the decoupling), as are its exclusions:
 *   ℓ_i = −w_i·z_ip + log Σ_{j ≠ p, j not excluded} exp(z_ij),
 * with w_i = 1 (DCL) or DCLW's weights (`weighting`). 'mean' divides by B.
 *
 * Throws ArgumentError (ERR_SHAPE when N < B for diagonal positives; ERR_CSR for malformed
 * positives/exclude, a row without exactly one positive or an excluded positive; ERR_ARG for a
 * sigma that is not > 0, ...) and
 * NonFiniteError for NaN/+Infinity scores (−Infinity marks an entry out).
 */
export function decoupledContrastive<O extends DecoupledContrastiveOptions | undefined = undefined>(scores: ScoresInput, opts?: O): WithGrad<LossResult, O> {
  const { p, args } = prepare(scores, opts);
  return runLoss(p, () => call((a) => a.decoupledContrastive(args))) as WithGrad<LossResult, O>;
}

/** {@link decoupledContrastive} on a worker thread, leaving the event loop free. */
export async function decoupledContrastiveAsync<O extends DecoupledContrastiveOptions | undefined = undefined>(scores: ScoresInput, opts?: O): Promise<WithGrad<LossResult, O>> {
  const { p, args } = preparingAsync(() => prepare(scores, opts));
  return runLossAsync(p, () => callAsync((a) => a.decoupledContrastiveAsync(args))) as Promise<WithGrad<LossResult, O>>;
}
