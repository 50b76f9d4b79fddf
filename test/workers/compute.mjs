// Runs every op of scripts/ops.mjs (the package's op registry) on its cases up to a size limit,
// on the CPU, with the same seeds as scripts/backend-ops.mjs. Shared by the main thread and the
// workers of test/workers.test.ts, which compare their results bit for bit.
import { ops } from '../../scripts/ops.mjs';
import { makeRng } from '../../scripts/lib/random.mjs';

/** At most this many elements per case: keeps 4 workers + the main thread at a few seconds. */
export const MAX_ELEMENTS = 2_100_000;

/** [{ label, out: { key: Float32Array | number } }] for every op and case. */
export function computeAll(fl) {
  const results = [];
  for (const op of ops)
    op.cases.forEach((c, i) => {
      if (c.rows * c.cols > MAX_ELEMENTS) return;
      const inputs = op.make(fl, makeRng(1000 + i), c);
      results.push({ label: `${op.name} #${i} ${c.rows}x${c.cols} ${c.dtype ?? 'float32'}`, out: op.run(fl, inputs, 'cpu') });
    });
  return results;
}
