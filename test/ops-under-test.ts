// The ops the reliability tests drive (test/property, test/async, test/lifetime, test/leak):
// every op of the registry, scripts/ops.mjs, each made from its entry's `property` part called
// with the kit below (the shared cases, mutations and checks, fast-check). The registry stays
// plain JS that node runs without the test dependencies.
//
// An op under test knows how to draw random valid cases, build their inputs, call the op sync
// and async, compute the float64 reference (its entry's `reference`, exported by the op's file
// scripts/ops/<op>.mjs), judge the result against docs/MATH.md §4, break valid
// inputs in every way a caller can (each mutation says which error code it must produce), and
// make a heavy input (tens of ms of work) and a small one.
import fc from 'fast-check';
import { makeRng, randomScores } from '../scripts/lib/random.mjs';
import { ops } from '../scripts/ops.mjs';
import { native } from '../dist/native.js';
import { fl } from './helpers';
import { makeRng as makeRefRng, randomExclude, randomPositives } from './reference/rng.js';

type HostArray = Float32Array | Uint16Array;
type DType = 'float32' | 'float16' | 'bfloat16';
export type Mode = 'sync' | 'async';
/** What a call returned, as float32 host values and numbers. */
export type Outputs = Record<string, Float32Array | number>;
/** The float64 reference's values, keyed like Outputs. */
export type RefOutputs = Record<string, ArrayLike<number> | number>;

/** A way to break a valid call. `code`: the error it must raise (undefined: any ERR_ code). */
export interface Mutation<I> {
  name: string;
  code?: string;
  apply(inputs: I): I;
}

export interface OpUnderTest<C, I> {
  name: string;
  /** Random valid cases: shapes, dtypes, options, input forms, value distributions. */
  cases: fc.Arbitrary<C>;
  /** The inputs of a case, deterministic from it. */
  make(c: C): I;
  sync(inputs: I): Outputs;
  /** The async twin, called without await-wrapping: a synchronous throw here is a bug the tests catch. */
  async(inputs: I): Promise<Outputs>;
  /** Float64 reference on the same inputs (half inputs dequantized exactly). */
  reference(inputs: I): RefOutputs;
  /** Why `got` is out of docs/MATH.md §4 tolerance, or undefined when it is within. */
  check(got: Outputs, ref: RefOutputs, inputs: I): string | undefined;
  /** The caller-owned arrays of the inputs: a call without `inplace` must leave them bitwise unchanged. */
  views(inputs: I): ArrayBufferView[];
  /** Ways to break the inputs of a valid case. */
  mutations: Mutation<I>[];
  /** Inputs for one call of tens of milliseconds (the event-loop test repeats it). */
  heavy(): I;
  /** Inputs for the long leak loop (cheap, but every code path of a call). */
  small(): I;
}

// ---------- shared pieces ----------

/**
 * A copy of `x` in memory the addon owns (as every op output is): what a training loop hands
 * back to the next call. Async calls use it in place; a caller's own array they copy first
 * (napi/job.h), which the heavy inputs below avoid so that the event-loop tests time the ops.
 */
export function inAddonMemory(x: Float32Array): Float32Array {
  const a = new Float32Array(native().addon.hostAlloc(Math.max(4, x.byteLength)), 0, x.length);
  a.set(x);
  return a;
}

/** Float32 scores of a heavy input, in addon memory. */
export function heavyScores(x: Float32Array, rows: number, cols: number): Scores {
  const data = inAddonMemory(x);
  return { arg: fl.tensor(data, [rows, cols]), formOpts: {}, data, dtype: 'float32', rows, cols, values: x };
}

export const DTYPES: DType[] = ['float32', 'float16', 'bfloat16'];
/** How scores are handed over: a Tensor, a { dtype, shape, data } object, or a bare array with opts.shape. */
type Form = 'tensor' | 'like' | 'bare';
/** Value distributions: the normal/flat/peaked rows, rows with −Infinity entries (whole rows too), large magnitudes. */
type Kind = 'normal' | 'flat' | 'peaked' | 'neginf' | 'large';

export interface ScoresCase {
  rows: number;
  cols: number;
  dtype: DType;
  kind: Kind;
  form: Form;
  seed: number;
}

/** Odd shapes mostly, multi-tile rows (N > 32768, N > 65536) sometimes, empty ones rarely. */
export const shapes = fc.oneof(
  { weight: 12, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 9 }), cols: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 2, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 3 }), cols: fc.integer({ min: 32760, max: 70001 }) }) },
  { weight: 1, arbitrary: fc.record({ rows: fc.integer({ min: 0, max: 2 }), cols: fc.integer({ min: 0, max: 2 }) }) },
);

