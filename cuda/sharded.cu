// The label-sharded softmax-type losses on a device block (docs/MATH.md §5): the reads of
// native/ops/sharded.cpp on the GPU. The statistics per row are tiny and go to the host, where
// lib/sharded.ts merges them across ranks; only the block and its gradient stay on the device.
//
// One block of threads per row, two sweeps (the row maximum, then the sums against it), each
// thread over a strided share of the columns. A skipped column is found by binary search in the
// row's sorted skip list (a few entries a row). Sums are in double, merged in a fixed order
// (block_sums), so results do not depend on scheduling. The first NaN/+inf is an integer min
// over flat indices (order-independent) and is reported, not thrown, so that no rank is left
// waiting in a collective.
#include <cstdint>
#include <string>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "check.cuh"
#include "common.cuh"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 256;

struct ShardedParams {
  const float* x;
  int64_t rows, cols;
  float scale, softcap;
  const int32_t* skip_ptr;  // rows + 1, or null
  const int32_t* skip_cols;
  const float* w;           // cols, or null
};

__device__ __forceinline__ bool skipped(const ShardedParams& p, int64_t r, int64_t c) {
  if (!p.skip_ptr) return false;
  int32_t lo = p.skip_ptr[r], hi = p.skip_ptr[r + 1];
  const int32_t end = hi;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (p.skip_cols[mid] < c) lo = mid + 1;
    else hi = mid;
  }
  return lo < end && p.skip_cols[lo] == c;
}

// z = scale·x, or c·tanh(scale·x/c); dz/dscale and dz/dx as native/ops/softmax_rows.inl forms them.
__device__ __forceinline__ float z_of(const ShardedParams& p, float x) {
  const float s = x * p.scale;
  return p.softcap > 0.f ? p.softcap * tanhf(s / p.softcap) : s;
}
__device__ __forceinline__ float dz_dscale(const ShardedParams& p, float x) {
  if (!(p.softcap > 0.f)) return x;
  const float t = tanhf(x * p.scale / p.softcap);
  return x * (1.f - t * t);
}
__device__ __forceinline__ float dz_dx(const ShardedParams& p, float x) {
  if (!(p.softcap > 0.f)) return p.scale;
  const float t = tanhf(x * p.scale / p.softcap);
  return p.scale * (1.f - t * t);
}

__device__ __forceinline__ float block_max(float v, float* shared) {
  for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = -INFINITY;
  for (int k = 0; k < int(blockDim.x / kWarp); ++k) v = fmaxf(v, shared[k]);
  return v;  // every thread
}

struct StatsOut {
  double *max, *rest, *lin, *exp_dscale, *lin_dscale;
  long long* first_bad;
};

__global__ void __launch_bounds__(kThreads) row_stats_kernel(ShardedParams p, StatsOut o) {
  __shared__ float smax[kThreads / kWarp];
  __shared__ double ssum[kThreads / kWarp * 5];
  const int64_t r = blockIdx.x;
  const float* x = p.x + r * p.cols;
  float m = -INFINITY;
  long long bad = INT64_MAX;
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float v = x[c];
    if (!(v < INFINITY)) {  // NaN or +inf
      bad = bad < r * p.cols + c ? bad : r * p.cols + c;
      continue;
    }
    if (skipped(p, r, c)) continue;
    m = fmaxf(m, z_of(p, v));
  }
  if (bad != INT64_MAX) atomicMin(o.first_bad, bad);
  m = block_max(m, smax);
  // [count at the maximum, the tail Σ_{z<m} e^{z−m}, Σ w·z, Σ e^{z−m}·dz/dscale, Σ w·dz/dscale]
  double s[5] = {0, 0, 0, 0, 0};
  if (m > -INFINITY)
    for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
      const float v = x[c];
      if (!(v < INFINITY) || skipped(p, r, c)) continue;
      const float z = z_of(p, v);
      if (z == -INFINITY) continue;
      const double e = z == m ? 1.0 : exp(double(z) - double(m));
      if (z == m) s[0] += 1;
      else s[1] += e;
      const double w = p.w ? double(p.w[c]) : 1.0;
      s[2] += w * double(z);
      if (o.exp_dscale) s[3] += e * double(dz_dscale(p, v));
      if (o.lin_dscale) s[4] += w * double(dz_dscale(p, v));
    }
  block_sums<kThreads, 5>(s, ssum);
  if (threadIdx.x != 0) return;
  o.max[r] = m;
  o.rest[r] = m > -INFINITY ? s[0] - 1 + s[1] : 0.0;
  if (o.lin) o.lin[r] = s[2];
  if (o.exp_dscale) o.exp_dscale[r] = s[3];
  if (o.lin_dscale) o.lin_dscale[r] = s[4];
}

struct GradIn {
  const double *max, *rest, *coef, *lin;
  float* grad;
};

// grad = (coef·e^{z−max}/(1 + rest) − lin·w_j)·dz/dx over the entries that are in, 0 elsewhere.
__global__ void __launch_bounds__(kThreads) softmax_grad_kernel(ShardedParams p, GradIn g) {
  const int64_t r = blockIdx.x;
  const float* x = p.x + r * p.cols;
  float* out = g.grad + r * p.cols;
  const double M = g.max[r], coef = g.coef[r], lin = g.lin ? g.lin[r] : 0.0;
  const bool on = M != -INFINITY && (coef != 0 || lin != 0);
  const double inv = 1.0 / (1.0 + g.rest[r]);
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float v = x[c];
    float d = 0.f;
    if (on && !skipped(p, r, c)) {
      const float z = z_of(p, v);
      if (z != -INFINITY) {
        const double w = p.w ? double(p.w[c]) : 1.0;
        d = float((coef * exp(double(z) - M) * inv - lin * w) * double(dz_dx(p, v)));
      }
    }
    out[c] = d;
  }
}

