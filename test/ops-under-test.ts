// The ops the reliability tests drive (test/property, test/async, test/leak). Adding an op to
// all of them is one entry in `opsUnderTest` below. (test/workers.test.ts runs every op of
// scripts/ops.mjs, the package's op registry, so it needs no entry here.)
//
// An entry knows how to draw random valid cases, build their inputs, call the op sync and
// async, compute the float64 reference, judge the result against SPEC 5, break valid inputs
// in every way a caller can (each mutation says which error code it must produce), and make a
// heavy input (tens of ms of work) and a small one.
import fc from 'fast-check';
import { makeRng, randomScores } from '../scripts/lib/random.mjs';
import { native } from '../dist/native.js';
import { fl } from './helpers';
import { refBinaryCrossEntropy, refDecoupledSoftmax, refMultiLabelSoftmax, refSoftmaxCrossEntropy, type RefPositives, type RefResult } from './reference/index.js';
import { dclwWeights, diagonalPositives, refDecoupledContrastive, refInfoNCE } from './reference/index.js';
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
  /** Why `got` is out of SPEC tolerance, or undefined when it is within. */
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
function heavyScores(x: Float32Array, rows: number, cols: number): Scores {
  const data = inAddonMemory(x);
  return { arg: fl.tensor(data, [rows, cols]), formOpts: {}, data, dtype: 'float32', rows, cols, values: x };
}

const DTYPES: DType[] = ['float32', 'float16', 'bfloat16'];
/** How scores are handed over: a Tensor, a { dtype, shape, data } object, or a bare array with opts.shape. */
type Form = 'tensor' | 'like' | 'bare';
/** Value distributions: SPEC's normal/flat/peaked rows, rows with −Infinity entries (whole rows too), large magnitudes. */
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
function withElement(s: Scores, index: number, value: number): Scores {
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

/** |got − ref| / max(1, |ref|) per element (SPEC 5: loss rel err ≤ 1e-5); equal infinities are exact. */
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
 * The gradient against the float64 reference: ‖g − ref‖ ≤ 1e-5·‖ref‖ (SPEC 5, fp32), plus twice
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

// ---------- logSumExp ----------

interface LseInputs {
  s: Scores;
  opts: Record<string, unknown>;
}

function refLogSumExp(x: Float32Array, rows: number, cols: number, scale: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let c = 0; c < cols; c++) m = Math.max(m, scale * x[r * cols + c]);
    let s = 0;
    if (m !== -Infinity) for (let c = 0; c < cols; c++) s += Math.exp(scale * x[r * cols + c] - m);
    out[r] = m === -Infinity ? -Infinity : m + Math.log(s);
  }
  return out;
}

const logSumExp: OpUnderTest<ScoresCase & { scale?: number }, LseInputs> = {
  name: 'logSumExp',
  cases: fc
    .tuple(scoresCase, fc.option(fc.double({ min: 1e-3, max: 50, noNaN: true }), { nil: undefined }))
    .map(([c, scale]) => ({ ...c, scale })),
  make(c) {
    const s = makeScores(c);
    return { s, opts: c.scale === undefined ? {} : { scale: c.scale } };
  },
  sync: (i) => ({ lse: fl.logSumExp(i.s.arg as HostArray, optsOf(i)) }),
  async: (i) => fl.logSumExpAsync(i.s.arg as HostArray, optsOf(i)).then((lse) => ({ lse })),
  reference: (i) => ({ lse: refLogSumExp(i.s.values, i.s.rows, i.s.cols, (i.opts.scale as number | undefined) ?? 1) }),
  check: (got, ref) => checkElementwise('lse', got.lse as Float32Array, ref.lse as ArrayLike<number>, 1e-5),
  views: (i) => [i.s.data],
  mutations: [...scoresMutations<LseInputs>(), ...optionMutations<LseInputs>()],
  heavy() {
    // 64 × 262147 fp32 (67 MB): a few tens of ms per call on two cores.
    const rows = 64;
    const cols = 262147;
    const rng = makeRng(7);
    const x = new Float32Array(rows * cols);
    for (let i = 0; i < x.length; i++) x[i] = rng.u() * 8 - 4;
    return { s: heavyScores(x, rows, cols), opts: {} };
  },
  small: () => logSumExp.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2 }),
};

// ---------- softmaxCrossEntropy ----------

interface CeCase extends ScoresCase {
  scale?: number;
  labelSmoothing?: number;
  zLoss?: number;
  softcap?: number;
  classWeights: boolean;
  ignoreSome: boolean;
  reduction: 'mean' | 'sum' | 'none';
}

interface CeInputs {
  s: Scores;
  labels: Int32Array;
  opts: Record<string, unknown>;
}

const ceOutputs = (r: fl.SoftmaxCrossEntropyResult): Outputs => {
  const o: Outputs = { loss: r.loss, rowLoss: r.rowLoss!, dScale: r.dScale ?? 0, lse: r.lse! };
  if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
  return o;
};

