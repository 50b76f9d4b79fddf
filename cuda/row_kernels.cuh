// Pieces of the loss kernels (cuda/cross_entropy.cu, positives_losses.cu, contrastive.cu, soft_topk.cu):
// block-wide sums, a row's skip mask, the row held on chip (one block or a cluster), the
// parameters every row loss shares (the upstream factor, the per-row outputs) and those of the
// losses over positives, the softmax row over positives, the per-call scratch memory and the
// final fixed-order reduction.
#pragma once
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>

#include <string>
#include <vector>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/ops/loss.h"
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

// Builds the mask words of the columns [c0, c1) of the row, c0 a multiple of 32 (kSliceAlign) or
// c0 = c1 (an empty slice: no word): the words are then this block's alone, also when the blocks
// of a cluster each build their slice's.
__device__ __forceinline__ RowMask build_row_mask(uint32_t* words, int64_t c0, int64_t c1, int64_t row, CsrView a, CsrView b) {
  for (int64_t i = (c0 + 31) / 32 + threadIdx.x; i < (c1 + 31) / 32; i += blockDim.x) words[i] = 0u;
  __syncthreads();
  for (const CsrView& l : {a, b})
    if (l.ptr)
      for (int64_t e = l.ptr[row] + threadIdx.x; e < l.ptr[row + 1]; e += blockDim.x) {
        const int32_t c = l.cols[e];
        if (c >= c0 && c < c1) atomicOr(&words[c >> 5], 1u << (c & 31));  // integer: order-free
      }
  __syncthreads();  // the block's global writes are visible to the block after the barrier
  return RowMask{words};
}

__device__ __forceinline__ RowMask build_row_mask(uint32_t* words, int64_t cols, int64_t row, CsrView a, CsrView b) {
  return build_row_mask(words, 0, cols, row, a, b);
}

// d·scale at column c of value v of a dense softmax gradient, d = cf·e^(scale·v − max) (0 where
// skipped or −inf); adds d·v, its dScale term, to dsc.
__device__ __forceinline__ float dense_softmax_at(RowMask mask, int64_t c, float v, float scale, float cf, float max, float& dsc) {
  const float d = !mask.skipped(c) && v != -INFINITY ? cf * exp_shifted(scale * v, max) : 0.f;
  if (d != 0.f) dsc += d * v;
  return d * scale;
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
    for (int j = 0; j < n; ++j) d[j] = dense_softmax_at(mask, c + j, v[j], scale, cf, max, dsc);
    if (g) store_pack<TG>(g + c, d);
  });
  return dsc;
}

// The output sweep of a row held on chip: over [c0, c1), f(c, v) of the value v = xs[c − c0]
// (shared memory) gives the output at c, stored to g with 16-byte stores; with g null (dScale
// only) f is called for its side effects.
template <class T, class TG, class F>
__device__ __forceinline__ void for_each_on_chip(const T* xs, TG* g, int64_t c0, int64_t c1, F&& f) {
  if (g)
    for_each_store_pack(g, c0, c1, [&](int64_t c, auto& o) {
#pragma unroll
      for (int j = 0; j < length_of<decltype(o)>; ++j) o[j] = f(c + j, to_float(xs[c + j - c0]));
    });
  else
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) f(c, to_float(xs[c - c0]));
}

// The blocks that hold one row: a cluster of them (sm_90), or one block. rank orders the merges;
// sync() is a barrier over them all that also orders their memory operations (the cluster
// barrier's release/acquire; __syncthreads for one block); at(p, r) is block r's copy of the
// shared variable p (distributed shared memory).
template <bool kCluster>
struct RowGroup {
  unsigned rank = 0, ranks = 1;
  __device__ __forceinline__ void sync() const {
    if constexpr (kCluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      cooperative_groups::this_cluster().sync();
#endif
    } else {
      __syncthreads();
    }
  }
  template <class U> __device__ __forceinline__ U* at(U* p, unsigned r) const {
    if constexpr (kCluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      return cooperative_groups::this_cluster().map_shared_rank(p, r);
#endif
    }
    return p;
  }
};

template <bool kCluster>
__device__ __forceinline__ RowGroup<kCluster> row_group() {
  RowGroup<kCluster> g;
  if constexpr (kCluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    g.rank = cooperative_groups::this_cluster().block_rank();
    g.ranks = cooperative_groups::this_cluster().num_blocks();
#else
    __trap();  // the launchers use clusters only on sm_90 and newer
#endif
  }
  return g;
}

