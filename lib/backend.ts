/**
 * Which backends are live.
 * @module
 */
import { native } from './native';

/** A CUDA device as the runtime reports it. */
export interface CudaDevice {
  index: number;
  name: string;
  /** e.g. "9.0" for an H100. */
  computeCapability: string;
  totalMemory: number;
  /** Measured on the selected device only (elsewhere that would create a CUDA context). */
  freeMemory?: number;
  multiprocessors: number;
}

export interface BackendInfo {
  cpu: {
    /** Threads in the pool (FUSEDLOSS_THREADS, else the hardware concurrency). */
    threads: number;
    /** The SIMD kernels in use: 'avx512' | 'avx2' | 'sse2' (FUSEDLOSS_SIMD caps it). */
    simd: string;
    /** The widest SIMD level this CPU supports. */
    simdDetected: string;
  };
  cuda: {
    /** The loaded addon was built with CUDA. */
    compiled: boolean;
    /** A GPU can be used: toDevice() works and ops on device tensors run there. */
    available: boolean;
    /** Why not, when unavailable. */
    reason?: string;
    runtimeVersion?: number;
    driverVersion?: number;
    /** The device new device tensors go to: FUSEDLOSS_CUDA_DEVICE, else 0. Ops run on their scores' device. */
    selectedDevice?: number;
    devices: CudaDevice[];
    /** Bytes of GPU memory held by live device tensors of this addon instance. */
    bytesInUse: number;
  };
  loader: {
    /** The .node file in use. */
    file: string;
    /** FUSEDLOSS_DEVICE as read at load time. */
    mode: 'auto' | 'cpu' | 'cuda';
    /** Why a backend was skipped (e.g. "CPU backend: the CUDA addon sees no GPU: ..."). */
    notes: string[];
  };
}

/** Reports the CPU threads and SIMD level, the CUDA devices, and which binary was loaded. */
export function backendInfo(): BackendInfo {
  const l = native();
  const raw = l.addon.backendInfo();
  // The CPU addon only knows that it has no CUDA kernels; the loader knows why the CUDA addon is not in use.
  const cuda = !raw.cuda.available && l.cudaReason ? { ...raw.cuda, reason: l.cudaReason } : raw.cuda;
  return { cpu: raw.cpu, cuda, loader: { file: l.file, mode: l.mode, notes: [...l.notes] } };
}
