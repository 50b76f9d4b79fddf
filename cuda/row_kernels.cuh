// Pieces of the loss kernels (cuda/cross_entropy.cu, positives_losses.cu, contrastive.cu, soft_topk.cu):
// block-wide sums, a row's skip mask, the per-call scratch memory and the final fixed-order
// reduction.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include <string>

#include "../native/core/error.h"
#include "check.cuh"
#include "common.cuh"
#include "plan.h"
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

// Σ of Nv doubles over the block in a fixed order (per warp by shuffles, then the warps in
// order); every thread gets the totals. `shared` holds kThreads/32·Nv doubles.
template <int kThreads, int Nv>
__device__ __forceinline__ void block_sums(double (&v)[Nv], double* shared) {
  constexpr int kWarps = kThreads / kWarp;
#pragma unroll
  for (int i = 0; i < Nv; ++i)
    for (int off = kWarp / 2; off > 0; off /= 2) v[i] += __shfl_xor_sync(0xffffffffu, v[i], off);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  __syncthreads();  // `shared` may still be read by the previous call
  if (lane == 0)
    for (int i = 0; i < Nv; ++i) shared[warp * Nv + i] = v[i];
  __syncthreads();
  for (int i = 0; i < Nv; ++i) {
    v[i] = 0;
    for (int w = 0; w < kWarps; ++w) v[i] += shared[w * Nv + i];
  }
}

// A row's skipped columns (positives and/or exclusions) as a bitmask: bit c % 32 of word c / 32.
// The row's block builds it from the CSR lists at the start, each thread setting the bits of its
// share of the entries, so that no thread walks the whole list; a sweep then tests a column with
// one load that the 16-byte pack's columns share (L1). Words per row: (cols + 31) / 32.
struct RowMask {
  const uint32_t* words;
  __device__ __forceinline__ bool skipped(int64_t c) const { return (words[c >> 5] >> (c & 31)) & 1u; }
};

struct CsrView {
  const int32_t* ptr = nullptr;  // rows + 1, or null: no entries
  const int32_t* cols = nullptr;
};

__device__ __forceinline__ RowMask build_row_mask(uint32_t* words, int64_t cols, int64_t row, CsrView a, CsrView b) {
  const int64_t n = (cols + 31) / 32;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) words[i] = 0u;
  __syncthreads();
  for (const CsrView& l : {a, b})
    if (l.ptr)
      for (int64_t e = l.ptr[row] + threadIdx.x; e < l.ptr[row + 1]; e += blockDim.x) {
        const int32_t c = l.cols[e];
        atomicOr(&words[c >> 5], 1u << (c & 31));  // integer: order-free
      }
  __syncthreads();  // the block's global writes are visible to the block after the barrier
  return RowMask{words};
}

// The dense gradient sweep of a softmax row: d_j = cf·e^(scale·x_j − max) where the column is
// not skipped (0 where skipped or −inf), stored as d_j·scale with 16-byte stores (g may be null:
// dScale only). Returns the thread's share of Σ_j d_j·x_j (dScale).
template <class T, class TG>
__device__ __forceinline__ float dense_softmax_sweep(const T* x, TG* g, int64_t cols, RowMask mask, float scale, float cf, float max) {
  float dsc = 0.f;
  for_each_pack(x, 0, cols, [&](int64_t c, auto& v) {
    constexpr int n = length_of<decltype(v)>;
    float d[n];
#pragma unroll
    for (int j = 0; j < n; ++j) {
      d[j] = !mask.skipped(c + j) && v[j] != -INFINITY ? cf * exp_shifted(scale * v[j], max) : 0.f;
      if (d[j] != 0.f) dsc += d[j] * v[j];
      d[j] *= scale;
    }
    if (g) store_pack<TG>(g + c, d);
  });
  return dsc;
}

// A launch of one cluster of `blocks_per_row` blocks per row (sm_90), on the calling thread's
// stream. fits(): whether such a cluster can be resident here at all (a partitioned GPU, or
// another context's shared memory, can make it not).
class ClusterLaunch {
 public:
  ClusterLaunch(int64_t rows, int blocks_per_row, int threads, size_t dynamic_smem) {
    cfg_.gridDim = dim3(unsigned(rows * blocks_per_row));
    cfg_.blockDim = dim3(unsigned(threads));
    cfg_.dynamicSmemBytes = dynamic_smem;
    cfg_.stream = cudaStreamPerThread;
    attr_[0].id = cudaLaunchAttributeClusterDimension;
    attr_[0].val.clusterDim.x = unsigned(blocks_per_row);  // at most 8: a portable cluster size
    attr_[0].val.clusterDim.y = 1;
    attr_[0].val.clusterDim.z = 1;
    cfg_.attrs = attr_;
    cfg_.numAttrs = 1;
  }
  ClusterLaunch(const ClusterLaunch&) = delete;  // cfg_ points into attr_
  ClusterLaunch& operator=(const ClusterLaunch&) = delete;
  template <class... A> bool fits(void (*kernel)(A...)) {
    int clusters = 0;
    FL_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg_));
    return clusters > 0;
  }
  template <class... A, class... B> void launch(void (*kernel)(A...), B... args) {
    FL_CUDA_CHECK(cudaLaunchKernelEx(&cfg_, kernel, args...));
  }

 private:
  cudaLaunchConfig_t cfg_{};
  cudaLaunchAttribute attr_[1];
};

// One device allocation for every scratch array of a call, freed on every exit path. A take
// beyond the planned size (cuda/plan.h) throws rather than hand out memory past the end.
struct Scratch {
  char* base = nullptr;
  size_t used = 0, capacity = 0;
  explicit Scratch(size_t bytes) : base(static_cast<char*>(device_alloc(bytes))), capacity(bytes) {}
  ~Scratch() { device_free_quiet(base); }  // an error path: the error in flight is the one to report
  // Frees it, checked, at the end of a call that went well.
  void release() {
    char* b = base;
    base = nullptr;
    device_free(b);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class U> U* take(int64_t n) {
    const size_t bytes = padded(size_t(n) * sizeof(U));
    if (used + bytes > capacity) fail("ERR_INTERNAL", "CUDA scratch plan too small: " + std::to_string(used + bytes) + " > " + std::to_string(capacity) + " bytes");
    U* q = reinterpret_cast<U*>(base + used);
    used += bytes;
    return q;
  }
  template <class U> U* upload(const U* host, int64_t n) {
    U* d = take<U>(n);
    if (n > 0) copy_to_device(d, host, size_t(n) * sizeof(U));
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