export const scoresCase: fc.Arbitrary<ScoresCase> = fc
  .tuple(shapes, fc.constantFrom(...DTYPES), fc.constantFrom<Kind>('normal', 'flat', 'peaked', 'neginf', 'large'), fc.constantFrom<Form>('tensor', 'like', 'bare'), fc.integer({ min: 1, max: 2 ** 31 - 1 }))
  .map(([s, dtype, kind, form, seed]) => ({ ...s, dtype, kind, form, seed }));

/** Score values of a case in float32 (before conversion to the case's dtype). */
function scoreValues(c: ScoresCase): Float32Array {
  const rng = makeRng(c.seed);
  const base = c.kind === 'neginf' || c.kind === 'large' ? 'normal' : c.kind;
  const x = randomScores(rng, c.rows, c.cols, base);
  if (c.kind === 'neginf') {
    // A fifth of the entries out, and every third row entirely out (its LSE is −Infinity).
    for (let i = 0; i < x.length; i++) if (rng.u() < 0.2 || Math.floor(i / c.cols) % 3 === 2) x[i] = -Infinity;
  } else if (c.kind === 'large') {
    // Magnitudes near the top of float16's range: exp overflows unless the kernel is stable.
    for (let i = 0; i < x.length; i++) x[i] = (rng.u() * 2 - 1) * 6e4;
  }
  return x;
}

export interface Scores {
  /** What the op is given (a Tensor, a { dtype, shape, data } object or the bare array). */
  arg: unknown;
  /** Extra options the form needs (shape and dtype for a bare array). */
  formOpts: { shape?: number[]; dtype?: DType };
  data: HostArray;
  dtype: DType;
  rows: number;
  cols: number;
  /** The scores as the kernel sees them (half inputs dequantized exactly), for the reference. */
  values: Float32Array;
}

export function makeScores(c: ScoresCase): Scores {
  const x = scoreValues(c);
  const data: HostArray = c.dtype === 'float32' ? x : c.dtype === 'float16' ? fl.float32ToFloat16(x) : fl.float32ToBFloat16(x);
  const shape = [c.rows, c.cols];
  const values = fl.toFloat32(data, c.dtype);
  if (c.form === 'tensor') return { arg: fl.tensor(data, shape, { dtype: c.dtype }), formOpts: {}, data, dtype: c.dtype, rows: c.rows, cols: c.cols, values };
  if (c.form === 'like') return { arg: { dtype: c.dtype, shape, data }, formOpts: {}, data, dtype: c.dtype, rows: c.rows, cols: c.cols, values };
  return { arg: data, formOpts: { shape, dtype: c.dtype === 'float32' ? undefined : c.dtype }, data, dtype: c.dtype, rows: c.rows, cols: c.cols, values };
}

/** The bit pattern of NaN or +Infinity in a dtype. */
function badBits(dtype: DType, what: 'nan' | 'inf'): number {
  if (dtype === 'float32') return what === 'nan' ? Number.NaN : Infinity;
  if (dtype === 'float16') return what === 'nan' ? 0x7e00 : 0x7c00;
  return what === 'nan' ? 0x7fc0 : 0x7f80;
}

/** Copies the scores with one element replaced (the caller's array is never touched); empty scores become 1×1. */
export function withElement(s: Scores, index: number, value: number): Scores {
  const empty = s.data.length === 0;
  const data = (empty ? (s.dtype === 'float32' ? new Float32Array(1) : new Uint16Array(1)) : s.data.slice()) as HostArray;
  data[empty ? 0 : index] = value;
  const shape = empty ? [1, 1] : [s.rows, s.cols];
  const arg = s.arg instanceof fl.Tensor ? fl.tensor(data, shape, { dtype: s.dtype }) : ArrayBuffer.isView(s.arg) ? data : { dtype: s.dtype, shape, data };
  const formOpts = ArrayBuffer.isView(s.arg) ? { ...s.formOpts, shape } : s.formOpts;
  return { ...s, arg, formOpts, data, rows: shape[0], cols: shape[1] };
}

