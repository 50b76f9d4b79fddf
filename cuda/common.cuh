// Device-side building blocks shared by the .cu kernels.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "../native/core/dtype.h"
#include "../native/core/rowmath.h"

namespace fl::cuda {

constexpr int kWarp = 32;

// The launchers' runtime-to-compile-time switch (flash-attention's BOOL_SWITCH habit), on the
// CPU's with_dtype (native/core/dtype.h): calls f(T{}, TG{}) with the element type T of `dtype`
// and the gradient's TG, float when grad_dtype is Float32 (always for float32 scores), else T.
// One kernel body, templated on T and TG, serves every dtype.
template <class F>
void dtype_switch(DType dtype, DType grad_dtype, F&& f) {
  with_dtype(dtype, [&](auto t) {
    if (grad_dtype == DType::Float32) f(t, float{});
    else f(t, t);
  });
}

// Calls f(std::true_type{}) or f(std::false_type{}): a runtime flag as a template parameter.
template <class F>
void bool_switch(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

// Sixteen bytes of a row: 4 fp32 or 8 half-precision elements.
template <class T> struct Pack { static constexpr int N = 16 / sizeof(T); };

template <class T>
__device__ __forceinline__ void unpack16(const uint4& raw, float (&out)[Pack<T>::N]) {
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < Pack<T>::N; ++i) out[i] = to_float(e[i]);
}

// How many 16-byte loads a thread issues before it uses the first: enough bytes in flight per SM
// to cover HBM latency at 512 threads a block (4 × 16 B × 512 = 32 KB per block).
constexpr int kInFlight = 4;

template <class A> constexpr int length_of = int(sizeof(A) / sizeof(float));

// Calls f(col, v) over [c0, c1) of a row, spread over the block: v is a float[Pack<T>::N] of the
// columns col, col + 1, … for the 16-byte-aligned body (kInFlight loads in flight per thread), a
// float[1] for the unaligned head and the tail. Plain loads, not __ldg: an in-place sweep writes
// the row it reads (each element is read before the same thread writes it).
template <class T, class F>
__device__ __forceinline__ void for_each_pack(const T* row, int64_t c0, int64_t c1, F&& f) {
  constexpr int kPack = Pack<T>::N;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(row + c0);
  int64_t head = int64_t((16 - addr % 16) % 16) / int64_t(sizeof(T));
  if (head > c1 - c0) head = c1 - c0;
  for (int64_t c = c0 + threadIdx.x; c < c0 + head; c += blockDim.x) {
    float v[1] = {to_float(row[c])};
    f(c, v);
  }
  const int64_t body = c0 + head, packs = (c1 - body) / kPack;
  const uint4* src = reinterpret_cast<const uint4*>(row + body);
  const int64_t stride = blockDim.x;
  for (int64_t i0 = threadIdx.x; i0 < packs; i0 += stride * kInFlight) {
    uint4 raw[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u)
      if (i0 + u * stride < packs) raw[u] = src[i0 + u * stride];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u)
      if (i0 + u * stride < packs) {
        float v[kPack];
        unpack16<T>(raw[u], v);
        f(body + (i0 + u * stride) * kPack, v);
      }
  }
  for (int64_t c = body + packs * kPack + threadIdx.x; c < c1; c += blockDim.x) {
    float v[1] = {to_float(row[c])};
    f(c, v);
  }
}

// Calls f(col, v) over [c0, c1) of an output row, spread over the block, and stores v (a
// float[16 / sizeof(TG)] for the 16-byte-aligned body, a float[1] for the head and the tail) at
// out + col: the values come from elsewhere (shared memory), the stores are whole 16 bytes.
template <class TG, class F>
__device__ __forceinline__ void for_each_store_pack(TG* out, int64_t c0, int64_t c1, F&& f) {
  constexpr int kPer = 16 / int(sizeof(TG));
  const uintptr_t addr = reinterpret_cast<uintptr_t>(out + c0);
  int64_t head = int64_t((16 - addr % 16) % 16) / int64_t(sizeof(TG));
  if (head > c1 - c0) head = c1 - c0;
  const int64_t body = c0 + head, packs = (c1 - body) / kPer;
  for (int64_t c = c0 + threadIdx.x; c < c0 + head; c += blockDim.x) {
    float v[1];
    f(c, v);
    out[c] = from_float<TG>(v[0]);
  }
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) {
    float v[kPer];
    f(body + i * kPer, v);
    uint4 raw;
    TG* e = reinterpret_cast<TG*>(&raw);
#pragma unroll
    for (int j = 0; j < kPer; ++j) e[j] = from_float<TG>(v[j]);
    reinterpret_cast<uint4*>(out + body)[i] = raw;
  }
  for (int64_t c = body + packs * kPer + threadIdx.x; c < c1; c += blockDim.x) {
    float v[1];
    f(c, v);
    out[c] = from_float<TG>(v[0]);
  }
}

