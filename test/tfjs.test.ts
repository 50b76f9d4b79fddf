/**
 * fusedloss/tfjs: the losses as tfjs functions with a custom gradient, on the cpu and wasm
 * backends. Cross-entropy against tf.losses.softmaxCrossEntropy on one model, a tfjs-layers
 * model trained with decoupledSoftmax, tensor counts across steps, and bad arguments.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FusedLossError } from '../lib/errors';
import { binaryCrossEntropy, decoupledSoftmax, multiLabelSoftmax, softmaxCrossEntropy } from '../lib/tfjs';
import { makeRng } from './reference/rng';

const relErr = (a: Float32Array | number[], b: Float32Array | number[]) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
};

/** A multi-hot B×N matrix with 1–3 positives per row, seeded. */
function multiHot(seed: number, B: number, N: number): Float32Array {
  const rng = makeRng(seed);
  const y = new Float32Array(B * N);
  for (let i = 0; i < B; i++) for (let k = 0, n = 1 + rng.int(0, 3); k < n; k++) y[i * N + rng.int(0, N)] = 1;
  return y;
}

describe.each(['cpu', 'wasm'])('on the tfjs %s backend', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    await tf.ready();
  });
  afterAll(() => tf.disposeVariables());

  it('softmaxCrossEntropy: value and gradient match tf.losses.softmaxCrossEntropy on one model', () => {
    const rng = makeRng(11);
    const [B, D, N] = [7, 13, 97];
    const x = tf.tensor2d(Float32Array.from({ length: B * D }, () => rng.normal()), [B, D]);
    const w = tf.variable(tf.tensor2d(Float32Array.from({ length: D * N }, () => rng.normal()), [D, N]));
    const labels = Int32Array.from({ length: B }, () => rng.int(0, N));
    const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), N);
    const ours = tf.variableGrads(() => softmaxCrossEntropy(tf.matMul(x, w), labels), [w]);
    const theirs = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(oneHot, tf.matMul(x, w)) as tf.Scalar, [w]);
    expect(Math.abs(ours.value.dataSync()[0] - theirs.value.dataSync()[0]) / theirs.value.dataSync()[0]).toBeLessThan(1e-5);
    expect(relErr(ours.grads[w.name].dataSync() as Float32Array, theirs.grads[w.name].dataSync() as Float32Array)).toBeLessThan(1e-5);
    // One-hot labels and 'sum' too (×B), and an upstream factor reaches the gradient.
    const sum = tf.grad((s: tf.Tensor) => tf.mul(softmaxCrossEntropy(s, oneHot, { reduction: 'sum' }), 3))(tf.matMul(x, w));
    const ref = tf.grad((s: tf.Tensor) => tf.mul(tf.losses.softmaxCrossEntropy(oneHot, s, undefined, undefined, tf.Reduction.SUM), 3))(tf.matMul(x, w));
    expect(relErr(sum.dataSync() as Float32Array, ref.dataSync() as Float32Array)).toBeLessThan(1e-5);
    tf.dispose([x, w, oneHot, ours.value, theirs.value, sum, ref, ...Object.values(ours.grads), ...Object.values(theirs.grads)]);
  });

  it('a tfjs-layers model trains with decoupledSoftmax (dense multi-hot targets)', async () => {
    const rng = makeRng(12);
    const [B, D, N] = [64, 16, 40];
    // Each row's features are the sum of its labels' random prototypes plus noise.
    const proto = Float32Array.from({ length: N * D }, () => rng.normal());
    const y = multiHot(13, B, N);
    const x = new Float32Array(B * D);
    for (let i = 0; i < B; i++)
      for (let j = 0; j < N; j++) if (y[i * N + j]) for (let d = 0; d < D; d++) x[i * D + d] += proto[j * D + d] + 0.1 * rng.normal();
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [D], units: N, kernelInitializer: tf.initializers.glorotNormal({ seed: 1 }) })] });
    model.compile({ optimizer: tf.train.adam(0.05), loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => decoupledSoftmax(yPred, yTrue) });
    const xs = tf.tensor2d(x, [B, D]);
    const ys = tf.tensor2d(y, [B, N]);
    const h = await model.fit(xs, ys, { epochs: 30, batchSize: 16, shuffle: false, verbose: 0 });
    const losses = h.history.loss as number[];
    expect(losses[losses.length - 1]).toBeLessThan(0.3 * losses[0]);
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it('no tensor leaks: numTensors is the same after every optimiser step, for every loss', () => {
    const rng = makeRng(14);
    const [B, D, N] = [9, 8, 33];
    const x = tf.tensor2d(Float32Array.from({ length: B * D }, () => rng.normal()), [B, D]);
    const w = tf.variable(tf.randomNormal([D, N], 0, 1, 'float32', 3));
    const hot = tf.tensor2d(multiHot(15, B, N), [B, N]);
    const labels = tf.tensor1d(Int32Array.from({ length: B }, () => rng.int(0, N)), 'int32');
    const opt = tf.train.adam(0.01);
    const losses = [
      () => softmaxCrossEntropy(tf.matMul(x, w), labels),
      () => multiLabelSoftmax(tf.matMul(x, w), hot),
      () => decoupledSoftmax(tf.matMul(x, w), hot, { scale: 2 }),
      () => binaryCrossEntropy(tf.matMul(x, w), hot),
    ];
    for (const loss of losses) {
      opt.minimize(loss); // the first step makes Adam's slots
      const before = tf.memory().numTensors;
      for (let step = 0; step < 5; step++) {
        const v = opt.minimize(loss, true)!;
        v.dispose();
        expect(tf.memory().numTensors).toBe(before);
      }
      const plain = tf.tidy(loss); // outside any gradient: one scalar, nothing else
      expect(tf.memory().numTensors).toBe(before + 1);
      plain.dispose();
    }
    tf.dispose([x, w, hot, labels]);
    opt.dispose();
  });
});

