/**
 * fusedloss/tfjs: the losses as tfjs functions with a custom gradient, on the cpu and wasm
 * backends. Cross-entropy against tf.losses.softmaxCrossEntropy on one model, a tfjs-layers
 * model trained with decoupledSoftmax, tensor counts across steps, and bad arguments.
 */
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FusedLossError } from '../lib/errors';
import * as core from '../lib/index';
import { binaryCrossEntropy, decoupledContrastive, decoupledSoftmax, infoNCE, multiLabelSoftmax, softmaxCrossEntropy, softTopKLoss } from '../lib/tfjs';
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

  it('dense targets (with weights) give the loss and gradient of the same call on CSR positives', () => {
    const rng = makeRng(16);
    const [B, N] = [5, 41];
    const S = Float32Array.from({ length: B * N }, () => rng.normal());
    const y = multiHot(17, B, N).map((v) => (v ? 0.5 + rng.uniform() : 0));
    const rowPtr = new Int32Array(B + 1);
    const cols: number[] = [];
    const weights: number[] = [];
    for (let i = 0; i < B; i++) {
      for (let j = 0; j < N; j++) if (y[i * N + j]) (cols.push(j), weights.push(y[i * N + j]));
      rowPtr[i + 1] = cols.length;
    }
    const csr = { rowPtr, cols: Int32Array.from(cols), weights: Float32Array.from(weights) };
    const scores = tf.tensor2d(S, [B, N]);
    const targets = tf.tensor2d(y, [B, N]);
    for (const [name, adapted] of [['multiLabelSoftmax', multiLabelSoftmax], ['decoupledSoftmax', decoupledSoftmax], ['binaryCrossEntropy', binaryCrossEntropy]] as const) {
      const want = core[name](core.tensor(S, [B, N]), csr, { scale: 1.5 });
      const { value, grad } = tf.valueAndGrad((s: tf.Tensor) => adapted(s, targets, { scale: 1.5 }))(scores);
      expect(value.dataSync()[0], name).toBe(Math.fround(want.loss)); // a tf.Scalar is float32
      expect(Array.from(grad.dataSync()), name).toEqual(Array.from(want.grad!.data));
      tf.dispose([value, grad]);
    }
    tf.dispose([scores, targets]);
  });

  it('symmetric infoNCE matches CLIP written in tfjs ((CE(S) + CE(Sᵀ))/2 on the diagonal), value and gradient', () => {
    const rng = makeRng(18);
    const B = 9;
    const S = tf.tensor2d(Float32Array.from({ length: B * B }, () => rng.normal()), [B, B]);
    const eye = tf.eye(B);
    const ours = tf.valueAndGrad((s: tf.Tensor) => infoNCE(s, { symmetric: true, scale: 2 }))(S);
    const ref = tf.valueAndGrad((s: tf.Tensor) => {
      const z = tf.mul(s, 2);
      return tf.div(tf.add(tf.losses.softmaxCrossEntropy(eye, z), tf.losses.softmaxCrossEntropy(eye, tf.transpose(z))), 2) as tf.Scalar;
    })(S);
    expect(Math.abs(ours.value.dataSync()[0] - ref.value.dataSync()[0]) / ref.value.dataSync()[0]).toBeLessThan(1e-5);
    expect(relErr(ours.grad.dataSync() as Float32Array, ref.grad.dataSync() as Float32Array)).toBeLessThan(1e-5);
    const dcl = tf.valueAndGrad((s: tf.Tensor) => decoupledContrastive(s))(S);
    expect(Number.isFinite(dcl.value.dataSync()[0])).toBe(true);
    tf.dispose([S, eye, ours.value, ours.grad, ref.value, ref.grad, dcl.value, dcl.grad]);
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

  it('the training-loop form: optimizer.minimize with class ids (no B×N one-hot) trains a classifier', () => {
    // model.fit rejects class-id targets for a custom loss (tfjs-layers checks them against the
    // output's shape), so the README shows this loop instead.
    const rng = makeRng(21);
    const [B, D, H, C] = [128, 20, 32, 50];
    const proto = Float32Array.from({ length: C * D }, () => rng.normal());
    const ids = Int32Array.from({ length: B }, () => rng.int(0, C));
    const x = Float32Array.from({ length: B * D }, (_, k) => proto[ids[Math.floor(k / D)] * D + (k % D)] + 0.3 * rng.normal());
    const model = tf.sequential({
      layers: [
        tf.layers.dense({ inputShape: [D], units: H, activation: 'relu', kernelInitializer: tf.initializers.glorotNormal({ seed: 2 }) }),
        tf.layers.dense({ units: C, kernelInitializer: tf.initializers.glorotNormal({ seed: 3 }) }),
      ],
    });
    const xs = tf.tensor2d(x, [B, D]);
    const labels = tf.tensor1d(ids, 'int32');
    const optimizer = tf.train.adam(0.02);
    const step = () => optimizer.minimize(() => softmaxCrossEntropy(model.apply(xs) as tf.Tensor2D, labels), true) as tf.Scalar;
    const lossOf = (v: tf.Scalar) => {
      const l = v.dataSync()[0];
      v.dispose();
      return l;
    };
    const first = lossOf(step()); // the first step makes Adam's slots
    const before = tf.memory().numTensors;
    let last = first;
    for (let i = 0; i < 60; i++) {
      last = lossOf(step());
      expect(tf.memory().numTensors).toBe(before);
    }
    expect(last).toBeLessThan(0.1 * first);
    const accuracy = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(model.predict(xs) as tf.Tensor, 1), labels), 'float32')).dataSync()[0]);
    expect(accuracy).toBeGreaterThan(0.95);
    tf.dispose([xs, labels]);
    optimizer.dispose();
    model.dispose();
  });

  it('an upstream gradient other than 1 scales the gradient; outside a gradient computation only the loss is computed', () => {
    const rng = makeRng(22);
    const [B, N] = [6, 40];
    const x = tf.tensor2d(Float32Array.from({ length: B * N }, () => rng.normal()), [B, N]);
    const y = Int32Array.from({ length: B }, () => rng.int(0, N));
    const want = core.softmaxCrossEntropy(Float32Array.from(x.dataSync()), y, { shape: [B, N] });
    const scaled = tf.valueAndGrad((s: tf.Tensor) => tf.mul(softmaxCrossEntropy(s as tf.Tensor2D, y), 0.25))(x);
    expect(scaled.value.dataSync()[0]).toBeCloseTo(0.25 * want.loss, 6);
    const got = scaled.grad.dataSync();
    want.grad.data.forEach((g, k) => expect(got[k]).toBeCloseTo(0.25 * g, 7));
    const plain = softmaxCrossEntropy(x, y);
    expect(plain.dataSync()[0]).toBeCloseTo(want.loss, 6);
    tf.dispose([x, scaled.value, scaled.grad, plain]);
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
      () => softTopKLoss(tf.matMul(x, w), hot, { k: 3 }),
      () => infoNCE(tf.matMul(x, w), { positives: hot }),
      () => decoupledContrastive(tf.matMul(x, w)),
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

describe('without @tensorflow/tfjs installed', () => {
  it('importing fusedloss/tfjs says it is an optional peer dependency and how to install it', () => {
    // A child process in which @tensorflow/tfjs cannot be resolved, as in a project without it.
    const script = `
      const Module = require('node:module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request === '@tensorflow/tfjs') throw Object.assign(new Error("Cannot find module '@tensorflow/tfjs'"), { code: 'MODULE_NOT_FOUND' });
        return resolve.call(this, request, ...rest);
      };
      try { require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'tfjs.js'))}); console.log('loaded'); }
      catch (e) { console.log(e.name + ' [' + e.code + ']: ' + e.message); }`;
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim();
    expect(out).toMatch(/^NativeError \[ERR_PEER_MISSING\]: fusedloss\/tfjs: expected the package @tensorflow\/tfjs \(an optional peer dependency/);
    expect(out).toContain('npm install @tensorflow/tfjs');
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
