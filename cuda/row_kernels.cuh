// Pieces of the loss kernels (cuda/cross_entropy.cu, positives_losses.cu, contrastive.cu, soft_topk.cu):
// a block-wide sum, the walk through a row's sorted skip list, the per-call scratch memory and
// the final fixed-order reduction.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "check.cuh"
#include "common.cuh"
#include "runtime.h"

namespace fl::cuda {

// The block's threads must be a whole number of warps (every launch uses 256 or 512): the
// shuffles name all 32 lanes.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / kWarp) ? shared[lane] : 0.f;
    for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  }
  __syncthreads();
  return v;  // valid in thread 0
}

// A thread's walk through the row's sorted skip list: skipped(c) for increasing c. The next
// skipped column waits in a register, so a column costs one compare, not a load.
struct SkipCursor {
  const int32_t* at;
  const int32_t* end;
  int64_t next;
  __device__ __forceinline__ SkipCursor(const int32_t* begin, const int32_t* stop)
      : at(begin), end(stop), next(begin != stop ? *begin : INT64_MAX) {}
  __device__ __forceinline__ bool skipped(int64_t c) {
    while (next < c) next = ++at != end ? *at : INT64_MAX;
    return next == c;
  }
};

// One device allocation for every scratch array of a call, freed on every exit path.
struct Scratch {
  char* base = nullptr;
  size_t used = 0;
  explicit Scratch(size_t bytes) : base(static_cast<char*>(device_alloc(bytes))) {}
  ~Scratch() { device_free(base); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class U> U* take(int64_t n) {
    U* q = reinterpret_cast<U*>(base + used);
    used += (size_t(n) * sizeof(U) + 255) / 256 * 256;
    return q;
  }
  template <class U> U* upload(const U* host, int64_t n) {
    U* d = take<U>(n);
    if (n > 0) FL_CUDA_CHECK(cudaMemcpy(d, host, size_t(n) * sizeof(U), cudaMemcpyHostToDevice));
    return d;
  }
};

// result = [Σ row_loss over `rows`, Σ dscale_part over `parts`], in a fixed order; launch as
// <<<1, 256>>>. (static: each translation unit keeps its own copy, no device linking needed.)
template <class D>
static __global__ void __launch_bounds__(256) sum_rows_kernel(const double* row_loss, int64_t rows, const D* dscale_part, int64_t parts,
                                                               double* result) {
  __shared__ double sl[256], sd[256];
  double l = 0, d = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) l += row_loss[i];
  for (int64_t i = threadIdx.x; i < parts; i += blockDim.x) d += dscale_part[i];
  sl[threadIdx.x] = l;
  sd[threadIdx.x] = d;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      sl[threadIdx.x] += sl[threadIdx.x + s];
      sd[threadIdx.x] += sd[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    result[0] = sl[0];
    result[1] = sd[0];
  }
}

}  // namespace fl::cuda
