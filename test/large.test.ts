// 64-bit offsets, proved on a tensor of more than 2^31 elements (opt-in: FUSEDLOSS_LARGE=1; it
// needs about 9 GiB of memory and a few minutes). An int32 offset anywhere in the path would
// read or write the wrong element of the second row, whose entries lie past element 2^31.
//
// Scores: fp16 drawn from a table of 997 distinct values by a multiplicative hash of (i, j), so
// nothing is zero or periodic in a power of two, and the float64 reference is a plain loop.
// Row 1's label sits 7 columns before the end (element 2^31 + 1994) and is raised to a peak.
import { describe, expect, it } from 'vitest';
import { fl } from './helpers';

const enabled = process.env.FUSEDLOSS_LARGE === '1';
const ROWS = 2;
const COLS = 2 ** 30 + 1001;
const table = fl.float16ToFloat32(fl.float32ToFloat16(Float32Array.from({ length: 997 }, (_, v) => v / 997 - 0.5)));
const tableBits = fl.float32ToFloat16(table);
const slot = (i: number, j: number) => ((j * 2654435761 + i * 40503) >>> 0) % 997;
const labels = new Int32Array([3, COLS - 7]);
const peak = 6.5; // exact in fp16

const value = (i: number, j: number) => (i === 1 && j === labels[1] ? peak : table[slot(i, j)]);
const isHalfNaN = (b: number) => (b & 0x7c00) === 0x7c00 && (b & 0x03ff) !== 0;
// Long loops give the event loop a turn now and then: vitest's worker must answer its RPCs.
const CHUNK = 2 ** 25;
const yieldTurn = () => new Promise((resolve) => setImmediate(resolve));
async function forEachIndex(n: number, body: (j: number) => void) {
  for (let j0 = 0; j0 < n; j0 += CHUNK) {
    for (let j = j0, end = Math.min(n, j0 + CHUNK); j < end; j++) body(j);
    await yieldTurn();
  }
}

describe.skipIf(!enabled)(`tensors above 2^31 elements (${ROWS} × ${COLS} fp16)`, () => {
  it('softmaxCrossEntropy reads and writes every element past 2^31 where it belongs', { timeout: 1_200_000 }, async () => {
    const bits = new Uint16Array(ROWS * COLS);
    for (let i = 0; i < ROWS; i++) await forEachIndex(COLS, (j) => (bits[i * COLS + j] = tableBits[slot(i, j)]));
    bits[COLS + labels[1]] = fl.float32ToFloat16(new Float32Array([peak]))[0];
    const r = await fl.softmaxCrossEntropyAsync(fl.tensor(bits, [ROWS, COLS], { dtype: 'float16' }), labels, { reduction: 'none' });
    const g = r.grad!.data as Uint16Array;

    for (let i = 0; i < ROWS; i++) {
      let m = -Infinity;
      await forEachIndex(COLS, (j) => (m = Math.max(m, value(i, j))));
      let s = 0;
      await forEachIndex(COLS, (j) => (s += Math.exp(value(i, j) - m)));
      const lse = m + Math.log(s);
      const loss = lse - value(i, labels[i]);
      expect(Math.abs(r.rowLoss![i] - loss) / loss).toBeLessThan(1e-5);
      for (const j of [0, 1, 4097, COLS - 8, COLS - 7, COLS - 1]) {
        const want = Math.exp(value(i, j) - lse) - (j === labels[i] ? 1 : 0);
        const got = fl.float16ToFloat32(g.subarray(i * COLS + j, i * COLS + j + 1))[0];
        expect(Math.abs(got - want)).toBeLessThanOrEqual(2 ** -10 * Math.abs(want) + 2 ** -24);
      }
    }
    // Every gradient element written (outputs are poisoned with NaN in the test suite).
    let unwritten = 0;
    await forEachIndex(g.length, (k) => (unwritten += isHalfNaN(g[k]) ? 1 : 0));
    expect(unwritten).toBe(0);
  });
});
