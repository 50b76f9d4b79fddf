/**
 * float32 ↔ float16 and float32 ↔ bfloat16, as 16-bit patterns (Uint16Array), rounding to
 * nearest with ties to even, with infinities, NaNs and subnormals handled.
 *
 * Written independently of lib/half.ts so that it can check it: the rounding here is plain
 * float64 arithmetic on the value (an fp32 value divided by a power of two is exact in float64,
 * so "round the quotient to an integer" is exact too), not bit manipulation. Numbers are first
 * taken as float32 (Math.fround), as if they came from a Float32Array: one rounding, not two,
 * for fp32 inputs.
 */

/** A binary floating-point format with `mantissaBits` stored fraction bits. */
interface Format {
  mantissaBits: number;
  /** Exponent of the smallest normal number (the subnormal spacing is 2^(minExp − mantissaBits)). */
  minExp: number;
  /** Largest finite value. */
  max: number;
}

const F16: Format = { mantissaBits: 10, minExp: -14, max: 65504 };
const BF16: Format = { mantissaBits: 7, minExp: -126, max: (2 - 2 ** -7) * 2 ** 127 };

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** floor(log2 a) for a finite a > 0, exactly (Math.log2 may be off by one next to a power of two). */
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return e;
}

/** Rounds x to the nearest value of the format, ties to even; ±∞ past the largest finite. */
function roundTo(x: number, fmt: Format): number {
  if (!Number.isFinite(x) || x === 0) return x; // NaN, ±∞, ±0 stay as they are
  const a = Math.abs(x);
  // The spacing of the format's values around a: the ulp of a's binade, or the subnormal spacing.
  const ulp = 2 ** (Math.max(exponentOf(a), fmt.minExp) - fmt.mantissaBits);
  const m = a / ulp; // exact: a scaling by a power of two
  let r = Math.floor(m);
  const frac = m - r; // exact
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  const v = r * ulp;
  // IEEE overflow: the rounded magnitude (unbounded exponent) exceeds the largest finite value.
  const out = v > fmt.max ? Infinity : v;
  return x < 0 ? -out : out;
}

/** x rounded to float32 and then to the nearest float16 value, as a number. */
export function roundToFloat16(x: number): number {
  return roundTo(Math.fround(x), F16);
}

/** x rounded to float32 and then to the nearest bfloat16 value, as a number. */
export function roundToBFloat16(x: number): number {
  return roundTo(Math.fround(x), BF16);
}

/** Sign bit of x taken as float32 (also for −0 and NaN). */
function signOf(x: number): number {
  f32[0] = x;
  return f32Bits[0] >>> 31;
}

/** float16 bit pattern of x (via float32), round to nearest even; NaN → a quiet NaN of the same sign. */
export function f16Bits(x: number): number {
  const sign = signOf(x) << 15;
  if (Number.isNaN(x)) return sign | 0x7e00;
  const v = Math.abs(roundToFloat16(x));
  if (v === Infinity) return sign | 0x7c00;
  if (v === 0) return sign;
  const e = exponentOf(v);
  if (e < F16.minExp) return sign | (v / 2 ** -24); // subnormal: a count of 2^-24
  return sign | ((e + 15) << 10) | ((v / 2 ** e - 1) * 1024);
}

/** The value of a float16 bit pattern. */
export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : Number.NaN;
  if (exp === 0) return sign * frac * 2 ** -24;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * bfloat16 bit pattern of x (via float32), round to nearest even. bfloat16 is the top half of a
 * float32, so the rounded value's float32 pattern shifted right is exact. NaN keeps its sign and
 * top payload bits and is made quiet.
 */
export function bf16Bits(x: number): number {
  f32[0] = x;
  if (Number.isNaN(x)) return (f32Bits[0] >>> 16) | 0x0040;
  f32[0] = roundToBFloat16(x);
  return f32Bits[0] >>> 16;
}

/** The value of a bfloat16 bit pattern. */
export function bf16Value(h: number): number {
  f32Bits[0] = (h & 0xffff) << 16;
  return f32[0];
}

export function toFloat16Bits(x: ArrayLike<number>): Uint16Array {
  return Uint16Array.from({ length: x.length }, (_, i) => f16Bits(x[i]));
}
export function fromFloat16Bits(bits: ArrayLike<number>): Float32Array {
  return Float32Array.from({ length: bits.length }, (_, i) => f16Value(bits[i]));
}
export function toBFloat16Bits(x: ArrayLike<number>): Uint16Array {
  return Uint16Array.from({ length: x.length }, (_, i) => bf16Bits(x[i]));
}
export function fromBFloat16Bits(bits: ArrayLike<number>): Float32Array {
  return Float32Array.from({ length: bits.length }, (_, i) => bf16Value(bits[i]));
}
