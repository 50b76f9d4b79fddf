/**
 * Output allocation. Every array an op writes into is allocated here by the TypeScript layer,
 * on the main thread, before the native call: the native side (sync or async) only writes into
 * memory that already exists and never allocates JS objects off the main thread.
 *
 * Outputs of 16 KiB and more (gradients, softTopK values) come without a zero fill (every
 * element is written by the op; the poison tests prove it):
 * - an async call's from memory the addon owns and lends to an ArrayBuffer
 *   (napi/host_memory.h), with freed blocks recycled by size: its job holds a reference to it,
 *   so the op uses it in place whatever JS does meanwhile (napi/job.h);
 * - a sync call's from V8 (`Buffer.allocUnsafeSlow`): no JS runs while a sync op does, so
 *   nothing can free it under the op. See SYNC_OUTPUTS for why not from the addon.
 * Smaller outputs are zeroed V8 memory, each in an ArrayBuffer of its own, except a sync call's
 * small arrays beside its tensors (row losses, lse, thresholds: outputF32): those are views into
 * a shared 64 KiB ArrayBuffer (a slab, handed out in order and never reused, as Node's pool of
 * small Buffers is), so that the gradient is the call's only new ArrayBuffer (see ONE_BUFFER).
 * Such a view's `.buffer` is the slab: use the view (or a `slice()` of it). The slab is marked
 * untransferable, so transferring one of them copies it instead of detaching its neighbours
 * (as with the addon's lent buffers).
 *
 * `FUSEDLOSS_POISON_OUTPUTS=1` (read once, at load) fills every new output with NaN first, so
 * an element a kernel forgot to write shows up as NaN instead of a plausible 0. The test suite
 * runs with it on (vitest.config.ts); it costs one fill per output, so it is off by default.
 * @internal
 * @module
 */
import { setFlagsFromString } from 'node:v8';
import { markAsUntransferable } from 'node:worker_threads';
import { native } from './native';
import type { DType, HostArray } from './tensor';

/** True when outputs start as NaN (FUSEDLOSS_POISON_OUTPUTS=1). */
export const poisonOutputs = process.env.FUSEDLOSS_POISON_OUTPUTS === '1';

/** The NaN bit pattern of each half dtype (quiet NaN). */
const HALF_NAN: Record<Exclude<DType, 'float32'>, number> = { float16: 0x7e00, bfloat16: 0x7fc0 };

/** Fills `a` with the NaN of `dtype`. */
export function fillNaN(a: HostArray, dtype: DType): HostArray {
  if (dtype === 'float32') (a as Float32Array).fill(Number.NaN);
  else (a as Uint16Array).fill(HALF_NAN[dtype]);
  return a;
}

/** Outputs from this size up come without a zero fill. */
const ADDON_MIN_BYTES = 16384;

/*
 * SYNC_OUTPUTS: why a sync call's output is V8 memory. A training loop drops each step's
 * gradient, and the next step is fast only if it gets warm pages back (fresh memory costs a page
 * fault per 4 KiB at first touch: 8192 for a 32 MiB gradient, longer than the op). Memory can be
 * reused only once V8 has collected the buffer that held it, and a loop that never yields to the
 * event loop learns that only from a garbage collection:
 * - an external (addon-owned) ArrayBuffer is referenced weakly by Node and by the addon, and V8
 *   keeps weakly referenced objects through young-generation GCs (scavenges): its block comes
 *   back only after a full mark-compact, a few ms each, which V8 then runs about once a call
 *   (measured: 2–10× the reuse call);
 * - a V8 ArrayBuffer dies in the next scavenge (about 0.1 ms, about one a call) and its memory
 *   goes back to malloc, which hands the same warm pages to the next allocation of that size
 *   (napi/host_memory.h keeps glibc from unmapping large freed blocks).
 *
 * LAST_OUTPUT: a call allocates its large output (the gradient) after every other new array.
 * V8 runs a scavenge before allocating any ArrayBuffer memory once the young generation's
 * buffers hold 32 MiB or more (2 semi-spaces), so a gradient of that size makes the next
 * allocation of any array (a 1 KiB row-loss array) scavenge while the call still holds the
 * gradient. It survives, the next call's scavenge promotes it to the old generation, and there
 * only a full mark-compact frees it: V8 then ran one every 3-4 calls for each 32 MiB
 * gradient (its external-memory limit is 64 MiB over the last low), with concurrent marking
 * taking CPU from the op (measured: 60 mark-compacts in 200 softmaxCrossEntropy 256×32768
 * calls; 19 once the row losses came first). Allocated last, the gradient is young and dead
 * at the next call's scavenge, which frees it, and malloc hands its pages to the new one.
 * What is left is V8's external-memory limit (seen with --trace-gc --trace-incremental-marking,
 * and V8's figure read before and after each output's allocation): V8 starts a full GC when its
 * external-memory figure rises 64 MiB over its lowest point since the last one, and a dead
 * gradient leaves the figure only when its sweep is merged, after the scavenge that found it
 * dead. With 32 MiB gradients the figure swings between 0 and 2 gradients over the inputs, and
 * one late removal after an early one is enough. Two ways it is late; each has a remedy here:
 *
 * SWEEP: V8's background sweeper lags (a loaded machine), and the dropped gradient still counts
 * when the next is allocated. Measured, softmaxCrossEntropy 256×32768 through
 * bench/default-call.mjs at load 9–13 on 2 cores: 7–17 full GCs in 80–150 default calls,
 * 140–200 page faults a call (malloc could not recycle the block yet), CPU 1.25–1.42× the reuse
 * call's. So the first large sync output turns V8's concurrent ArrayBuffer sweeping off
 * (`--no-concurrent-array-buffer-sweeping`; process-wide, as V8's flags are): V8 then frees dead
 * buffers inside the GC that found them dead. Same loop and load: no full GC, 3–8 faults a call,
 * CPU 1.02–1.12×. The cost: the free() of each dead backing store moves into the GC pause. Not
 * done when the process was started with either form of that flag (node's command line or
 * NODE_OPTIONS), nor with FUSEDLOSS_CONCURRENT_SWEEP=1.
 *
 * ONE_BUFFER: a loop that still holds the previous result while the next call runs (a
 * `const r = f(...)` in a loop body can: seen with --trace-gc, the previous gradient survived
 * the call's scavenge once V8 had optimised the loop) keeps that gradient through the call's
 * first scavenge; a second new ArrayBuffer in the same call (a row-loss array before
 * the gradient: V8 scavenges before each while the young buffers hold 32 MiB) scavenges again,
 * which promotes it, and then only a full GC frees it. So a sync call's small outputs come from
 * the slab, and the gradient is the call's only new ArrayBuffer. Measured at load 8–12, 100
 * calls of `const r = softmaxCrossEntropy(t, y)` (256×32768) in a loop: 44–51 full GCs before,
 * 4 with the slab and SWEEP; of `sum += softmaxCrossEntropy(t, y).loss`: 15–32 before, 3 after.
 * SWEEP without the slab is no better there (50–51 and 22–49): each needs the other.
 * Left: a caller that allocates ArrayBuffers of its own while it holds a 32 MiB gradient makes
 * V8 scavenge each time, and the gradient is promoted all the same. test/default-call.test.ts
 * bounds the full GCs.
 */

