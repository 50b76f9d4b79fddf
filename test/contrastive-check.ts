// Shared by test/infoNCE.test.ts and test/decoupledContrastive.test.ts: runs a loss kernel and
// its float64 reference on the same scores and compares everything a call returns (docs/MATH.md §4).
import { expect } from 'vitest';
import { fdGradCheck, fdScalarCheck } from './reference/fd.js';
import type { RefResult } from './reference/types.js';
import { allWritten, fl, relL2 } from './helpers';

export type Kernel = (t: fl.Tensor, opts: Record<string, unknown>) => fl.LossResult;
export type Reference = (S: Float64Array | Float32Array, opts: Record<string, unknown>) => RefResult;

export function gradOf(r: fl.LossResult): Float32Array {
  const g = fl.toHost(r.grad!);
  return fl.toFloat32(g.data, g.dtype);
}

const l2 = (a: ArrayLike<number>) => Math.sqrt(Array.prototype.reduce.call(a, (s: number, v: number) => s + v * v, 0) as number);
const absL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let n = 0;
  for (let i = 0; i < b.length; i++) n += (a[i] - b[i]) ** 2;
  return Math.sqrt(n);
};

/** Kernel vs reference on fp32 scores: loss, row losses, gradient and dScale within `tol`. */
export function checkFp32(kernel: Kernel, ref: Reference, S: Float32Array, shape: [number, number], opts: Record<string, unknown>, tol = 1e-5): void {
  const got = kernel(fl.tensor(S, shape), { ...opts, gradScale: true });
  const want = ref(S, opts);
  expect(Math.abs(got.loss - want.loss), `loss ${got.loss} vs ${want.loss}`).toBeLessThanOrEqual(tol * Math.max(1e-30, Math.abs(want.loss)));
  // Row losses per element, relative to max(1, |ℓ|): a row whose positive wins by 100 nats has
  // ℓ ≈ 1e-44 in float64 and 0 in fp32, which is not an error.
  for (let i = 0; i < shape[0]; i++) {
    const g = got.rowLoss[i];
    const w = want.rowLoss[i];
    if (!Number.isFinite(w)) expect(g).toBe(w);
    else expect(Math.abs(g - w), `rowLoss[${i}] ${g} vs ${w}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w)));
  }
  const g = gradOf(got);
  expect(allWritten(g)).toBe(true);
  expect(absL2(g, want.grad)).toBeLessThanOrEqual(tol * l2(want.grad) + 1e-30);
  // dScale = Σ dL/dz·S is summed in fp32 lanes: its error scales with the size of the terms,
  // which can be far above |dScale| when they cancel (a 1×1 matrix has dScale 0 from terms of
  // 1e5). Σ_j |dℓ_i/dz_ij| ≤ 4 for these losses (2 per softmax; DCLW's |w_i| ≤ 2), so the terms
  // add up to at most Σ_i 4·|u_i|·max_j |S_ij|, u_i being row i's factor in the reduction.
  const [B, N] = shape;
  const go = opts.gradOutput as Float32Array | undefined;
  let magnitude = 0;
  for (let i = 0; i < B; i++) {
    let m = 0;
    for (let j = 0; j < N; j++) if (Number.isFinite(S[i * N + j])) m = Math.max(m, Math.abs(S[i * N + j]));
    const u = opts.reduction === 'sum' ? 1 : opts.reduction === 'none' ? Math.abs(go ? go[i] : 1) : 1 / B;
    magnitude += 4 * u * m;
  }
  expect(Math.abs(got.dScale! - want.dScale)).toBeLessThanOrEqual(10 * tol * Math.max(1, Math.abs(want.dScale), 1e-3 * magnitude));
}

/**
 * The kernel's gradient and dScale against finite differences of the float64 reference loss
 * (a check of the math that does not trust the reference's analytic gradient).
 */
export function checkFiniteDifferences(kernel: Kernel, ref: Reference, S: Float32Array, shape: [number, number], opts: Record<string, unknown>): void {
  const got = kernel(fl.tensor(S, shape), { ...opts, gradScale: true });
  const fd = fdGradCheck((s) => ref(s, opts).loss, Float64Array.from(S), gradOf(got), { sample: 200 });
  expect(fd.relErr).toBeLessThanOrEqual(2e-5);
  const scale = (opts.scale as number | undefined) ?? 1;
  const ds = fdScalarCheck((x) => ref(S, { ...opts, scale: x }).loss, scale, got.dScale!, { h: 1e-4 * scale });
  expect(ds.relErr, `dScale ${got.dScale}`).toBeLessThanOrEqual(2e-5);
}

/** Half-precision scores: the kernel sees exactly the dequantized values the reference gets. */
export function checkHalf(kernel: Kernel, ref: Reference, S32: Float32Array, shape: [number, number], opts: Record<string, unknown>, dtype: 'float16' | 'bfloat16'): void {
  const bits = dtype === 'float16' ? fl.float32ToFloat16(S32) : fl.float32ToBFloat16(S32);
  const Sq = fl.toFloat32(bits, dtype);
  const want = ref(Sq, opts);
  const got = kernel(fl.tensor(bits, shape, { dtype }), opts);
  expect(Number.isFinite(got.loss)).toBe(true);
  expect(Math.abs(got.loss - want.loss) / Math.abs(want.loss)).toBeLessThan(1e-5);
  const g = gradOf(got);
  expect(g.every(Number.isFinite)).toBe(true);
  // The gradient is rounded once to the dtype: 2^-8 (bf16) or 2^-11 (f16) relative per entry.
  expect(relL2(g, want.grad)).toBeLessThan(dtype === 'bfloat16' ? 8e-3 : 1e-3);
  const f32 = kernel(fl.tensor(bits, shape, { dtype }), { ...opts, gradDtype: 'float32' });
  expect(relL2(gradOf(f32), want.grad)).toBeLessThan(1e-5);
}
