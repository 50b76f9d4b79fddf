import { describe, expect, it } from 'vitest';
import { fl } from './helpers';

describe('half conversions', () => {
  it('float16 round-trips every bit pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = fl.float32ToFloat16(fl.float16ToFloat32(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN = ((i >> 10) & 0x1f) === 0x1f && (i & 0x3ff) !== 0;
      if (isNaN) expect(((back[i] >> 10) & 0x1f) === 0x1f && (back[i] & 0x3ff) !== 0).toBe(true);
      else if (back[i] !== i) throw new Error(`half 0x${i.toString(16)} came back as 0x${back[i].toString(16)}`);
    }
  });
  it('rounds ties to even in both formats', () => {
    expect(fl.float32ToFloat16([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 2 ** -25, 3 * 2 ** -25])).toEqual(
      new Uint16Array([0x3c00, 0x3c02, 0x7c00, 0, 2]),
    );
    expect(fl.float32ToBFloat16([1 + 2 ** -8, 1 + 3 * 2 ** -8, -Infinity])).toEqual(new Uint16Array([0x3f80, 0x3f82, 0xff80]));
    expect(Array.from(fl.bfloat16ToFloat32(new Uint16Array([0x3fc0, 0xc000])))).toEqual([1.5, -2]);
  });
});
