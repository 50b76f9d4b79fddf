// The call loop of the leak checks: test/leak.test.ts (RSS) and test/leak/lsan-main.ts
// (LeakSanitizer) run it over every op of test/ops-under-test.ts.
import { fl } from '../helpers';
import type { OpUnderTest } from '../ops-under-test';

/**
 * Makes `calls` calls of `op`, per 10: 4 sync, 4 async at once, 2 failing (one sync, one
 * async, cycling through every mutation of the op). Returns the number of failing calls that
 * threw a FusedLossError, as they all must.
 */
export function makeLoop(op: OpUnderTest<unknown, unknown>): (calls: number) => Promise<number> {
  const inputs = op.small();
  const broken = op.mutations.map((m) => m.apply(op.small()));
  let k = 0;
  return async (calls) => {
    let failures = 0;
    for (let n = 0; n < calls; n += 10, k++) {
      for (let j = 0; j < 4; j++) op.sync(inputs);
      await Promise.all([0, 1, 2, 3].map(() => op.async(inputs)));
      const bad = broken[k % broken.length];
      try {
        op.sync(bad);
      } catch (e) {
        if (e instanceof fl.FusedLossError) failures++;
      }
      await op.async(bad).catch((e) => {
        if (e instanceof fl.FusedLossError) failures++;
      });
    }
    return failures;
  };
}
