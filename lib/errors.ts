/**
 * Errors thrown by fusedloss. Every error is a {@link FusedLossError} with a stable `code`;
 * the subclasses group the codes so callers can `instanceof` a family. Messages name the
 * argument, what was expected and what was received.
 * @module
 */

/** Every code fusedloss throws. Codes are stable across versions. */
export type ErrorCode =
  | 'ERR_TYPE' // an argument of the wrong JS type
  | 'ERR_SHAPE' // shapes or lengths that do not agree
  | 'ERR_DTYPE' // an unsupported or mismatched element type
  | 'ERR_ARG' // an option out of its range (scale <= 0, unknown reduction, ...)
  | 'ERR_LABEL_RANGE' // a label outside [0, N) that is not ignoreIndex
  | 'ERR_CSR' // malformed positives/exclude (rowPtr, cols, duplicates, weights)
  | 'ERR_K_RANGE' // soft top-k: k outside (0, N)
  | 'ERR_NON_FINITE' // NaN or +Infinity in the scores
  | 'ERR_DETACHED' // a TypedArray whose ArrayBuffer was transferred
  | 'ERR_DISPOSED' // a tensor used after dispose()
  | 'ERR_BUSY' // a buffer an async call still in flight writes (or reads, when this call writes it)
  | 'ERR_DEVICE' // inputs on different devices
  | 'ERR_CUDA_UNAVAILABLE' // CUDA asked for but not built or no GPU
  | 'ERR_CUDA' // a CUDA call failed
  | 'ERR_CUDA_OOM' // the GPU is out of memory
  | 'ERR_NATIVE_LOAD' // the native addon could not be loaded
  | 'ERR_PEER_MISSING' // an optional peer dependency (@tensorflow/tfjs for fusedloss/tfjs) is not installed
  | 'ERR_INTERNAL'; // a bug: please report it

/** Base class of every error fusedloss throws. */
export class FusedLossError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A bad argument: wrong type, shape, dtype, range, labels, CSR structure or k. */
export class ArgumentError extends FusedLossError {}
/** NaN or +Infinity in the scores (−Infinity is allowed: it marks an entry out). */
export class NonFiniteError extends FusedLossError {}
/** A tensor used after dispose(), a TypedArray whose buffer was detached, or a buffer an async call in flight is using (ERR_BUSY). */
export class LifetimeError extends FusedLossError {}
/** CUDA is unavailable, a CUDA call failed, or the GPU ran out of memory. */
export class CudaError extends FusedLossError {}
/** The native addon or an optional peer dependency could not be loaded, or an internal invariant failed. */
export class NativeError extends FusedLossError {}

const classes: Record<ErrorCode, new (code: ErrorCode, message: string) => FusedLossError> = {
  ERR_TYPE: ArgumentError,
  ERR_SHAPE: ArgumentError,
  ERR_DTYPE: ArgumentError,
  ERR_ARG: ArgumentError,
  ERR_LABEL_RANGE: ArgumentError,
  ERR_CSR: ArgumentError,
  ERR_K_RANGE: ArgumentError,
  ERR_DEVICE: ArgumentError,
  ERR_NON_FINITE: NonFiniteError,
  ERR_DETACHED: LifetimeError,
  ERR_DISPOSED: LifetimeError,
  ERR_BUSY: LifetimeError,
  ERR_CUDA_UNAVAILABLE: CudaError,
  ERR_CUDA: CudaError,
  ERR_CUDA_OOM: CudaError,
  ERR_NATIVE_LOAD: NativeError,
  ERR_PEER_MISSING: NativeError,
  ERR_INTERNAL: NativeError,
};

/** Makes the FusedLossError subclass that belongs to `code`. */
export function makeError(code: ErrorCode, message: string): FusedLossError {
  return new classes[code](code, message);
}

/** Turns an error thrown by the addon (a plain Error with a `code`) into a FusedLossError. */
export function fromNative(e: unknown): FusedLossError {
  if (e instanceof FusedLossError) return e;
  const err = e as { code?: string; message?: string };
  const code = (err && typeof err.code === 'string' && err.code in classes ? err.code : 'ERR_INTERNAL') as ErrorCode;
  return makeError(code, err?.message ?? String(e));
}
