/**
 * softTopKLoss: DEXML's "topk" loss (MATH softTopKLoss, native/ops/soft_topk_math.h), ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip·log p_ip with p
 * the soft top-k of the row; threshold search, loss and gradient in one call.
 * @module
 */
import { csr, type Positives, type NativeCsr } from '../csr';
import { LOSS_OPTION_KEYS, type LossOptions, type LossResult, prepareLoss, runLoss, runLossAsync, type ScoresInput, type WithGrad } from '../loss';
import { call, callAsync, type NativeLossArgs, type NativeTopKSolve, type NativeInput, type Op, type NativeLoss } from '../native';
import { preparingAsync } from '../outputs';
import { kArg, solveOptions, type TopK } from './softTopK';
import { optionKeys } from '../validate';

interface NativeSoftTopKLoss extends NativeLossArgs, NativeTopKSolve {
  scores: NativeInput;
  positives: NativeCsr;
}

declare module '../native' {
  interface NativeAddon extends Op<'softTopKLoss', NativeSoftTopKLoss, NativeLoss> {}
}

export interface SoftTopKLossOptions extends LossOptions {
  /**
   * How many entries each row keeps: a number (default 5, as DEXML's configs), an Int32Array
   * with one k per row, or 'numPositives' (k_i = ceil(Σ_p w_ip)). Each row with positives needs
   * 0 < k_i < N_i, its entries that are neither excluded nor −Infinity (else ERR_K_RANGE).
   */
  k?: TopK | 'numPositives';
  /** Sharpness α > 0 of σ(α(z + t)). Default 2 (DEXML). */
  alpha?: number;
  /** Stop the threshold search when |Σ_j p_ij − k_i| ≤ tol·k_i. Default 1e-5. */
  tol?: number;
  /** At most this many passes over a row at a trial threshold. Default 100. */
  maxIter?: number;
  /**
   * Entries removed from the loss exactly (CSR of the same B×N shape, no weights): no part in
   * the threshold's sum, gradient exactly 0. An exclusion that is also a positive is ERR_CSR.
   */
  exclude?: Positives;
}

const KEYS = [...LOSS_OPTION_KEYS, ...optionKeys<Omit<SoftTopKLossOptions, keyof LossOptions>>({ k: true, alpha: true, tol: true, maxIter: true, exclude: true })];

function prepare(scores: ScoresInput, positives: Positives, opts: SoftTopKLossOptions | undefined) {
  // The CSRs and a numPositives k are read before the gradient is allocated (lib/outputs.ts, LAST_OUTPUT).
  const { p, own } = prepareLoss('softTopKLoss', scores, opts, KEYS, 'scores', (o, rows, cols) => {
    const pos = csr('positives', positives, rows, cols);
    const solve = solveOptions(o, rows, cols, 2, pos);
    let kValue = o.k === undefined ? 5 : o.k;
    if (kValue === 'numPositives') {
      const kr = new Int32Array(rows);
      for (let i = 0; i < rows; i++) {
        let w = 0;
        for (let e = pos.rowPtr[i]; e < pos.rowPtr[i + 1]; e++) w += pos.weights ? pos.weights[e] : 1;
        kr[i] = Math.ceil(w);
      }
      kValue = kr;
    }
    return { pos, kValue, ...solve };
  });
  const { pos, kValue, alpha, tol, maxIter, exclude } = own;
  const noPositives = (i: number) => pos.rowPtr[i] === pos.rowPtr[i + 1];
  const { k, kRows } = kArg('opts.k', kValue, p.rows, p.cols, exclude, noPositives);
  const args: NativeSoftTopKLoss = { ...p.common, scores: p.input, positives: pos, alpha, k: kRows ?? k, tol, maxIter, exclude };
  return { p, args };
}

/**
 * The soft top-k loss of `scores` (B×N) against CSR `positives` (MATH softTopKLoss, native/ops/soft_topk_math.h): per row, the
 * threshold t_i with Σ_j σ(α(z_ij + t_i)) = k_i (z = scale·S), then
 * ℓ_i = −(1/n_i) Σ_p w_ip·log σ(α(z_ip + t_i)), finite even for a positive far below the
 * threshold. The gradient (through t_i, so nonzero everywhere) comes in the same call, written
 * once. 'mean' divides by B; rows without positives add 0.
 *
 * Throws ERR_K_RANGE, ERR_ARG (α ≤ 0 or non-finite), ERR_SHAPE (k array length), ERR_CSR,
 * ERR_NON_FINITE (NaN/+Infinity scores).
 */
export function softTopKLoss<O extends SoftTopKLossOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): WithGrad<LossResult, O> {
  const { p, args } = prepare(scores, positives, opts);
  return runLoss(p, () => call((a) => a.softTopKLoss(args))) as WithGrad<LossResult, O>;
}

/** {@link softTopKLoss} on a worker thread, leaving the event loop free. */
export async function softTopKLossAsync<O extends SoftTopKLossOptions | undefined = undefined>(scores: ScoresInput, positives: Positives, opts?: O): Promise<WithGrad<LossResult, O>> {
  const { p, args } = preparingAsync(() => prepare(scores, positives, opts));
  return runLossAsync(p, () => callAsync((a) => a.softTopKLossAsync(args))) as Promise<WithGrad<LossResult, O>>;
}