const softmaxCrossEntropy: OpUnderTest<CeCase, CeInputs> = {
  name: 'softmaxCrossEntropy',
  cases: fc
    .record({
      c: scoresCase,
      scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
      labelSmoothing: fc.option(fc.constantFrom(0.1, 0.5, 1), { nil: undefined }),
      zLoss: fc.option(fc.constantFrom(1e-4, 1e-2), { nil: undefined }),
      softcap: fc.option(fc.constantFrom(3, 30), { nil: undefined }),
      classWeights: fc.boolean(),
      ignoreSome: fc.boolean(),
      reduction: fc.constantFrom<'mean' | 'sum' | 'none'>('mean', 'sum', 'none'),
    })
    .map(({ c, ...rest }) => ({ ...c, ...rest })),
  make(c) {
    const s = makeScores(c);
    const rng = makeRefRng(c.seed ^ 0x27d4eb2f);
    // With no classes (N = 0) every row must be ignored.
    const labels = Int32Array.from({ length: c.rows }, () => (c.cols === 0 || (c.ignoreSome && rng.uniform() < 0.3) ? -100 : rng.int(0, c.cols)));
    const opts: Record<string, unknown> = { gradScale: true, returnLse: true, reduction: c.reduction };
    for (const k of ['scale', 'labelSmoothing', 'zLoss', 'softcap'] as const) if (c[k] !== undefined) opts[k] = c[k];
    // No softcap on ±6e4 scores: tanh saturates there, and the float64 reference's 1 − tanh²
    // underflows to 0 where the kernel's sech² keeps 1e-18; with smoothing, the fp32 rounding of
    // z = c·tanh(·) then decides the gradient. softmaxCrossEntropy.test.ts covers huge softcapped logits.
    // Nor smoothing: its term ε(w̄·lse − Σ_j w_j z_j / N) is a difference of two sums of size
    // |z| ~ 6e4 that cancel when N is tiny (N = 1: exactly), so fp32 sums leave ~1e-3 of a loss of 0.
    if (c.kind === 'large') {
      delete opts.softcap;
      delete opts.labelSmoothing;
    }
    if (c.classWeights) opts.classWeights = Float32Array.from({ length: c.cols }, () => 0.25 + 2 * rng.uniform());
    if (c.reduction === 'none') opts.gradOutput = Float32Array.from({ length: c.rows }, () => rng.normal());
    return { s, labels, opts };
  },
  sync: (i) => ceOutputs(fl.softmaxCrossEntropy(i.s.arg as HostArray, i.labels, optsOf(i))),
  async: (i) => fl.softmaxCrossEntropyAsync(i.s.arg as HostArray, i.labels, optsOf(i)).then(ceOutputs),
  // Without a softcap, the float64 loss of the z = scale·S the kernel works on, z rounded to
  // fp32 as the kernel rounds it (at |z| ~ 1e6 that rounding alone moves a probability), then
  // dL/dS = scale·dL/dz and dScale = Σ dL/dz·S. A softcap bounds z, so it goes in as it is.
  reference: (i) => {
    const o = { ...i.opts } as Record<string, never>;
    if (i.opts.softcap !== undefined) {
      const r = refSoftmaxCrossEntropy(i.s.values, i.s.rows, i.s.cols, i.labels, o);
      return { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale, grad: r.grad, lse: r.lse! };
    }
    const scale = Math.fround((i.opts.scale as number | undefined) ?? 1);
    const z = i.s.values.map((v) => Math.fround(scale * v));
    const r = refSoftmaxCrossEntropy(z, i.s.rows, i.s.cols, i.labels, { ...o, scale: 1 });
    let dScale = 0;
    for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * i.s.values[k];
    return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale), lse: r.lse! };
  },
  check(got, ref, i) {
    const why =
      checkElementwise('loss', new Float32Array([got.loss as number]), [ref.loss as number], 1e-5) ??
      checkElementwise('rowLoss', got.rowLoss as Float32Array, ref.rowLoss as ArrayLike<number>, 1e-5) ??
      checkElementwise('lse', got.lse as Float32Array, ref.lse as ArrayLike<number>, 1e-5);
    if (why) return why;
    // dScale sums the dense part in fp32 lanes and corrects the label in double: that cancels
    // up to u_i·w_max·max_j |S_ij| per row, rounded in fp32.
    const cw = i.opts.classWeights as Float32Array | undefined;
    const wMax = cw ? cw.reduce((a, b) => Math.max(a, b), 0) : 1;
    let cancel = 0;
    for (let r = 0; r < i.s.rows; r++) {
      if (i.labels[r] === -100) continue;
      const u = i.opts.reduction === 'none' ? Math.abs((i.opts.gradOutput as Float32Array)[r]) : 1;
      cancel += u * wMax * rowMaxAbs(i.s, r);
    }
    if (i.opts.reduction === 'mean') cancel /= Math.max(1e-30, [...i.labels].filter((y) => y !== -100).reduce((a, y) => a + (cw ? cw[y] : 1), 0));
    return checkGradient(got.grad as Float32Array, ref.grad as ArrayLike<number>, i.s.dtype, 0) ?? checkDScale(got.dScale as number, ref.dScale as number, cancel);
  },
  views: (i) => [i.s.data, i.labels, ...(i.opts.classWeights ? [i.opts.classWeights as Float32Array] : []), ...(i.opts.gradOutput ? [i.opts.gradOutput as Float32Array] : [])],
  mutations: [
    // A scores mutation may turn empty scores into 1×1; the labels follow the new shape.
    ...scoresMutations<CeInputs>().map((m) => ({
      ...m,
      apply: (i: CeInputs) => {
        const j = m.apply(i);
        return j.s.rows === i.s.rows && j.s.cols === i.s.cols ? j : { ...j, labels: new Int32Array(j.s.rows), opts: { gradScale: true } };
      },
    })),
    ...optionMutations<CeInputs>(),
    { name: 'labels missing', code: 'ERR_TYPE', apply: (i) => ({ ...i, labels: undefined as unknown as Int32Array }) },
    { name: 'labels a plain array', code: 'ERR_TYPE', apply: (i) => ({ ...i, labels: Array.from(i.labels) as unknown as Int32Array }) },
    { name: 'labels one too many', code: 'ERR_SHAPE', apply: (i) => ({ ...i, labels: new Int32Array(i.labels.length + 1) }) },
    // On empty scores, a 1×1 matrix (with default options) to hold the bad label.
    { name: 'a label of N', code: 'ERR_LABEL_RANGE', apply: (i) => (i.s.rows ? { ...i, labels: new Int32Array(i.s.rows).fill(i.s.cols) } : { s: withElement(i.s, 0, 0), labels: new Int32Array([1]), opts: {} }) },
    { name: 'a label of −1', code: 'ERR_LABEL_RANGE', apply: (i) => (i.s.rows ? { ...i, labels: new Int32Array(i.s.rows).fill(-1) } : { s: withElement(i.s, 0, 0), labels: new Int32Array([-1]), opts: {} }) },
    { name: 'labelSmoothing 1.5', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, labelSmoothing: 1.5 } }) },
    { name: 'softcap 0', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, softcap: 0 } }) },
    { name: 'classWeights one too many', code: 'ERR_SHAPE', apply: (i) => ({ ...i, opts: { ...i.opts, classWeights: new Float32Array(i.s.cols + 1).fill(1) } }) },
    { name: 'an unknown reduction', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, reduction: 'avg', gradOutput: undefined } }) },
  ],
  heavy() {
    // 128 × 32771 fp32 (17 MB): tens of ms per call on two cores, the gradient into a reused
    // `out` as in a training loop.
    const rows = 128, cols = 32771;
    const x = randomScores(makeRng(11), rows, cols, 'normal');
    const labels = Int32Array.from({ length: rows }, (_, r) => (r * 7919) % cols);
    const out = fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]);
    return { s: heavyScores(x, rows, cols), labels, opts: { out } };
  },
  small: () => softmaxCrossEntropy.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, labelSmoothing: 0.1, zLoss: 1e-4, softcap: 30, classWeights: true, ignoreSome: true, reduction: 'none' }),
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const opsUnderTest: OpUnderTest<any, any>[] = [logSumExp, softmaxCrossEntropy];

