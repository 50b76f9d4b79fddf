// Simulated ranks for the sharded losses: R jobs in one process, an in-process all-reduce
// between them, and the column split helpers. Used by test/sharded.test.ts and
// bench/sharded.mjs (through dist/).
import type { AllReduce, ReduceOp, ShardedJob, ShardedResult } from '../dist/index.js';

/**
 * An all-reduce among R simulated ranks: each round waits until every rank has called, then
 * reduces in rank order in float32 (as a real collective does) and resolves every rank with
 * its own copy. `tamper` lets a test break one rank's answer.
 */
export function collective(R: number, tamper?: (rank: number, round: number, out: Float32Array) => Float32Array): AllReduce[] {
  let pending: { buf: Float32Array; op: ReduceOp; resolve: (v: Float32Array) => void; reject: (e: unknown) => void }[] = [];
  let round = 0;
  return Array.from({ length: R }, (_, rank) => (buf: Float32Array, op: ReduceOp) =>
    new Promise<Float32Array>((resolve, reject) => {
      pending[rank] = { buf: buf.slice(), op, resolve, reject };
      if (pending.filter(Boolean).length < R) return;
      const calls = pending;
      pending = [];
      round += 1;
      const n = calls[0].buf.length;
      if (calls.some((c) => c.buf.length !== n || c.op !== calls[0].op)) {
        for (const c of calls) c.reject(new Error(`collective: ranks disagree on the round (lengths ${calls.map((c) => c.buf.length)}, ops ${calls.map((c) => c.op)})`));
        return;
      }
      const out = calls[0].buf.slice();
      for (let r = 1; r < R; r++) {
        const b = calls[r].buf;
        if (calls[0].op === 'sum') for (let k = 0; k < n; k++) out[k] += b[k];
        else for (let k = 0; k < n; k++) out[k] = Math.max(out[k], b[k]);
      }
      calls.forEach((c, r) => c.resolve(tamper ? tamper(r, round, out.slice()) : out.slice()));
    }),
  );
}

/** Column offsets of R shards of N columns: [0, o_1, ..., N] with the given widths. */
export function offsetsOf(widths: readonly number[]): number[] {
  const o = [0];
  for (const w of widths) o.push(o[o.length - 1] + w);
  return o;
}

/** R uneven widths summing to N from a seeded generator; `empty` makes some shards empty. */
export function unevenWidths(N: number, R: number, rand: () => number, empty = false): number[] {
  const cuts = Array.from({ length: R - 1 }, () => Math.floor(rand() * (N + 1))).sort((a, b) => a - b);
  if (empty && R > 2) cuts[1] = cuts[0]; // shard 1 empty
  const edges = [0, ...cuts, N];
  return Array.from({ length: R }, (_, r) => edges[r + 1] - edges[r]);
}

/** Rows [0, B) × columns [c0, c1) of a row-major B × N matrix. */
export function columnBlock(S: Float32Array, B: number, N: number, c0: number, c1: number): Float32Array {
  const w = c1 - c0;
  const out = new Float32Array(B * w);
  for (let i = 0; i < B; i++) out.set(S.subarray(i * N + c0, i * N + c1), i * w);
  return out;
}

/** Runs one job per rank concurrently over an in-process collective. */
export async function runAll(jobs: ShardedJob[], tamper?: Parameters<typeof collective>[1]): Promise<ShardedResult[]> {
  const ar = collective(jobs.length, tamper);
  return Promise.all(jobs.map((j, r) => j.run(ar[r])));
}

/** A seeded generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
