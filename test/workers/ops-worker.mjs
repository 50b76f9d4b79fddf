// A worker_thread of test/workers.test.ts: loads its own instance of the addon, computes every
// registered op (compute.mjs) and posts the results; or, with `flood`, keeps async calls in
// flight until the test terminates it.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const fl = require('../../dist/index.js');

if (workerData.flood) {
  const rows = 16;
  const cols = 131071;
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) x[i] = (i % 1013) / 101;
  const t = fl.tensor(x, [rows, cols]);
  const again = () => fl.logSumExpAsync(t).then(again, again);
  for (let k = 0; k < 8; k++) again();
  parentPort.postMessage({ started: true });
} else {
  const { computeAll } = await import('./compute.mjs');
  const results = computeAll(fl);
  parentPort.postMessage({ results, threads: fl.backendInfo().cpu.threads });
}
