// The label-sharded losses on a device block (docs/MATH.md §5): the reads of
// native/ops/sharded.cpp, infonce.cpp (the CLIP columns) and soft_topk.cpp (the sharded sweeps)
// on the GPU. The statistics per row (and per column) are tiny and go to the host, where
// lib/sharded.ts merges them across ranks; only the block and its gradient stay on the device.
// The key-embedding form's chunk passes (native/ops/sharded.cpp sharded_scores, sharded_embeddings_grad)
// run on the GEMM of the embeddings driver (cuda/gemm.cuh, cuda/embeddings_kernels.cuh): S = Q·Kᵀ
// with the norms and the bias in the epilogue, dQ̂ = G'·K, dK += G''ᵀ·Q, each entry summed in
// order by one block; no float atomics.
//
// Every kernel is one body templated on the block's element type T (fp32, fp16, bf16: widened
// to fp32 as it is read, as the host path widens a half block once) and, where it writes a
// gradient, on the gradient's TG (fp32, or T). Row kernels run one block of threads per row,
// each thread over a strided share of the columns; the CLIP column statistics run one thread per
// column, down the rows in order. A skipped (or excluded) column is found by binary search in the
// row's sorted list (a few entries a row). Sums are in double, merged in a fixed order
// (block_sums), and per-row dScale shares are added on the host in row order, so results do not
// depend on scheduling. The first NaN/+inf is an integer min over flat indices (order-
// independent) and is reported, not thrown, so that no rank is left waiting in a collective.
#include <cstdint>
#include <string>
#include <vector>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/ops/soft_topk_math.h"
#include "check.cuh"
#include "common.cuh"
#include "embeddings_kernels.cuh"
#include "gemm.cuh"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 256;

// A row's sorted list of local columns (skipped from its softmax, or excluded from soft top-k).
struct SkipList {
  const int32_t* ptr;  // rows + 1, or null: none
  const int32_t* cols;
  __device__ __forceinline__ bool has(int64_t r, int64_t c) const {
    if (!ptr) return false;
    int32_t lo = ptr[r], hi = ptr[r + 1];
    const int32_t end = hi;
    while (lo < hi) {
      const int32_t mid = lo + (hi - lo) / 2;
      if (cols[mid] < c) lo = mid + 1;
      else hi = mid;
    }
    return lo < end && cols[lo] == c;
  }
};

struct ShardedParams {
  const void* x;  // rows × cols of the block's dtype
  int64_t rows, cols;
  float scale, softcap;
  SkipList skip;
  const float* w;  // cols, or null
};

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

// The block's max of v (exact in any order); every thread gets it.
__device__ __forceinline__ float block_max(float v, float* shared) {
  for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = -INFINITY;
  for (int k = 0; k < int(blockDim.x / kWarp); ++k) v = fmaxf(v, shared[k]);
  return v;
}

// The first NaN/+inf: the smallest flat index over every thread (an integer min, order-free).
__device__ __forceinline__ void report_bad(long long bad, long long* first_bad) {
  bad = warp_min(bad);
  if (threadIdx.x % kWarp == 0 && bad != INT64_MAX) atomicMin(first_bad, bad);
}

struct StatsOut {
  double *max, *rest, *lin, *exp_dscale, *lin_dscale;
  long long* first_bad;
};

template <class T>
__global__ void __launch_bounds__(kThreads) row_stats_kernel(ShardedParams p, StatsOut o) {
  __shared__ float smax[kThreads / kWarp];
  __shared__ double ssum[kThreads / kWarp * 5];
  const int64_t r = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + r * p.cols;
  float m = -INFINITY;
  long long bad = INT64_MAX;
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float v = to_float(x[c]);
    if (is_bad(v)) {
      bad = bad < r * p.cols + c ? bad : r * p.cols + c;
      continue;
    }
    if (p.skip.has(r, c)) continue;
    m = fmaxf(m, z_of(p, v));
  }
  report_bad(bad, o.first_bad);
  m = block_max(m, smax);
  // [count at the maximum, the tail Σ_{z<m} e^{z−m}, Σ w·z, Σ e^{z−m}·dz/dscale, Σ w·dz/dscale]
  double s[5] = {0, 0, 0, 0, 0};
  if (m > -INFINITY)
    for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
      const float v = to_float(x[c]);
      if (is_bad(v) || p.skip.has(r, c)) continue;
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
  void* grad;  // rows × cols of TG
};