/** True while an async call's arguments are prepared (see preparingAsync). */
let preparingAsyncCall = false;

/** Runs an async op's `prepare`: the outputs it allocates come from the addon. */
export function preparingAsync<T>(prepare: () => T): T {
  preparingAsyncCall = true;
  try {
    return prepare();
  } finally {
    preparingAsyncCall = false;
  }
}

/** Whether the first large sync output has set V8's sweeping (see SWEEP). */
let sweepChosen = false;

/** Turns V8's concurrent ArrayBuffer sweeping off, unless the user chose (see SWEEP). */
function sweepInGcPause(): void {
  sweepChosen = true;
  if (process.env.FUSEDLOSS_CONCURRENT_SWEEP === '1') return;
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => /array[-_]buffer[-_]sweeping/.test(a));
  if (!given) setFlagsFromString('--no-concurrent-array-buffer-sweeping');
}

/** The slab small sync outputs are views into (see ONE_BUFFER), and how much of it is used. */
const SLAB_BYTES = 65536;
let current: ArrayBuffer | undefined;
let slabUsed = 0;

/** `bytes` of zeroed slab memory (64-byte aligned): the slab and the offset. */
function fromSlab(bytes: number): [ArrayBuffer, number] {
  const size = Math.ceil(bytes / 64) * 64;
  if (!current || slabUsed + size > SLAB_BYTES) {
    current = new ArrayBuffer(SLAB_BYTES);
    markAsUntransferable(current);
    slabUsed = 0;
  }
  const offset = slabUsed;
  slabUsed += size;
  return [current, offset];
}

/**
 * A new host output of `n` elements of `dtype` (poisoned when asked; else uninitialised, or
 * zero when small). `slab`: a small one may be a view into the slab (sync calls; see
 * ONE_BUFFER). Not for a tensor's data: a tensor owns its ArrayBuffer.
 */
export function outputHost(dtype: DType, n: number, slab = false): HostArray {
  const bytes = n * (dtype === 'float32' ? 4 : 2);
  let buffer: ArrayBuffer;
  let offset = 0;
  if (bytes < ADDON_MIN_BYTES) {
    if (slab && !preparingAsyncCall) [buffer, offset] = fromSlab(bytes);
    else buffer = new ArrayBuffer(bytes);
  } else if (preparingAsyncCall) {
    buffer = native().addon.hostAlloc(bytes);
  } else {
    if (!sweepChosen) sweepInGcPause();
    buffer = Buffer.allocUnsafeSlow(bytes).buffer; // see SYNC_OUTPUTS
  }
  const a = dtype === 'float32' ? new Float32Array(buffer, offset, n) : new Uint16Array(buffer, offset, n);
  return poisonOutputs ? fillNaN(a, dtype) : a;
}

/** A new Float32Array output beside the tensors (row losses, lse, thresholds, ...): from the slab when small. */
export function outputF32(n: number): Float32Array {
  return outputHost('float32', n, true) as Float32Array;
}
