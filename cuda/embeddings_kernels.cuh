// The per-row and elementwise kernels of the embeddings drivers around the GEMM (cuda/gemm.cuh):
// the norms of F.normalize, the projections of its chain rule, the gradient's scaling by them,
// the fp16 operand scale, the bias gradient's column sums. Shared by cuda/embeddings.cu (the
// <loss>FromEmbeddings driver) and cuda/sharded.cu (shardedLoss's key-embedding form), each
// translation unit with its own copy (anonymous namespace: no device linking needed).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "check.cuh"
#include "common.cuh"
#include "plan.h"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kEmbThreads = 256;

// F.normalize's eps, as native/ops/embeddings.cpp: a vector shorter than this is divided by it
// instead (and its gradient is the plain 1/eps, no projection).
constexpr double kNormEps = 1e-12;
constexpr float kTinyInv = float(1.0 / kNormEps);

// ---------- kernels ----------

// inv[r] = 1/max(‖x_r‖, eps), the norm summed in double as
// the CPU sums it (over the fp32-widened elements). One block a row.
template <class T>
__global__ void __launch_bounds__(kEmbThreads) inv_norm_kernel(const T* x, int64_t dim, float* inv) {
  __shared__ double sd[kEmbThreads / kWarp];
  const int64_t r = blockIdx.x;
  const T* v = x + r * dim;
  double s[1] = {0};
  for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
    const double e = to_float(v[k]);
    s[0] += e * e;
  }
  block_sums<kEmbThreads>(s, sd);
  if (threadIdx.x == 0) {
    const double norm = sqrt(s[0]);
    inv[r] = norm < kNormEps ? kTinyInv : float(1.0 / norm);
  }
}

// kdot[j] = k̂_j·E_j (E: gradKeys before the call, with accumulate and normalize): what the final
// projection must leave alone. One block a key.
template <class T>
__global__ void __launch_bounds__(kEmbThreads) key_dot_kernel(const T* keys, const float* grad_keys, const float* kinv, int64_t dim, float* kdot) {
  __shared__ double sd[kEmbThreads / kWarp];
  const int64_t j = blockIdx.x;
  double s[1] = {0};
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) s[0] += double(to_float(keys[j * dim + c])) * double(grad_keys[j * dim + c]);
  block_sums<kEmbThreads>(s, sd);
  if (threadIdx.x == 0) kdot[j] = float(s[0] * kinv[j]);
}

// The final projection of gradKeys (E + A) with normalize: dk_j = A_j − k̂_j (k̂_j·A_j), as the
// CPU forms it; keys shorter than eps keep the plain A_j/eps. One block a key.
template <class T>
__global__ void __launch_bounds__(kEmbThreads) key_projection_kernel(const T* keys, float* grad_keys, const float* kinv, const float* kdot,
                                                                 int64_t dim) {
  __shared__ double sd[kEmbThreads / kWarp];
  const int64_t j = blockIdx.x;
  const float inv = kinv[j];
  if (inv == kTinyInv) return;  // the whole block: no barrier below is skipped by part of it
  const T* k = keys + j * dim;
  float* g = grad_keys + j * dim;
  double s[1] = {0};
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) s[0] += double(to_float(k[c])) * double(g[c]);
  block_sums<kEmbThreads>(s, sd);
  const double along = s[0] * inv - (kdot ? double(kdot[j]) : 0.0);
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) g[c] = float(double(g[c]) - double(to_float(k[c])) * inv * along);
}

// dst (rows × dim) = the rows idx[0..rows) of src, as they are.
template <class T>
__global__ void gather_rows_kernel(const T* src, const int64_t* idx, int64_t rows, int64_t dim, T* dst) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * dim; e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = src[idx[e / dim] * dim + e % dim];
}

// s (rows × cols) *= row_scale[r] and/or col_scale[j] (either may be null).
__global__ void scale_kernel(float* s, int64_t rows, int64_t cols, const float* row_scale, const float* col_scale) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * cols; e += int64_t(gridDim.x) * blockDim.x) {
    float v = s[e];
    if (col_scale) v *= col_scale[e % cols];
    if (row_scale) v *= row_scale[e / cols];
    s[e] = v;
  }
}

// *out = max |x| as the bits of a non-negative float (ordered as unsigned integers; the max is
// exact, so the result does not depend on the order). NaN is ignored.
__global__ void absmax_kernel(const float* x, int64_t n, unsigned* out) {
  float m = 0.f;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) m = fmaxf(m, fabsf(x[e]));
  for (int off = kWarp / 2; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if (threadIdx.x % kWarp == 0) atomicMax(out, __float_as_uint(m));  // integer: order-free
}

// The chunk's dQ̂ rows into gradQueries: with normalize dq = (dq̂ − q̂ (q̂·dq̂))/‖q‖ (plain
// dq̂/eps for a query shorter than eps), added to the row's old value with accumulate, rounded
// once to TG. One block a row.
template <class T, class TG>
__global__ void __launch_bounds__(kEmbThreads) grad_queries_kernel(const float* dqh, const T* q, const float* qinv, const int64_t* idx,
                                                               int64_t dim, bool normalize, bool accumulate, TG* grad) {
  __shared__ double sd[kEmbThreads / kWarp];
  const int64_t r = blockIdx.x;
  const float* g = dqh + r * dim;
  const T* qr = q + r * dim;
  const float inv = normalize ? qinv[r] : 1.f;
  double dot[1] = {0};
  if (normalize && inv != kTinyInv) {
    for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) dot[0] += double(to_float(qr[k]) * inv) * double(g[k]);
    block_sums<kEmbThreads>(dot, sd);
  }
  TG* dst = grad + idx[r] * dim;
  for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
    float v = g[k];
    if (normalize) v = float((double(v) - double(to_float(qr[k]) * inv) * dot[0]) * inv);
    dst[k] = from_float<TG>(accumulate ? to_float(dst[k]) + v : v);
  }
}

// db[j] += Σ_r g[r, j], the rows in order (as the CPU adds them). A thread a column.
__global__ void column_sums_kernel(const float* g, int64_t rows, int64_t cols, float* db) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= cols) return;
  float acc = db[j];
  for (int64_t r = 0; r < rows; ++r) acc += g[r * cols + j];
  db[j] = acc;
}

// Blocks for a grid-stride elementwise kernel over n elements.
unsigned stride_blocks(int64_t n) { return unsigned(std::min<int64_t>((n + kEmbThreads - 1) / kEmbThreads, 65535 * 8)); }

// Converts a chunk's fp32 G to the MMA type: the power of two that keeps fp16 in range (1 for
// bf16 and fp32).
template <class T>
float operand_scale(const float* g, int64_t n, unsigned* d_absmax) {
  if constexpr (!std::is_same_v<T, f16_t>) {
    return 1.f;
  } else {
    FL_CUDA_CHECK(cudaMemsetAsync(d_absmax, 0, sizeof(unsigned), cudaStreamPerThread));
    absmax_kernel<<<stride_blocks(n), kEmbThreads>>>(g, n, d_absmax);
    check_launch("gradient magnitude kernel");
    unsigned bits = 0;
    copy_to_host(&bits, d_absmax, sizeof bits);
    float m;
    std::memcpy(&m, &bits, sizeof m);
    return half_operand_scale(m);
  }
}

}  // namespace
}  // namespace fl::cuda
