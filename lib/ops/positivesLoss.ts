/**
 * What the losses over CSR positives share (decoupledSoftmax, multiLabelSoftmax,
 * binaryCrossEntropy): options, validation and the native call.
 * @internal
 * @module
 */
import { csr, excludeArg, type NativeCsr, type Positives } from '../csr';
import { LOSS_OPTION_KEYS, type LossOptions, type LossResult, prepareLoss, runLoss, runLossAsync, type ScoresInput } from '../loss';
import { call, callAsync, type NativeLossArgs, type NativeInput, type Op, type NativeLoss } from '../native';
import { preparingAsync } from '../outputs';
import { optionKeys } from '../validate';

/** decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy. */
interface NativePositivesLoss extends NativeLossArgs {
  scores: NativeInput;
  positives: NativeCsr;
  exclude?: NativeCsr | undefined;
}

declare module '../native' {
  interface NativeAddon extends Op<'decoupledSoftmax', NativePositivesLoss, NativeLoss>, Op<'multiLabelSoftmax', NativePositivesLoss, NativeLoss>, Op<'binaryCrossEntropy', NativePositivesLoss, NativeLoss> {}
}

/** Options of the losses over CSR positives. */
export interface PositivesLossOptions extends LossOptions {
  /**
   * Entries removed from the loss exactly (CSR of the same B×N shape, no weights): they take no
   * part in any sum and get gradient exactly 0. An exclusion that is also a positive is an
   * ERR_CSR error. DEXML writes −100 into such scores; here they are removed exactly. Default: none.
   */
  exclude?: Positives;
}

const KEYS = [...LOSS_OPTION_KEYS, ...optionKeys<Omit<PositivesLossOptions, keyof LossOptions>>({ exclude: true })];

type Method = 'decoupledSoftmax' | 'multiLabelSoftmax' | 'binaryCrossEntropy';

function prepare(fn: Method, scores: ScoresInput, positives: Positives, opts: PositivesLossOptions | undefined) {
  const { p, o } = prepareLoss(fn, scores, opts, KEYS);
  const pos: NativeCsr = csr('positives', positives, p.rows, p.cols);
  const exclude = excludeArg(o.exclude, p.rows, p.cols, pos);
  const args: NativePositivesLoss = { ...p.common, scores: p.input, positives: pos, exclude };
  return { p, args };
}

/** @internal Runs one of the losses over positives, sync. */
export function positivesLoss(fn: Method, scores: ScoresInput, positives: Positives, opts: PositivesLossOptions | undefined): LossResult {
  const { p, args } = prepare(fn, scores, positives, opts);
  return runLoss(p, () => call((a) => a[fn](args)));
}

/** @internal The async twin of {@link positivesLoss}. */
export async function positivesLossAsync(fn: Method, scores: ScoresInput, positives: Positives, opts: PositivesLossOptions | undefined): Promise<LossResult> {
  const { p, args } = preparingAsync(() => prepare(fn, scores, positives, opts));
  return runLossAsync(p, () => callAsync((a) => a[`${fn}Async`](args)));
}