// ---------- losses over CSR positives: decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy ----------

interface PositivesInputs {
  s: Scores;
  positives: { rowPtr: Int32Array; cols: Int32Array; weights?: Float32Array };
  opts: Record<string, unknown>;
}

interface PositivesCase extends ScoresCase {
  scale?: number;
  maxPositives: number;
  weighted: boolean;
  exclude: boolean;
  reduction: 'mean' | 'sum' | 'none';
}

type PositivesRef = (S: Float32Array, B: number, N: number, p: RefPositives, o: Record<string, unknown>) => RefResult;
type PositivesFn = (s: never, p: PositivesInputs['positives'], o: Record<string, unknown>) => fl.LossResult;

/** The empty CSR of `rows` rows (used when a mutation turns empty scores into a 1×1 matrix). */
const emptyCsr = (rows: number) => ({ rowPtr: new Int32Array(rows + 1), cols: new Int32Array(0) });

function positivesOp(name: string, fn: PositivesFn, fnAsync: (...a: Parameters<PositivesFn>) => Promise<fl.LossResult>, ref: PositivesRef): OpUnderTest<PositivesCase, PositivesInputs> {
  const outputs = (r: fl.LossResult): Outputs => {
    const o: Outputs = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0 };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };
  const csrMutation = (mname: string, code: string, f: (p: PositivesInputs['positives'], rows: number, cols: number) => unknown): Mutation<PositivesInputs> => ({
    name: mname,
    code,
    apply: (i) => ({ ...i, positives: f(i.positives, i.s.rows, i.s.cols) as PositivesInputs['positives'] }),
  });
  const op: OpUnderTest<PositivesCase, PositivesInputs> = {
    name,
    cases: fc
      .record({
        c: scoresCase,
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        maxPositives: fc.integer({ min: 0, max: 4 }),
        weighted: fc.boolean(),
        exclude: fc.boolean(),
        reduction: fc.constantFrom<'mean' | 'sum' | 'none'>('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => ({ ...c, ...rest })),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x5bd1e995);
      const positives = randomPositives(rng, c.rows, c.cols, { min: Math.min(1, c.maxPositives), max: c.maxPositives, weighted: c.weighted });
      const opts: Record<string, unknown> = { gradScale: true, reduction: c.reduction };
      if (c.scale !== undefined) opts.scale = c.scale;
      if (c.exclude) opts.exclude = randomExclude(rng, c.rows, c.cols, positives, { max: 5 });
      if (c.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { s, positives, opts };
    },
    sync: (i) => outputs(fn(i.s.arg as never, i.positives, optsOf(i))),
    async: (i) => fnAsync(i.s.arg as never, i.positives, optsOf(i)).then(outputs),
    // The float64 loss of the z = scale·S the kernel works on: scale and z rounded to fp32 as
    // the kernel rounds them (at |z| ~ 2e4, that rounding alone moves a probability by 1e-3).
    // Then dL/dS = scale·dL/dz and dScale = Σ dL/dz·S.
    reference: (i) => {
      const scale = Math.fround((i.opts.scale as number | undefined) ?? 1);
      const z = i.s.values.map((v) => Math.fround(scale * v));
      const r = ref(z, i.s.rows, i.s.cols, i.positives, { ...i.opts, scale: 1 });
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * i.s.values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale) };
    },
    check(got, ref, i) {
      const why =
        checkElementwise('loss', new Float32Array([got.loss as number]), [ref.loss as number], 1e-5) ??
        checkElementwise('rowLoss', got.rowLoss as Float32Array, ref.rowLoss as ArrayLike<number>, 1e-5);
      if (why) return why;
      // dScale sums the dense part over the row in fp32 lanes, then corrects the positives in
      // double: that cancels up to u_i·W_i·max_j |S_ij| per row (W_i = Σ w_p), rounded in fp32.
      // The gradient's own cancellation (W_i·p_j − w_ij at a positive) is of order u_i·W_i·scale:
      // a gradient that is exactly 0 in float64 comes out as ~1e-29 in fp32, and that is not an error.
      let cancel = 0, gradScaleOfRows = 0;
      const scale = Math.fround((i.opts.scale as number | undefined) ?? 1);
      for (let r = 0; r < i.s.rows; r++) {
        const red = i.opts.reduction;
        const u = red === 'sum' ? 1 : red === 'none' ? Math.abs((i.opts.gradOutput as Float32Array)[r]) : 1 / i.s.rows;
        let W = 0;
        for (let e = i.positives.rowPtr[r]; e < i.positives.rowPtr[r + 1]; e++) W += i.positives.weights?.[e] ?? 1;
        cancel += u * W * rowMaxAbs(i.s, r);
        gradScaleOfRows += u * W * scale;
      }
      return checkGradient(got.grad as Float32Array, ref.grad as ArrayLike<number>, i.s.dtype, 1e-7 * gradScaleOfRows) ?? checkDScale(got.dScale as number, ref.dScale as number, cancel);
    },
    views: (i) => {
      const x = i.opts.exclude as PositivesInputs['positives'] | undefined;
      return [i.s.data, i.positives.rowPtr, i.positives.cols, ...(i.positives.weights ? [i.positives.weights] : []), ...(x ? [x.rowPtr, x.cols] : [])];
    },
    mutations: [
      // A scores mutation may turn empty scores into 1×1; the positives follow the new shape.
      ...scoresMutations<PositivesInputs>().map((m) => ({
        ...m,
        apply: (i: PositivesInputs) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows ? j : { ...j, positives: emptyCsr(j.s.rows), opts: { ...j.opts, exclude: undefined, gradOutput: undefined } };
        },
      })),
      ...optionMutations<PositivesInputs>(),
      csrMutation('positives missing', 'ERR_TYPE', () => undefined),
      csrMutation('positives a plain object of arrays', 'ERR_TYPE', (p) => ({ rowPtr: Array.from(p.rowPtr), cols: Array.from(p.cols) })),
      csrMutation('rowPtr one short', 'ERR_SHAPE', (p, rows) => ({ ...p, rowPtr: new Int32Array(rows) })),
      csrMutation('rowPtr[0] not 0', 'ERR_CSR', (p) => ({ ...p, rowPtr: p.rowPtr.map((v, k) => (k === 0 ? 1 : v)) })),
      csrMutation('a column out of range', 'ERR_CSR', (p, rows, cols) => ({
        rowPtr: p.rowPtr.map((v, k) => (k === rows && rows > 0 ? v + 1 : v)),
        cols: Int32Array.from([...p.cols, cols]),
      })),
      csrMutation('weights of the wrong length', 'ERR_SHAPE', (p) => ({ ...p, weights: new Float32Array(p.cols.length + 1).fill(1) })),
      { name: 'exclude with weights', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, exclude: { ...emptyCsr(i.s.rows), weights: new Float32Array(0) } } }) },
    ],
    heavy() {
      // 128 × 32768 fp32 (16 MB), 3 positives per row: tens of ms per call on two cores. The
      // gradient goes into a reused `out`, as in a training loop: a fresh 16 MB output per call
      // (allocated and poisoned on the main thread) would itself stall the event loop.
      const rows = 128, cols = 32768;
      const rng = makeRng(9);
      const x = randomScores(rng, rows, cols, 'normal');
      const positives = randomPositives(makeRefRng(9), rows, cols, { min: 3, max: 3 });
      const out = fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]);
      return { s: heavyScores(x, rows, cols), positives, opts: { out } };
    },
    small: () => op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, maxPositives: 3, weighted: true, exclude: true, reduction: 'none' }),
  };
  return op;
}

