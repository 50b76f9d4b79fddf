/**
 * The float64 references: the oracle every kernel is tested against (see types.ts for
 * conventions). Each op's is exported by its registry file, scripts/ops/<op>.mjs; this list
 * gathers those the tests of several ops share (a new op need not add itself).
 */
export type { Reduction, RefCommonOptions, RefPositives, RefResult, RefSoftTopKResult, Scores } from './types.js';
export { refLogSumExp } from '../../scripts/ops/logSumExp.mjs';
export { refSoftmaxCrossEntropy, type RefCrossEntropyOptions } from '../../scripts/ops/softmaxCrossEntropy.mjs';
export { refMultiLabelSoftmax, type RefMultiLabelSoftmaxOptions } from '../../scripts/ops/multiLabelSoftmax.mjs';
export { refInfoNCE, type RefInfoNCEOptions } from '../../scripts/ops/infoNCE.mjs';
export { refDecoupledSoftmax, type RefDecoupledSoftmaxOptions } from '../../scripts/ops/decoupledSoftmax.mjs';
export { dclwWeights, refDecoupledContrastive, type RefDecoupledContrastiveOptions } from '../../scripts/ops/decoupledContrastive.mjs';
export { refBinaryCrossEntropy, type RefBinaryCrossEntropyOptions } from '../../scripts/ops/binaryCrossEntropy.mjs';
export { refSoftTopK, refSoftTopKVjp, solveThreshold, type RefSoftTopKOptions, type TopK } from '../../scripts/ops/softTopKLoss.mjs';
export { refSoftTopKLoss, type RefSoftTopKLossOptions } from '../../scripts/ops/softTopKLoss.mjs';
export { diagonalPositives, transposeCsr } from '../../scripts/lib/reference.mjs';
export { loadGoldenCases, runReference, type GoldenCase, type GoldenFn, type GoldenResult, type RefSoftTopKCaseResult } from './golden.js';
export { fdGradCheck, fdScalarCheck, type FdError, type FdOptions } from './fd.js';
export { makeRng, randomExclude, randomPositives, randomScores, type CsrArrays, type Rng, type ScoreKind } from './rng.js';
export * from './dtype.js';
