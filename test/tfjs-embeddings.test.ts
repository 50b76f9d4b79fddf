/**
 * fusedloss/tfjs, the forms from embeddings: linearCrossEntropy and every <loss>FromEmbeddings
 * as tfjs ops with gradients for both factors (and the bias, and a tensor scale), against the
 * same computation unfused in tfjs (tf.matMul, then the loss written with tf ops, or this
 * package's matrix-form adapter where tfjs has no such loss); small models trained through
 * them; tensor counts; bad arguments. On the cpu and wasm backends.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FusedLossError } from '../lib/errors';
import {
  binaryCrossEntropyFromEmbeddings,
  decoupledContrastiveFromEmbeddings,
  decoupledSoftmaxFromEmbeddings,
  infoNCEFromEmbeddings,
  linearCrossEntropy,
  multiLabelSoftmaxFromEmbeddings,
  softTopKLoss,
  softTopKLossFromEmbeddings,
} from '../lib/tfjs';
import { makeRng, type Rng } from './reference/rng';

const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
};
const normal = (rng: Rng, n: number, sd = 1) => Float32Array.from({ length: n }, () => sd * rng.normal());

/** 1–3 positives per row, as a dense B×N 0/1 array. */
function multiHot(rng: Rng, B: number, N: number): Float32Array {
  const y = new Float32Array(B * N);
  for (let i = 0; i < B; i++) for (let k = 0, n = 1 + rng.int(0, 3); k < n; k++) y[i * N + rng.int(0, N)] = 1;
  return y;
}

/** The rows scaled to unit length, as F.normalize (the eps never matters here). */
const unit = (x: tf.Tensor) => tf.div(x, tf.norm(x, 2, 1, true));
/** log Σ exp over each row's entries where `out` is false. */
const lseOver = (z: tf.Tensor, out: tf.Tensor) => tf.logSumExp(tf.where(out, tf.fill(z.shape, -Infinity), z), 1);
/** log σ(x) = −softplus(−x): tf.logSigmoid's own gradient reads a tensor its tidy has disposed (tfjs 4.22). */
const logSigmoid = (x: tf.Tensor) => tf.neg(tf.softplus(tf.neg(x)));
const cosine = (q: tf.Tensor, k: tf.Tensor, normalize: boolean) => (normalize ? tf.matMul(unit(q), unit(k), false, true) : tf.matMul(q, k, false, true));