// Stores N consecutive values as TG at dst: 16-byte stores when dst is 16-byte aligned (a warp
// then writes whole sectors), one element at a time otherwise.
template <class TG, int N>
__device__ __forceinline__ void store_pack(TG* dst, const float (&v)[N]) {
  constexpr int kPer = 16 / int(sizeof(TG));
  if constexpr (N % kPer == 0) {
    if (reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += kPer) {
        uint4 raw;
        TG* e = reinterpret_cast<TG*>(&raw);
#pragma unroll
        for (int j = 0; j < kPer; ++j) e[j] = from_float<TG>(v[i + j]);
        *reinterpret_cast<uint4*>(dst + i) = raw;
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = from_float<TG>(v[i]);
}

__device__ __forceinline__ bool is_bad(float x) { return x != x || x == INFINITY; }

// e^(z − max) as the CPU forms it: the difference first (exact when z is near max, and exactly
// 0 for the max itself, so its own term is exactly 1), then ·log2(e), each rounded as written
// (the _rn intrinsics are never contracted into an FMA, whatever --fmad says), then exp2f, a
// single MUFU.EX2 plus range handling: ≤ 2 ulp. Scaling z by log2(e) before the subtraction
// would round y = z·log2(e) at the magnitude of z: 6e-5 absolute at z ≈ 1e3, an error in every
// p and in the lse that the CPU does not have.
__device__ __forceinline__ float exp_shifted(float z, float max) { return exp2f(__fmul_rn(__fsub_rn(z, max), kLog2e)); }

// Online (max, rest) of e^z over a stream, Σ = Σ_j e^(z_j − max) = 1 + rest (the CPU's
// MaxSumExp, in fp32). Keeping rest = Σ − 1 rather than Σ keeps p_max − 1 = −rest/Σ exact for a
// confident row: in a float Σ ≈ 1 the part below 2^-24 is lost, and with it the gradient of the
// label that holds nearly all the probability. An empty state is max = −inf, rest = 0;
// log Σ e^z = max + log1p(rest).
struct OnlineSumExp {
  float max = -INFINITY;
  float rest = 0.f;
  __device__ __forceinline__ void add(float z) {
    if (z == -INFINITY) return;
    if (z > max) {
      rest = max == -INFINITY ? 0.f : (rest + 1.f) * exp_shifted(max, z);  // the old max joins the rest
      max = z;
    } else {
      rest += exp_shifted(z, max);
    }
  }
  __device__ __forceinline__ void merge(float omax, float orest) {
    if (omax == -INFINITY) return;
    if (max == -INFINITY) { max = omax; rest = orest; return; }
    if (omax > max) { rest = (rest + 1.f) * exp_shifted(max, omax) + orest; max = omax; }
    else rest += (orest + 1.f) * exp_shifted(omax, max);
  }
};

__device__ __forceinline__ void warp_merge(OnlineSumExp& s) {
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
__device__ __forceinline__ void block_merge(OnlineSumExp& s, long long& bad, float* smax, float* srest, long long* sbad) {
  constexpr int kWarps = kThreads / kWarp;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  warp_merge(s);
  bad = warp_min(bad);
  if (lane == 0) { smax[warp] = s.max; srest[warp] = s.rest; sbad[warp] = bad; }
  __syncthreads();
  if (warp == 0) {
    OnlineSumExp t;
    long long b = INT64_MAX;
    if (lane < kWarps) { t.max = smax[lane]; t.rest = srest[lane]; b = sbad[lane]; }
    warp_merge(t);
    b = warp_min(b);
    if (lane == 0) { s = t; bad = b; }
  }
}

}  // namespace fl::cuda