opsUnderTest.push(
  positivesOp('decoupledSoftmax', fl.decoupledSoftmax as never, fl.decoupledSoftmaxAsync as never, refDecoupledSoftmax as never),
  positivesOp('multiLabelSoftmax', fl.multiLabelSoftmax as never, fl.multiLabelSoftmaxAsync as never, refMultiLabelSoftmax as never),
  positivesOp('binaryCrossEntropy', fl.binaryCrossEntropy as never, fl.binaryCrossEntropyAsync as never, refBinaryCrossEntropy as never),
);

// ---------- softTopKLoss ----------

interface TopKCase extends ScoresCase {
  k: number | 'numPositives';
  alpha: number;
  positivesSeed: number;
}

interface TopKInputs {
  s: Scores;
  positives: { rowPtr: Int32Array; cols: Int32Array; weights?: Float32Array };
  opts: Record<string, unknown>;
}

/** 0 to 3 positives per row (distinct columns), weights on odd seeds. */
function topKPositives(rows: number, cols: number, seed: number): TopKInputs['positives'] {
  const rng = makeRng(seed);
  const rowPtr = new Int32Array(rows + 1);
  const c: number[] = [];
  for (let i = 0; i < rows; i++) {
    const taken = new Set<number>();
    const n = rng.int(0, 4);
    while (taken.size < n) taken.add(rng.int(0, cols));
    c.push(...taken);
    rowPtr[i + 1] = c.length;
  }
  const cs = Int32Array.from(c);
  return seed % 2 ? { rowPtr, cols: cs, weights: Float32Array.from(cs, () => 0.5 + rng.u()) } : { rowPtr, cols: cs };
}