// Merges a row's statistics, (max, rest) and a float sum, over the blocks of its cluster in rank
// order: on entry thread 0 of each block holds its block's, on return the row's (every block
// computes the same merge, bitwise). One block: nothing to do.
template <bool kCluster>
__device__ __forceinline__ void merge_over_row(const RowGroup<kCluster>& grp, OnlineSumExp& s, float& sum) {
  if constexpr (kCluster) {
    __shared__ float part[3];  // this block's (max, rest, sum), read by the cluster's blocks
    if (threadIdx.x == 0) {
      part[0] = s.max;
      part[1] = s.rest;
      part[2] = sum;
    }
    grp.sync();
    if (threadIdx.x == 0) {
      OnlineSumExp m;
      float l = 0.f;
      for (unsigned r = 0; r < grp.ranks; ++r) {
        const float* q = grp.at(part, r);
        m.merge(q[0], q[1]);
        l += q[2];
      }
      s = m;
      sum = l;
    }
    grp.sync();  // every block has read the others' parts before any goes on (or exits)
  }
}

// ---------- what every row loss shares ----------

// The row's upstream factor u = ∂L/∂ℓ_row for every loss kernel: native/ops/loss.h
// upstream_factor, the CPU's, with gradOutput on the device. mean_scale: 1 over what 'mean'
// divides by.
struct Upstream {
  Reduction reduction;
  const float* grad_output;  // on the device: 'none' only, else null
  double mean_scale;
  __device__ __forceinline__ double at(int64_t row) const { return upstream_factor(reduction, grad_output, row, mean_scale); }
};

// Takes the Upstream of a call: gradOutput on the device for 'none' (from c, a ScratchPlan or the
// Scratch: see Scratch).
template <class S>
Upstream carve_upstream(S& c, Reduction reduction, const float* grad_output, int64_t rows, double mean_scale) {
  return Upstream{reduction, grad_output && reduction == Reduction::None ? c.upload(grad_output, rows) : nullptr, mean_scale};
}

// 'mean' over nothing is 0: 1/divisor, and total/divisor, with 0 for an empty divisor.
inline double inverse_or_zero(double divisor) { return divisor > 0 ? 1.0 / divisor : 0.0; }
inline double mean_of(double total, double divisor) { return divisor > 0 ? total / divisor : 0.0; }

// The scores a kernel reads (native/api ScoresArgs, as the kernels name them).
struct ScoresView {
  const void* x;  // rows × cols of the call's dtype, on the device
  int64_t rows, cols;
  float scale;
};
inline ScoresView scores_view(const ScoresArgs& a) { return ScoresView{a.scores, a.rows, a.cols, a.scale}; }

// The scores, the gradient, the upstream factors and the per-row outputs of a loss.
struct RowLossParams : ScoresView {
  void* grad;  // null: no gradient (dScale may still be wanted)
  bool grad_scale;
  Upstream up;
  double* row_loss;      // rows
  float* dscale_part;    // parts (rows, or per block), 0 where not written
  long long* first_bad;  // flat index of the first NaN/+inf, INT64_MAX when none
  double* result;        // [Σ row_loss, Σ dscale_part]
};

// RowLossParams' fields from a loss's arguments; the arrays come from carve_row_loss.
inline RowLossParams row_loss_params(const LossArgs& a) {
  RowLossParams p{};
  static_cast<ScoresView&>(p) = scores_view(a);
  p.grad = a.grad;
  p.grad_scale = a.grad_scale;
  return p;
}

// Takes RowLossParams' arrays from s (a ScratchPlan or the Scratch: see Scratch), with `parts`
// dScale partials.
template <class S>
void carve_row_loss(S& s, RowLossParams& p, Reduction reduction, const float* grad_output, double mean_scale, int64_t parts) {
  p.up = carve_upstream(s, reduction, grad_output, p.rows, mean_scale);
  p.row_loss = s.template take<double>(p.rows);
  p.dscale_part = s.template take<float>(parts);
  p.first_bad = s.template take<long long>(1);
  p.result = s.template take<double>(2);
}

// Before the kernels: no NaN seen yet, every dScale partial 0.
inline void start_row_loss(const RowLossParams& p, int64_t parts) {
  const long long none = INT64_MAX;
  copy_to_device(p.first_bad, &none, sizeof none);
  FL_CUDA_CHECK(cudaMemsetAsync(p.dscale_part, 0, size_t(parts) * sizeof(float), cudaStreamPerThread));
}

// Throws ERR_NON_FINITE for the first NaN/+inf the kernels found in `tensor` (rows × cols).
inline void throw_if_bad(const long long* d_first_bad, int64_t cols, const char* tensor) {
  long long bad = 0;
  copy_to_host(&bad, d_first_bad, sizeof bad);
  if (bad != INT64_MAX) fail_non_finite(tensor, bad / cols, bad % cols);
}

