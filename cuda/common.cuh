// Device-side building blocks shared by the .cu kernels.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../native/core/dtype.h"
#include "../native/core/rowmath.h"

namespace fl::cuda {

constexpr int kWarp = 32;

// Sixteen bytes of a row: 4 fp32 or 8 half-precision elements.
template <class T> struct Pack { static constexpr int N = 16 / sizeof(T); };

template <class T>
__device__ __forceinline__ void unpack16(const uint4& raw, float (&out)[Pack<T>::N]) {
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < Pack<T>::N; ++i) out[i] = to_float(e[i]);
}

__device__ __forceinline__ bool is_bad(float x) { return x != x || x == INFINITY; }

// Online (max, sum) in base 2: sum = Σ 2^(y − max), y = z·log2(e). exp2f is a single MUFU
// instruction, which is why the kernels work in base 2 and convert once at the end.
struct Online2 {
  float max = -INFINITY;
  float sum = 0.f;
  __device__ __forceinline__ void add(float y) {
    if (y > max) {
      sum = sum * exp2f(max - y) + 1.f;  // max = -inf at first: exp2f(-inf) = 0
      max = y;
    } else if (y != -INFINITY) {
      sum += exp2f(y - max);
    }
  }
  __device__ __forceinline__ void merge(float omax, float osum) {
    if (omax == -INFINITY) return;
    if (max == -INFINITY) { max = omax; sum = osum; return; }
    if (omax > max) { sum = sum * exp2f(max - omax) + osum; max = omax; }
    else sum += osum * exp2f(omax - max);
  }
};

__device__ __forceinline__ void warp_merge(Online2& s) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const float om = __shfl_xor_sync(0xffffffffu, s.max, off);
    const float os = __shfl_xor_sync(0xffffffffu, s.sum, off);
    s.merge(om, os);
  }
}

__device__ __forceinline__ long long warp_min(long long v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const long long o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o < v ? o : v;
  }
  return v;
}

// Merges every thread's state into thread 0's, in a fixed order (deterministic).
// `shared` needs 2 floats and 1 long long per warp.
template <int kThreads>
__device__ __forceinline__ void block_merge(Online2& s, long long& bad, float* smax, float* ssum, long long* sbad) {
  constexpr int kWarps = kThreads / kWarp;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  warp_merge(s);
  bad = warp_min(bad);
  if (lane == 0) { smax[warp] = s.max; ssum[warp] = s.sum; sbad[warp] = bad; }
  __syncthreads();
  if (warp == 0) {
    Online2 t;
    long long b = INT64_MAX;
    if (lane < kWarps) { t.max = smax[lane]; t.sum = ssum[lane]; b = sbad[lane]; }
    warp_merge(t);
    b = warp_min(b);
    if (lane == 0) { s = t; bad = b; }
  }
}

}  // namespace fl::cuda
