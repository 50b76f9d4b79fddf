// A long loop over every op of test/ops-under-test.ts: sync calls, async calls (4 in flight at a
// time) and failing calls (every mutation of the op), 60,000 calls per op. After a 10,000-call
// warm-up, memory must stay flat over 50,000 calls: RSS within 8 MiB (a native leak of 170
// bytes per call would exceed it; V8 alone takes a step of up to ~5 MiB once in a while as it
// touches the young generation it committed), V8's used heap within 2 MiB, external memory
// within 1 MiB. LeakSanitizer over the same kind of loop finds leaks of any size
// (scripts/sanitize-addon.mjs, docs/RELIABILITY.md).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { fl } from './helpers';
import { makeLoop } from './leak/loop';
import { opsUnderTest } from './ops-under-test';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const WARMUP = 10_000;
const CHUNK = 10_000;
const CHUNKS = 5;
const MiB = 2 ** 20;

function settle() {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage();
}

describe('no leaks over long loops', () => {
  for (const op of opsUnderTest) {
    it(`${op.name}: ${WARMUP} + ${CHUNKS} × ${CHUNK} calls (sync, async, failing); RSS stays flat`, async () => {
      const loop = makeLoop(op);
      let failures = await loop(WARMUP);
      const before = settle();
      const samples = [before];
      const t0 = performance.now();
      for (let c = 0; c < CHUNKS; c++) {
        failures += await loop(CHUNK);
        samples.push(settle());
      }
      const seconds = (performance.now() - t0) / 1000;
      const after = samples[CHUNKS];
      const mib = (b: number) => (b / MiB).toFixed(1);
      const series = (f: (m: NodeJS.MemoryUsage) => number) => samples.map((m) => mib(f(m))).join(' → ');
      console.log(`${op.name}: ${CHUNKS * CHUNK} calls in ${seconds.toFixed(1)} s, every ${CHUNK} calls: RSS ${series((m) => m.rss)} MiB; V8 heap used ${series((m) => m.heapUsed)} MiB; external ${series((m) => m.external)} MiB`);
      expect(failures).toBe((2 * (WARMUP + CHUNKS * CHUNK)) / 10);
      // Under AddressSanitizer (scripts/sanitize-addon.mjs) freed memory sits in quarantine and
      // RSS grows by design; LeakSanitizer judges leaks there instead.
      if (process.env.FUSEDLOSS_SANITIZED !== '1') expect((after.rss - before.rss) / MiB).toBeLessThan(8);
      expect((after.heapUsed - before.heapUsed) / MiB).toBeLessThan(2);
      expect((after.external - before.external) / MiB).toBeLessThan(1);
    });
  }
});