// grad = (coef·e^{z−max}/(1 + rest) − lin·w_j)·dz/dx over the entries that are in, 0 elsewhere.
// Each thread reads x[c] before it writes grad[c]: grad may be the block itself (inplace).
template <class T, class TG>
__global__ void __launch_bounds__(kThreads) softmax_grad_kernel(ShardedParams p, GradIn g) {
  const int64_t r = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + r * p.cols;
  TG* out = static_cast<TG*>(g.grad) + r * p.cols;
  const double M = g.max[r], coef = g.coef[r], lin = g.lin ? g.lin[r] : 0.0;
  const bool on = M != -INFINITY && (coef != 0 || lin != 0);
  const double inv = 1.0 / (1.0 + g.rest[r]);
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float v = to_float(x[c]);
    float d = 0.f;
    if (on && !p.skip.has(r, c)) {
      const float z = z_of(p, v);
      if (z != -INFINITY) {
        const double w = p.w ? double(p.w[c]) : 1.0;
        d = float((coef * exp(double(z) - M) * inv - lin * w) * double(dz_dx(p, v)));
      }
    }
    out[c] = from_float<TG>(d);
  }
}

template <class T>
__global__ void gather_kernel(const T* x, const double* index, int64_t n, float* out) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < n) out[k] = to_float(x[int64_t(index[k])]);
}
template <class TG>
__global__ void scatter_kernel(TG* x, const double* index, int64_t n, const float* values) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < n) x[int64_t(index[k])] = from_float<TG>(values[k]);
}

// infoNCE symmetric's columns: one thread per column, down the rows in order (adjacent threads
// read adjacent columns: coalesced). max z over the entries that are in, rest = Σ e^{z−max} − 1
// with the entries at the maximum counted exactly (MATH §2).
template <class T>
__global__ void __launch_bounds__(kThreads) column_stats_kernel(const T* x, int64_t rows, int64_t cols, float scale, double* cmax,
                                                                double* crest, long long* first_bad) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  long long bad = INT64_MAX;
  if (c < cols) {
    float m = -INFINITY;
    for (int64_t i = 0; i < rows; ++i) {
      const float v = to_float(x[i * cols + c]);
      if (is_bad(v)) {
        if (bad == INT64_MAX) bad = i * cols + c;
        continue;
      }
      m = fmaxf(m, v * scale);
    }
    double at = 0, tail = 0;
    if (m > -INFINITY)
      for (int64_t i = 0; i < rows; ++i) {
        const float v = to_float(x[i * cols + c]);
        if (is_bad(v)) continue;
        const float z = v * scale;
        if (z == m) at += 1;
        else if (z != -INFINITY) tail += exp(double(z) - double(m));
      }
    cmax[c] = m;
    crest[c] = m > -INFINITY ? at - 1 + tail : 0.0;
  }
  report_bad(bad, first_bad);
}

