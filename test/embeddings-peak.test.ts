/**
 * Peak memory of the losses from embeddings where the B×N score matrix would take ≥ 1 GB: each
 * call runs in a child process of its own (test/workers/embeddings-peak.mjs), which resets its
 * peak RSS (VmHWM) just before the call, with its inputs and gradient buffers already resident,
 * so the peak over the RSS before is what the call itself held. It must stay within
 * memoryBudget plus the outputs the call makes (B row losses) and a little allocator slack;
 * S alone would be 1 GB or more. One call per distinct memory plan: linearCrossEntropy's column tiles,
 * the row-chunk driver at DEXML's shape (with the key norms of `normalize`), soft top-k's
 * whole-row threshold search, DCLW's weights over all rows, and symmetric InfoNCE's column
 * statistics sweep.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const canTrackPeak = (() => {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
})();

const MiB = 2 ** 20;
/** Allocator and V8 slack beyond the budget and the outputs (the calls here measured 0.5–1.5 MiB). */
const SLACK = 8 * MiB;

// Under the ASan addon (npm run test:sanitize) RSS holds ASan's quarantine of freed blocks and its
// shadow memory, hundreds of MiB that say nothing about the op's scratch: measured on the plain addon only.
const sanitized = process.env.FUSEDLOSS_SANITIZED === '1';

describe.skipIf(!canTrackPeak || sanitized)('peak memory where S would take ≥ 1 GB (child processes, Linux)', () => {
  it.each([
    ['linearCrossEntropy', 256, 1_000_000, 16 * MiB],
    ['decoupledSoftmax', 256, 1_000_000, 64 * MiB],
    ['softTopKLoss', 4096, 65_536, 16 * MiB],
    ['decoupledContrastive', 4096, 65_536, 16 * MiB],
    ['infoNCESymmetric', 16_384, 16_384, 16 * MiB],
  ] as const)('%s at B=%i, N=%i stays within memoryBudget %i bytes plus its outputs', (op, B, N, budget) => {
    expect(B * N * 4).toBeGreaterThanOrEqual(1e9); // S in fp32: ≥ 1 GB
    const out = execFileSync(process.execPath, [path.join(__dirname, 'workers', 'embeddings-peak.mjs'), op, String(B), String(N), String(budget)], { encoding: 'utf8' });
    const r = JSON.parse(out) as { peakExtra: number; ms: number; loss: number };
    expect(Number.isFinite(r.loss)).toBe(true);
    const outputs = 4 * B; // rowLoss; the gradients go into buffers given before the call
    expect(r.peakExtra, `peak ${(r.peakExtra / MiB).toFixed(1)} MiB beyond the inputs, budget ${budget / MiB} MiB, ${r.ms.toFixed(0)} ms`).toBeLessThanOrEqual(budget + outputs + SLACK);
  });
});
