// Shared test plumbing. Tests exercise the compiled package (dist/), exactly what users load.
import * as fl from '../dist/index.js';

export { fl };

/** True when the loaded addon can run CUDA kernels (a GPU machine). */
export const hasCuda = (): boolean => fl.backendInfo().cuda.available;

/** Expects fn to throw a FusedLossError with `code` whose message matches every pattern. */
export function expectCode(fn: () => unknown, code: string, ...patterns: RegExp[]): fl.FusedLossError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof fl.FusedLossError)) throw new Error(`expected a FusedLossError ${code}, got ${String(caught)}`);
  if (caught.code !== code) throw new Error(`expected ${code}, got ${caught.code}: ${caught.message}`);
  for (const p of patterns) if (!p.test(caught.message)) throw new Error(`message "${caught.message}" does not match ${p}`);
  return caught;
}

/** The async twin of expectCode. */
export async function expectCodeAsync(p: Promise<unknown>, code: string, ...patterns: RegExp[]): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expectCode(() => {
    if (caught) throw caught;
  }, code, ...patterns);
}

/** Relative L2 error ‖a − b‖ / ‖b‖ (b is the reference). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300);
}

/** ‖a − b‖₂ over b's length. */
export function l2Distance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < b.length; i++) n += (a[i] - b[i]) ** 2;
  return Math.sqrt(n);
}

/** ‖a‖₂. */
export const l2Norm = (a: ArrayLike<number>): number => l2Distance(a, new Float64Array(a.length));

/** A result tensor's elements as a Float32Array (half precision widened). */
export const hostValues = (t: fl.Tensor | undefined): Float32Array => fl.toFloat32(t!.data, t!.dtype);

/** A buffer of NaNs: kernels must overwrite every element (checked with allWritten). */
export function poisoned(n: number): Float32Array {
  return new Float32Array(n).fill(Number.NaN);
}
export const allWritten = (a: ArrayLike<number>): boolean => Array.prototype.every.call(a, (v: number) => !Number.isNaN(v));