// The row losses, kept in double on the device, out as float.
inline void copy_row_losses(float* out, const double* d_row_loss, int64_t rows) {
  std::vector<double> h(static_cast<size_t>(rows));
  copy_to_host(h.data(), d_row_loss, h.size() * sizeof(double));
  for (int64_t i = 0; i < rows; ++i) out[i] = float(h[size_t(i)]);
}

// ---------- the losses over positives ----------
// decoupledSoftmax, multiLabelSoftmax, binaryCrossEntropy (cuda/positives_losses.cu), one-way
// InfoNCE and DCL (cuda/contrastive.cu): a CSR of positives per row, and the columns each skips.

struct PositivesParams : RowLossParams {
  const int32_t* pos_ptr;   // rows + 1
  const int32_t* pos_cols;
  const float* pos_w;       // null: every weight 1
  CsrView skip_a, skip_b;   // the skipped columns
  uint32_t* mask;           // rows × mask_words (scratch)
  int64_t mask_words;
  float* pos_x;             // per positive: its score, read before any gradient store
  float* pos_dz;            // per positive: its exact dℓ/dz times the row's upstream factor
};

// The one builder of PositivesParams, its arrays from s (see carve_row_loss): skip_a is the
// exclusions; skip_b the positives when skip_positives. mean_divisor: what 'mean' divides by.
template <class S>
PositivesParams carve_positives(S& s, const LossArgs& a, double mean_divisor, const Csr& pos, const Csr& exclude, bool skip_positives) {
  PositivesParams p{};
  static_cast<RowLossParams&>(p) = row_loss_params(a);
  const int64_t rows = a.rows, cols = a.cols;
  carve_row_loss(s, p, a.reduction, a.grad_output, inverse_or_zero(mean_divisor), rows);
  const int64_t nnz = pos.nnz(rows);
  p.pos_ptr = s.upload(pos.row_ptr, rows + 1);
  p.pos_cols = s.upload(pos.cols, nnz);
  p.pos_w = pos.weights ? s.upload(pos.weights, nnz) : nullptr;
  if (exclude) p.skip_a = CsrView{s.upload(exclude.row_ptr, rows + 1), s.upload(exclude.cols, exclude.nnz(rows))};
  if (skip_positives) p.skip_b = CsrView{p.pos_ptr, p.pos_cols};
  p.mask_words = (cols + 31) / 32;
  p.mask = s.template take<uint32_t>(rows * p.mask_words);
  p.pos_x = s.template take<float>(nnz);
  p.pos_dz = s.template take<float>(nnz);
  return p;
}

// The softmax losses over positives (all but bce): the statistics of z = scale·x over the
// columns not skipped, the positives' terms, the dense gradient cf·e^(z − max)·scale, and the
// positives' exact gradients over the dense ones.

// z = scale·x of a score, exactly as every sweep computes it (so that an entry's z equals the row
// max bitwise when it is the max); −inf stays −inf (scale > 0).
__device__ __forceinline__ float z_of(float v, float scale) { return v == -INFINITY ? -INFINITY : scale * v; }

