/**
 * Argument checks shared by every op. Each throws an ArgumentError (or a LifetimeError) whose
 * message reads "<argument>: expected <what>, received <what>".
 * @internal
 * @module
 */
import { makeError, type ErrorCode } from './errors';

/** A short description of a received value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length?: number }).length ?? v.byteLength})`;
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

export function fail(code: ErrorCode, name: string, expected: string, received: unknown): never {
  throw makeError(code, `${name}: expected ${expected}, received ${typeof received === 'string' && received.startsWith('#') ? received.slice(1) : describe(received)}`);
}

/** True when a TypedArray's buffer was detached (transferred to a worker, or structuredClone'd away). */
export function isDetached(a: ArrayBufferView): boolean {
  const buf = a.buffer as ArrayBuffer & { detached?: boolean };
  if (typeof buf.detached === 'boolean') return buf.detached;
  if (a.byteLength !== 0) return false;
  // Older V8 (Node 20) has no `detached` flag, but making a view of a detached buffer throws.
  try {
    new Uint8Array(buf);
    return false;
  } catch {
    return true;
  }
}

export function checkNotDetached(name: string, a: ArrayBufferView): void {
  if (isDetached(a)) throw makeError('ERR_DETACHED', `${name}: its ArrayBuffer was detached (transferred); pass a live array`);
}

export function positiveFinite(name: string, v: unknown, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail('ERR_ARG', name, 'a finite number > 0', v);
  return v;
}

export function finiteInRange(name: string, v: unknown, lo: number, hi: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) fail('ERR_ARG', name, `a number in [${lo}, ${hi}]`, v);
  return v;
}

export function nonNegativeFinite(name: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail('ERR_ARG', name, 'a finite number >= 0', v);
  return v;
}

export function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    fail('ERR_ARG', name, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, v);
  return v as T;
}

export function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail('ERR_TYPE', name, 'a boolean', v);
  return v;
}

export function int32Array(name: string, v: unknown, length?: number): Int32Array {
  if (!(v instanceof Int32Array)) fail('ERR_TYPE', name, 'an Int32Array', v);
  checkNotDetached(name, v);
  if (length !== undefined && v.length !== length) fail('ERR_SHAPE', name, `length ${length}`, `#length ${v.length}`);
  return v;
}

export function float32Array(name: string, v: unknown, length?: number): Float32Array {
  if (!(v instanceof Float32Array)) fail('ERR_TYPE', name, 'a Float32Array', v);
  checkNotDetached(name, v);
  if (length !== undefined && v.length !== length) fail('ERR_SHAPE', name, `length ${length}`, `#length ${v.length}`);
  return v;
}

/**
 * The option names of an options type, as an object with every key of T and no other (so the
 * compiler keeps the list in step with the interface): `optionKeys<Opts>({ scale: true, ... })`.
 */
export function optionKeys<T extends object>(keys: { [K in keyof Required<T>]: true }): readonly string[] {
  return Object.keys(keys);
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps) between two short strings. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/** The known name closest to `key` (case-insensitively), if it is close enough to be a typo. */
export function nearestName(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const dist = editDistance(key.toLowerCase(), k.toLowerCase());
    if (dist < bestDistance) [best, bestDistance] = [k, dist];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** ERR_ARG for a key of `o` that is not in `known`, naming the nearest valid one. */
export function checkKeys(name: string, o: object, known: readonly string[]): void {
  for (const key of Object.keys(o)) {
    if (known.includes(key)) continue;
    const near = nearestName(key, known);
    throw makeError(
      'ERR_ARG',
      `${name}: unknown option '${key}'${near ? `; did you mean '${near}'?` : ''} (expected one of ${known.map((k) => `'${k}'`).join(', ')})`,
    );
  }
}

/**
 * Options objects: undefined becomes {}, anything else that is not a plain object is an error,
 * and so is a key not in `known` (a typo would otherwise be silently ignored).
 */
export function options<T extends object>(name: string, v: unknown, known: readonly string[]): Partial<T> {
  const o = optionsObject<T>(name, v);
  checkKeys(name, o, known);
  return o;
}

/** {@link options} without the key check, for a wrapper that hands the object to a function that checks them. */
export function optionsObject<T extends object>(name: string, v: unknown): Partial<T> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) fail('ERR_TYPE', name, 'an options object', v);
  return v as Partial<T>;
}