/** ln σ(a), stable. */
const logSig = (a: number) => (a >= 0 ? -Math.log1p(Math.exp(-a)) : a - Math.log1p(Math.exp(a)));

/** SPEC 3.8 in float64 (mean reduction, scale 1): the threshold by bisection, then loss and gradient. */
function refTopKLoss(i: TopKInputs): { loss: number; grad: Float64Array } {
  const { rows, cols, values } = i.s;
  const alpha = i.opts.alpha as number;
  const grad = new Float64Array(rows * cols);
  let loss = 0;
  const sig = (a: number) => (a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a)));
  for (let r = 0; r < rows; r++) {
    const e0 = i.positives.rowPtr[r], e1 = i.positives.rowPtr[r + 1];
    if (e0 === e1) continue;
    const x = values.subarray(r * cols, (r + 1) * cols);
    let W = 0;
    for (let e = e0; e < e1; e++) W += i.positives.weights ? i.positives.weights[e] : 1;
    const k = i.opts.k === 'numPositives' ? Math.ceil(W) : (i.opts.k as number);
    let max = -Infinity, min = Infinity;
    for (const v of x) { max = Math.max(max, v); min = Math.min(min, v); }
    const shift = Math.log(k / (cols - k)) / alpha;
    let lo = -max + shift, hi = -min + shift;
    for (let it = 0; it < 100 && hi - lo > 1e-12 * Math.max(1, Math.abs(lo)); it++) {
      const t = (lo + hi) / 2;
      let f = 0;
      for (const v of x) f += sig(alpha * (v + t));
      if (f < k) lo = t;
      else hi = t;
    }
    const t = (lo + hi) / 2;
    const n = e1 - e0;
    let U = 0, V = 0;
    for (let e = e0; e < e1; e++) {
      const w = i.positives.weights ? i.positives.weights[e] : 1;
      const a = alpha * (x[i.positives.cols[e]] + t);
      loss -= (w / n) * logSig(a) / rows;
      const u = (alpha * (-w / n / rows)) * sig(-a);
      grad[r * cols + i.positives.cols[e]] = u;
      U += u;
    }
    for (const v of x) V += alpha * sig(alpha * (v + t)) * sig(-alpha * (v + t));
    for (let j = 0; j < cols; j++) grad[r * cols + j] -= (alpha * sig(alpha * (x[j] + t)) * sig(-alpha * (x[j] + t)) * U) / V;
  }
  return { loss, grad };
}

