// worker_threads: each worker loads its own addon instance (napi instance data: its own thread
// pool and device-memory counter, no statics), 4 of them compute every registered op
// (scripts/ops.mjs) at once, and their results equal the main thread's bit for bit. When the
// workers exit, their pool threads are joined (the thread count returns to where it was), and
// the process keeps computing correctly, also after workers are terminated mid-flight.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeAll } from './workers/compute.mjs';
import { fl } from './helpers';

const script = path.join(__dirname, 'workers', 'ops-worker.mjs');
const threadCount = () => readdirSync('/proc/self/task').length;

interface Result {
  label: string;
  out: Record<string, Float32Array | number | undefined>;
}

function bytesOf(v: Float32Array | number | undefined): Buffer {
  if (v === undefined) return Buffer.alloc(0);
  if (typeof v === 'number') return Buffer.from(new Float64Array([v]).buffer);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function expectSameResults(got: Result[], want: Result[], who: string) {
  expect(got.map((r) => r.label)).toEqual(want.map((r) => r.label));
  got.forEach((r, k) => {
    for (const key of Object.keys(want[k].out))
      expect(Buffer.compare(bytesOf(r.out[key]), bytesOf(want[k].out[key])), `${who}: ${r.label} ${key}`).toBe(0);
  });
}

function start(data: object): { worker: Worker; message: Promise<{ results?: Result[]; threads?: number; started?: boolean }>; exit: Promise<number> } {
  const worker = new Worker(script, { workerData: data });
  const message = new Promise<never>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const exit = new Promise<number>((resolve) => worker.once('exit', resolve));
  return { worker, message, exit };
}

describe.skipIf(process.platform !== 'linux')('worker_threads', () => {
  let want: Result[];
  beforeAll(() => {
    want = computeAll(fl) as Result[];
  });

  it('4 workers compute every op at once, bit for bit equal to the main thread; threads are joined at exit', async () => {
    await fl.logSumExpAsync(new Float32Array(3), { shape: [1, 3] }); // libuv's pool is up before the count
    const before = threadCount();
    const workers = [0, 1, 2, 3].map(() => start({}));
    const messages = await Promise.all(workers.map((w) => w.message));
    messages.forEach((m, k) => expectSameResults(m.results!, want, `worker ${k}`));
    // Each worker had its own pool (threads - 1 pool threads, plus its own JS thread).
    expect(messages[0].threads).toBe(fl.backendInfo().cpu.threads);
    expect((await Promise.all(workers.map((w) => w.exit))).every((code) => code === 0)).toBe(true);
    // Thread teardown finishes just after 'exit'; give it a moment.
    for (let i = 0; i < 50 && threadCount() > before; i++) await new Promise((r) => setTimeout(r, 20));
    console.log(`workers: ${want.length} op cases × 4 workers equal to the main thread; threads ${before} before, ${threadCount()} after the workers exited`);
    expect(threadCount()).toBe(before);
    expectSameResults(computeAll(fl) as Result[], want, 'main thread after the workers');
  });

  it('workers terminated with async calls in flight, 3 rounds: the process stays healthy', async () => {
    const before = threadCount();
    for (let round = 0; round < 3; round++) {
      const t0 = performance.now();
      const workers = [0, 1, 2, 3].map(() => start({ flood: true }));
      await Promise.all(workers.map((w) => w.message));
      await new Promise((r) => setTimeout(r, 50));
      await Promise.all(workers.map((w) => w.worker.terminate()));
      console.log(`round ${round}: ${Math.round(performance.now() - t0)} ms`);
    }
    for (let i = 0; i < 50 && threadCount() > before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(threadCount()).toBe(before);
    expectSameResults(computeAll(fl) as Result[], want, 'main thread after terminations');
  });
});