// One row, launched as one block a row (kCluster false) or a cluster a row. kOnChip: the row (a
// slice of `slice` columns per block of a cluster) stays in shared memory (dynamic, elements of
// T) between the statistics and the gradient: 1 read of x + 1 write of the gradient. Otherwise
// one block reads the row twice (slice = cols).
// terms(max, rest, lse, sums, sd) runs on every thread of the row's first block (rank 0), which
// alone handles the positives: each thread adds its share of the row's loss (sums[0]) and dense
// weight (sums[1]) and writes pos_dz of its positives; `sd` is block_sums' shared scratch
// (kThreads/32·2 doubles). u: the row's upstream factor; cf = u·Σweight/(1 + rest).
// kDenseAtPositives: the positives are not skipped, so their dense term is traded for the exact one.
template <class T, class TG, int kThreads, bool kOnChip, bool kCluster, bool kDenseAtPositives, class Terms>
__device__ __forceinline__ void softmax_row(const PositivesParams& a, int64_t slice, double u, Terms&& terms) {
  constexpr int kWarps = kThreads / kWarp;
  extern __shared__ __align__(16) unsigned char row_smem[];
  __shared__ float smax[kWarps], srest[kWarps], sred[kWarps];
  __shared__ long long sbad[kWarps];
  __shared__ double sd[kWarps * 2];
  __shared__ float row_cf, block_dsc;
  const RowGroup<kCluster> grp = row_group<kCluster>();
  const bool lead = grp.rank == 0;
  const int64_t row = blockIdx.x / grp.ranks;
  const int64_t c0 = min(a.cols, int64_t(grp.rank) * slice), c1 = min(a.cols, c0 + slice);
  const T* x = static_cast<const T*>(a.x) + row * a.cols;
  TG* g = a.grad ? static_cast<TG*>(a.grad) + row * a.cols : nullptr;
  T* xs = reinterpret_cast<T*>(row_smem);
  const int64_t e0 = a.pos_ptr[row], e1 = a.pos_ptr[row + 1];
  // The positives' scores, anywhere in the row, before any block of the row stores a gradient (the
  // barriers of build_row_mask and of merge_over_row order them).
  if (lead)
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) a.pos_x[e] = to_float(x[a.pos_cols[e]]);
  const RowMask mask = build_row_mask(a.mask + row * a.mask_words, c0, c1, row, a.skip_a, a.skip_b);

  OnlineSumExp s;
  long long bad = INT64_MAX;
  for_each_pack(x, c0, c1, [&](int64_t c, auto& v) {
#pragma unroll
    for (int j = 0; j < length_of<decltype(v)>; ++j) {
      if constexpr (kOnChip) xs[c + j - c0] = from_float<T>(v[j]);  // exact: v came from a T
      if (is_bad(v[j])) bad = min(bad, (long long)(row * a.cols + c + j));  // skipped columns are checked too
      if (!mask.skipped(c + j)) s.add(z_of(v[j], a.scale));
    }
  });
  block_merge<kThreads>(s, bad, smax, srest, sbad);  // its barrier also completes the stash
  if (threadIdx.x == 0 && bad != INT64_MAX) atomicMin(a.first_bad, bad);
  float unused = 0.f;
  merge_over_row(grp, s, unused);
  if (threadIdx.x == 0) {
    smax[0] = s.max;
    srest[0] = s.rest;
  }
  __syncthreads();
  const float max = smax[0];
  const double rest = srest[0];
  const double lse = max == -INFINITY ? -INFINITY : double(max) + log1p(rest);
  if (lead) {
    double sums[2] = {0, 0};  // the row's loss, and its dense weight
    terms(max, rest, lse, sums, sd);
    block_sums<kThreads>(sums, sd);
    if (threadIdx.x == 0) {
      a.row_loss[row] = sums[0];
      row_cf = max == -INFINITY ? 0.f : float(u * sums[1] / (1.0 + rest));
    }
  }
  grp.sync();  // row_cf and pos_dz to the row's blocks
  const float cf = *grp.at(&row_cf, 0);
  float dsc = 0.f;
  if (g || a.grad_scale) {
    if constexpr (kOnChip)
      for_each_on_chip(xs, g, c0, c1, [&](int64_t c, float v) { return dense_softmax_at(mask, c, v, a.scale, cf, max, dsc); });
    else
      dsc = dense_softmax_sweep(x, g, a.cols, mask, a.scale, cf, max);
  }
  dsc = block_sum(dsc, sred);
  if (threadIdx.x == 0) block_dsc = dsc;
  grp.sync();  // every block's dense stores before the positives' below; block_dsc to rank 0
  if (lead) {
    // The positives' exact gradients replace the dense ones (0 where skipped), and dScale trades
    // the dense term for the exact one. A positive at −inf keeps its 0.
    double fix[1] = {0};
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
      const float xe = a.pos_x[e];
      if (xe == -INFINITY) continue;
      const float dense = kDenseAtPositives ? cf * exp_shifted(z_of(xe, a.scale), max) : 0.f;
      if (g) g[a.pos_cols[e]] = from_float<TG>(a.pos_dz[e] * a.scale);
      fix[0] += (double(a.pos_dz[e]) - double(dense)) * double(xe);
    }
    block_sums<kThreads>(fix, sd);
    if (threadIdx.x == 0) {
      float d = 0.f;
      for (unsigned r = 0; r < grp.ranks; ++r) d += *grp.at(&block_dsc, r);
      a.dscale_part[row] = float(double(d) + fix[0]);
    }
  }
  if constexpr (kCluster) grp.sync();  // the blocks stay until rank 0 has read their block_dsc
}