const softTopKLossOp: OpUnderTest<TopKCase, TopKInputs> = {
  name: 'softTopKLoss',
  // Normal and flat rows (peaked rows whose top entries saturate, and ±6e4 magnitudes, put the
  // root where float64 bisection cannot resolve it: test/softTopK.test.ts covers those).
  cases: fc
    .tuple(
      fc.oneof(
        { weight: 8, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 6 }), cols: fc.integer({ min: 9, max: 300 }) }) },
        { weight: 1, arbitrary: fc.record({ rows: fc.integer({ min: 1, max: 2 }), cols: fc.integer({ min: 32760, max: 70001 }) }) },
      ),
      fc.constantFrom(...DTYPES),
      fc.constantFrom<Kind>('normal', 'flat'),
      fc.constantFrom<Form>('tensor', 'like', 'bare'),
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant('numPositives' as const)),
      fc.constantFrom(1, 2, 5),
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    )
    .map(([s, dtype, kind, form, seed, k, alpha, positivesSeed]) => ({ ...s, dtype, kind, form, seed, k, alpha, positivesSeed })),
  make(c) {
    return { s: makeScores(c), positives: topKPositives(c.rows, c.cols, c.positivesSeed), opts: { k: c.k, alpha: c.alpha } };
  },
  sync(i) {
    const r = fl.softTopKLoss(i.s.arg as HostArray, i.positives, optsOf(i) as fl.SoftTopKLossOptions);
    return { loss: r.loss, grad: fl.toFloat32(r.grad!.data, r.grad!.dtype) };
  },
  async: (i) =>
    fl.softTopKLossAsync(i.s.arg as HostArray, i.positives, optsOf(i) as fl.SoftTopKLossOptions).then((r) => ({ loss: r.loss, grad: fl.toFloat32(r.grad!.data, r.grad!.dtype) })),
  reference: (i) => refTopKLoss(i),
  check(got, ref, i) {
    const loss = got.loss as number, rl = ref.loss as number;
    if (!(Math.abs(loss - rl) <= 1e-4 * Math.max(1e-3, Math.abs(rl)))) return `loss ${loss}, expected ${rl}`;
    const g = got.grad as Float32Array, rg = ref.grad as ArrayLike<number>;
    let num = 0, den = 0;
    for (let j = 0; j < rg.length; j++) {
      if (Number.isNaN(g[j])) return `grad[${j}] is NaN`;
      num += (g[j] - rg[j]) ** 2;
      den += rg[j] ** 2;
    }
    const tol = i.s.dtype === 'float32' ? 1e-4 : i.s.dtype === 'float16' ? 3e-3 : 2e-2;
    const err = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
    return den > 0 && err > tol ? `grad relative L2 error ${err.toExponential(2)} > ${tol}` : undefined;
  },
  views: (i) => [i.s.data, i.positives.rowPtr, i.positives.cols],
  mutations: [
    ...scoresMutations<TopKInputs>(),
    ...optionMutations<TopKInputs>(),
    { name: 'k 0', code: 'ERR_K_RANGE', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows) }, opts: { ...i.opts, k: 0 } }) },
    { name: 'k = N', code: 'ERR_K_RANGE', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows) }, opts: { ...i.opts, k: i.s.cols } }) },
    { name: 'k array of the wrong length', code: 'ERR_SHAPE', apply: (i) => ({ ...i, opts: { ...i.opts, k: new Int32Array(i.s.rows + 1).fill(1) } }) },
    { name: 'alpha 0', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, alpha: 0 } }) },
    { name: 'alpha NaN', code: 'ERR_ARG', apply: (i) => ({ ...i, opts: { ...i.opts, alpha: Number.NaN } }) },
    { name: 'a positive column out of range', code: 'ERR_CSR', apply: (i) => ({ ...i, positives: { rowPtr: i.positives.rowPtr.map((_, r) => r), cols: new Int32Array(i.s.rows).fill(i.s.cols) } }) },
    { name: 'positives not an object', code: 'ERR_TYPE', apply: (i) => ({ ...i, positives: 7 as never }) },
  ],
  heavy() {
    // 64 × 131072 fp32 (32 MB), DEXML's k = 5, α = 2: tens of ms per call on two cores. The
    // gradient goes into a reused tensor (opts.out), as in a training loop: the main thread
    // then only validates and launches.
    const rows = 64, cols = 131072;
    const rng = makeRng(8);
    const x = new Float32Array(rows * cols);
    for (let j = 0; j < x.length; j++) x[j] = rng.normal() * 3;
    const s: Scores = heavyScores(x, rows, cols);
    return { s, positives: topKPositives(rows, cols, 2), opts: { k: 5, alpha: 2, out: fl.tensor(inAddonMemory(new Float32Array(rows * cols)), [rows, cols]) } };
  },
  small: () => softTopKLossOp.make({ rows: 3, cols: 29, dtype: 'bfloat16', kind: 'normal', form: 'tensor', seed: 3, k: 3, alpha: 2, positivesSeed: 5 }),
};
opsUnderTest.push(softTopKLossOp);

// ---------- infoNCE (one-way, CSR positives, symmetric) and decoupledContrastive ----------

type Csr = { rowPtr: Int32Array; cols: Int32Array; weights?: Float32Array };

interface ContrastiveInputs {
  s: Scores;
  opts: Record<string, unknown>;
}

interface ContrastiveCase extends ScoresCase {
  /** diagonal positives, CSR positives, or (infoNCE) symmetric. */
  variant: 'diagonal' | 'csr' | 'symmetric';
  scale?: number;
  exclude: boolean;
  weighted: boolean;
  sigma?: number;
  reduction: 'mean' | 'sum' | 'none';
}