/** Mutations of the scores argument shared by every op taking a score matrix. */
export function scoresMutations<I extends { s: Scores }>(): Mutation<I>[] {
  const on = (name: string, code: string | undefined, f: (s: Scores) => Scores): Mutation<I> => ({ name, code, apply: (i) => ({ ...i, s: f(i.s) }) });
  const reshaped = (s: Scores, shape: unknown) => ({ ...s, arg: { dtype: s.dtype, shape, data: s.data }, formOpts: {} });
  return [
    on('NaN in the scores', 'ERR_NON_FINITE', (s) => withElement(s, s.data.length >> 1, badBits(s.dtype, 'nan'))),
    on('+Infinity in the scores', 'ERR_NON_FINITE', (s) => withElement(s, s.data.length - 1, badBits(s.dtype, 'inf'))),
    on('shape not matching the data', 'ERR_SHAPE', (s) => reshaped(s, [s.rows + 1, s.cols + 1])),
    on('a 3-D shape', 'ERR_SHAPE', (s) => reshaped(s, [1, s.rows, s.cols])),
    on('a negative dimension', 'ERR_SHAPE', (s) => reshaped(s, [-1, s.rows * s.cols])),
    on('a fractional dimension', 'ERR_SHAPE', (s) => reshaped(s, [0.5, 2 * s.rows * s.cols])),
    on('shape not an array', 'ERR_SHAPE', (s) => reshaped(s, `${s.rows}x${s.cols}`)),
    on('an unknown dtype', 'ERR_DTYPE', (s) => ({ ...s, arg: { dtype: 'int8', shape: [s.rows, s.cols], data: s.data }, formOpts: {} })),
    on('data of the other dtype', 'ERR_DTYPE', (s) => ({ ...s, arg: { dtype: s.dtype === 'float32' ? 'float16' : 'float32', shape: [s.rows, s.cols], data: s.data }, formOpts: {} })),
    on('a bare array without a shape', 'ERR_SHAPE', (s) => ({ ...s, arg: s.data, formOpts: {} })),
    on('a Float64Array', undefined, (s) => ({ ...s, arg: new Float64Array(s.data.length), formOpts: { shape: [s.rows, s.cols] } })),
    on('a plain JS array', 'ERR_TYPE', (s) => ({ ...s, arg: Array.from(s.values), formOpts: { shape: [s.rows, s.cols] } })),
    on('null', 'ERR_TYPE', (s) => ({ ...s, arg: null, formOpts: {} })),
    on('a string', 'ERR_TYPE', (s) => ({ ...s, arg: 'scores', formOpts: {} })),
    on('a detached buffer', 'ERR_DETACHED', (s) => {
      // A copy of the data, transferred away (detached), so the caller's array stays intact.
      const data = s.data.slice() as HostArray;
      const t = fl.tensor(data, [s.rows, s.cols], { dtype: s.dtype });
      structuredClone(data.buffer, { transfer: [data.buffer as ArrayBuffer] });
      return { ...s, arg: t, formOpts: {} };
    }),
  ];
}

/** The options a call gets: the op's options plus what the scores' form needs (a plain object only). */
export function optsOf(i: { s: Scores; opts: unknown }): Record<string, unknown> {
  const o = i.opts;
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return o as Record<string, unknown>;
  return { ...i.s.formOpts, ...o };
}

/** Mutations of an options object (those every op shares). */
export function optionMutations<I extends { opts: Record<string, unknown> }>(): Mutation<I>[] {
  const opt = (name: string, code: string, patch: Record<string, unknown>): Mutation<I> => ({ name, code, apply: (i) => ({ ...i, opts: { ...i.opts, ...patch } }) });
  return [
    opt('scale 0', 'ERR_ARG', { scale: 0 }),
    opt('negative scale', 'ERR_ARG', { scale: -2 }),
    opt('scale NaN', 'ERR_ARG', { scale: Number.NaN }),
    opt('scale Infinity', 'ERR_ARG', { scale: Infinity }),
    opt('scale as a string', 'ERR_ARG', { scale: '2' }),
    opt('an option name with a typo', 'ERR_ARG', { scael: 2 }),
    { name: 'options not an object', code: 'ERR_TYPE', apply: (i) => ({ ...i, opts: 'fast' as unknown as Record<string, unknown> }) },
    { name: 'options an array', code: 'ERR_TYPE', apply: (i) => ({ ...i, opts: [] as unknown as Record<string, unknown> }) },
  ];
}

