// logSumExp on the GPU: one read of the scores.
//
// Grid: one block per (row, tile) with tiles of kRowTile columns, so a single 10^7-wide row
// still fills the GPU. Each block writes its partial (max, rest = Σ − 1) in base 2; a second tiny
// kernel merges a row's partials in tile order (deterministic, no float atomics). The first
// NaN/+inf is found by an integer min over flat indices, which is order-independent.
#include <cstdint>
#include <string>

#include "../native/core/error.h"
#include "../native/core/parallel.h"
#include "check.cuh"
#include "common.cuh"
#include "ops.h"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 256;

struct LseParams {
  const void* x;
  int64_t rows, cols, tiles;
  float scale2;           // scale · log2(e)
  float2* partial;        // rows × tiles: (max, rest) in base 2 (Online2)
  long long* first_bad;   // one flat index, INT64_MAX when none
  float* out;             // rows
};

template <class T>
__global__ void __launch_bounds__(kThreads) lse_partial_kernel(LseParams p) {
  __shared__ float smax[kThreads / kWarp], srest[kThreads / kWarp];
  __shared__ long long sbad[kThreads / kWarp];
  const int64_t row = blockIdx.x / p.tiles, tile = blockIdx.x % p.tiles;
  const int64_t c0 = tile * kRowTile;
  const int64_t c1 = c0 + kRowTile < p.cols ? c0 + kRowTile : p.cols;
  const T* x = static_cast<const T*>(p.x) + row * p.cols;  // 64-bit offsets throughout
  Online2 s;
  long long bad = INT64_MAX;
  auto take = [&](int64_t c, float v) {
    if (is_bad(v)) bad = bad < row * p.cols + c ? bad : row * p.cols + c;
    s.add(v * p.scale2);
  };
  // Scalar head up to 16-byte alignment, 16-byte vector body, scalar tail.
  constexpr int kPack = Pack<T>::N;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(x + c0);
  int64_t head = int64_t((16 - addr % 16) % 16) / int64_t(sizeof(T));
  if (head > c1 - c0) head = c1 - c0;
  for (int64_t c = c0 + threadIdx.x; c < c0 + head; c += kThreads) take(c, to_float(x[c]));
  const int64_t body = c0 + head, packs = (c1 - body) / kPack;
  const uint4* xv = reinterpret_cast<const uint4*>(x + body);
  for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
    float v[kPack];
    unpack16<T>(__ldg(xv + i), v);
#pragma unroll
    for (int j = 0; j < kPack; ++j) take(body + i * kPack + j, v[j]);
  }
  for (int64_t c = body + packs * kPack + threadIdx.x; c < c1; c += kThreads) take(c, to_float(x[c]));
  block_merge<kThreads>(s, bad, smax, srest, sbad);
  if (threadIdx.x == 0) {
    p.partial[blockIdx.x] = make_float2(s.max, s.rest);
    if (bad != INT64_MAX) atomicMin(p.first_bad, bad);  // integer min: order-independent
  }
}

__global__ void lse_combine_kernel(LseParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= p.rows) return;
  Online2 s;
  for (int64_t t = 0; t < p.tiles; ++t) {
    const float2 part = p.partial[row * p.tiles + t];
    s.merge(part.x, part.y);
  }
  p.out[row] = s.max == -INFINITY ? -INFINITY : s.max * 0.69314718055994531f + log1pf(s.rest);
}

}  // namespace

void log_sum_exp(const LogSumExpArgs& a) {
  if (a.rows == 0) return;
  const int64_t tiles = tiles_per_row(a.cols);
  const int64_t blocks = a.rows * tiles;
  if (blocks > INT32_MAX) fail("ERR_SHAPE", "scores: too many rows for one launch");
  Scratch s(size_t(blocks) * sizeof(float2) + size_t(a.rows) * sizeof(float) + 3 * 256);
  LseParams p{a.x, a.rows, a.cols, tiles, a.scale * 1.4426950408889634f,
              s.take<float2>(blocks), s.take<long long>(1), s.take<float>(a.rows)};
  const long long none = INT64_MAX;
  FL_CUDA_CHECK(cudaMemcpy(p.first_bad, &none, sizeof none, cudaMemcpyHostToDevice));
  switch (a.dtype) {
    case DType::Float32: lse_partial_kernel<float><<<unsigned(blocks), kThreads>>>(p); break;
    case DType::Float16: lse_partial_kernel<f16_t><<<unsigned(blocks), kThreads>>>(p); break;
    case DType::BFloat16: lse_partial_kernel<bf16_t><<<unsigned(blocks), kThreads>>>(p); break;
  }
  check_launch("logSumExp partial kernel");
  lse_combine_kernel<<<unsigned((a.rows + 255) / 256), 256>>>(p);
  check_launch("logSumExp combine kernel");
  long long bad = 0;
  FL_CUDA_CHECK(cudaMemcpy(&bad, p.first_bad, sizeof bad, cudaMemcpyDeviceToHost));
  if (bad != INT64_MAX)
    fail("ERR_NON_FINITE", "scores: expected finite values or -Infinity, received NaN or +Infinity at [" +
                               std::to_string(bad / a.cols) + ", " + std::to_string(bad % a.cols) + "]");
  FL_CUDA_CHECK(cudaMemcpy(a.out, p.out, size_t(a.rows) * sizeof(float), cudaMemcpyDeviceToHost));
}

}  // namespace fl::cuda
