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

// Online (max, Σ) in base 2, y = z·log2(e): Σ = Σ_j 2^(y_j − max) = 1 + rest. exp2f is a single
// MUFU instruction, which is why the kernels work in base 2 and convert once at the end.
// Keeping rest = Σ − 1 rather than Σ (as the CPU's MaxSumExp does) keeps p_max − 1 = −rest/Σ exact
// for a confident row: in a float Σ ≈ 1 the part below 2^-24 is lost, and with it the gradient
// of the label that holds nearly all the probability. An empty state is max = −inf, rest = 0.
struct Online2 {
  float max = -INFINITY;
  float rest = 0.f;
  __device__ __forceinline__ float sum() const { return max == -INFINITY ? 0.f : 1.f + rest; }
  __device__ __forceinline__ void add(float y) {
    if (y == -INFINITY) return;
    if (y > max) {
      rest = max == -INFINITY ? 0.f : (rest + 1.f) * exp2f(max - y);  // the old max joins the rest
      max = y;
    } else {
      rest += exp2f(y - max);
    }
  }
  __device__ __forceinline__ void merge(float omax, float orest) {
    if (omax == -INFINITY) return;
    if (max == -INFINITY) { max = omax; rest = orest; return; }
    if (omax > max) { rest = (rest + 1.f) * exp2f(max - omax) + orest; max = omax; }
    else rest += (orest + 1.f) * exp2f(omax - max);
  }
};

__device__ __forceinline__ void warp_merge(Online2& s) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const float om = __shfl_xor_sync(0xffffffffu, s.max, off);
    const float orest = __shfl_xor_sync(0xffffffffu, s.rest, off);
    s.merge(om, orest);
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
__device__ __forceinline__ void block_merge(Online2& s, long long& bad, float* smax, float* srest, long long* sbad) {
  constexpr int kWarps = kThreads / kWarp;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  warp_merge(s);
  bad = warp_min(bad);
  if (lane == 0) { smax[warp] = s.max; srest[warp] = s.rest; sbad[warp] = bad; }
  __syncthreads();
  if (warp == 0) {
    Online2 t;
    long long b = INT64_MAX;
    if (lane < kWarps) { t.max = smax[lane]; t.rest = srest[lane]; b = sbad[lane]; }
    warp_merge(t);
    b = warp_min(b);
    if (lane == 0) { s = t; bad = b; }
  }
}

}  // namespace fl::cuda
