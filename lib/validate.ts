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

/** Options objects: undefined becomes {}, anything else that is not a plain object is an error. */
export function options<T extends object>(name: string, v: unknown): Partial<T> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) fail('ERR_TYPE', name, 'an options object', v);
  return v as Partial<T>;
}