/** Value and gradients of f at xs, read out and the tensors disposed. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Scalar, xs: tf.Tensor[]) {
  const { value, grads } = tf.valueAndGrads(f as (...a: tf.Tensor[]) => tf.Tensor)(xs);
  const out = { value: value.dataSync()[0], grads: grads.map((g) => Float32Array.from(g.dataSync())) };
  tf.dispose([value, ...grads]);
  return out;
}

function expectSame(ours: ReturnType<typeof valueAndGrads>, theirs: ReturnType<typeof valueAndGrads>, what: string, tol = 1e-5) {
  expect(Math.abs(ours.value - theirs.value) / Math.abs(theirs.value), `${what}: loss ${ours.value} vs ${theirs.value}`).toBeLessThan(tol);
  ours.grads.forEach((g, i) => expect(relErr(g, theirs.grads[i]), `${what}: gradient ${i}`).toBeLessThan(tol));
}

describe.each(['cpu', 'wasm'])('on the tfjs %s backend', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    await tf.ready();
  });
  afterAll(() => tf.disposeVariables());

  it('linearCrossEntropy: loss and gradients for hidden, weight, bias and a tensor scale equal tf.matMul + tf.losses.softmaxCrossEntropy', () => {
    const rng = makeRng(41);
    const [B, D, N] = [7, 13, 97];
    const h = tf.tensor2d(normal(rng, B * D), [B, D]);
    const w = tf.tensor2d(normal(rng, N * D, 0.5), [N, D]);
    const b = tf.tensor1d(normal(rng, N));
    const scale = tf.scalar(1.3);
    const ids = Int32Array.from({ length: B }, () => rng.int(0, N));
    const oneHot = tf.oneHot(tf.tensor1d(ids, 'int32'), N);
    const ours = valueAndGrads((x, y, c, s) => linearCrossEntropy(x, y, ids, { bias: c, scale: s }), [h, w, b, scale]);
    const theirs = valueAndGrads((x, y, c, s) => tf.losses.softmaxCrossEntropy(oneHot, tf.mul(tf.add(tf.matMul(x, y, false, true), c), s)) as tf.Scalar, [h, w, b, scale]);
    expectSame(ours, theirs, 'mean');
    // 'sum', one-hot labels, no bias, and an upstream factor of 3 (dy ≠ 1 scales every gradient).
    const sum = valueAndGrads((x, y) => tf.mul(linearCrossEntropy(x, y, oneHot, { reduction: 'sum' }), 3), [h, w]);
    const ref = valueAndGrads((x, y) => tf.mul(tf.losses.softmaxCrossEntropy(oneHot, tf.matMul(x, y, false, true), undefined, undefined, tf.Reduction.SUM), 3), [h, w]);
    expectSame(sum, ref, 'sum ×3');
    // Outside a gradient computation only the loss is computed: one scalar, nothing else.
    const before = tf.memory().numTensors;
    const plain = linearCrossEntropy(h, w, ids, { bias: b, scale: 1.3 });
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(Math.abs(plain.dataSync()[0] - theirs.value) / theirs.value).toBeLessThan(2e-5);
    tf.dispose([h, w, b, scale, oneHot, plain]);
  });

  it('every <loss>FromEmbeddings: loss and gradients for queries, keys and a tensor scale equal the unfused tfjs computation, normalised and not', () => {
    const rng = makeRng(42);
    const [B, D, N] = [9, 11, 37];
    const q = tf.tensor2d(normal(rng, B * D), [B, D]);
    const k = tf.tensor2d(normal(rng, N * D), [N, D]);
    const kSq = tf.tensor2d(normal(rng, B * D), [B, D]); // square S, for CLIP
    const hot = multiHot(rng, B, N);
    const y = tf.tensor2d(hot, [B, N]);
    const isPos = tf.cast(y, 'bool');
    const n = tf.sum(y, 1);
    const eye = tf.cast(tf.eye(B, N), 'bool');
    const ids = tf.range(0, B, 1, 'int32');
    const diagOf = (z: tf.Tensor) => tf.sum(tf.mul(z, tf.eye(B, N)), 1);
    for (const normalize of [false, true]) {
      const sc = tf.scalar(normalize ? 8 : 0.7);
      const cases: [string, (a: tf.Tensor, b: tf.Tensor, s: tf.Tensor) => tf.Scalar, (a: tf.Tensor, b: tf.Tensor, s: tf.Tensor) => tf.Scalar, tf.Tensor?][] = [
        [
          'decoupledSoftmax',
          (a, b, s) => decoupledSoftmaxFromEmbeddings(a, b, y, { normalize, scale: s }),
          (a, b, s) => {
            const z = tf.mul(cosine(a, b, normalize), s);
            const zNeg = tf.reshape(lseOver(z, isPos), [B, 1]);
            return tf.mean(tf.div(tf.neg(tf.sum(tf.mul(logSigmoid(tf.sub(z, zNeg)), y), 1)), n));
          },
        ],
        [
          'multiLabelSoftmax',
          (a, b, s) => multiLabelSoftmaxFromEmbeddings(a, b, y, { normalize, scale: s }),
          (a, b, s) => tf.mean(tf.neg(tf.sum(tf.mul(tf.logSoftmax(tf.mul(cosine(a, b, normalize), s)), y), 1))),
        ],
        ['binaryCrossEntropy', (a, b, s) => binaryCrossEntropyFromEmbeddings(a, b, y, { normalize, scale: s }), (a, b, s) => tf.losses.sigmoidCrossEntropy(y, tf.mul(cosine(a, b, normalize), s)) as tf.Scalar],
        ['infoNCE (diagonal)', (a, b, s) => infoNCEFromEmbeddings(a, b, { normalize, scale: s }), (a, b, s) => tf.losses.softmaxCrossEntropy(tf.oneHot(ids, N), tf.mul(cosine(a, b, normalize), s)) as tf.Scalar],
        [
          'infoNCE (dense positives)',
          (a, b, s) => infoNCEFromEmbeddings(a, b, { normalize, scale: s, positives: y }),
          (a, b, s) => tf.mean(tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(tf.mul(cosine(a, b, normalize), s)), y), 1)), n)),
        ],
        [
          'infoNCE symmetric (CLIP)',
          (a, b, s) => infoNCEFromEmbeddings(a, b, { normalize, scale: s, symmetric: true }),
          (a, b, s) => {
            const z = tf.mul(cosine(a, b, normalize), s);
            const t = tf.oneHot(ids, B);
            return tf.div(tf.add(tf.losses.softmaxCrossEntropy(t, z), tf.losses.softmaxCrossEntropy(t, tf.transpose(z))), 2) as tf.Scalar;
          },
          kSq,
        ],
        [
          'decoupledContrastive',
          (a, b, s) => decoupledContrastiveFromEmbeddings(a, b, { normalize, scale: s }),
          (a, b, s) => {
            const z = tf.mul(cosine(a, b, normalize), s);
            return tf.mean(tf.sub(lseOver(z, eye), diagOf(z)));
          },
        ],
        [
          'softTopKLoss (against tf.matMul + the matrix-form adapter)',
          (a, b, s) => softTopKLossFromEmbeddings(a, b, y, { normalize, scale: s, k: 4 }),
          (a, b, s) => softTopKLoss(tf.mul(cosine(a, b, normalize), s), y, { k: 4 }),
        ],
      ];
      for (const [name, fused, unfused, keys] of cases) {
        const kk = keys ?? k;
        expectSame(valueAndGrads(fused, [q, kk, sc]), valueAndGrads(unfused, [q, kk, sc]), `${name}${normalize ? ', normalised' : ''}`);
      }
      sc.dispose();
    }
    tf.dispose([q, k, kSq, y, isPos, n, eye, ids]);
  });

  it('<loss>FromEmbeddings with a bias tensor: its gradient equals the unfused tfjs computation on (S + b)·scale', () => {
    const rng = makeRng(43);
    const [B, D, N] = [6, 7, 29];
    const q = tf.tensor2d(normal(rng, B * D), [B, D]);
    const k = tf.tensor2d(normal(rng, N * D), [N, D]);
    const kSq = tf.tensor2d(normal(rng, B * D), [B, D]);
    const b = tf.tensor1d(normal(rng, N));
    const bSq = tf.tensor1d(normal(rng, B));
    const y = tf.tensor2d(multiHot(rng, B, N), [B, N]);
    const sc = tf.scalar(3);
    const ids = tf.range(0, B, 1, 'int32');
    for (const normalize of [false, true]) {
      const z = (a: tf.Tensor, kk: tf.Tensor, c: tf.Tensor, s: tf.Tensor) => tf.mul(tf.add(cosine(a, kk, normalize), c), s);
      expectSame(
        valueAndGrads((a, kk, c, s) => multiLabelSoftmaxFromEmbeddings(a, kk, y, { normalize, bias: c, scale: s }), [q, k, b, sc]),
        valueAndGrads((a, kk, c, s) => tf.mean(tf.neg(tf.sum(tf.mul(tf.logSoftmax(z(a, kk, c, s)), y), 1))), [q, k, b, sc]),
        `multiLabelSoftmax with bias${normalize ? ', normalised' : ''}`,
      );
      expectSame(
        valueAndGrads((a, kk, c, s) => infoNCEFromEmbeddings(a, kk, { normalize, bias: c, scale: s, symmetric: true }), [q, kSq, bSq, sc]),
        valueAndGrads((a, kk, c, s) => {
          const zz = z(a, kk, c, s);
          const t = tf.oneHot(ids, B);
          return tf.div(tf.add(tf.losses.softmaxCrossEntropy(t, zz), tf.losses.softmaxCrossEntropy(t, tf.transpose(zz))), 2) as tf.Scalar;
        }, [q, kSq, bSq, sc]),
        `symmetric infoNCE with bias${normalize ? ', normalised' : ''}`,
      );
    }
    tf.dispose([q, k, kSq, b, bSq, y, sc, ids]);
  });

  it("a model's last Dense kernel and its cross-entropy as one fused op: a classifier trains, with no tensor left behind, and its gradients are tfjs's", () => {
    const rng = makeRng(43);
    const [B, F, H, C] = [128, 20, 32, 50];
    // Separable: each class a random prototype, each example its class's prototype plus noise.
    const proto = normal(rng, C * F);
    const ids = Int32Array.from({ length: B }, () => rng.int(0, C));
    const x = Float32Array.from({ length: B * F }, (_, k) => proto[ids[Math.floor(k / F)] * F + (k % F)] + 0.3 * rng.normal());
    const encoder = tf.sequential({ layers: [tf.layers.dense({ inputShape: [F], units: H, activation: 'relu', kernelInitializer: tf.initializers.glorotNormal({ seed: 4 }) })] });
    const head = tf.layers.dense({ units: C, kernelInitializer: tf.initializers.glorotNormal({ seed: 5 }) });
    const model = tf.sequential({ layers: [encoder, head] }); // for prediction: encoder, then head
    const xs = tf.tensor2d(x, [B, F]);
    const labels = tf.tensor1d(ids, 'int32');
    // The head's kernel is [H, C] (tfjs layout); the fused op takes the weight as [C, H].
    const [kernel, bias] = head.trainableWeights.map((v) => v.read());
    const fusedLoss = () => linearCrossEntropy(encoder.apply(xs) as tf.Tensor2D, tf.transpose(kernel), labels, { bias });
    const unfusedLoss = () => tf.losses.softmaxCrossEntropy(tf.oneHot(labels, C), model.apply(xs) as tf.Tensor) as tf.Scalar;
    const vars = [...encoder.trainableWeights, ...head.trainableWeights].map((v) => v.read() as tf.Variable);
    const ours = tf.variableGrads(fusedLoss, vars);
    const theirs = tf.variableGrads(unfusedLoss, vars);
    expect(Math.abs(ours.value.dataSync()[0] - theirs.value.dataSync()[0]) / theirs.value.dataSync()[0]).toBeLessThan(1e-5);
    for (const v of vars) expect(relErr(ours.grads[v.name].dataSync(), theirs.grads[v.name].dataSync()), v.name).toBeLessThan(1e-5);
    tf.dispose([ours.value, theirs.value, ...Object.values(ours.grads), ...Object.values(theirs.grads)]);

    const optimizer = tf.train.adam(0.02);
    const step = () => {
      const v = optimizer.minimize(fusedLoss, true, vars) as tf.Scalar;
      const l = v.dataSync()[0];
      v.dispose();
      return l;
    };
    const first = step(); // makes Adam's slots
    const before = tf.memory().numTensors;
    let last = first;
    for (let i = 0; i < 60; i++) {
      last = step();
      expect(tf.memory().numTensors).toBe(before);
    }
    expect(last).toBeLessThan(0.1 * first);
    const accuracy = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(model.predict(xs) as tf.Tensor, 1), labels), 'float32')).dataSync()[0]);
    expect(accuracy).toBeGreaterThan(0.95);
    tf.dispose([xs, labels]);
    optimizer.dispose();
    model.dispose();
  });

  it('a two-tower retrieval model trains through decoupledSoftmaxFromEmbeddings (normalised) and infoNCE with a learnt temperature', () => {
    const rng = makeRng(44);
    const [B, F, D, N] = [96, 24, 16, 60];
    // Each example's features: the sum of its labels' prototypes plus noise.
    const proto = normal(rng, N * F);
    const hot = multiHot(rng, B, N);
    const x = new Float32Array(B * F);
    for (let i = 0; i < B; i++) for (let j = 0; j < N; j++) if (hot[i * N + j]) for (let f = 0; f < F; f++) x[i * F + f] += proto[j * F + f] + 0.1 * rng.normal();
    const xs = tf.tensor2d(x, [B, F]);
    const y = tf.tensor2d(hot, [B, N]);
    const encoder = tf.sequential({ layers: [tf.layers.dense({ inputShape: [F], units: D, kernelInitializer: tf.initializers.glorotNormal({ seed: 6 }) })] });
    const labelEmb = tf.variable(tf.randomNormal([N, D], 0, 1, 'float32', 7));
    const logScale = tf.variable(tf.scalar(Math.log(5)));
    const vars = [...encoder.trainableWeights.map((v) => v.read() as tf.Variable), labelEmb, logScale];
    for (const [name, loss] of [
      ['decoupledSoftmax', () => decoupledSoftmaxFromEmbeddings(encoder.apply(xs) as tf.Tensor, labelEmb, y, { normalize: true, scale: 10 })],
      ['infoNCE', () => infoNCEFromEmbeddings(encoder.apply(xs) as tf.Tensor, labelEmb, { normalize: true, scale: tf.exp(logScale), positives: y })],
    ] as const) {
      const optimizer = tf.train.adam(0.05);
      const step = () => {
        const v = optimizer.minimize(loss, true, vars) as tf.Scalar;
        const l = v.dataSync()[0];
        v.dispose();
        return l;
      };
      const first = step();
      const before = tf.memory().numTensors;
      let last = first;
      for (let i = 0; i < 40; i++) {
        last = step();
        expect(tf.memory().numTensors, name).toBe(before);
      }
      expect(last, name).toBeLessThan(0.5 * first);
      optimizer.dispose();
    }
    expect(logScale.dataSync()[0]).not.toBe(Math.fround(Math.log(5))); // the temperature was learnt
    // P@1: the top-scored label of each example is one of its positives.
    const top = tf.tidy(() => tf.argMax(tf.matMul(unit(encoder.apply(xs) as tf.Tensor), unit(labelEmb), false, true), 1).dataSync());
    let hits = 0;
    for (let i = 0; i < B; i++) hits += hot[i * N + top[i]];
    expect(hits / B).toBeGreaterThan(0.9);
    tf.dispose([xs, y]);
    encoder.dispose();
  });
});

describe('bad arguments (forms from embeddings)', () => {
  let q: tf.Tensor2D;
  let k: tf.Tensor2D;
  const pos = { rowPtr: Int32Array.from([0, 1, 2]), cols: Int32Array.from([0, 1]) };
  beforeAll(async () => {
    await tf.setBackend('cpu');
    q = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    k = tf.tensor2d([1, 0, 0, 0, 1, 0, 0, 0, 1], [3, 3]);
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
    ['queries as a Float32Array', () => decoupledSoftmaxFromEmbeddings(new Float32Array(6) as never, k, pos), /^ERR_TYPE: decoupledSoftmaxFromEmbeddings\(\): queries: expected a tf.Tensor/],
    ['rank-1 keys', () => infoNCEFromEmbeddings(q, tf.tensor1d([1, 2, 3])), /^ERR_SHAPE: infoNCEFromEmbeddings\(\): keys: expected a rank-2 tf.Tensor \[N, D\]/],
    ['int32 weight', () => linearCrossEntropy(q, tf.tensor2d([1, 2, 3], [1, 3], 'int32'), new Int32Array(2)), /^ERR_DTYPE: linearCrossEntropy\(\): weight/],
    ["keys of another D", () => multiLabelSoftmaxFromEmbeddings(q, tf.zeros([3, 2]), pos), /^ERR_SHAPE: keys\.shape/],
    ['a disposed weight', () => {
      const w = tf.zeros([3, 3]);
      w.dispose();
      return linearCrossEntropy(q, w, new Int32Array(2));
    }, /^ERR_DISPOSED: linearCrossEntropy\(\): weight/],
    ['bias as a Float32Array', () => linearCrossEntropy(q, k, new Int32Array(2), { bias: new Float32Array(3) as never }), /^ERR_TYPE: linearCrossEntropy\(\): opts.bias: expected a tf.Tensor/],
    ['bias of the wrong length', () => linearCrossEntropy(q, k, new Int32Array(2), { bias: tf.zeros([4]) }), /^ERR_(SHAPE|ARG): .*opts\.bias/],
    ['a scale tensor of two elements', () => infoNCEFromEmbeddings(q, k, { scale: tf.tensor1d([1, 2]) }), /^ERR_SHAPE: infoNCEFromEmbeddings\(\): opts.scale: expected a number or a float32 tf.Tensor of one element/],
    ['opts.gradKeys', () => binaryCrossEntropyFromEmbeddings(q, k, pos, { gradKeys: 1 } as never), /^ERR_ARG: binaryCrossEntropyFromEmbeddings\(\): opts.gradKeys: expected no value/],
    ['opts.accumulate', () => linearCrossEntropy(q, k, new Int32Array(2), { accumulate: true } as never), /^ERR_ARG: linearCrossEntropy\(\): opts.accumulate/],
    ["reduction 'none'", () => decoupledContrastiveFromEmbeddings(q, k, { reduction: 'none' as never }), /^ERR_ARG: decoupledContrastiveFromEmbeddings\(\): opts.reduction/],
    ['an unknown option', () => decoupledSoftmaxFromEmbeddings(q, k, pos, { normalise: true } as never), /^ERR_ARG: .*unknown option 'normalise'; did you mean 'normalize'\?/],
    ['positives of the wrong shape', () => softTopKLossFromEmbeddings(q, k, tf.zeros([3, 3])), /^ERR_SHAPE: softTopKLossFromEmbeddings\(\): positives: expected a tf.Tensor of shape \[2, 3\]/],
  ])('%s', (_, f, msg) => {
    expect(code(f)).toMatch(msg);
  });
});
