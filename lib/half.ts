/**
 * Conversions between float32 and the two 16-bit formats, for building float16/bfloat16
 * tensors from JS numbers and reading half-precision gradients back. Rounding is
 * round-to-nearest-even, as in the kernels and in torch.
 * @module
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

function f16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x477ff000) return sign | 0x7c00; // rounds to >= 65520: infinity
  if (a < 0x38800000) {
    // Subnormal result: count units of 2^-24, rounding half to even.
    const scaled = Math.abs(f32[0]) * 16777216;
    let m = Math.floor(scaled);
    const rem = scaled - m;
    if (rem > 0.5 || (rem === 0.5 && m & 1)) m++;
    return sign | m;
  }
  return sign | (((a + 0xfff + ((a >>> 13) & 1) - 0x38000000) >>> 13) & 0xffff);
}

function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 values → float16 bits (Uint16Array). */
export function float32ToFloat16(x: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f16Bits(x[i]);
  return out;
}

/** float32 values → bfloat16 bits (Uint16Array). */
export function float32ToBFloat16(x: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = bf16Bits(x[i]);
  return out;
}

/** float16 bits → float32 values. */
export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16ToNumber(bits[i]);
  return out;
}

/** bfloat16 bits → float32 values. */
export function bfloat16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const w = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) w[i] = bits[i] << 16;
  return out;
}

/** Host data of any dtype as float32 values (a copy for the 16-bit types, the array itself for float32). */
export function toFloat32(data: Float32Array | Uint16Array, dtype: 'float32' | 'float16' | 'bfloat16'): Float32Array {
  if (dtype === 'float32') return data as Float32Array;
  return dtype === 'float16' ? float16ToFloat32(data as Uint16Array) : bfloat16ToFloat32(data as Uint16Array);
}
