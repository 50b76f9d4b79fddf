// CSR validation (lib/csr.ts): every malformed positives/exclude CSR throws ERR_TYPE, ERR_SHAPE
// or ERR_CSR naming the exact entry; valid ones (unsorted rows, empty rows) pass untouched.
import { describe, expect, it } from 'vitest';
import { checkDisjoint, csr, excludeArg } from '../dist/csr.js';
import { native } from '../dist/native.js';
import { expectCode } from './helpers';

const valid = () => ({ rowPtr: new Int32Array([0, 2, 2, 5]), cols: new Int32Array([4, 1, 0, 3, 2]), weights: new Float32Array([1, 0.5, 0, 2, 3]) });

describe('CSR validation', () => {
  it('accepts valid CSRs, sorted or not, and returns a fresh object over the same arrays', () => {
    const v = valid();
    const c = csr('positives', v, 3, 5);
    expect(c).not.toBe(v);
    expect(c.cols).toBe(v.cols);
    expect(c.weights).toBe(v.weights);
    expect(Array.from(v.cols)).toEqual([4, 1, 0, 3, 2]);
    expect(csr('positives', { rowPtr: new Int32Array(4), cols: new Int32Array(0) }, 3, 5).weights).toBeUndefined();
  });

  it('names the bad entry, what was expected and what was received', () => {
    const bad = (patch: object) => ({ ...valid(), ...patch });
    expectCode(() => csr('positives', undefined, 3, 5), 'ERR_TYPE', /positives/, /rowPtr/);
    expectCode(() => csr('positives', bad({ rowPtr: [0, 2, 2, 5] }), 3, 5), 'ERR_TYPE', /positives\.rowPtr/, /Int32Array/, /Array\(4\)/);
    expectCode(() => csr('positives', bad({ cols: new Float32Array(5) }), 3, 5), 'ERR_TYPE', /positives\.cols/, /Int32Array/);
    expectCode(() => csr('positives', bad({ weights: new Float64Array(5) }), 3, 5), 'ERR_TYPE', /positives\.weights/, /a Float32Array/);
    expectCode(() => csr('positives', bad({ rowPtr: new Int32Array([0, 2, 5]) }), 3, 5), 'ERR_SHAPE', /positives\.rowPtr/, /length 4/, /received length 3/);
    expectCode(() => csr('positives', bad({ rowPtr: new Int32Array([1, 2, 2, 5]) }), 3, 5), 'ERR_CSR', /positives\.rowPtr\[0\]/, /expected 0/, /received 1/);
    expectCode(() => csr('positives', bad({ rowPtr: new Int32Array([0, 3, 2, 5]) }), 3, 5), 'ERR_CSR', /positives\.rowPtr\[2\]/, /non-decreasing/, /received 2/);
    expectCode(() => csr('positives', bad({ rowPtr: new Int32Array([0, 2, 2, 4]) }), 3, 5), 'ERR_CSR', /positives\.rowPtr\[3\]/, /cols\.length = 5/, /received 4/);
    expectCode(() => csr('positives', bad({ cols: new Int32Array([4, 1, 0, 5, 2]) }), 3, 5), 'ERR_CSR', /positives\.cols\[3\]/, /\[0, 5\)/, /received 5/);
    expectCode(() => csr('positives', bad({ cols: new Int32Array([4, -1, 0, 3, 2]) }), 3, 5), 'ERR_CSR', /positives\.cols\[1\]/, /received -1/);
    expectCode(() => csr('positives', bad({ cols: new Int32Array([4, 1, 3, 0, 3]) }), 3, 5), 'ERR_CSR', /positives\.cols\[4\]/, /row 2/, /cols\[2\] = 3/, /received 3/);
    expectCode(() => csr('positives', bad({ cols: new Int32Array([1, 1, 0, 2, 3]) }), 3, 5), 'ERR_CSR', /positives\.cols\[1\]/, /row 0/);
    expectCode(() => csr('positives', bad({ weights: new Float32Array(4) }), 3, 5), 'ERR_SHAPE', /positives\.weights/, /length 5/, /received length 4/);
    expectCode(() => csr('positives', bad({ weights: new Float32Array([1, 1, -1, 1, 1]) }), 3, 5), 'ERR_CSR', /positives\.weights\[2\]/, />= 0/, /received -1/);
    expectCode(() => csr('positives', bad({ weights: new Float32Array([1, 1, 1, Number.NaN, 1]) }), 3, 5), 'ERR_CSR', /positives\.weights\[3\]/, /NaN/);
    expectCode(() => csr('positives', bad({ weights: new Float32Array([1, 1, 1, Infinity, 1]) }), 3, 5), 'ERR_CSR', /weights\[3\]/, /Infinity/);
    const detached = valid();
    structuredClone(detached.cols.buffer, { transfer: [detached.cols.buffer] });
    expectCode(() => csr('positives', detached, 3, 5), 'ERR_DETACHED', /positives\.cols/);
  });

  it('rejects an exclusion that is also a positive, and weights on exclusions', () => {
    const p = csr('positives', valid(), 3, 5);
    const x = { rowPtr: new Int32Array([0, 1, 2, 3]), cols: new Int32Array([0, 4, 2]) };
    expectCode(() => excludeArg(x, 3, 5, p), 'ERR_CSR', /opts\.exclude\.cols\[2\]/, /not a positive of row 2/, /received 2/);
    expect(excludeArg({ ...x, cols: new Int32Array([0, 4, 1]) }, 3, 5, p)?.cols[2]).toBe(1);
    expect(excludeArg(undefined, 3, 5, p)).toBeUndefined();
    expectCode(() => excludeArg({ ...x, weights: new Float32Array(3) }, 3, 5), 'ERR_ARG', /opts\.exclude\.weights/);
    const cols = new Int32Array(40).map((_, i) => (i * 7) % 40);
    const big = csr('positives', { rowPtr: new Int32Array([0, 40]), cols }, 1, 100);
    expectCode(() => checkDisjoint(big, 'positives', csr('x', { rowPtr: new Int32Array([0, 2]), cols: new Int32Array([50, 21]) }, 1, 100), 'x'), 'ERR_CSR', /x\.cols\[1\]/);
  });

  it('past 2^22 columns, unsorted rows are checked by sorting instead of column tags', () => {
    const N = 2 ** 23;
    const p = csr('positives', { rowPtr: new Int32Array([0, 3, 5]), cols: new Int32Array([N - 1, 7, 3, 9, 2]) }, 2, N);
    expectCode(() => csr('positives', { rowPtr: new Int32Array([0, 3, 5]), cols: new Int32Array([N - 1, 7, 3, 9, 9]) }, 2, N), 'ERR_CSR', /positives\.cols\[4\]/, /row 1 \(cols\[3\] = 9\)/);
    expectCode(() => excludeArg({ rowPtr: new Int32Array([0, 1, 3]), cols: new Int32Array([4, 8, 2]) }, 2, N, p), 'ERR_CSR', /opts\.exclude\.cols\[2\]/, /row 1/);
    expect(excludeArg({ rowPtr: new Int32Array([0, 1, 3]), cols: new Int32Array([4, 8, 1]) }, 2, N, p)?.cols.length).toBe(3);
  });

  it('the addon repeats the structural checks: a malformed CSR from JS throws, never crashes', () => {
    const addon = native().addon;
    const opts = { dtype: 0, rows: 2, cols: 4, scale: 1, reduction: 0, gradDtype: 0, gradScale: false, rowLoss: new Float32Array(2) };
    const call = (positives: unknown, exclude?: unknown) => () => addon.decoupledSoftmax({ ...opts, scores: new Float32Array(8), positives: positives as never, exclude: exclude as never });
    const ok = { rowPtr: new Int32Array([0, 1, 2]), cols: new Int32Array([3, 0]) };
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as { code?: string }).code} ${(e as Error).message}`;
      }
      return 'no error';
    };
    expect(code(call(ok))).toBe('no error');
    expect(code(call({ ...ok, cols: new Int32Array([3, 4]) }))).toMatch(/^ERR_CSR positives\.cols\[1\]/);
    expect(code(call({ ...ok, cols: new Int32Array([3, -1]) }))).toMatch(/^ERR_CSR positives\.cols\[1\]/);
    expect(code(call({ ...ok, rowPtr: new Int32Array([0, 2, 1]) }))).toMatch(/^ERR_CSR positives\.rowPtr\[2\]/);
    expect(code(call({ ...ok, rowPtr: new Int32Array([0, 1, 3]) }))).toMatch(/^ERR_CSR positives\.rowPtr\[2\]/);
    expect(code(call({ ...ok, rowPtr: new Int32Array([0, 1]) }))).toMatch(/^ERR_SHAPE positives\.rowPtr/);
    expect(code(call({ rowPtr: new Int32Array([0, 2, 2]), cols: new Int32Array([1, 1]) }))).toMatch(/^ERR_CSR positives\.cols \(row 0\)/);
    expect(code(call({ ...ok, weights: new Float32Array([1, Number.NaN]) }))).toMatch(/^ERR_CSR positives\.weights\[1\]/);
    expect(code(call({ ...ok, weights: new Float32Array(3) }))).toMatch(/^ERR_SHAPE positives\.weights/);
    expect(code(call(ok, { rowPtr: new Int32Array([0, 0, 1]), cols: new Int32Array([0]) }))).toMatch(/^ERR_CSR exclude \(row 1\).*column 0/);
    expect(code(call(undefined))).toMatch(/^ERR_TYPE positives/);
    // The async twin checks before queuing the work (lib/ turns that into a rejection).
    expect(code(() => addon.decoupledSoftmaxAsync({ ...opts, scores: new Float32Array(8), positives: { ...ok, cols: new Int32Array([3, 9]) } }))).toMatch(/^ERR_CSR/);
  });
});