// infoNCE symmetric's gradient: (row_coef·e^{z−row_max} + col_coef_j·e^{z−col_max_j})·scale, 0 at
// −inf entries; a row or column with max −inf takes no part (coefficient 0). row_dscale[r] =
// Σ_j dL/dz·x (the host adds the rows in order).
struct SymIn {
  const double *row_max, *row_coef, *col_max, *col_coef;
  void* grad;  // or null: the dScale sums alone
  double* row_dscale;
};
template <class T, class TG>
__global__ void __launch_bounds__(kThreads) symmetric_grad_kernel(const T* xs, int64_t cols, float scale, SymIn s) {
  __shared__ double sd[kThreads / kWarp];
  const int64_t r = blockIdx.x;
  const T* x = xs + r * cols;
  TG* out = s.grad ? static_cast<TG*>(s.grad) + r * cols : nullptr;
  const double rm = s.row_max[r], rc = rm == -INFINITY ? 0.0 : s.row_coef[r];
  double d[1] = {0};
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = to_float(x[c]);
    const float z = v * scale;
    double dz = 0;
    if (z != -INFINITY) {
      const double cm = s.col_max[c], cc = cm == -INFINITY ? 0.0 : s.col_coef[c];
      if (rc != 0) dz += rc * exp(double(z) - rm);
      if (cc != 0) dz += cc * exp(double(z) - cm);
      d[0] += dz * double(v);
    }
    if (out) out[c] = from_float<TG>(float(dz * double(scale)));
  }
  block_sums<kThreads, 1>(d, sd);
  if (threadIdx.x == 0) s.row_dscale[r] = d[0];
}

// Soft top-k's block: z = scale·x over the entries that are in (not excluded, not −inf).
struct TopKParams {
  const void* x;
  int64_t rows, cols;
  float scale, alpha;
  SkipList excl;
};

// a = (z + t)·α, rounded as written (the CPU's order; no FMA).
__device__ __forceinline__ float topk_arg(float z, float t, float alpha) { return __fmul_rn(__fadd_rn(z, t), alpha); }

// Phase 1: per row, max and min of x over the entries that are in, and their count; NaN/+inf
// anywhere (excluded entries too, as on the CPU) is reported.
template <class T>
__global__ void __launch_bounds__(kThreads) topk_range_kernel(TopKParams p, double* zmax, double* zmin, double* count, long long* first_bad) {
  __shared__ float sm[kThreads / kWarp];
  __shared__ double sc[kThreads / kWarp];
  const int64_t r = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + r * p.cols;
  float hi = -INFINITY, lo = INFINITY;
  double in[1] = {0};
  long long bad = INT64_MAX;
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float v = to_float(x[c]);
    if (is_bad(v)) {
      bad = bad < r * p.cols + c ? bad : r * p.cols + c;
      continue;
    }
    if (v == -INFINITY || p.excl.has(r, c)) continue;
    hi = fmaxf(hi, v);
    lo = fminf(lo, v);
    in[0] += 1;
  }
  report_bad(bad, first_bad);
  hi = block_max(hi, sm);
  lo = -block_max(-lo, sm);
  block_sums<kThreads, 1>(in, sc);
  if (threadIdx.x != 0) return;
  // z = scale·x is increasing in x: its extremes are those of x, scaled in fp32 as the sweeps do.
  zmax[r] = in[0] > 0 ? double(hi * p.scale) : -INFINITY;
  zmin[r] = in[0] > 0 ? double(lo * p.scale) : INFINITY;
  count[r] = in[0];
}

// One Newton step: the split sums of row rows_at[k] at its t[k] (soft_topk_math.h ShiftedPass:
// each side scaled by its largest term, so a saturated row's sums keep their ratio).
template <class T>
__global__ void __launch_bounds__(kThreads) topk_sums_kernel(TopKParams p, const int32_t* rows_at, const double* ts, float* sums) {
  __shared__ double sd[kThreads / kWarp * 5];
  const int64_t k = blockIdx.x, r = rows_at[k];
  const T* x = static_cast<const T*>(p.x) + r * p.cols;
  const float t = float(ts[k]);
  ShiftedPass pass = shifted_pass_empty();
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float z = __fmul_rn(to_float(x[c]), p.scale);
    if (z == -INFINITY || is_bad(z) || p.excl.has(r, c)) continue;
    shifted_pass_take(pass, topk_arg(z, t, p.alpha));
  }
  const TopKSums mine = shifted_pass_sums(pass);
  double v[5] = {mine.m, mine.p_lo, mine.q_hi, mine.v_lo, mine.v_hi};
  block_sums<kThreads, 5>(v, sd);
  if (threadIdx.x == 0)
    for (int i = 0; i < 5; ++i) sums[5 * k + i] = float(v[i]);
}

