// logSumExp on the GPU: one read of the scores (16-byte loads, kInFlight in flight per thread;
// e^(z − max) by exp2f, MUFU ≤ 2 ulp).
//
// Grid: one block per (row, tile) with tiles of kRowTile columns, so a single 10^7-wide row
// still fills the GPU. Each block writes its partial (max, rest = Σ − 1); a second tiny
// kernel merges a row's partials in tile order (deterministic, no float atomics). The first
// NaN/+inf is found by an integer min over flat indices, which is order-independent.
#include <cstdint>
#include <string>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/core/parallel.h"
#include "check.cuh"
#include "common.cuh"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 256;

struct LseParams {
  const void* x;
  int64_t rows, cols, tiles;
  float scale;
  float2* partial;        // rows × tiles: (max, rest) (OnlineSumExp)
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
  OnlineSumExp s;
  long long bad = INT64_MAX;
  for_each_pack(x, c0, c1, [&](int64_t c, auto& v) {
#pragma unroll
    for (int j = 0; j < length_of<decltype(v)>; ++j) {
      if (is_bad(v[j])) bad = bad < row * p.cols + c + j ? bad : row * p.cols + c + j;
      s.add(v[j] * p.scale);
    }
  });
  block_merge<kThreads>(s, bad, smax, srest, sbad);
  if (threadIdx.x == 0) {
    p.partial[blockIdx.x] = make_float2(s.max, s.rest);
    if (bad != INT64_MAX) atomicMin(p.first_bad, bad);  // integer min: order-independent
  }
}

__global__ void lse_combine_kernel(LseParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= p.rows) return;
  OnlineSumExp s;
  for (int64_t t = 0; t < p.tiles; ++t) {
    const float2 part = p.partial[row * p.tiles + t];
    s.merge(part.x, part.y);
  }
  p.out[row] = s.max == -INFINITY ? -INFINITY : float(double(s.max) + log1p(double(s.rest)));
}

}  // namespace

void log_sum_exp(const LogSumExpArgs& a) {
  if (a.rows == 0) return;
  const DeviceScope on(device_of(a.scores));
  const int64_t tiles = tiles_per_row(a.cols);
  const int64_t blocks = a.rows * tiles;
  if (blocks > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  LseParams p{a.scores, a.rows, a.cols, tiles, a.scale, nullptr, nullptr, nullptr};
  Scratch s([&](auto& c) {
    p.partial = c.template take<float2>(blocks);
    p.first_bad = c.template take<long long>(1);
    p.out = c.template take<float>(a.rows);
  });
  const long long none = INT64_MAX;
  copy_to_device(p.first_bad, &none, sizeof none);
  dtype_switch(a.dtype, DType::Float32, [&](auto t, auto) { lse_partial_kernel<decltype(t)><<<unsigned(blocks), kThreads>>>(p); });
  check_launch("logSumExp partial kernel");
  lse_combine_kernel<<<unsigned((a.rows + 255) / 256), 256>>>(p);
  check_launch("logSumExp combine kernel");
  throw_if_bad(p.first_bad, a.cols, "scores");
  copy_to_host(a.out, p.out, size_t(a.rows) * sizeof(float));
  s.release();
}

}  // namespace fl::cuda
