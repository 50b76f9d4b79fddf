/**
 * Tensors: a typed array (host) or a GPU buffer (CUDA), with a dtype and a shape.
 *
 * Half-precision data travels as its raw bits in a Uint16Array (`float16` is IEEE binary16,
 * `bfloat16` the upper half of a float32). Plain `{ dtype, shape, data }` objects (the
 * onnxruntime-node shape) are accepted wherever a Tensor is.
 * @module
 */
import { makeError } from './errors';
import { call, native, type DeviceBufferHandle, type NativeInput } from './native';
import { outputHost, poisonOutputs } from './outputs';
import { checkNotDetached, describe, fail, options } from './validate';

/** Element types. Gradients come back in the input's dtype unless asked otherwise. */
export type DType = 'float32' | 'float16' | 'bfloat16';
/** Where a tensor lives and where an op on it runs. */
export type Device = 'cpu' | 'cuda';
/** Host storage of each dtype. */
export type HostArray = Float32Array | Uint16Array;

/** A `{ dtype, shape, data }` object, as onnxruntime-node's Tensor has. */
export interface TensorLike {
  dtype: DType | string;
  shape: readonly number[];
  data: HostArray;
}

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16'];
/** The dtype code the native layer uses. */
export const dtypeCode = (d: DType): number => DTYPES.indexOf(d);
export const bytesPerElement = (d: DType): number => (d === 'float32' ? 4 : 2);

