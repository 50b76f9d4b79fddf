/** The float64 references: the oracle every kernel is tested against (see types.ts for conventions). */
export type { Reduction, RefCommonOptions, RefPositives, RefResult, RefSoftTopKResult, Scores } from './types.js';
export { refLogSumExp } from './logSumExp.js';
export { refSoftmaxCrossEntropy, type RefCrossEntropyOptions } from './softmaxCrossEntropy.js';
export { refMultiLabelSoftmax, type RefMultiLabelSoftmaxOptions } from './multiLabelSoftmax.js';
export { refInfoNCE, type RefInfoNCEOptions } from './infoNCE.js';
export { refDecoupledSoftmax, type RefDecoupledSoftmaxOptions } from './decoupledSoftmax.js';
export { dclwWeights, refDecoupledContrastive, type RefDecoupledContrastiveOptions } from './decoupledContrastive.js';
export { refBinaryCrossEntropy, type RefBinaryCrossEntropyOptions } from './binaryCrossEntropy.js';
export { refSoftTopK, refSoftTopKVjp, solveThreshold, type RefSoftTopKOptions, type TopK } from './softTopK.js';
export { refSoftTopKLoss, type RefSoftTopKLossOptions } from './softTopKLoss.js';
export { diagonalPositives, transposeCsr } from './csr.js';
export { loadGoldenCases, runReference, type GoldenCase, type GoldenFn, type GoldenResult, type RefSoftTopKCaseResult } from './golden.js';
export { fdGradCheck, fdScalarCheck, type FdError, type FdOptions } from './fd.js';
export { makeRng, randomExclude, randomPositives, randomScores, type CsrArrays, type Rng, type ScoreKind } from './rng.js';
export * from './dtype.js';
