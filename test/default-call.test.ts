// The default call (no `out`, no `inplace`) in a synchronous loop that never yields, as most
// training loops are written: every call returns a new gradient, and the gradients it dropped
// must go back to the process (lib/outputs.ts, SYNC_OUTPUTS), so memory stays bounded; the
// gradients it keeps must never be reused under it.
import { describe, expect, it } from 'vitest';
import { fl } from './helpers';

const MiB = 2 ** 20;
const CALLS = 120;
const KEPT = 3;

/** Scores with a known gradient row sum (0 per row for softmax cross-entropy). */
function scores(rows: number, cols: number): fl.Tensor {
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 4;
  return fl.tensor(x, [rows, cols]);
}

describe('default call in a long synchronous loop', () => {
  // 32 MiB (glibc would mmap it afresh every call without the addon's malloc setting) and 40 MB.
  for (const [rows, cols] of [
    [256, 32768],
    [1, 10_000_003],
  ]) {
    it(`softmaxCrossEntropy ${rows}×${cols}: ${CALLS} calls stay within a memory bound, and kept gradients stay intact`, () => {
      const t = scores(rows, cols);
      const labels = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % cols);
      const gradBytes = rows * cols * 4;
      const kept: { grad: Float32Array; copy: Float32Array }[] = [];
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      for (let i = 0; i < CALLS; i++) {
        const r = fl.softmaxCrossEntropy(t, labels, { scale: 1 + (i % 5) * 0.25 });
        const grad = r.grad.data as Float32Array;
        // Hold a few gradients across later calls: their memory must not be handed out again.
        if (i % 40 === 0) kept.push({ grad, copy: grad.slice(0, 4096) });
        peak = Math.max(peak, process.memoryUsage().rss);
      }
      for (const { grad, copy } of kept) expect(grad.subarray(0, 4096)).toEqual(copy);
      const growth = (peak - rss0) / MiB;
      console.log(`softmaxCrossEntropy ${rows}×${cols}, ${CALLS} default calls (${(gradBytes / MiB).toFixed(1)} MiB gradient each): peak RSS ${(peak / MiB).toFixed(0)} MiB, ${growth.toFixed(0)} MiB over the start`);
      // Without collection it would grow by CALLS gradients (3.8–4.5 GiB). Bounded: the kept
      // ones, a few dead ones not yet scavenged, and the free memory malloc keeps for reuse (up
      // to its trim threshold, 256 MiB: napi/host_memory.h). Under AddressSanitizer freed memory
      // sits in quarantine, so RSS says nothing there.
      if (process.env.FUSEDLOSS_SANITIZED !== '1') expect(growth).toBeLessThan((KEPT + 4) * (gradBytes / MiB) + 256);
    });
  }
});
