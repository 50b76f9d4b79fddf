/**
 * Positives and exclusions in CSR form (docs/MATH.md §1), validated once before a call reaches the
 * addon. Every problem throws ERR_TYPE (not the right TypedArray), ERR_SHAPE (lengths) or
 * ERR_CSR (structure), with a message naming the exact entry, e.g. `positives.cols[17]`.
 * @module
 */
import { checkNotDetached, fail } from './validate';

/**
 * Row i owns the entries `cols[rowPtr[i]] .. cols[rowPtr[i+1] - 1]`: column indices in [0, N),
 * in any order, no column twice within a row.
 */
export interface Positives {
  /** Int32Array of length B + 1: rowPtr[0] = 0, non-decreasing, rowPtr[B] = cols.length. */
  rowPtr: Int32Array;
  /** Int32Array of column indices, row after row. */
  cols: Int32Array;
  /** Float32Array, one finite weight >= 0 per entry of `cols`. Default: every weight 1. */
  weights?: Float32Array;
}

/** What the addon is given: a fresh object, so the caller reassigning a field cannot free an array a running call reads. */
export interface NativeCsr {
  rowPtr: Int32Array;
  cols: Int32Array;
  weights?: Float32Array;
}

function typed<T extends Int32Array | Float32Array>(name: string, v: unknown, ctor: new (n: number) => T): T {
  if (!(v instanceof ctor)) fail('ERR_TYPE', name, ctor === (Int32Array as unknown) ? 'an Int32Array' : 'a Float32Array', v);
  checkNotDetached(name, v);
  return v;
}

/** True when a[i0..i1) is strictly increasing (then it has no duplicates and needs no sort). */
function strictlyIncreasing(a: Int32Array, i0: number, i1: number): boolean {
  for (let e = i0 + 1; e < i1; e++) if (a[e] <= a[e - 1]) return false;
  return true;
}

/**
 * Per-column tags for O(1) membership tests, reused row after row (each row takes a new tag):
 * O(nnz) in all instead of a sort per row. Up to 2^22 columns (16 MiB); wider matrices fall back
 * to sorting. Up to KEPT_TAG_COLS columns one array serves every call (tags from a running
 * counter), so validating a call's CSR allocates nothing: a new array there, after the call's
 * gradient, made V8 promote the gradient and run a full GC every few calls (lib/outputs.ts,
 * LAST_OUTPUT).
 */
const MAX_TAGGED_COLS = 1 << 22;
const KEPT_TAG_COLS = 1 << 18; // 1 MiB kept for the process
let keptTags = new Int32Array(0);
let lastTag = 0;
function columnTags(cols: number): Int32Array | undefined {
  if (cols > MAX_TAGGED_COLS) return undefined;
  if (cols > KEPT_TAG_COLS) return new Int32Array(cols);
  if (keptTags.length < cols) {
    keptTags = new Int32Array(Math.max(cols, Math.min(2 * keptTags.length, KEPT_TAG_COLS)));
    lastTag = 0;
  }
  return keptTags;
}
/** A tag no entry of the kept tags holds yet. */
function newTag(): number {
  if (lastTag === 0x7fffffff) {
    keptTags.fill(0);
    lastTag = 0;
  }
  return ++lastTag;
}

/** The first column of a[i0..i1) that repeats an earlier one, as [first position, repeat position], or undefined. */
function findDuplicate(a: Int32Array, i0: number, i1: number, tags: Int32Array | undefined, tag: number): [number, number] | undefined {
  let repeated: number | undefined;
  if (tags) {
    for (let e = i0; e < i1 && repeated === undefined; e++) {
      if (tags[a[e]] === tag) repeated = a[e];
      tags[a[e]] = tag;
    }
  } else {
    const sorted = a.slice(i0, i1).sort();
    for (let k = 1; k < sorted.length && repeated === undefined; k++) if (sorted[k] === sorted[k - 1]) repeated = sorted[k];
  }
  if (repeated === undefined) return undefined;
  const first = a.indexOf(repeated, i0);
  return [first, a.indexOf(repeated, first + 1)];
}

/** The row's columns sorted (a view when they already are; a sorted copy otherwise). */
function sortedRow(c: NativeCsr, i: number): Int32Array {
  const row = c.cols.subarray(c.rowPtr[i], c.rowPtr[i + 1]);
  return strictlyIncreasing(row, 0, row.length) ? row : row.slice().sort();
}

/**
 * Validates a CSR argument of a B×N score matrix. `name` is how the message calls it
 * ('positives', 'opts.exclude'); `weights: false` rejects a `weights` field (exclusions have none).
 */