__global__ void gather_kernel(const float* x, const double* index, int64_t n, float* out) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < n) out[k] = x[int64_t(index[k])];
}
__global__ void scatter_kernel(float* x, const double* index, int64_t n, const float* values) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < n) x[int64_t(index[k])] = values[k];
}

// The block's parameters, its skip lists and weights uploaded (or planned: the same list runs
// over the ScratchPlan and the Scratch).
template <class C>
ShardedParams params(const ShardedSoftmaxBlock& a, C& c) {
  ShardedParams p{static_cast<const float*>(a.scores), a.rows, a.cols, a.scale, a.softcap, nullptr, nullptr, nullptr};
  if (a.skip) {
    p.skip_ptr = c.upload(a.skip.row_ptr, a.rows + 1);
    p.skip_cols = c.upload(a.skip.cols, a.skip.nnz(a.rows));
  }
  if (a.class_weights) p.w = c.upload(a.class_weights, a.cols);
  return p;
}

}  // namespace

void sharded_row_stats(const ShardedRowStatsArgs& a) {
  a.bad[0] = a.bad[1] = -1;
  if (a.rows == 0) return;
  if (a.cols == 0) {  // an empty shard: no entry in (and no device memory to read)
    for (int64_t r = 0; r < a.rows; ++r) {
      a.max[r] = -INFINITY;
      a.rest[r] = 0;
      for (double* sum : {a.lin, a.exp_dscale, a.lin_dscale})
        if (sum) sum[r] = 0;
    }
    return;
  }
  if (a.rows > INT32_MAX) fail(err::kShape, "localScores: too many rows for one launch");
  const DeviceScope on(device_of(a.scores));
  ShardedParams p{};
  StatsOut o{};
  const int64_t R = a.rows;
  Scratch s([&](auto& c) {
    p = params(a, c);
    o.max = c.template take<double>(R);
    o.rest = c.template take<double>(R);
    o.lin = a.lin ? c.template take<double>(R) : nullptr;
    o.exp_dscale = a.exp_dscale ? c.template take<double>(R) : nullptr;
    o.lin_dscale = a.lin_dscale ? c.template take<double>(R) : nullptr;
    o.first_bad = c.template take<long long>(1);
  });
  const long long none = INT64_MAX;
  copy_to_device(o.first_bad, &none, sizeof none);
  row_stats_kernel<<<unsigned(R), kThreads>>>(p, o);
  check_launch("shardedRowStats kernel");
  long long bad = INT64_MAX;
  copy_to_host(&bad, o.first_bad, sizeof bad);
  if (bad != INT64_MAX) {
    a.bad[0] = int32_t(bad / a.cols);
    a.bad[1] = int32_t(bad % a.cols);
  }
  copy_to_host(a.max, o.max, size_t(R) * sizeof(double));
  copy_to_host(a.rest, o.rest, size_t(R) * sizeof(double));
  if (a.lin) copy_to_host(a.lin, o.lin, size_t(R) * sizeof(double));
  if (a.exp_dscale) copy_to_host(a.exp_dscale, o.exp_dscale, size_t(R) * sizeof(double));
  if (a.lin_dscale) copy_to_host(a.lin_dscale, o.lin_dscale, size_t(R) * sizeof(double));
  s.release();
}

void sharded_softmax_grad(const ShardedSoftmaxGradArgs& a) {
  if (a.rows * a.cols == 0) return;
  if (a.rows > INT32_MAX) fail(err::kShape, "localScores: too many rows for one launch");
  const DeviceScope on(device_of(a.scores));
  ShardedParams p{};
  GradIn g{};
  const int64_t R = a.rows;
  Scratch s([&](auto& c) {
    p = params(a, c);
    g.max = c.upload(a.max, R);
    g.rest = c.upload(a.rest, R);
    g.coef = c.upload(a.coef, R);
    g.lin = a.lin ? c.upload(a.lin, R) : nullptr;
  });
  g.grad = a.grad;
  softmax_grad_kernel<<<unsigned(R), kThreads>>>(p, g);
  check_launch("shardedSoftmaxGrad kernel");
  s.release();
}

void sharded_gather(const ShardedGatherArgs& a) {
  if (a.count == 0) return;
  const DeviceScope on(device_of(a.block));
  double* index = nullptr;
  float* values = nullptr;
  Scratch s([&](auto& c) {
    index = c.upload(a.index, a.count);
    values = c.template take<float>(a.count);
  });
  gather_kernel<<<unsigned((a.count + 255) / 256), 256>>>(a.block, index, a.count, values);
  check_launch("shardedGather kernel");
  copy_to_host(a.values, values, size_t(a.count) * sizeof(float));
  s.release();
}

void sharded_scatter(const ShardedScatterArgs& a) {
  if (a.count == 0) return;
  const DeviceScope on(device_of(a.block));
  double* index = nullptr;
  float* values = nullptr;
  Scratch s([&](auto& c) {
    index = c.upload(a.index, a.count);
    values = c.upload(a.values, a.count);
  });
  scatter_kernel<<<unsigned((a.count + 255) / 256), 256>>>(a.block, index, a.count, values);
  check_launch("shardedScatter kernel");
  synchronize();
  s.release();
}

}  // namespace fl::cuda