// The dense gradient coef·p(1 − p)·scale at the entries that are in, 0 elsewhere (and on rows
// with coef 0), formed as one exp of log|coef| − |a| (soft_topk_math.h scaled_term): on a
// saturated row coef is as large as p(1 − p) is small. row_dscale[r] = Σ coef·p(1 − p)·x.
template <class T, class TG>
__global__ void __launch_bounds__(kThreads) topk_grad_kernel(TopKParams p, const double* ts, const double* coefs, void* grad, double* row_dscale) {
  __shared__ double sd[kThreads / kWarp];
  const int64_t r = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + r * p.cols;
  TG* out = static_cast<TG*>(grad) + r * p.cols;
  const double coef = coefs[r];
  const float t = float(ts[r]);
  const ScaledFactor f = scaled_factor(coef == 0 ? 1.0 : coef, false);
  const float store = f.sign * p.scale;
  double d[1] = {0};
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float v = to_float(x[c]);
    const float z = __fmul_rn(v, p.scale);
    float g = 0.f;
    if (coef != 0 && z != -INFINITY && !p.excl.has(r, c)) {
      const float cpq = scaled_term(fabsf(topk_arg(z, t, p.alpha)), f.log_c, f.inv_c, f.two_exp).cpq;
      g = store * cpq;
      d[0] += double(cpq) * double(v);
    }
    out[c] = from_float<TG>(g);
  }
  block_sums<kThreads, 1>(d, sd);
  if (threadIdx.x == 0) row_dscale[r] = double(f.sign) * d[0];
}

// The block's parameters, its skip lists and weights uploaded (or planned: the same list runs
// over the ScratchPlan and the Scratch).
template <class C>
ShardedParams params(const ShardedSoftmaxBlock& a, C& c) {
  ShardedParams p{a.scores, a.rows, a.cols, a.scale, a.softcap, SkipList{nullptr, nullptr}, nullptr};
  if (a.skip) p.skip = SkipList{c.upload(a.skip.row_ptr, a.rows + 1), c.upload(a.skip.cols, a.skip.nnz(a.rows))};
  if (a.class_weights) p.w = c.upload(a.class_weights, a.cols);
  return p;
}
template <class C>
TopKParams topk_params(const ShardedTopKBlock& a, C& c) {
  TopKParams p{a.scores, a.rows, a.cols, a.scale, a.alpha, SkipList{nullptr, nullptr}};
  if (a.exclude) p.excl = SkipList{c.upload(a.exclude.row_ptr, a.rows + 1), c.upload(a.exclude.cols, a.exclude.nnz(a.rows))};
  return p;
}

void check_rows(int64_t rows) {
  if (rows > INT32_MAX) fail(err::kShape, "localScores: too many rows for one launch");
}

// A flat index of the first NaN/+inf from the device into (row, local column), or (−1, −1).
void bad_out(const long long* d_bad, int64_t cols, int32_t* out) {
  long long bad = INT64_MAX;
  copy_to_host(&bad, d_bad, sizeof bad);
  out[0] = out[1] = -1;
  if (bad != INT64_MAX) {
    out[0] = int32_t(bad / cols);
    out[1] = int32_t(bad % cols);
  }
}
long long* bad_init(long long* d_bad) {
  const long long none = INT64_MAX;
  copy_to_device(d_bad, &none, sizeof none);
  return d_bad;
}