/** A host or device tensor. Device tensors own GPU memory: call `dispose()` (or use `using`). */
export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly device: Device;
  readonly size: number;
  #host: HostArray | undefined;
  #buffer: DeviceBufferHandle | undefined;

  /** @internal Use {@link tensor} or {@link toDevice}. */
  constructor(dtype: DType, shape: readonly number[], host: HostArray | undefined, buffer: DeviceBufferHandle | undefined) {
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.size = shape.reduce((a, b) => a * b, 1);
    this.device = buffer ? 'cuda' : 'cpu';
    this.#host = host;
    this.#buffer = buffer;
  }

  /**
   * The host data (no copy): a property, as in the `{ dtype, shape, data }` input form and
   * onnxruntime-node's Tensor. Throws ERR_DEVICE for a CUDA tensor: use {@link toHost}.
   */
  get data(): HostArray {
    if (this.#buffer) throw makeError('ERR_DEVICE', 'Tensor.data: this tensor lives on cuda; call toHost(t) first');
    return this.#host!;
  }

  /** True once a device tensor was disposed (host tensors are never disposed). */
  get disposed(): boolean {
    return this.#buffer ? this.#buffer.disposed : false;
  }

  /** Frees the GPU memory now. Idempotent; a no-op for host tensors. */
  dispose(): void {
    this.#buffer?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal What the addon takes: the typed array or the device buffer. */
  nativeInput(name: string): NativeInput {
    if (this.#buffer) {
      if (this.#buffer.disposed) throw makeError('ERR_DISPOSED', `${name}: the tensor was disposed`);
      return this.#buffer;
    }
    checkNotDetached(name, this.#host!);
    return this.#host!;
  }
}

function checkShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    fail('ERR_SHAPE', `${name}.shape`, 'an array of non-negative integers', shape);
  return shape as number[];
}

function checkData(name: string, dtype: DType, data: unknown, shape: number[]): HostArray {
  const want = dtype === 'float32' ? Float32Array : Uint16Array;
  if (!(data instanceof want)) fail('ERR_DTYPE', `${name}.data`, `a ${want.name} for dtype '${dtype}'`, data);
  checkNotDetached(`${name}.data`, data);
  const size = shape.reduce((a, b) => a * b, 1);
  if (data.length !== size) fail('ERR_SHAPE', `${name}.data`, `${size} elements for shape [${shape.join(', ')}]`, `#${data.length} elements`);
  return data;
}

function checkDType(name: string, d: unknown): DType {
  if (!DTYPES.includes(d as DType)) fail('ERR_DTYPE', name, `one of 'float32', 'float16', 'bfloat16'`, d);
  return d as DType;
}

/**
 * Makes a host tensor over `data` (no copy). `dtype` defaults to float32 for a Float32Array;
 * a Uint16Array needs `dtype: 'float16'` or `'bfloat16'`.
 */
export function tensor(data: HostArray, shape: readonly number[], opts?: { dtype?: DType }): Tensor {
  const o = options<{ dtype?: DType }>('tensor(): opts', opts, ['dtype']);
  const dtype = checkDType('tensor(): opts.dtype', o.dtype ?? (data instanceof Uint16Array ? undefined : 'float32'));
  const s = checkShape('tensor()', shape);
  return new Tensor(dtype, s, checkData('tensor()', dtype, data, s), undefined);
}

/** The keys of toDevice's options object. */
const TO_DEVICE_KEYS = ['device'] as const;

/**
 * Copies a host tensor to the GPU (`device` defaults to 'cuda': the device FUSEDLOSS_CUDA_DEVICE
 * names, else 0; `{ device: i }` picks CUDA device i). Ops run on their scores' device. Device
 * tensors are returned as they are.
 */
export function toDevice(t: Tensor | TensorLike, device: Device | { device: number } = 'cuda'): Tensor {
  const src = asTensor(t, 't');
  let index: number | undefined;
  if (typeof device === 'object' && device !== null) {
    index = options<{ device: number }>('toDevice(): opts', device, TO_DEVICE_KEYS).device;
    if (index === undefined || !Number.isInteger(index) || index < 0) fail('ERR_ARG', 'toDevice(): opts.device', 'a CUDA device index (an integer >= 0)', index);
    device = 'cuda';
  }
  if (device === 'cpu') return toHost(src);
  if (device !== 'cuda') fail('ERR_ARG', 'toDevice(): device', `'cpu', 'cuda' or { device: index }`, device);
  if (src.device === 'cuda') return src;
  const loaded = native();
  if (!loaded.cuda) {
    const why = loaded.notes.join('; ') || 'the CUDA backend is not loaded';
    throw makeError('ERR_CUDA_UNAVAILABLE', `toDevice(): CUDA is not available (${why})`);
  }
  const host = src.data;
  checkNotDetached('t', host);
  const buffer = call((a) => a.deviceAlloc(host.byteLength, index));
  try {
    call(() => buffer.copyFromHost(host));
  } catch (e) {
    buffer.dispose();
    throw e;
  }
  return new Tensor(src.dtype, src.shape, undefined, buffer);
}

/** Copies a device tensor back to a new host tensor; a host tensor is returned as it is. */
export function toHost(t: Tensor | TensorLike): Tensor {
  const src = asTensor(t, 't');
  if (src.device === 'cpu') return src;
  const buffer = src.nativeInput('t') as DeviceBufferHandle;
  const host = src.dtype === 'float32' ? new Float32Array(src.size) : new Uint16Array(src.size);
  call(() => buffer.copyToHost(host));
  return new Tensor(src.dtype, src.shape, host, undefined);
}

/**
 * @internal Makes a device tensor of `shape` for an op's output: uninitialised contents, or NaN
 * with FUSEDLOSS_POISON_OUTPUTS=1 (lib/outputs.ts).
 */
export function emptyDevice(dtype: DType, shape: readonly number[]): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const buffer = call((a) => a.deviceAlloc(size * bytesPerElement(dtype)));
  if (poisonOutputs) {
    try {
      call(() => buffer.copyFromHost(outputHost(dtype, size)));
    } catch (e) {
      buffer.dispose();
      throw e;
    }
  }
  return new Tensor(dtype, shape, undefined, buffer);
}

/**
 * @internal Accepts a Tensor, a `{ dtype, shape, data }` object, or a bare Float32Array or
 * Uint16Array together with `shape` (and `dtype` for a Uint16Array).
 */
export function asTensor(x: unknown, name: string, shape?: readonly number[], dtype?: DType): Tensor {
  if (x instanceof Tensor) return x;
  if (x instanceof Float32Array || x instanceof Uint16Array) {
    if (!shape) fail('ERR_SHAPE', `${name}`, 'a Tensor, or a typed array together with opts.shape', x);
    const d = checkDType(`${name} dtype`, dtype ?? (x instanceof Float32Array ? 'float32' : undefined));
    const s = checkShape(name, shape);
    return new Tensor(d, s, checkData(name, d, x, s), undefined);
  }
  if (x !== null && typeof x === 'object' && 'data' in x && 'shape' in x && 'dtype' in x) {
    const like = x as TensorLike;
    const d = checkDType(`${name}.dtype`, like.dtype);
    const s = checkShape(name, like.shape);
    return new Tensor(d, s, checkData(name, d, like.data, s), undefined);
  }
  return fail('ERR_TYPE', name, 'a Tensor, a { dtype, shape, data } object or a Float32Array/Uint16Array with a shape', x);
}

/** @internal A 2-D tensor [rows, cols] (a 1-D tensor is one row). */
export function asMatrix(x: unknown, name: string, shape?: readonly number[], dtype?: DType): { t: Tensor; rows: number; cols: number } {
  const t = asTensor(x, name, shape, dtype);
  if (t.shape.length === 2) return { t, rows: t.shape[0], cols: t.shape[1] };
  if (t.shape.length === 1) return { t, rows: 1, cols: t.shape[0] };
  return fail('ERR_SHAPE', `${name}.shape`, 'a 2-D shape [rows, cols]', `#[${t.shape.join(', ')}]`);
}

export { describe };