function contrastiveOp(name: 'infoNCE' | 'decoupledContrastive'): OpUnderTest<ContrastiveCase, ContrastiveInputs> {
  const dcl = name === 'decoupledContrastive';
  const fn = (dcl ? fl.decoupledContrastive : fl.infoNCE) as (s: unknown, o: Record<string, unknown>) => fl.LossResult;
  const fnAsync = (dcl ? fl.decoupledContrastiveAsync : fl.infoNCEAsync) as (s: unknown, o: Record<string, unknown>) => Promise<fl.LossResult>;
  const outputs = (r: fl.LossResult): Outputs => {
    const o: Outputs = { loss: r.loss, rowLoss: r.rowLoss, dScale: r.dScale ?? 0 };
    if (r.grad) o.grad = fl.toFloat32(r.grad.data, r.grad.dtype);
    return o;
  };
  // A call that must fail whatever the case: small scores of its own and one bad option.
  const broken = (mname: string, code: string, rows: number, cols: number, opts: Record<string, unknown>): Mutation<ContrastiveInputs> => ({
    name: mname,
    code,
    apply: (i) => {
      const x = new Float32Array(rows * cols).map((_, k) => (k % 5) / 3);
      return { s: { ...i.s, arg: fl.tensor(x, [rows, cols]), formOpts: {}, rows, cols }, opts: { scale: 2, ...opts } };
    },
  });
  const csr = (rowPtr: number[], cols: number[]): Csr => ({ rowPtr: Int32Array.from(rowPtr), cols: Int32Array.from(cols) });
  const op: OpUnderTest<ContrastiveCase, ContrastiveInputs> = {
    name,
    cases: fc
      .record({
        c: scoresCase,
        variant: dcl ? fc.constantFrom<'diagonal' | 'csr'>('diagonal', 'csr') : fc.constantFrom<'diagonal' | 'csr' | 'symmetric'>('diagonal', 'csr', 'symmetric'),
        scale: fc.option(fc.constantFrom(1, 1 / 0.07, 20, 0.37), { nil: undefined }),
        exclude: fc.boolean(),
        weighted: fc.boolean(),
        sigma: dcl ? fc.option(fc.constantFrom(0.5, 0.1, 2), { nil: undefined }) : fc.constant(undefined),
        reduction: fc.constantFrom<'mean' | 'sum' | 'none'>('mean', 'sum', 'none'),
      })
      .map(({ c, ...rest }) => {
        // Symmetric needs a square S (up to 300×300: two column strips), diagonal positives
        // N ≥ B, DCL's CSR one column per row.
        if (rest.variant === 'symmetric') {
          const n = Math.min(Math.max(c.rows, c.cols), 300);
          return { ...c, ...rest, rows: n, cols: n };
        }
        const cols = rest.variant === 'diagonal' ? Math.max(c.cols, c.rows) : dcl && c.rows > 0 ? Math.max(c.cols, 1) : c.cols;
        return { ...c, ...rest, cols };
      }),
    make(c) {
      const s = makeScores(c);
      const rng = makeRefRng(c.seed ^ 0x27d4eb2f);
      const opts: Record<string, unknown> = { gradScale: true, reduction: c.reduction };
      if (c.scale !== undefined) opts.scale = c.scale;
      if (c.sigma !== undefined) opts.weighting = { sigma: c.sigma };
      if (c.variant === 'symmetric') opts.symmetric = true;
      let positives: Csr | undefined;
      if (c.variant === 'csr') {
        positives = dcl ? randomPositives(rng, c.rows, c.cols, { min: 1, max: 1 }) : randomPositives(rng, c.rows, c.cols, { min: 0, max: 4, weighted: c.weighted });
        opts.positives = positives;
      }
      if (c.exclude && c.variant !== 'symmetric') {
        const taken = positives ?? (diagonalPositives(c.rows) as RefPositives);
        opts.exclude = randomExclude(rng, c.rows, c.cols, taken, { max: 5 });
      }
      if (c.reduction === 'none') opts.gradOutput = new Float32Array(c.rows).map(() => rng.normal());
      return { s, opts };
    },
    sync: (i) => outputs(fn(i.s.arg, optsOf(i))),
    async: (i) => fnAsync(i.s.arg, optsOf(i)).then(outputs),
    // The float64 loss of the z = scale·S the kernel works on, z rounded to fp32 as the kernel
    // rounds it; DCLW's weights from the raw scores, as the kernel takes them.
    reference: (i) => {
      const { rows, cols, values } = i.s;
      const scale = Math.fround((i.opts.scale as number | undefined) ?? 1);
      const z = values.map((v) => Math.fround(scale * v));
      const o = { ...i.opts, scale: 1 } as Record<string, unknown>;
      let r: RefResult;
      if (dcl) {
        const sigma = (i.opts.weighting as { sigma: number } | undefined)?.sigma;
        const rowWeights = sigma === undefined || rows === 0 ? undefined : dclwWeights(values, rows, cols, sigma, (i.opts.positives as Csr | undefined) ?? diagonalPositives(rows));
        r = refDecoupledContrastive(z, rows, cols, { ...o, rowWeights } as never);
      } else {
        r = refInfoNCE(z, rows, cols, o as never);
      }
      let dScale = 0;
      for (let k = 0; k < r.grad.length; k++) if (r.grad[k] !== 0) dScale += r.grad[k] * values[k];
      return { loss: r.loss, rowLoss: r.rowLoss, dScale, grad: r.grad.map((g) => g * scale) };
    },
    check(got, ref, i) {
      // −∞ + ∞ (a DCL row with no negative left beside a row whose positive is −∞) is NaN in
      // both; every row loss is still compared.
      const bothNaN = Number.isNaN(got.loss as number) && Number.isNaN(ref.loss as number);
      const why =
        (bothNaN ? undefined : checkElementwise('loss', new Float32Array([got.loss as number]), [ref.loss as number], 1e-5)) ??
        checkElementwise('rowLoss', got.rowLoss as Float32Array, ref.rowLoss as ArrayLike<number>, 1e-5);
      if (why) return why;
      // The float64 reference has its own rounding: p − 1 at a positive holding all but 1e-30
      // of the probability is 0 there (the kernel keeps it), so allow 1e-15 of the row factors.
      const red = i.opts.reduction;
      const go = i.opts.gradOutput as Float32Array | undefined;
      const u = (r: number) => (red === 'sum' ? 1 : red === 'none' ? Math.abs(go![r]) : 1 / i.s.rows);
      let uSum = 0;
      for (let r = 0; r < i.s.rows; r++) uSum += u(r);
      const floor = 1e-15 * ((i.opts.scale as number | undefined) ?? 1) * uSum;
      // dScale sums dense terms in fp32 lanes and corrects the positives in double: that
      // cancels up to 4·u_i·max_j |S_ij| per row (Σ_j |dℓ_i/dz_ij| ≤ 4: two softmaxes, or DCLW's
      // |w| ≤ 2 plus one), rounded in fp32.
      let cancel = 0;
      for (let r = 0; r < i.s.rows; r++) cancel += 4 * u(r) * rowMaxAbs(i.s, r) * (i.opts.positives ? 4 : 1);
      return checkGradient(got.grad as Float32Array, ref.grad as ArrayLike<number>, i.s.dtype, floor) ?? checkDScale(got.dScale as number, ref.dScale as number, cancel);
    },
    views: (i) => {
      const p = i.opts.positives as Csr | undefined;
      const x = i.opts.exclude as Csr | undefined;
      const go = i.opts.gradOutput as Float32Array | undefined;
      return [i.s.data, ...(p ? [p.rowPtr, p.cols, ...(p.weights ? [p.weights] : [])] : []), ...(x ? [x.rowPtr, x.cols] : []), ...(go ? [go] : [])];
    },
    mutations: [
      // A scores mutation may turn empty scores into 1×1: the options fall back to the diagonal.
      ...scoresMutations<ContrastiveInputs>().map((m) => ({
        ...m,
        apply: (i: ContrastiveInputs) => {
          const j = m.apply(i);
          return j.s.rows === i.s.rows ? j : { ...j, opts: { ...j.opts, positives: undefined, exclude: undefined, gradOutput: undefined } };
        },
      })),
      ...optionMutations<ContrastiveInputs>(),
      broken('diagonal positives with N < B', 'ERR_SHAPE', 3, 2, {}),
      broken('an exclusion that is also a (diagonal) positive', 'ERR_CSR', 2, 3, { exclude: csr([0, 1, 1], [0]) }),
      broken('positives rowPtr one short', 'ERR_SHAPE', 2, 3, { positives: csr([0, 1], [0]) }),
      broken('positives column out of range', 'ERR_CSR', 2, 3, { positives: csr([0, 1, 2], [0, 3]) }),
      broken('positives a plain object of arrays', 'ERR_TYPE', 2, 3, { positives: { rowPtr: [0, 1, 2], cols: [0, 1] } }),
      ...(dcl
        ? [
            broken('sigma 0', 'ERR_ARG', 2, 3, { weighting: { sigma: 0 } }),
            broken('negative sigma', 'ERR_ARG', 2, 3, { weighting: { sigma: -0.5 } }),
            broken('two positives in a row', 'ERR_CSR', 2, 3, { positives: csr([0, 2, 3], [0, 1, 2]) }),
            broken('weighted positives', 'ERR_ARG', 2, 3, { positives: { ...csr([0, 1, 2], [0, 1]), weights: new Float32Array([1, 1]) } }),
          ]
        : [
            broken('symmetric on a non-square matrix', 'ERR_SHAPE', 2, 3, { symmetric: true }),
            broken('symmetric with CSR positives', 'ERR_ARG', 3, 3, { symmetric: true, positives: csr([0, 1, 2, 3], [0, 1, 2]) }),
          ]),
    ],
    heavy() {
      // Symmetric InfoNCE (or DCL) on 2048 × 2048 fp32 (16 MB): tens of ms per call on two
      // cores. The gradient goes into a reused `out`, as in a training loop.
      const n = 2048;
      const x = randomScores(makeRng(9), n, n, 'normal');
      const out = fl.tensor(inAddonMemory(new Float32Array(n * n)), [n, n]);
      return { s: heavyScores(x, n, n), opts: dcl ? { out, scale: 20 } : { out, scale: 20, symmetric: true } };
    },
    small: () =>
      op.make({ rows: 7, cols: 97, dtype: 'bfloat16', kind: 'peaked', form: 'tensor', seed: 3, scale: 2, variant: 'csr', exclude: true, weighted: true, sigma: dcl ? 0.5 : undefined, reduction: 'none' }),
  };
  return op;
}

opsUnderTest.push(contrastiveOp('infoNCE'), contrastiveOp('decoupledContrastive'));
