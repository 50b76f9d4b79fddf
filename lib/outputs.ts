/**
 * Output allocation. Every array an op writes into is allocated here by the TypeScript layer,
 * on the main thread, before the native call: the native side (sync or async) only writes into
 * memory that already exists and never allocates JS objects off the main thread.
 *
 * Outputs of 16 KiB and more (gradients, softTopK values) come without a zero fill (every
 * element is written by the op; the poison tests prove it):
 * - for a sync call, from V8 (`Buffer.allocUnsafeSlow`). No JS runs while the op does, so
 *   nothing can free them under it, and V8 frees them as soon as a scavenge finds them dropped;
 * - for an async call, from memory the addon owns and lends to an ArrayBuffer
 *   (napi/host_memory.h): the job holds a reference, so the op uses it in place whatever JS
 *   does meanwhile (napi/job.h), and freed blocks are recycled by size. Sync calls do not use
 *   it because Node runs the finalizer that gives such a block back only on a later turn of
 *   the event loop: a synchronous training loop would take a fresh block per step until a full
 *   GC (measured: 1.5 GB peak against 206 MiB at 64×131072).
 * Smaller outputs are ordinary zeroed V8 arrays.
 *
 * `FUSEDLOSS_POISON_OUTPUTS=1` (read once, at load) fills every new output with NaN first, so
 * an element a kernel forgot to write shows up as NaN instead of a plausible 0. The test suite
 * runs with it on (vitest.config.ts); it costs one fill per output, so it is off by default.
 * @internal
 * @module
 */
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

/** A new host output of `n` elements of `dtype` (poisoned when asked; else uninitialised). */
export function outputHost(dtype: DType, n: number): HostArray {
  const bytes = n * (dtype === 'float32' ? 4 : 2);
  const buffer =
    bytes < ADDON_MIN_BYTES ? new ArrayBuffer(bytes) : preparingAsyncCall ? native().addon.hostAlloc(bytes) : Buffer.allocUnsafeSlow(bytes).buffer;
  const a = dtype === 'float32' ? new Float32Array(buffer) : new Uint16Array(buffer);
  return poisonOutputs ? fillNaN(a, dtype) : a;
}

/** A new Float32Array output (row losses, lse, ...). */
export function outputF32(n: number): Float32Array {
  return outputHost('float32', n) as Float32Array;
}