export function csr(name: string, v: unknown, rows: number, cols: number, { weights: allowWeights = true } = {}): NativeCsr {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v))
    fail('ERR_TYPE', name, 'an object { rowPtr: Int32Array, cols: Int32Array, weights?: Float32Array }', v);
  const o = v as Partial<Positives>;
  const rowPtr = typed(`${name}.rowPtr`, o.rowPtr, Int32Array);
  const c = typed(`${name}.cols`, o.cols, Int32Array);
  if (rowPtr.length !== rows + 1) fail('ERR_SHAPE', `${name}.rowPtr`, `length ${rows + 1} (rows + 1)`, `#length ${rowPtr.length}`);
  if (rowPtr[0] !== 0) fail('ERR_CSR', `${name}.rowPtr[0]`, '0', rowPtr[0]);
  for (let i = 0; i < rows; i++)
    if (rowPtr[i + 1] < rowPtr[i]) fail('ERR_CSR', `${name}.rowPtr[${i + 1}]`, `a value >= rowPtr[${i}] = ${rowPtr[i]} (non-decreasing)`, rowPtr[i + 1]);
  if (rowPtr[rows] !== c.length) fail('ERR_CSR', `${name}.rowPtr[${rows}]`, `cols.length = ${c.length}`, rowPtr[rows]);
  for (let e = 0; e < c.length; e++) if (c[e] < 0 || c[e] >= cols) fail('ERR_CSR', `${name}.cols[${e}]`, `a column in [0, ${cols})`, c[e]);
  let tags: Int32Array | undefined; // made at the first unsorted row
  for (let i = 0; i < rows; i++) {
    const e0 = rowPtr[i], e1 = rowPtr[i + 1];
    if (strictlyIncreasing(c, e0, e1)) continue;
    tags ??= columnTags(cols);
    const dup = findDuplicate(c, e0, e1, tags, newTag());
    if (dup) fail('ERR_CSR', `${name}.cols[${dup[1]}]`, `a column not already in row ${i} (cols[${dup[0]}] = ${c[dup[1]]})`, c[dup[1]]);
  }
  const out: NativeCsr = { rowPtr, cols: c };
  if (o.weights !== undefined) {
    if (!allowWeights) fail('ERR_ARG', `${name}.weights`, 'no weights (exclusions are unweighted)', o.weights);
    const w = typed(`${name}.weights`, o.weights, Float32Array);
    if (w.length !== c.length) fail('ERR_SHAPE', `${name}.weights`, `length ${c.length} (cols.length)`, `#length ${w.length}`);
    for (let e = 0; e < w.length; e++) if (!(w[e] >= 0 && w[e] < Infinity)) fail('ERR_CSR', `${name}.weights[${e}]`, 'a finite weight >= 0', w[e]);
    out.weights = w;
  }
  return out;
}

/** One more than the largest column of either CSR (0 when both are empty). */
function columnBound(a: Int32Array, b: Int32Array): number {
  let m = -1;
  for (const v of a) if (v > m) m = v;
  for (const v of b) if (v > m) m = v;
  return m + 1;
}

/**
 * Throws ERR_CSR when an exclusion is also a positive (it would be both in the loss and out of
 * it). Both must already be valid CSRs of the same matrix; `cols` is its width, when known.
 */
export function checkDisjoint(positives: NativeCsr, positivesName: string, exclude: NativeCsr, excludeName: string, cols = columnBound(positives.cols, exclude.cols)): void {
  const rows = positives.rowPtr.length - 1;
  const tags = columnTags(cols);
  for (let i = 0; i < rows; i++) {
    const p0 = positives.rowPtr[i], p1 = positives.rowPtr[i + 1];
    const x0 = exclude.rowPtr[i], x1 = exclude.rowPtr[i + 1];
    if (p0 === p1 || x0 === x1) continue;
    const clash = (e: number) => fail('ERR_CSR', `${excludeName}.cols[${e}]`, `a column that is not a positive of row ${i} (${positivesName})`, exclude.cols[e]);
    if (tags) {
      const tag = newTag();
      for (let e = p0; e < p1; e++) tags[positives.cols[e]] = tag;
      for (let e = x0; e < x1; e++) if (tags[exclude.cols[e]] === tag) clash(e);
      continue;
    }
    const pos = sortedRow(positives, i);
    for (let e = x0; e < x1; e++) {
      const col = exclude.cols[e];
      let lo = 0, hi = pos.length; // binary search in the sorted positives of row i
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (pos[mid] < col) lo = mid + 1;
        else hi = mid;
      }
      if (lo < pos.length && pos[lo] === col) clash(e);
    }
  }
}

/** Validates the optional `opts.exclude` against the positives (when there are positives). */
export function excludeArg(v: unknown, rows: number, cols: number, positives?: NativeCsr, positivesName = 'positives'): NativeCsr | undefined {
  if (v === undefined) return undefined;
  const x = csr('opts.exclude', v, rows, cols, { weights: false });
  if (positives) checkDisjoint(positives, positivesName, x, 'opts.exclude', cols);
  return x;
}

/** The diagonal positives (row i ↔ column i) of B rows, e.g. to check exclusions against them. */
export function diagonalPositives(rows: number): NativeCsr {
  const rowPtr = new Int32Array(rows + 1);
  for (let i = 0; i <= rows; i++) rowPtr[i] = i;
  return { rowPtr, cols: rowPtr.subarray(0, rows) };
}