// Σ of per-row doubles from the device, in row order.
double row_total(const double* d, int64_t rows) {
  std::vector<double> h(static_cast<size_t>(rows));
  copy_to_host(h.data(), d, size_t(rows) * sizeof(double));
  double s = 0;
  for (double v : h) s += v;
  return s;
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
  check_rows(a.rows);
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
  bad_init(o.first_bad);
  with_dtype(a.dtype, [&](auto t) { row_stats_kernel<decltype(t)><<<unsigned(R), kThreads>>>(p, o); });
  check_launch("shardedRowStats kernel");
  bad_out(o.first_bad, a.cols, a.bad);
  copy_to_host(a.max, o.max, size_t(R) * sizeof(double));
  copy_to_host(a.rest, o.rest, size_t(R) * sizeof(double));
  if (a.lin) copy_to_host(a.lin, o.lin, size_t(R) * sizeof(double));
  if (a.exp_dscale) copy_to_host(a.exp_dscale, o.exp_dscale, size_t(R) * sizeof(double));
  if (a.lin_dscale) copy_to_host(a.lin_dscale, o.lin_dscale, size_t(R) * sizeof(double));
  s.release();
}

void sharded_softmax_grad(const ShardedSoftmaxGradArgs& a) {
  if (a.rows * a.cols == 0) return;
  check_rows(a.rows);
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
  dtype_switch(a.dtype, a.grad_dtype, [&](auto t, auto tg) {
    softmax_grad_kernel<decltype(t), decltype(tg)><<<unsigned(R), kThreads>>>(p, g);
  });
  check_launch("shardedSoftmaxGrad kernel");
  synchronize();
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
  with_dtype(a.dtype, [&](auto t) {
    using T = decltype(t);
    gather_kernel<T><<<unsigned((a.count + 255) / 256), 256>>>(static_cast<const T*>(a.block), index, a.count, values);
  });
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
  with_dtype(a.dtype, [&](auto t) {
    using TG = decltype(t);
    scatter_kernel<TG><<<unsigned((a.count + 255) / 256), 256>>>(static_cast<TG*>(a.block), index, a.count, values);
  });
  check_launch("shardedScatter kernel");
  synchronize();
  s.release();
}

void sharded_column_stats(const ShardedColumnStatsArgs& a) {
  a.bad[0] = a.bad[1] = -1;
  if (a.cols == 0) return;
  if (a.rows == 0) {  // no row: every column empty
    for (int64_t j = 0; j < a.cols; ++j) {
      a.max[j] = -INFINITY;
      a.rest[j] = 0;
    }
    return;
  }
  const DeviceScope on(device_of(a.scores));
  double *cmax = nullptr, *crest = nullptr;
  long long* bad = nullptr;
  Scratch s([&](auto& c) {
    cmax = c.template take<double>(a.cols);
    crest = c.template take<double>(a.cols);
    bad = c.template take<long long>(1);
  });
  bad_init(bad);
  const int64_t blocks = (a.cols + kThreads - 1) / kThreads;
  if (blocks > INT32_MAX) fail(err::kShape, "localScores: too many columns for one launch");
  with_dtype(a.dtype, [&](auto t) {
    using T = decltype(t);
    column_stats_kernel<T><<<unsigned(blocks), kThreads>>>(static_cast<const T*>(a.scores), a.rows, a.cols, a.scale, cmax, crest, bad);
  });
  check_launch("shardedColumnStats kernel");
  bad_out(bad, a.cols, a.bad);
  copy_to_host(a.max, cmax, size_t(a.cols) * sizeof(double));
  copy_to_host(a.rest, crest, size_t(a.cols) * sizeof(double));
  s.release();
}

LossResult sharded_symmetric_grad(const ShardedSymmetricGradArgs& a) {
  if (a.rows == 0 || a.cols == 0) return {0, 0};
  check_rows(a.rows);
  const DeviceScope on(device_of(a.scores));
  SymIn in{};
  Scratch s([&](auto& c) {
    in.row_max = c.upload(a.row_max, a.rows);
    in.row_coef = c.upload(a.row_coef, a.rows);
    in.col_max = c.upload(a.col_max, a.cols);
    in.col_coef = c.upload(a.col_coef, a.cols);
    in.row_dscale = c.template take<double>(a.rows);
  });
  in.grad = a.grad;
  dtype_switch(a.dtype, a.grad_dtype, [&](auto t, auto tg) {
    using T = decltype(t);
    symmetric_grad_kernel<T, decltype(tg)><<<unsigned(a.rows), kThreads>>>(static_cast<const T*>(a.scores), a.cols, a.scale, in);
  });
  check_launch("shardedSymmetricGrad kernel");
  const double dscale = row_total(in.row_dscale, a.rows);
  s.release();
  return {0.0, dscale};
}

