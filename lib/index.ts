/**
 * fusedloss: fused loss kernels for Node.js. Each loss returns its value and its gradient
 * with respect to the scores in one call, on the CPU (threads + SIMD) or on CUDA.
 *
 * Async calls (the `...Async` twins) never touch freed memory: outputs live in memory the
 * addon owns (reference-counted, recycled); a caller's own arrays are copied for the call
 * (inputs when it is made, so later writes do not reach it; `out` and in-place scores when it
 * completes); a buffer detached meanwhile makes it reject with ERR_DETACHED; and a call that
 * would write a buffer an async call in flight uses (or read one it writes) is refused with
 * ERR_BUSY. Unknown option keys are ERR_ARG. Finite scores whose scale·x overflows float32 are
 * refused with ERR_NON_FINITE naming the entry and the scale.
 * @module
 */
export { FusedLossError, ArgumentError, NonFiniteError, LifetimeError, CudaError, NativeError } from './errors';
export type { ErrorCode } from './errors';
export { Tensor, tensor, toDevice, toHost } from './tensor';
export type { DType, Device, HostArray, TensorLike } from './tensor';
export { backendInfo } from './backend';
export type { BackendInfo, CudaDevice } from './backend';
export { logSumExp, logSumExpAsync } from './ops/logSumExp';
export type { LogSumExpOptions } from './ops/logSumExp';
export { float32ToFloat16, float32ToBFloat16, float16ToFloat32, bfloat16ToFloat32, toFloat32 } from './half';
export type { Reduction, LossOptions, LossResult, ScoresInput, WithGrad } from './loss';
export { softmaxCrossEntropy, softmaxCrossEntropyAsync } from './ops/softmaxCrossEntropy';
export type { SoftmaxCrossEntropyOptions, SoftmaxCrossEntropyResult } from './ops/softmaxCrossEntropy';
export type { Positives } from './csr';
export { decoupledSoftmax, decoupledSoftmaxAsync } from './ops/decoupledSoftmax';
export type { DecoupledSoftmaxOptions } from './ops/decoupledSoftmax';
export { multiLabelSoftmax, multiLabelSoftmaxAsync } from './ops/multiLabelSoftmax';
export type { MultiLabelSoftmaxOptions } from './ops/multiLabelSoftmax';
export { binaryCrossEntropy, binaryCrossEntropyAsync } from './ops/binaryCrossEntropy';
export type { BinaryCrossEntropyOptions } from './ops/binaryCrossEntropy';
export { softTopK, softTopKAsync } from './ops/softTopK';
export type { SoftTopKOptions, SoftTopKResult, TopK, TopKSolveOptions } from './ops/softTopK';
export { softTopKLoss, softTopKLossAsync } from './ops/softTopKLoss';
export type { SoftTopKLossOptions } from './ops/softTopKLoss';
export type { PositivesLossOptions } from './ops/positivesLoss';
export { infoNCE, infoNCEAsync } from './ops/infoNCE';
export type { InfoNCEOptions } from './ops/infoNCE';
export { decoupledContrastive, decoupledContrastiveAsync } from './ops/decoupledContrastive';
export type { DecoupledContrastiveOptions } from './ops/decoupledContrastive';
export { linearCrossEntropy, linearCrossEntropyAsync, DEFAULT_MEMORY_BUDGET } from './ops/linearCrossEntropy';
export type { LinearCrossEntropyOptions, LinearCrossEntropyResult, WithLinearGrad } from './ops/linearCrossEntropy';
export { shardedLoss, ShardedJob } from './sharded';
export type {
  AllReduce,
  ReduceOp,
  ShardedRequest,
  ShardedPhases,
  ShardedResult,
  ShardedOptions,
  ShardedCrossEntropyOptions,
  ShardedPositivesOptions,
  ShardedInfoNCEOptions,
  ShardedDecoupledContrastiveOptions,
  ShardedSoftTopKLossOptions,
  ShardedLosses,
  ShardedLossName,
  ShardedEmbeddings,
} from './sharded';
export {
  decoupledSoftmaxFromEmbeddings,
  decoupledSoftmaxFromEmbeddingsAsync,
  multiLabelSoftmaxFromEmbeddings,
  multiLabelSoftmaxFromEmbeddingsAsync,
  binaryCrossEntropyFromEmbeddings,
  binaryCrossEntropyFromEmbeddingsAsync,
  infoNCEFromEmbeddings,
  infoNCEFromEmbeddingsAsync,
  softTopKLossFromEmbeddings,
  softTopKLossFromEmbeddingsAsync,
  decoupledContrastiveFromEmbeddings,
  decoupledContrastiveFromEmbeddingsAsync,
} from './ops/fromEmbeddings';
export type { EmbeddingsLossOptions, PositivesEmbeddingsOptions, InfoNCEEmbeddingsOptions, SoftTopKLossEmbeddingsOptions, DecoupledContrastiveEmbeddingsOptions, EmbeddingsLossResult, WithEmbeddingsGrad } from './ops/fromEmbeddings';