/** |got − ref| / max(1, |ref|) per element (docs/MATH.md §4: loss rel err ≤ 1e-5); equal infinities are exact. */
export function checkElementwise(name: string, got: Float32Array, ref: ArrayLike<number>, tol: number): string | undefined {
  if (got.length !== ref.length) return `${name}: length ${got.length}, expected ${ref.length}`;
  for (let i = 0; i < ref.length; i++) {
    const g = got[i];
    const r = ref[i];
    if (Number.isNaN(g)) return `${name}[${i}] is NaN (unwritten or invalid), expected ${r}`;
    if (!Number.isFinite(r) || !Number.isFinite(g)) {
      if (g !== r) return `${name}[${i}] = ${g}, expected ${r}`;
      continue;
    }
    const err = Math.abs(g - r) / Math.max(1, Math.abs(r));
    if (err > tol) return `${name}[${i}] = ${g}, expected ${r} (error ${err.toExponential(2)} > ${tol})`;
  }
  return undefined;
}

/**
 * The gradient against the float64 reference: ‖g − ref‖ ≤ 1e-5·‖ref‖ (docs/MATH.md §4, fp32), plus twice
 * the error of rounding the exact gradient to a half dtype, plus `floor`, an absolute allowance
 * the op derives from its own cancellations. Every element must have been written (no NaN).
 */
export function checkGradient(got: Float32Array, ref: ArrayLike<number>, dtype: DType, floor: number): string | undefined {
  if (got.some(Number.isNaN)) return 'grad has NaN (unwritten or invalid)';
  const exact = Float32Array.from(ref);
  const rounded = dtype === 'float32' ? exact : fl.toFloat32(dtype === 'float16' ? fl.float32ToFloat16(exact) : fl.float32ToBFloat16(exact), dtype);
  let num = 0, den = 0, rnd = 0;
  for (let k = 0; k < ref.length; k++) {
    num += (got[k] - ref[k]) ** 2;
    den += ref[k] ** 2;
    rnd += (rounded[k] - ref[k]) ** 2;
  }
  const tol = 1e-5 * Math.sqrt(den) + 2 * Math.sqrt(rnd) + floor + 1e-30;
  return Math.sqrt(num) > tol ? `grad: ‖err‖ ${Math.sqrt(num).toExponential(2)} > ${tol.toExponential(2)}` : undefined;
}

/** dScale within 1e-4 relative, plus 1e-6 of `cancel`, the size of the terms its sum cancels. */
export function checkDScale(got: number, ref: number, cancel: number): string | undefined {
  return Math.abs(got - ref) <= 1e-4 * Math.max(1, Math.abs(ref)) + 1e-6 * cancel ? undefined : `dScale ${got} vs ${ref}`;
}

/** max_j |S_rj| over the finite entries of row r. */
export function rowMaxAbs(s: Scores, r: number): number {
  let m = 0;
  for (let k = 0; k < s.cols; k++) if (Number.isFinite(s.values[r * s.cols + k])) m = Math.max(m, Math.abs(s.values[r * s.cols + k]));
  return m;
}

// ---------- the ops ----------

/** What a registry entry's `property(kit, entry)` returns: an op under test without its calls. */
type PropertyParts = Omit<OpUnderTest<unknown, unknown>, 'name' | 'sync' | 'async'> & { outputs(result: unknown): Outputs };

interface RegistryEntry {
  name: string;
  fn: string;
  asyncFn: string;
  args: string[];
  reference: unknown;
  property(kit: unknown, entry: RegistryEntry): PropertyParts;
}

const kit = {
  fc, fl, makeRefRng, randomPositives, randomExclude, DTYPES, scoresCase, makeScores, heavyScores, inAddonMemory, withElement,
  scoresMutations, optionMutations, checkElementwise, checkGradient, checkDScale, rowMaxAbs,
};

/** The sync and async calls of an entry: fl[fn] and fl[asyncFn] on its arguments (scores, then labels or positives) and options. */
function underTest(entry: RegistryEntry): OpUnderTest<unknown, unknown> {
  if (typeof entry.reference !== 'function') throw new Error(`${entry.name}: its registry entry has no float64 reference function`);
  const parts = entry.property(kit, entry);
  const call = (fn: string, i: Record<string, unknown> & { s: Scores; opts: unknown }) =>
    (fl as unknown as Record<string, (...a: unknown[]) => unknown>)[fn](i.s.arg, ...entry.args.slice(1).map((kind) => i[kind]), optsOf(i));
  type Inputs = Parameters<typeof call>[1];
  return {
    ...parts,
    name: entry.name,
    sync: (i) => parts.outputs(call(entry.fn, i as Inputs)),
    async: (i) => (call(entry.asyncFn, i as Inputs) as Promise<unknown>).then(parts.outputs),
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const opsUnderTest: OpUnderTest<any, any>[] = (ops as RegistryEntry[]).map(underTest);