// Raises the on-chip kernels' dynamic shared memory to the largest they may have (the opt-in
// limit less their static shared memory; the cluster kernel only on sm_90 and newer), the same
// value on every call: the attribute is per function, and concurrent calls must not lower it
// for one another. Returns it (cuda/plan.h row_on_chip's dynamic_limit).
template <class... A>
size_t raise_on_chip_smem(int optin, int major, void (*block_kernel)(A...), void (*cluster_kernel)(A...)) {
  const void* kernels[2] = {reinterpret_cast<const void*>(block_kernel), reinterpret_cast<const void*>(cluster_kernel)};
  const int n = major >= 9 ? 2 : 1;
  size_t static_smem = 0;
  for (int i = 0; i < n; ++i) {
    cudaFuncAttributes attr{};
    FL_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernels[i]));
    static_smem = attr.sharedSizeBytes > static_smem ? attr.sharedSizeBytes : static_smem;
  }
  const size_t limit = dynamic_smem_limit(size_t(optin), static_smem);
  for (int i = 0; i < n; ++i) FL_CUDA_CHECK(cudaFuncSetAttribute(kernels[i], cudaFuncAttributeMaxDynamicSharedMemorySize, int(limit)));
  return limit;
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

// What the launchers' plans need of the current device.
struct DeviceLimits {
  int sms = 0, smem_optin = 0, cc_major = 0;
};

inline DeviceLimits device_limits() {
  int device = 0;
  DeviceLimits d;
  FL_CUDA_CHECK(cudaGetDevice(&device));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, device));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&d.cc_major, cudaDevAttrComputeCapabilityMajor, device));
  return d;
}

// Launches a row-on-chip kernel as planned (cuda/plan.h row_on_chip): one block a row, or a
// cluster a row. False when such a cluster cannot be resident here: the caller then takes its
// layout without shared memory.
template <class... A, class... B>
bool launch_on_chip(const RowOnChip& plan, int64_t rows, int threads, void (*block_kernel)(A...), void (*cluster_kernel)(A...), B... args) {
  if (plan.blocks_per_row == 1) {
    block_kernel<<<unsigned(rows), unsigned(threads), plan.dynamic_smem>>>(args...);
    return true;
  }
  ClusterLaunch cluster(rows, plan.blocks_per_row, threads, plan.dynamic_smem);
  if (!cluster.fits(cluster_kernel)) return false;
  cluster.launch(cluster_kernel, args...);
  return true;
}

// One device allocation for every scratch array of a call, freed on every exit path. Built from
// the call's list of arrays (cuda/plan.h ScratchPlan), a function of the carver: the list runs
// once over a ScratchPlan for the size, then over this Scratch for the arrays, so the size is
// the one the carving needs; a take beyond it throws (ScratchCarver).
struct Scratch : ScratchCarver {
  template <class List> explicit Scratch(List&& list) {
    ScratchPlan plan;
    list(plan);
    base = static_cast<char*>(device_alloc(plan.bytes));
    capacity = plan.bytes;
    try {
      list(*this);  // its uploads may fail: no destructor runs for a constructor that throws
    } catch (...) {
      device_free_quiet(base);
      throw;
    }
  }
  ~Scratch() { device_free_quiet(base); }  // an error path: the error in flight is the one to report
  // Frees it, checked, at the end of a call that went well.
  void release() {
    char* b = base;
    base = nullptr;
    device_free(b);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
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

// After the kernels: Σ row_loss over `rows` and Σ dscale_part over `parts` in a fixed order
// (sum_rows_kernel), and the row losses out as float. Returns {Σ loss, Σ dScale}.
struct RowTotals {
  double loss, dscale;
};
template <class D>
RowTotals sum_rows(const double* d_row_loss, int64_t rows, const D* d_parts, int64_t parts, double* d_result, float* row_loss_out) {
  sum_rows_kernel<<<1, 256>>>(d_row_loss, rows, d_parts, parts, d_result);
  check_launch("row sums kernel");
  double result[2];
  copy_to_host(result, d_result, sizeof result);
  copy_row_losses(row_loss_out, d_row_loss, rows);
  return {result[0], result[1]};
}

// The end of a loss over RowLossParams with one dScale partial a row: ERR_NON_FINITE for a
// NaN/+inf in the scores, the sums, the row losses out, the scratch freed; 'mean' divides by
// mean_divisor.
inline LossResult finish_loss(const RowLossParams& p, float* row_loss_out, Reduction reduction, double mean_divisor, Scratch& s) {
  throw_if_bad(p.first_bad, p.cols, "scores");
  const RowTotals r = sum_rows(p.row_loss, p.rows, p.dscale_part, p.rows, p.result, row_loss_out);
  s.release();
  return {reduction == Reduction::Mean ? mean_of(r.loss, mean_divisor) : r.loss, p.grad_scale ? r.dscale : 0.0};
}

}  // namespace fl::cuda