describe('bad arguments', () => {
  let s: tf.Tensor2D;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    s = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
  });
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(FusedLossError);
      return `${(e as FusedLossError).code}: ${(e as Error).message}`;
    }
    return 'no error';
  };
  it.each([
    ['scores as a Float32Array', () => softmaxCrossEntropy(new Float32Array(6) as never, new Int32Array(2)), /^ERR_TYPE: softmaxCrossEntropy\(\): scores: expected a tf.Tensor, received Float32Array\(6\)/],
    ['scores as a number', () => decoupledSoftmax(3 as never, { rowPtr: new Int32Array(3), cols: new Int32Array(0) }), /^ERR_TYPE: decoupledSoftmax\(\): scores: expected a tf.Tensor/],
    ['rank-1 scores', () => multiLabelSoftmax(tf.tensor1d([1, 2]), { rowPtr: new Int32Array(2), cols: new Int32Array(0) }), /^ERR_SHAPE: .*rank-2/],
    ['int32 scores', () => softmaxCrossEntropy(tf.tensor2d([1, 2], [1, 2], 'int32'), new Int32Array(1)), /^ERR_DTYPE/],
    ['labels as an array', () => softmaxCrossEntropy(s, [0, 1] as never), /^ERR_TYPE: softmaxCrossEntropy\(\): labels: expected an Int32Array or a tf.Tensor/],
    ['positives as a string', () => binaryCrossEntropy(s, 'x' as never), /^ERR_TYPE: binaryCrossEntropy\(\): positives/],
    ['positives of the wrong shape', () => binaryCrossEntropy(s, tf.zeros([3, 2])), /^ERR_SHAPE: binaryCrossEntropy\(\): positives: expected a tf.Tensor of shape \[2, 3\]/],
    ['a label out of range', () => softmaxCrossEntropy(s, new Int32Array([0, 3])), /^ERR_LABEL_RANGE: labels\[1\]/],
    ['a one-hot row with two ones', () => softmaxCrossEntropy(s, tf.tensor2d([1, 1, 0, 0, 0, 1], [2, 3])), /^ERR_ARG: softmaxCrossEntropy\(\): labels\[0\]/],
    ['opts.inplace', () => softmaxCrossEntropy(s, new Int32Array(2), { inplace: true } as never), /^ERR_ARG: softmaxCrossEntropy\(\): opts.inplace/],
    ["reduction 'none'", () => decoupledSoftmax(s, tf.ones([2, 3]), { reduction: 'none' as never }), /^ERR_ARG: decoupledSoftmax\(\): opts.reduction/],
    ['a disposed tensor', () => {
      const d = tf.zeros([2, 3]);
      d.dispose();
      return softmaxCrossEntropy(d, new Int32Array(2));
    }, /^ERR_DISPOSED/],
  ])('%s', (_, f, msg) => {
    expect(code(f)).toMatch(msg);
  });
});
