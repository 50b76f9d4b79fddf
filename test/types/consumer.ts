// Compiled by test/types.test.ts under strict TypeScript, as a dependent's code importing the
// built package: `grad` is present in a result exactly when the options do not say
// `grad: false`, and `fusedloss/tfjs` resolves under every moduleResolution.
import { infoNCE, infoNCEAsync, softmaxCrossEntropy, softTopKLoss, tensor, type Tensor } from 'fusedloss';
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

// The adapter's entry point, under moduleResolution node10 too (package.json typesVersions).
const adapterLoss: typeof flTf.softmaxCrossEntropy = flTf.softmaxCrossEntropy;

export { loss, shape, first, later, adapterLoss };
