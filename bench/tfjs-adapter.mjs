// The tfjs adapter (fusedloss/tfjs) against the direct call it wraps and against tfjs's own
// loss: softmaxCrossEntropy loss + gradient at 256 × 32768 through tf.valueAndGrad, on the
// tfjs cpu and wasm backends. What the adapter adds to its kernel is reading the scores out of
// tfjs and handing the gradient back; the target is at most 2× the direct default call (a
// fresh gradient array per call, as the adapter's is). Timed in alternating rounds with the
// rest of bench/run.mjs.
import { makeRng } from '../scripts/lib/random.mjs';
import { randomLabels } from '../scripts/ops.mjs';

const B = 256;
const N = 32768;

export async function adapterBench({ fl, tf, flTf, timeInRounds, quick, log }) {
  const rng = makeRng(42);
  const x = Float32Array.from({ length: B * N }, () => 3 * (rng.u() * 2 - 1));
  const labels = randomLabels(rng, B, N);
  const rows = [];
  const before = tf.getBackend();
  for (const backend of ['cpu', 'wasm']) {
    await tf.setBackend(backend);
    await tf.ready();
    const logits = tf.tensor2d(x, [B, N]);
    const ids = tf.tensor1d(labels, 'int32');
    const oneHot = tf.oneHot(ids, N).toFloat();
    // The loss read back, the gradient left as the tensor an optimiser would use.
    const step = (loss) => {
      const valueAndGrad = tf.valueAndGrad(loss);
      return () => {
        const { value, grad } = valueAndGrad(logits);
        value.dataSync();
        value.dispose();
        grad.dispose();
      };
    };
    const fns = {
      direct: { fn: () => fl.softmaxCrossEntropy(fl.tensor(x, [B, N]), labels) },
      'adapter, class ids': { fn: step((l) => flTf.softmaxCrossEntropy(l, labels)) },
      'adapter, one-hot': { fn: step((l) => flTf.softmaxCrossEntropy(l, oneHot)) },
      // tfjs's own loss is ~5 s a call on the cpu backend: one call a round.
      'tfjs built-in': { fn: step((l) => tf.losses.softmaxCrossEntropy(oneHot, l)), minMs: 1, maxReps: 1 },
    };
    const tensorsBefore = tf.memory().numTensors;
    const t = timeInRounds(fns, { minMs: quick ? 150 : 600 });
    if (tf.memory().numTensors !== tensorsBefore) throw new Error(`tfjs adapter bench: ${tf.memory().numTensors - tensorsBefore} tensors leaked on ${backend}`);
    logits.dispose();
    ids.dispose();
    oneHot.dispose();
    const row = { backend, ...t };
    rows.push(row);
    log(`tfjs adapter (${backend}) ${B}x${N}: ` + Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(', ') +
      `; adapter/direct ${(t['adapter, class ids'] / t.direct).toFixed(2)}x`);
  }
  await tf.setBackend(before);
  return { shape: `${B}x${N}`, rows };
}

/** The BENCHMARKS.md section of {@link adapterBench}'s result. */
export function adapterSection({ shape, rows }) {
  const cols = Object.keys(rows[0]).filter((k) => k !== 'backend');
  return [
    `## TensorFlow.js adapter (fusedloss/tfjs), softmaxCrossEntropy ${shape.replace('x', ' × ')}`,
    '',
    'Loss + gradient through `tf.valueAndGrad`, with the loss and the gradient read back, against the',
    'direct call it wraps (`softmaxCrossEntropy(tensor(x), labels)`, a fresh gradient array per call)',
    "and tfjs's own `tf.losses.softmaxCrossEntropy` (one-hot targets). Milliseconds per call, median.",
    '',
    `| tfjs backend | ${cols.join(' | ')} | adapter (class ids) / direct |`,
    `|---|${cols.map(() => '---:').join('|')}|---:|`,
    ...rows.map((r) => `| ${r.backend} | ${cols.map((c) => r[c].toFixed(1)).join(' | ')} | ${(r['adapter, class ids'] / r.direct).toFixed(2)}× |`),
    '',
  ];
}
