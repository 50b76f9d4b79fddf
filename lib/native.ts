/**
 * Loading the native addon and choosing the backend.
 *
 * Two binaries may exist: the CPU addon (a prebuild from `prebuilds/`, else
 * `build/Release/fusedloss.node`, found by node-gyp-build) and the CUDA addon
 * (`build-cuda/Release/fusedloss_cuda.node`, which also holds every CPU kernel). They live
 * apart because node-gyp-build loads the first `.node` it finds.
 *
 * `FUSEDLOSS_DEVICE` (read once, at first use):
 * - `auto` (default): the CUDA addon when it loads and sees a GPU, else the CPU addon. Why
 *   CUDA was not used is reported by `backendInfo().loader.notes`.
 * - `cpu`: the CPU addon only.
 * - `cuda`: the CUDA addon, which must see a GPU; otherwise every call throws
 *   `ERR_CUDA_UNAVAILABLE` saying why.
 * `FUSEDLOSS_ADDON` names a `.node` file to load instead (sanitizer or debug builds).
 *
 * The environment variables are checked before anything loads: a value the native side would
 * silently ignore (`FUSEDLOSS_THREADS=abc`) is an ERR_ARG naming the variable instead.
 * @internal
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { BackendInfo } from './backend';
import type { NativeCsr } from './csr';
import { makeError, fromNative } from './errors';
import { fail } from './validate';

/** GPU memory owned by a JS object (napi/addon.cpp DeviceBuffer). */
export interface DeviceBufferHandle {
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
  copyFromHost(a: ArrayBufferView): void;
  copyToHost(a: ArrayBufferView): void;
}

/** What the native side reports: the public BackendInfo less what the loader adds (lib/backend.ts). */
export type RawBackendInfo = Omit<BackendInfo, 'loader'>;

export type NativeInput = ArrayBufferView | DeviceBufferHandle;

/**
 * The scores matrix every op passes down (native/api/args.h ScoresArgs). dtype: code 0/1/2 =
 * float32/float16/bfloat16. Each op's options object (napi/ops.cpp reads it) adds the matrix
 * itself, as `scores` (`logits` for softmaxCrossEntropy), and its own keys: the TS option names.
 */
export interface NativeShape {
  dtype: number;
  rows: number;
  cols: number;
  scale: number;
}

/** What every loss passes down (native/api/args.h LossArgs; lib/loss.ts builds it). reduction: 0 mean, 1 sum, 2 none; gradDtype: a dtype code. */
export interface NativeLossArgs extends NativeShape {
  reduction: number;
  gradDtype: number;
  gradScale: boolean;
  gradOutput?: Float32Array | undefined;
  /** Where the gradient goes (the scores themselves for in place); absent: no gradient. */
  grad?: NativeInput | undefined;
  rowLoss: Float32Array;
}

/** What every loss on a matrix product passes (napi/ops.cpp: linearCrossEntropy, read_embeddings): gradDtype is the first operand's gradient's. */
export interface NativeProductLossArgs {
  dtype: number;
  rows: number;
  dim: number;
  scale: number;
  reduction: number;
  gradOutput?: Float32Array | undefined;
  gradDtype: number;
  accumulate: boolean;
  gradScale: boolean;
  rowLoss: Float32Array;
  memoryBudget: number;
}

/** The threshold search of softTopK and softTopKLoss; k: one k for every row, or an Int32Array of one per row. */
export interface NativeTopKSolve {
  alpha: number;
  k: number | Int32Array;
  tol: number;
  maxIter: number;
  exclude?: NativeCsr | undefined;
}

/** What a loss returns from the native side; outputs are written into arrays passed in. */
export interface NativeLoss {
  loss: number;
  dScale: number;
}

/** An op of the addon: a sync call and its async twin, each taking one options object. */
export type Op<Name extends string, Args, R> = { [K in Name]: (o: Args) => R } & { [K in `${Name}Async`]: (o: Args) => Promise<R> };

/**
 * The functions the addon exports. The ops come from its op table (napi/ops.cpp); each op's
 * file (lib/ops/) declares its options object and adds itself here
 * (`declare module '../native' { interface NativeAddon extends Op<...> {} }`).
 */
export interface NativeAddon {
  backendInfo(): RawBackendInfo;
  /** On CUDA device `device`, else the selected one (FUSEDLOSS_CUDA_DEVICE, else 0). */
  deviceAlloc(bytes: number, device?: number): DeviceBufferHandle;
  /** Bandwidth probe for the benchmarks: dst ← src on the CPU pool, or on the GPU for two device buffers. */
  memcpy(dst: NativeInput, src: NativeInput): void;
  /** An ArrayBuffer of `bytes` (uninitialised) over memory the addon owns (napi/host_memory.h): async outputs. */
  hostAlloc(bytes: number): ArrayBuffer;
  /** V8's external-memory figure in bytes (what paces its GCs), for the tests. */
  externalMemory(): number;
}

export type DeviceMode = 'auto' | 'cpu' | 'cuda';

export interface Loaded {
  addon: NativeAddon;
  file: string;
  cuda: boolean; // the loaded addon sees a GPU
  mode: DeviceMode;
  notes: string[];
  /** Why the CUDA backend is not in use (auto mode fell back to the CPU addon). */
  cudaReason?: string;
}

