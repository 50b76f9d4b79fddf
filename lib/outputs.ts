/**
 * Output allocation. Every array an op writes into is allocated here by the TypeScript layer,
 * on the main thread, before the native call: the native side (sync or async) only writes into
 * memory that already exists and never allocates JS objects off the main thread.
 *
 * `FUSEDLOSS_POISON_OUTPUTS=1` (read once, at load) fills every new output with NaN first, so
 * an element a kernel forgot to write shows up as NaN instead of a plausible 0. The test suite
 * runs with it on (vitest.config.ts); it costs one fill per output, so it is off by default.
 * @internal
 * @module
 */
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

/** A new host output of `n` elements of `dtype` (poisoned when asked). */
export function outputHost(dtype: DType, n: number): HostArray {
  const a = dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
  return poisonOutputs ? fillNaN(a, dtype) : a;
}

/** A new Float32Array output (row losses, lse, ...). */
export function outputF32(n: number): Float32Array {
  return outputHost('float32', n) as Float32Array;
}