void sharded_topk_range(const ShardedTopKRangeArgs& a) {
  a.bad[0] = a.bad[1] = -1;
  if (a.rows == 0) return;
  if (a.cols == 0) {  // an empty shard: no entry in
    for (int64_t r = 0; r < a.rows; ++r) {
      a.max[r] = -INFINITY;
      a.min[r] = INFINITY;
      a.count[r] = 0;
    }
    return;
  }
  check_rows(a.rows);
  const DeviceScope on(device_of(a.scores));
  const int64_t R = a.rows;
  TopKParams p{};
  double *zmax = nullptr, *zmin = nullptr, *count = nullptr;
  long long* bad = nullptr;
  Scratch s([&](auto& c) {
    p = topk_params(a, c);
    zmax = c.template take<double>(R);
    zmin = c.template take<double>(R);
    count = c.template take<double>(R);
    bad = c.template take<long long>(1);
  });
  bad_init(bad);
  with_dtype(a.dtype, [&](auto t) { topk_range_kernel<decltype(t)><<<unsigned(R), kThreads>>>(p, zmax, zmin, count, bad); });
  check_launch("shardedTopKRange kernel");
  bad_out(bad, a.cols, a.bad);
  copy_to_host(a.max, zmax, size_t(R) * sizeof(double));
  copy_to_host(a.min, zmin, size_t(R) * sizeof(double));
  copy_to_host(a.count, count, size_t(R) * sizeof(double));
  s.release();
}

void sharded_topk_sums(const ShardedTopKSumsArgs& a) {
  if (a.searching == 0) return;
  if (a.cols == 0) {  // an empty shard adds nothing
    for (int64_t k = 0; k < 5 * a.searching; ++k) a.sums[k] = 0.f;
    return;
  }
  if (a.searching > INT32_MAX) fail(err::kShape, "rowsAt: too many rows for one launch");
  const DeviceScope on(device_of(a.scores));
  TopKParams p{};
  int32_t* rows_at = nullptr;
  double* t = nullptr;
  float* sums = nullptr;
  Scratch s([&](auto& c) {
    p = topk_params(a, c);
    rows_at = c.upload(a.rows_at, a.searching);
    t = c.upload(a.t, a.searching);
    sums = c.template take<float>(5 * a.searching);
  });
  with_dtype(a.dtype, [&](auto tt) { topk_sums_kernel<decltype(tt)><<<unsigned(a.searching), kThreads>>>(p, rows_at, t, sums); });
  check_launch("shardedTopKSums kernel");
  copy_to_host(a.sums, sums, size_t(5 * a.searching) * sizeof(float));
  s.release();
}

LossResult sharded_topk_grad(const ShardedTopKGradArgs& a) {
  if (a.rows * a.cols == 0) return {0, 0};
  check_rows(a.rows);
  const DeviceScope on(device_of(a.scores));
  const int64_t R = a.rows;
  TopKParams p{};
  double *t = nullptr, *coef = nullptr, *row_dscale = nullptr;
  Scratch s([&](auto& c) {
    p = topk_params(a, c);
    t = c.upload(a.t, R);
    coef = c.upload(a.coef, R);
    row_dscale = c.template take<double>(R);
  });
  dtype_switch(a.dtype, a.grad_dtype, [&](auto tt, auto tg) {
    topk_grad_kernel<decltype(tt), decltype(tg)><<<unsigned(R), kThreads>>>(p, t, coef, a.grad, row_dscale);
  });
  check_launch("shardedTopKGrad kernel");
  const double dscale = row_total(row_dscale, R);
  s.release();
  return {0.0, dscale};
}