const root = path.resolve(__dirname, '..');
let loaded: Loaded | undefined;

/** An environment variable's value; unset and empty both read as undefined (the default). */
function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function deviceMode(): DeviceMode {
  const v = (env('FUSEDLOSS_DEVICE') ?? 'auto').toLowerCase();
  if (v === 'auto' || v === 'cpu' || v === 'cuda') return v;
  return fail('ERR_ARG', 'FUSEDLOSS_DEVICE', "'auto', 'cpu' or 'cuda'", v);
}

/** The variables the addon reads itself (native/core), checked here because it ignores bad values. */
function checkNativeEnv(): void {
  const threads = env('FUSEDLOSS_THREADS');
  // The thread pool's own bound (native/core/threadpool.cpp).
  if (threads !== undefined && !(/^[0-9]+$/.test(threads) && +threads >= 1 && +threads <= 1024))
    fail('ERR_ARG', 'FUSEDLOSS_THREADS', 'an integer in [1, 1024] (the CPU threads)', threads);
  const simd = env('FUSEDLOSS_SIMD');
  if (simd !== undefined && simd !== 'sse2' && simd !== 'avx2' && simd !== 'avx512')
    fail('ERR_ARG', 'FUSEDLOSS_SIMD', "'sse2', 'avx2' or 'avx512'", simd);
  const poison = env('FUSEDLOSS_POISON_OUTPUTS');
  if (poison !== undefined && poison !== '0' && poison !== '1') fail('ERR_ARG', 'FUSEDLOSS_POISON_OUTPUTS', "'0' or '1'", poison);
}

/**
 * Why the CUDA addon is missing, as scripts/install.mjs recorded it in build-cuda/install.json
 * (FUSEDLOSS_CUDA=OFF, no nvcc, no cmake, a failed build, ...).
 */
function cudaMissingReason(): string {
  try {
    const status = JSON.parse(readFileSync(path.join(root, 'build-cuda', 'install.json'), 'utf8')) as { reason?: unknown };
    if (typeof status.reason === 'string') return `the CUDA addon was not built: ${status.reason}`;
  } catch {
    // No record: the install script did not get that far here.
  }
  return 'the CUDA addon was not built, and scripts/install.mjs left no record of why (it writes one each time it runs; npm install --ignore-scripts skips it)';
}

function loadFile(file: string): NativeAddon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(file) as NativeAddon;
}

function loadCpu(): { addon: NativeAddon; file: string } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const gypBuild = require('node-gyp-build') as { path(dir: string): string };
  let file: string;
  try {
    file = gypBuild.path(root);
  } catch (e) {
    throw makeError('ERR_NATIVE_LOAD', `no fusedloss binary for ${process.platform}-${process.arch} (node ${process.version}): run \`npm install\` in ${root} to build it (${(e as Error).message})`);
  }
  return { addon: loadFile(file), file };
}

function load(): Loaded {
  const mode = deviceMode();
  checkNativeEnv();
  const notes: string[] = [];
  if (process.env.FUSEDLOSS_ADDON) {
    const file = path.resolve(process.env.FUSEDLOSS_ADDON);
    const addon = loadFile(file);
    return { addon, file, cuda: addon.backendInfo().cuda.available, mode, notes: [`FUSEDLOSS_ADDON=${file}`] };
  }
  if (mode !== 'cpu') {
    const file = path.join(root, 'build-cuda', 'Release', 'fusedloss_cuda.node');
    let why: string | undefined;
    if (!existsSync(file)) {
      why = cudaMissingReason();
    } else {
      try {
        const addon = loadFile(file);
        const info = addon.backendInfo();
        if (info.cuda.available) return { addon, file, cuda: true, mode, notes };
        why = `the CUDA addon sees no GPU: ${info.cuda.reason ?? 'unknown reason'}`;
      } catch (e) {
        why = `the CUDA addon failed to load: ${(e as Error).message}`;
      }
    }
    if (mode === 'cuda') throw makeError('ERR_CUDA_UNAVAILABLE', `FUSEDLOSS_DEVICE=cuda, but ${why}`);
    notes.push(`CPU backend: ${why}`);
    return { ...loadCpu(), cuda: false, mode, notes, cudaReason: why };
  }
  return { ...loadCpu(), cuda: false, mode, notes, cudaReason: 'FUSEDLOSS_DEVICE=cpu' };
}

/** The loaded addon (loaded on first use). Throws ERR_NATIVE_LOAD / ERR_CUDA_UNAVAILABLE. */
export function native(): Loaded {
  if (!loaded) {
    try {
      loaded = load();
    } catch (e) {
      throw fromNative(e);
    }
  }
  return loaded;
}

/** Calls the addon, turning its errors into FusedLossErrors. */
export function call<T>(fn: (a: NativeAddon) => T): T {
  const addon = native().addon;
  try {
    return fn(addon);
  } catch (e) {
    throw fromNative(e);
  }
}

/** The async twin of {@link call}: also converts a rejected promise's error. */
export async function callAsync<T>(fn: (a: NativeAddon) => Promise<T>): Promise<T> {
  const addon = native().addon;
  try {
    return await fn(addon);
  } catch (e) {
    throw fromNative(e);
  }
}
