// The LeakSanitizer run (scripts/sanitize-addon.mjs runs it with vite-node on the ASan build of
// the addon): `calls` calls of every op of test/ops-under-test.ts (sync, async, failing), then
// two worker_threads that load their own addon instance, compute every registered op and exit
// (the instance's teardown: thread pool, device counter). The process then exits normally, so
// LeakSanitizer's at-exit check runs (a vitest fork is killed instead, which skips it).
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { fl } from '../helpers';
import { opsUnderTest } from '../ops-under-test';
import { makeLoop } from './loop';

const calls = Number(process.argv[2] ?? 12_000);
let bad = 0;
for (const op of opsUnderTest) {
  const t0 = performance.now();
  const failures = await makeLoop(op)(calls);
  console.log(`${op.name}: ${calls} calls (${failures} failing ones, as meant) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (failures !== calls / 5) bad++;
}
const script = path.join(__dirname, '..', 'workers', 'ops-worker.mjs');
const exits = [0, 1].map(
  () =>
    new Promise<number>((resolve, reject) => {
      const w = new Worker(script, { workerData: {} });
      w.on('error', reject);
      w.on('exit', resolve);
    }),
);
const codes = await Promise.all(exits);
console.log(`2 workers computed every registered op and exited with ${codes.join(', ')}; ${fl.backendInfo().loader.file}`);
if (bad || codes.some((c) => c !== 0)) process.exitCode = 1;