// ---------- the key-embedding form on the device ----------

namespace {
// g (rows × cols) += or = src, elementwise.
__global__ void add_kernel(float* dst, const float* src, int64_t n, bool accumulate) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = accumulate ? dst[e] + src[e] : src[e];
}
void check_chunk(const ShardedEmbeddingsChunk& a) {
  if (a.rows > INT32_MAX || a.cols > INT32_MAX || a.query_rows > INT32_MAX) fail(err::kShape, "shardedLoss: too many rows for one launch");
}
}  // namespace

void sharded_scores(const ShardedScoresArgs& a) {
  if (a.rows * a.cols == 0) return;
  check_chunk(a);
  const DeviceScope on(device_of(a.queries));
  float *qs = nullptr, *ks = nullptr, *bias = nullptr;
  Scratch s([&](auto& c) {
    qs = a.query_scale ? c.upload(a.query_scale, a.rows) : nullptr;
    ks = a.key_scale ? c.upload(a.key_scale, a.cols) : nullptr;
    bias = a.bias ? c.upload(a.bias, a.cols) : nullptr;
  });
  with_dtype(a.keys_dtype, [&](auto t) {
    using T = decltype(t);
    const T* q = static_cast<const T*>(a.queries) + a.row0 * a.dim;
    gemm<T, true, true>(a.rows, a.cols, a.dim, GemmInput<T>{q, a.dim, 1.f}, GemmInput<T>{static_cast<const T*>(a.keys), a.dim, 1.f},
                        GemmEpilogue{a.scores, a.cols, 1.f, qs, ks, bias, false}, "shardedScores GEMM");
  });
  synchronize();
  s.release();
}

void sharded_embeddings_grad(const ShardedEmbeddingsGradArgs& a) {
  const int64_t R = a.rows, N = a.cols, D = a.dim;
  if (R == 0) return;
  check_chunk(a);
  const DeviceScope on(device_of(a.queries));
  float* gq = a.grad_queries + a.row0 * D;
  if (N == 0) {  // an empty shard contributes nothing to dQ
    if (D > 0) FL_CUDA_CHECK(cudaMemsetAsync(gq, 0, size_t(R * D) * sizeof(float), cudaStreamPerThread));
    synchronize();
    return;
  }
  float *qs = nullptr, *ks = nullptr, *db = nullptr;
  unsigned* absmax = nullptr;
  Scratch s([&](auto& c) {
    qs = a.query_scale ? c.upload(a.query_scale, R) : nullptr;
    ks = a.key_scale ? c.upload(a.key_scale, N) : nullptr;
    db = a.grad_bias ? c.template take<float>(N) : nullptr;
    absmax = c.template take<unsigned>(1);
  });
  if (db) {
    // Σ_i G_ij, the rows in order, before the key scale (the bias adds to S after it).
    FL_CUDA_CHECK(cudaMemsetAsync(db, 0, size_t(N) * sizeof(float), cudaStreamPerThread));
    column_sums_kernel<<<unsigned((N + kThreads - 1) / kThreads), kThreads>>>(a.grad, R, N, db);
    check_launch("bias gradient kernel");
    std::vector<float> h(static_cast<size_t>(N));
    copy_to_host(h.data(), db, size_t(N) * sizeof(float));
    for (int64_t j = 0; j < N; ++j) a.grad_bias[j] += h[size_t(j)];
  }
  // G' = G·diag(key_scale): dQ̂ = G'·K; then G'' = diag(query_scale)·G': dK += G''ᵀ·Q = G'ᵀ·Q̂.
  if (ks) {
    scale_kernel<<<stride_blocks(R * N), kThreads>>>(a.grad, R, N, nullptr, ks);
    check_launch("gradient column scale kernel");
  }
  with_dtype(a.keys_dtype, [&](auto t) {
    using T = decltype(t);
    const T* keys = static_cast<const T*>(a.keys);
    const T* q = static_cast<const T*>(a.queries) + a.row0 * D;
    const float gs = operand_scale<T>(a.grad, R * N, absmax);
    gemm<T, true, false>(R, D, N, GemmInput<float>{a.grad, N, gs}, GemmInput<T>{keys, D, 1.f}, GemmEpilogue{gq, D, 1.f / gs, nullptr, nullptr, nullptr, false},
                         "shardedEmbeddingsGrad query GEMM");
    if (qs) {
      scale_kernel<<<stride_blocks(R * N), kThreads>>>(a.grad, R, N, qs, nullptr);
      check_launch("gradient row scale kernel");
    }
    const float gs2 = qs ? operand_scale<T>(a.grad, R * N, absmax) : gs;
    gemm<T, false, false>(N, D, R, GemmInput<float>{a.grad, N, gs2}, GemmInput<T>{q, D, 1.f},
                          GemmEpilogue{a.grad_keys, D, 1.f / gs2, nullptr, nullptr, nullptr, !a.overwrite_keys}, "shardedEmbeddingsGrad key GEMM");
  });
  synchronize();
  s.release();
}

