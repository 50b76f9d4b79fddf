// Compiled by test/types.test.ts under strict TypeScript, as a dependent's code importing the
// built package: `grad` is present in a result exactly when the options do not say
// `grad: false`, and `fusedloss/tfjs` resolves under every moduleResolution; shardedLoss types its targets and options by name.
import { infoNCE, infoNCEAsync, shardedLoss, softmaxCrossEntropy, softTopKLoss, tensor, type AllReduce, type Tensor } from 'fusedloss';
import * as flTf from 'fusedloss/tfjs';

const logits = tensor(new Float32Array(6), [2, 3]);
const labels = Int32Array.from([0, 2]);

// Default options: grad is there.
const { loss, grad } = softmaxCrossEntropy(logits, labels);
const shape: readonly number[] = grad.shape;
const first: number = (grad.data as Float32Array)[0];
softmaxCrossEntropy(logits, labels, { labelSmoothing: 0.1 }).grad.shape;
softmaxCrossEntropy(logits, labels, { grad: true }).grad.shape;
infoNCE(logits, { symmetric: false, scale: 2 }).grad.data;
softTopKLoss(logits, { rowPtr: Int32Array.from([0, 1, 1]), cols: Int32Array.from([2]) }, { k: 1 }).grad.dispose();
async function later(): Promise<Tensor> {
  return (await infoNCEAsync(logits)).grad;
}

// grad: false: no grad to read.
const lossOnly = softmaxCrossEntropy(logits, labels, { grad: false });
// @ts-expect-error grad was not asked for
lossOnly.grad;

// A boolean known only at run time: grad may be absent.
declare const wantGrad: boolean;
const maybe = softmaxCrossEntropy(logits, labels, { grad: wantGrad });
// @ts-expect-error possibly undefined
maybe.grad.shape;
maybe.grad?.shape;

// Label-sharded losses: targets and options typed by the loss's name.
async function sharded(allReduce: AllReduce): Promise<number> {
  const job = shardedLoss('softmaxCrossEntropy', logits, labels, { columnOffset: 0, totalColumns: 3, labelSmoothing: 0.1 });
  const r = await job.run(allReduce);
  shardedLoss('infoNCE', logits, undefined, { columnOffset: 0, totalColumns: 3, symmetric: false });
  // @ts-expect-error softmaxCrossEntropy's targets are labels, not positives
  shardedLoss('softmaxCrossEntropy', logits, { rowPtr: new Int32Array(3), cols: new Int32Array(0) }, { columnOffset: 0, totalColumns: 3 });
  // @ts-expect-error columnOffset and totalColumns are required
  shardedLoss('decoupledSoftmax', logits, { rowPtr: new Int32Array(3), cols: new Int32Array(0) }, {});
  return r.loss + r.rowLoss[0] + r.exchange.floats;
}

// The adapter's entry point, under moduleResolution node10 too (package.json typesVersions).
const adapterLoss: typeof flTf.softmaxCrossEntropy = flTf.softmaxCrossEntropy;

// The forms from embeddings take the core options, less the gradient buffers (the adapter's own).
type LinearAdapterOptions = NonNullable<Parameters<typeof flTf.linearCrossEntropy>[3]>;
const linearOptions: LinearAdapterOptions = { labelSmoothing: 0.1, memoryBudget: 2 ** 24 };
// @ts-expect-error gradWeight is not an adapter option
const linearBad: LinearAdapterOptions = { gradWeight: undefined };
const embeddingsLoss: typeof flTf.decoupledSoftmaxFromEmbeddings = flTf.decoupledSoftmaxFromEmbeddings;

export { loss, shape, first, later, adapterLoss, sharded, linearOptions, linearBad, embeddingsLoss };