void sharded_norms(const ShardedNormsArgs& a) {
  if (a.rows == 0) return;
  if (a.rows > INT32_MAX) fail(err::kShape, "shardedNorms: too many rows for one launch");
  const DeviceScope on(device_of(a.x));
  float* inv = nullptr;
  Scratch s([&](auto& c) { inv = c.template take<float>(a.rows); });
  with_dtype(a.dtype, [&](auto t) {
    using T = decltype(t);
    inv_norm_kernel<T><<<unsigned(a.rows), kThreads>>>(static_cast<const T*>(a.x), a.dim, inv);
  });
  check_launch("shardedNorms kernel");
  copy_to_host(a.inv, inv, size_t(a.rows) * sizeof(float));
  s.release();
}

void sharded_embeddings_finish(const ShardedEmbeddingsFinishArgs& a) {
  const int64_t B = a.rows, N = a.cols, D = a.dim;
  if (B > INT32_MAX || N > INT32_MAX) fail(err::kShape, "shardedLoss: too many rows for one launch");
  if (D == 0) return;
  const DeviceScope on(device_of(a.queries));
  float *qs = nullptr, *ks = nullptr;
  int64_t* idx = nullptr;
  Scratch s([&](auto& c) {
    qs = a.query_scale ? c.upload(a.query_scale, B) : nullptr;
    ks = a.key_scale ? c.upload(a.key_scale, N) : nullptr;
    idx = c.template take<int64_t>(B);
  });
  if (B > 0) {
    std::vector<int64_t> rows(static_cast<size_t>(B));
    for (int64_t r = 0; r < B; ++r) rows[size_t(r)] = r;
    copy_to_device(idx, rows.data(), size_t(B) * sizeof(int64_t));
    dtype_switch(a.dtype, a.grad_dtype, [&](auto t, auto tg) {
      using T = decltype(t);
      using TG = decltype(tg);
      grad_queries_kernel<T, TG><<<unsigned(B), kThreads>>>(a.grad_queries_in, static_cast<const T*>(a.queries), qs, idx, D, qs != nullptr,
                                                         a.accumulate, static_cast<TG*>(a.grad_queries));
    });
    check_launch("query gradient kernel");
  }
  if (N > 0) {
    if (ks) {
      with_dtype(a.dtype, [&](auto t) {
        using T = decltype(t);
        key_projection_kernel<T><<<unsigned(N), kThreads>>>(static_cast<const T*>(a.keys), a.grad_keys_in, ks, nullptr, D);
      });
      check_launch("key gradient projection kernel");
    }
    if (a.grad_keys != a.grad_keys_in) {
      add_kernel<<<stride_blocks(N * D), kThreads>>>(a.grad_keys, a.grad_keys_in, N * D, a.accumulate);
      check_launch("key gradient add kernel");
    }
  }
  synchronize();
  s.release();
}

}  // namespace fl::cuda
