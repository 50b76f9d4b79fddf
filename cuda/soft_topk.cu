// softTopKLoss (MATH softTopKLoss, native/ops/soft_topk_math.h) and the softTopK operator (MATH softTopK, native/ops/soft_topk_math.h) on the GPU. The per-row math (bracket, safeguarded Newton on
// log L − log R, backward factor) is native/ops/soft_topk_math.h, shared with the CPU.
//
// Each row is held on chip while its threshold is found, so that the whole loss costs one read
// of the scores and one write of the gradient in HBM. The layout (cuda/plan.h topk_plan):
//  - Block: the row's z = scale·x fits one block's shared memory (the device's opt-in limit less
//    the kernel's static shared memory: about 56K columns on an H100); one block per row;
//  - Cluster (sm_90): a cluster of up to 8 blocks per row, each holding a slice in its shared
//    memory (up to ~450K columns on an H100); the blocks add their partial sums through
//    distributed shared memory in rank order, so every block sees the same totals and takes
//    the same Newton steps;
//  - Global: a longer row (or an older GPU) is re-read on every pass.
// Passes over memory as designed: Block and Cluster 1 read of S + 1 write of the gradient (or of
// the operator's values); Global 2 + (Newton passes) reads + 1 write; the vjp on chip (its
// row's (v, own) in one block's or a cluster's shared memory: about 29K columns a block on an
// H100) 1 read of S and of gradOutput + 1 write, else 2 reads of each + 1 write.
// Exclusions take no part anywhere, as on the CPU: on chip their z is set to −inf after the
// read (so the bracket, the count N_i and every sum see only the entries that are in, and their
// gradient and values come out 0 / −inf with no fix-up pass); the Global layout and the vjp
// test a per-row bitmask (row_kernels.cuh). z = scale·x, a = (z + t)·α, each rounded as the CPU
// rounds them (no contraction). The numerics are the CPU's (soft_topk_math.h, soft_topk.inl), in
// their scalar forms: σ(±|a|) by expf and an IEEE reciprocal, both halves to full relative
// precision; each side of a pass's sums (a < 0, a ≥ 0) scaled by its largest term (ShiftedSide),
// so that a saturated row, whose terms all lie below fp32's e^-87, still finds the true root; the
// backward's c·p(1 − p) as one exp of log|c| − |a| (scaled_term); the positives' terms in double.
// Sums are per-thread fp32 partials merged in double in a fixed order; row losses and dScale
// partials are summed by one final block: no float atomics, results independent of scheduling.
#include <cooperative_groups.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/ops/csr.h"
#include "../native/ops/soft_topk.h"
#include "../native/ops/soft_topk_math.h"
#include "check.cuh"
#include "common.cuh"
#include "plan.h"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / kWarp;

struct TopKParams : ScoresView {
  void* grad;  // null: no gradient (dScale may still be wanted)
  float alpha, tol;
  int max_iter;
  int32_t k;                 // every row's k, unless k_rows
  const int32_t* k_rows;     // rows, or null
  const int32_t* pos_ptr;    // rows + 1
  const int32_t* pos_cols;
  const float* pos_weights;  // or null
  float* pos_z;              // per positive: its z, read in the first pass (before an in-place sweep)
  CsrView excl;              // the exclusions (any order), or none
  uint32_t* mask;            // Global layout with exclusions: rows × mask_words
  int64_t mask_words;
  Upstream up;
  bool grad_scale;
  double* row_loss;          // rows
  double* row_dscale;        // rows
  int32_t* row_k_bad;        // rows: N_i when k is out of (0, N_i), else -1
  long long* first_bad;      // flat index of the first NaN/+inf
  double* result;            // [Σ row_loss, Σ row_dscale]
  // The operator (values non-null): every row is solved and its p (or log p) written.
  float* values;             // rows × cols, or null for the loss
  bool log_output;
  float* threshold;          // rows (operator)
  int32_t* iterations;       // rows (operator)
};

using Layout = TopKLayout;

// a = (z + t)·α, rounded as written (the CPU's order; no FMA).
__device__ __forceinline__ float topk_arg(float z, float t, float alpha) { return __fmul_rn(__fadd_rn(z, t), alpha); }

// Sums of Nv doubles over the block, then over the cluster's blocks in rank order: every thread
// of every block of the row gets the same totals, so each block can run the same solver step.
// `shared` holds kWarps·Nv doubles; `part` (Nv doubles of block shared memory) carries the
// block's totals to the other blocks of the cluster.
template <Layout L, int Nv>
__device__ void row_sums(double (&v)[Nv], double* shared, double* part) {
  block_sums<kThreads>(v, shared);
  if constexpr (L == Layout::Cluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0)
      for (int i = 0; i < Nv; ++i) part[i] = v[i];
    cluster.sync();
    for (int i = 0; i < Nv; ++i) v[i] = 0;
    for (unsigned r = 0; r < cluster.num_blocks(); ++r) {
      const double* q = cluster.map_shared_rank(part, r);
      for (int i = 0; i < Nv; ++i) v[i] += q[i];
    }
    cluster.sync();  // every block has read `part` before any block writes it again, or exits
#else
    __trap();  // the launcher uses clusters only on sm_90 and newer
#endif
  }
}

// The extremes of z over the row's entries that are in, merged over the block and the cluster
// (max is exact in any order); every thread gets them.
template <Layout L>
__device__ void row_extremes(IncludedExtremes& e, double* shared, double* part) {
  for (int off = kWarp / 2; off > 0; off /= 2) {
    IncludedExtremes o;
    o.max = __shfl_xor_sync(0xffffffffu, e.max, off);
    o.neg_min = __shfl_xor_sync(0xffffffffu, e.neg_min, off);
    e.merge(o);  // the counts are summed apart (row_sums): `in` of o stays 0
  }
  __syncthreads();
  if (threadIdx.x % kWarp == 0) {
    shared[threadIdx.x / kWarp * 2] = e.max;
    shared[threadIdx.x / kWarp * 2 + 1] = e.neg_min;
  }
  __syncthreads();
  for (int w = 0; w < kWarps; ++w) {
    IncludedExtremes o;
    o.max = float(shared[w * 2]);
    o.neg_min = float(shared[w * 2 + 1]);
    e.merge(o);
  }
  if constexpr (L == Layout::Cluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) {
      part[0] = e.max;
      part[1] = e.neg_min;
    }
    cluster.sync();
    for (unsigned r = 0; r < cluster.num_blocks(); ++r) {
      const double* q = cluster.map_shared_rank(part, r);
      IncludedExtremes o;
      o.max = float(q[0]);
      o.neg_min = float(q[1]);
      e.merge(o);
    }
    cluster.sync();
#endif
  }
}

// The block's slice [c0, c1) of its row: z = scale·x from shared memory (Block, Cluster), or
// from the scores and the exclusion mask (Global: −inf where excluded).
template <class T, Layout L>
struct RowSlice {
  const T* x;
  const float* z;        // z[c − c0] (shared memory), unless Global
  const uint32_t* mask;  // Global with exclusions, else null
  float scale;
  int64_t c0, c1;
  __device__ bool owns(int64_t c) const { return c >= c0 && c < c1; }
  __device__ float from_x(int64_t c, float v) const {
    return mask && RowMask{mask}.skipped(c) ? -INFINITY : __fmul_rn(v, scale);
  }
  // Writes f(z) at out[c] for every column c of the slice, spread over the block, in 16-byte
  // stores: reading the scores in the Global layout (each thread writes what it read, so out
  // may be the scores), shared memory otherwise.
  template <class TG, class F> __device__ void map_into(TG* out, F&& f) const {
    if constexpr (L == Layout::Global) {
      for_each_pack(x, c0, c1, [&](int64_t c, auto& v) {
        constexpr int n = length_of<decltype(v)>;
        float o[n];
#pragma unroll
        for (int j = 0; j < n; ++j) o[j] = f(from_x(c + j, v[j]));
        store_pack<TG>(out + c, o);
      });
    } else {
      for_each_store_pack(out, c0, c1, [&](int64_t c, auto& o) {
#pragma unroll
        for (int j = 0; j < length_of<decltype(o)>; ++j) o[j] = f(z[c + j - c0]);
      });
    }
  }
  // Calls f(c, z) for every column of the slice, spread over the block.
  template <class F> __device__ void each(F&& f) const {
    if constexpr (L == Layout::Global) {
      for_each_pack(x, c0, c1, [&](int64_t c, auto& v) {
#pragma unroll
        for (int j = 0; j < length_of<decltype(v)>; ++j) f(c + j, from_x(c + j, v[j]));
      });
    } else {
      for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) f(c, z[c - c0]);
    }
  }
};

// One pass's sums at t over the row's entries that are in (an entry out has z = −inf: a = −inf,
// p = 0, and adds nothing).
template <class T, Layout L>
__device__ TopKSums pass_sums(const TopKParams& p, const RowSlice<T, L>& z, float t, double* shared, double* part) {
  // Each side summed scaled by the largest term this thread has seen on it, and scaled back in
  // double (soft_topk_math.h ShiftedPass): on a saturated row every term of both sides can lie
  // below fp32's range, and the solver needs their ratio.
  ShiftedPass pass = shifted_pass_empty();
  z.each([&](int64_t, float zc) {
    if (zc != -INFINITY) shifted_pass_take(pass, topk_arg(zc, t, p.alpha));  // out: p = 0, adds nothing
  });
  const TopKSums mine = shifted_pass_sums(pass);
  double v[5] = {mine.m, mine.p_lo, mine.q_hi, mine.v_lo, mine.v_hi};
  row_sums<L>(v, shared, part);
  TopKSums s;
  s.m = v[0];
  s.p_lo = v[1];
  s.q_hi = v[2];
  s.v_lo = v[3];
  s.v_hi = v[4];
  return s;
}

template <class T, class TG, Layout L>
__global__ void __launch_bounds__(kThreads) topk_loss_kernel(TopKParams p, int64_t slice) {
  extern __shared__ __align__(16) float zrow[];  // the slice's z (Block, Cluster)
  __shared__ double sred[kWarps * 5];
  __shared__ double part[5];
  __shared__ TopKSolver solver;
  __shared__ bool skip_row;
  unsigned rank = 0, ranks = 1;
  if constexpr (L == Layout::Cluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    rank = cg::this_cluster().block_rank();
    ranks = cg::this_cluster().num_blocks();
#endif
  }
  const int64_t row = blockIdx.x / ranks;
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  const int64_t c0 = min(p.cols, int64_t(rank) * slice), c1 = min(p.cols, c0 + slice);
  const bool op = p.values != nullptr;
  const int32_t e0 = op ? 0 : p.pos_ptr[row], e1 = op ? 0 : p.pos_ptr[row + 1];
  const bool has_pos = op || e1 > e0;  // the row needs a threshold

  const uint32_t* mask = nullptr;
  if constexpr (L == Layout::Global)
    if (p.mask) mask = build_row_mask(p.mask + row * p.mask_words, p.cols, row, p.excl, CsrView{}).words;
  const RowSlice<T, L> z{x, zrow, mask, p.scale, c0, c1};

  // Pass 1 (the one read of the scores): NaN/+inf anywhere (excluded entries too, as on the
  // CPU); z into shared memory; in the Global layout the extremes of the entries that are in.
  IncludedExtremes ext;
  long long bad = INT64_MAX;
  for_each_pack(x, c0, c1, [&](int64_t c, auto& v) {
#pragma unroll
    for (int j = 0; j < length_of<decltype(v)>; ++j) {
      if (is_bad(v[j])) bad = min(bad, (long long)(row * p.cols + c + j));
      if constexpr (L == Layout::Global) ext.add(z.from_x(c + j, v[j]));
      else zrow[c + j - c0] = __fmul_rn(v[j], p.scale);
    }
  });
  // The positives' z, by the block that owns the column: the loss and the fixes below read them
  // from here, since with inplace the gradient sweep (of any block of a cluster) overwrites the
  // scores. The barriers of row_sums below publish them to the row's blocks.
  for (int32_t e = e0 + threadIdx.x; e < e1; e += blockDim.x)
    if (z.owns(p.pos_cols[e])) p.pos_z[e] = __fmul_rn(to_float(x[p.pos_cols[e]]), p.scale);
  for (int off = kWarp / 2; off > 0; off /= 2) bad = min(bad, __shfl_xor_sync(0xffffffffu, bad, off));
  if (threadIdx.x % kWarp == 0 && bad != INT64_MAX) atomicMin(p.first_bad, bad);  // integer min: order-free
  if constexpr (L != Layout::Global) {
    // Exclusions out, on chip: z = −inf. Then the extremes and the count of the entries in.
    __syncthreads();
    if (p.excl.ptr)
      for (int64_t e = p.excl.ptr[row] + threadIdx.x; e < p.excl.ptr[row + 1]; e += blockDim.x)
        if (z.owns(p.excl.cols[e])) zrow[p.excl.cols[e] - c0] = -INFINITY;
    __syncthreads();
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) ext.add(zrow[c - c0]);
  }
  double count[1] = {double(ext.in)};
  row_sums<L>(count, sred, part);
  const double n_in = count[0];
  row_extremes<L>(ext, sred, part);

  if (threadIdx.x == 0) {
    skip_row = !has_pos;
    if (rank == 0) p.row_k_bad[row] = -1;
    if (has_pos) {
      const int32_t k = p.k_rows ? p.k_rows[row] : p.k;
      if (!(k > 0 && double(k) < n_in)) {
        if (rank == 0) p.row_k_bad[row] = int32_t(n_in);
        skip_row = true;
      } else {
        solver = topk_solver_init(double(ext.max), double(-ext.neg_min), k, n_in, p.alpha, p.tol);
      }
    }
  }
  __syncthreads();
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  if (skip_row) {  // no positives (or a k error, thrown by the host): loss 0, gradient 0
    if (op) return;
    if (g) z.map_into(g, [](float) { return 0.f; });
    if (threadIdx.x == 0 && rank == 0) {
      p.row_loss[row] = 0;
      p.row_dscale[row] = 0;
    }
    return;
  }

  // The threshold. Every block of the row sees the same sums, so all take the same steps.
  while (true) {
    const TopKSums s = pass_sums(p, z, float(solver.t), sred, part);
    if (threadIdx.x == 0) topk_solver_step(solver, s, p.max_iter);
    __syncthreads();
    if (solver.done) break;
  }
  const float t = float(solver.t);

  if (op) {  // the operator's values, written once; excluded entries (z = −inf) give 0, or −inf for log p
    if (threadIdx.x == 0 && rank == 0) {
      p.threshold[row] = t;
      p.iterations[row] = solver.iterations;
    }
    float* out = p.values + row * p.cols;
    auto value = [&](float zc) {
      const float a = topk_arg(zc, t, p.alpha);
      return p.log_output ? fminf(a, 0.f) - log1pf(expf(-fabsf(a))) : sigmoid_pair(a).p;
    };
    z.map_into(out, value);
    return;
  }

  // The loss and U = Σ_p u_p: the positives spread over the block, summed in a fixed order
  // (every block of a cluster sums all of them, the same way: the same result).
  const double cu = p.up.at(row), n = double(e1 - e0);
  double lu[2] = {0, 0};
  for (int32_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
    const double w = p.pos_weights ? p.pos_weights[e] : 1.0;
    const float zp = p.pos_z[e];
    if (zp == -INFINITY) {
      if (w != 0) lu[0] += INFINITY;
      continue;
    }
    // 1 − p in double: a saturated positive's lies far below fp32's range.
    const float a = topk_arg(zp, t, p.alpha);
    if (w != 0) lu[0] -= w / n * log_sigmoid_d(double(a));
    lu[1] += double(p.alpha) * (-cu * w / n) * sigmoid_pair_d(double(a)).q;
  }
  block_sums<kThreads>(lu, sred);
  if (threadIdx.x == 0 && rank == 0) p.row_loss[row] = lu[0];
  const double factor = topk_backward_factor(lu[1], p.alpha, topk_df(solver.at_t));
  // The dense gradient −scale·α·factor·p(1 − p) = sign·scale·|c|·p(1 − p) with c = α·factor,
  // formed as one exp of log|c| − |a| (soft_topk_math.h scaled_term): on a saturated row c is as
  // large as p(1 − p) is small, and each alone leaves fp32's range.
  const ScaledFactor c = scaled_factor(double(p.alpha) * factor, false);
  const float sign = -c.sign, store_coef = sign * p.scale;

  // The gradient, written once per entry: the dense term (0 where out), then the positives'
  // whole value scale·(u_p − v_p·U/V), each by the block that owns the column. dsc: Σ|c|·p(1 − p)·x.
  float dsc = 0.f;
  auto dense = [&](float zc) {
    if (zc == -INFINITY) return 0.f;
    const float cpq = scaled_term(fabsf(topk_arg(zc, t, p.alpha)), c.log_c, c.inv_c, c.two_exp).cpq;
    dsc += cpq * (zc / p.scale);
    return store_coef * cpq;
  };
  if (g) z.map_into(g, dense);
  else if (p.grad_scale) z.each([&](int64_t, float zc) { dense(zc); });
  __syncthreads();  // the positives below overwrite entries other threads wrote
  double d[2] = {dsc, 0};
  for (int32_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
    const int32_t col = p.pos_cols[e];
    const float zp = p.pos_z[e];
    if (!z.owns(col) || zp == -INFINITY) continue;
    const double w = p.pos_weights ? p.pos_weights[e] : 1.0;
    const SigmoidPairD s = sigmoid_pair_d(double(topk_arg(zp, t, p.alpha)));
    const double u = double(p.alpha) * (-cu * w / n) * s.q;
    const double dz = u - double(p.alpha) * s.p * s.q * factor;
    if (g) g[col] = from_float<TG>(float(double(p.scale) * dz));
    d[1] += u * double(zp / p.scale);
  }
  row_sums<L>(d, sred, part);
  if (threadIdx.x == 0 && rank == 0) p.row_dscale[row] = double(sign) * d[0] + d[1];
}

// The operator's vjp (MATH softTopK, native/ops/soft_topk_math.h: backward), with the thresholds saved by the forward: pass 1 sums
// V = Σ v and G = Σ own over the entries that are in, v = α·p(1 − p) and own = g·v ('prob') or
// α·g·(1 − p) ('log'); pass 2 writes scale·(own − v·G/V), 0 where out. As on the CPU
// (soft_topk.inl topk_vjp_sums, topk_vjp_grad): pass 1 sums each side scaled by its largest term
// (on a saturated row every v lies below fp32's range, and so does G where g sits on saturated
// entries), and pass 2 forms v·G/V as one exp of log|α·G/V| − |a|. Excluded entries are out
// through the row's mask (built by each block for its columns), so they add nothing and get 0
// with no fix-up pass. Block and Cluster (cuda/plan.h row_on_chip, 8 bytes a column): pass 1
// keeps each column's (a, g) in shared memory, and pass 2 reads them from there: 1 read of S and
// of gradOutput + 1 write. Global: pass 2 reads both again and recomputes a, bitwise the same.
struct TopKVjpParams : ScoresView {
  const float* g_out;       // rows × cols
  void* grad;               // rows × cols
  float alpha;
  bool log_output;
  const float* threshold;   // rows
  CsrView excl;
  uint32_t* mask;           // rows × mask_words, when there are exclusions
  int64_t mask_words;
};

// An entry's a = α(scale·x + t); −inf where it is out (excluded, or x = −inf).
__device__ __forceinline__ float vjp_arg(const TopKVjpParams& p, float x, bool out, float t) {
  return out || x == -INFINITY ? -INFINITY : topk_arg(__fmul_rn(x, p.scale), t, p.alpha);
}

template <class T, class TG, Layout L>
__global__ void __launch_bounds__(kThreads) topk_vjp_kernel(TopKVjpParams p, int64_t slice) {
  extern __shared__ __align__(16) float2 vjp_row[];  // the slice's (a, g) (Block, Cluster)
  __shared__ double sred[kWarps * 2];
  __shared__ double part[2];
  const RowGroup<L == Layout::Cluster> grp = row_group<L == Layout::Cluster>();
  const int64_t row = blockIdx.x / grp.ranks;
  const int64_t c0 = min(p.cols, int64_t(grp.rank) * slice), c1 = min(p.cols, c0 + slice);
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  const float* go = p.g_out + row * p.cols;
  TG* g = static_cast<TG*>(p.grad) + row * p.cols;
  const float t = p.threshold[row];
  const uint32_t* words = p.mask ? build_row_mask(p.mask + row * p.mask_words, c0, c1, row, p.excl, CsrView{}).words : nullptr;
  auto out = [&](int64_t c) { return words && RowMask{words}.skipped(c); };
  // Pass 1: each side's sums scaled by its largest term (soft_topk_math.h ShiftedVjp).
  ShiftedVjp s = shifted_vjp_empty();
  for_each_pack(x, c0, c1, [&](int64_t c, auto& v) {
#pragma unroll
    for (int j = 0; j < length_of<decltype(v)>; ++j) {
      const float a = vjp_arg(p, v[j], out(c + j), t);
      if constexpr (L != Layout::Global) vjp_row[c + j - c0] = make_float2(a, go[c + j]);
      shifted_vjp_take(s, a, go[c + j], p.alpha, p.log_output);
    }
  });
  double sums[2];
  shifted_vjp_totals(s, sums[0], sums[1]);
  // Also orders every read of x and gradOutput, by every block of the row, before the in-place
  // writes, and completes the terms in shared memory.
  row_sums<L>(sums, sred, part);
  // Pass 2: scale·(own − v·G/V), v·G/V = c·p(1 − p) with c = α·G/V.
  const ScaledFactor f = scaled_factor(double(p.alpha) * topk_backward_factor(sums[1], 1.0, sums[0]), true);
  if constexpr (L != Layout::Global) {
    for_each_store_pack(g, c0, c1, [&](int64_t c, auto& o) {
#pragma unroll
      for (int j = 0; j < length_of<decltype(o)>; ++j) {
        const float2 u = vjp_row[c + j - c0];
        o[j] = p.scale * vjp_term(f, u.x, u.y, p.alpha, p.log_output);
      }
    });
  } else {
    for_each_pack(x, 0, p.cols, [&](int64_t c, auto& v) {
      constexpr int n = length_of<decltype(v)>;
      float o[n];
#pragma unroll
      for (int j = 0; j < n; ++j) o[j] = p.scale * vjp_term(f, vjp_arg(p, v[j], out(c + j), t), go[c + j], p.alpha, p.log_output);
      store_pack<TG>(g + c, o);
    });
  }
}

// The row layout for this device and these kernels. The dynamic shared-memory attribute of the
// on-chip kernels is set to the largest dynamic size they may have (row_kernels.cuh
// raise_on_chip_smem): concurrent calls (async jobs on several threads) with different N never
// lower each other's limit, and a launch never depends on which call came first.
template <class T, class TG>
TopKPlan plan_rows(int64_t cols) {
  const DeviceLimits dev = device_limits();
  const size_t limit =
      raise_on_chip_smem(dev.smem_optin, dev.cc_major, topk_loss_kernel<T, TG, Layout::Block>, topk_loss_kernel<T, TG, Layout::Cluster>);
  return topk_plan(cols, limit, dev.cc_major);
}

template <class T, class TG>
void launch(const TopKParams& p, const TopKPlan& plan) {
  if (plan.layout == Layout::Block) {
    topk_loss_kernel<T, TG, Layout::Block><<<unsigned(p.rows), kThreads, plan.dynamic_smem>>>(p, plan.slice);
    check_launch("softTopKLoss kernel");
    return;
  }
  if (plan.layout == Layout::Cluster) {
    ClusterLaunch cluster(p.rows, plan.blocks_per_row, kThreads, plan.dynamic_smem);
    cluster.launch(topk_loss_kernel<T, TG, Layout::Cluster>, p, plan.slice);
    check_launch("softTopKLoss cluster kernel");
    return;
  }
  topk_loss_kernel<T, TG, Layout::Global><<<unsigned(p.rows), kThreads, 0>>>(p, int64_t(p.cols));
  check_launch("softTopKLoss kernel");
}

// Whether a cluster plan can launch here (cudaOccupancyMaxActiveClusters > 0); else Global.
template <class T, class TG>
TopKPlan checked_plan(int64_t cols) {
  TopKPlan plan = plan_rows<T, TG>(cols);
  if (plan.layout != Layout::Cluster) return plan;
  ClusterLaunch one(1, plan.blocks_per_row, kThreads, plan.dynamic_smem);
  return one.fits(topk_loss_kernel<T, TG, Layout::Cluster>) ? plan : TopKPlan{Layout::Global, 1, cols, 0};
}

// The parameters the loss and the operator share: the scores, the solver's options, k and the
// exclusions on the device, and the per-row outputs the host checks; the arrays from c (a
// ScratchPlan or the Scratch, row_kernels.cuh).
template <class S>
TopKParams shared_params(const SoftTopKProblem& q, const TopKPlan& plan, S& c) {
  TopKParams p{};
  static_cast<ScoresView&>(p) = scores_view(q);
  p.alpha = q.alpha;
  p.tol = q.tol;
  p.max_iter = q.max_iter;
  p.k = q.k;
  p.k_rows = q.k_rows ? c.upload(q.k_rows, q.rows) : nullptr;
  if (q.exclude) {
    p.excl = CsrView{c.upload(q.exclude.row_ptr, q.rows + 1), c.upload(q.exclude.cols, q.exclude.nnz(q.rows))};
    if (plan.layout == Layout::Global) {  // the on-chip layouts set excluded z to −inf instead
      p.mask_words = (q.cols + 31) / 32;
      p.mask = c.template take<uint32_t>(q.rows * p.mask_words);
    }
  }
  p.row_loss = c.template take<double>(q.rows);
  p.row_dscale = c.template take<double>(q.rows);
  p.row_k_bad = c.template take<int32_t>(q.rows);
  p.first_bad = c.template take<long long>(1);
  p.result = c.template take<double>(2);
  return p;
}

// Runs the kernel, and throws ERR_NON_FINITE for NaN/+inf scores and ERR_K_RANGE for a row
// (that needs a threshold) whose k is not in (0, N_i).
void solve_rows(const SoftTopKProblem& q, const TopKParams& p, const TopKPlan& plan, DType grad_dtype) {
  if (q.rows * plan.blocks_per_row > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  const long long none = INT64_MAX;
  copy_to_device(p.first_bad, &none, sizeof none);
  dtype_switch(q.dtype, grad_dtype, [&](auto t, auto tg) { launch<decltype(t), decltype(tg)>(p, plan); });
  throw_if_bad(p.first_bad, q.cols, "scores");
  std::vector<int32_t> k_bad(size_t(q.rows));
  copy_to_host(k_bad.data(), p.row_k_bad, size_t(q.rows) * 4);
  for (int64_t r = 0; r < q.rows; ++r)
    if (k_bad[size_t(r)] >= 0) {
      const int32_t k = q.k_rows ? q.k_rows[r] : q.k;
      fail(err::kKRange, (q.k_rows ? "k[" + std::to_string(r) + "]" : std::string("k")) + ": expected 0 < k < N_i = " +
                              std::to_string(k_bad[size_t(r)]) + " (the entries of row " + std::to_string(r) +
                              " that are neither excluded nor -Infinity), received " + std::to_string(k));
    }
}

TopKPlan plan_for(const SoftTopKProblem& q, DType grad_dtype) {
  TopKPlan plan{};
  dtype_switch(q.dtype, grad_dtype, [&](auto t, auto tg) { plan = checked_plan<decltype(t), decltype(tg)>(q.cols); });
  return plan;
}

}  // namespace

LossResult soft_topk_loss(const SoftTopKLossArgs& a) {
  const SoftTopKProblem q = topk_problem(a);
  if (q.rows == 0) return {0, 0};
  if (q.rows > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  const DeviceScope on(device_of(q.scores));
  if (q.exclude) { const SkipLists overlap(q.rows, a.positives, q.exclude); }  // ERR_CSR for a positive that is excluded
  const int64_t pos_nnz = a.positives.nnz(q.rows);
  const TopKPlan plan = plan_for(q, a.grad_dtype);
  TopKParams p{};
  Scratch s([&](auto& c) {
    p = shared_params(q, plan, c);
    p.pos_ptr = c.upload(a.positives.row_ptr, q.rows + 1);
    p.pos_cols = c.upload(a.positives.cols, pos_nnz);
    p.pos_weights = a.positives.weights ? c.upload(a.positives.weights, pos_nnz) : nullptr;
    p.up = carve_upstream(c, a.reduction, a.grad_output, q.rows, inverse_or_zero(double(q.rows)));
    p.pos_z = c.template take<float>(pos_nnz);
  });
  p.grad = a.grad;
  p.grad_scale = a.grad_scale;
  solve_rows(q, p, plan, a.grad_dtype);
  const RowTotals r = sum_rows(p.row_loss, p.rows, p.row_dscale, p.rows, p.result, a.row_loss);
  s.release();
  const double loss = a.reduction == Reduction::Mean ? r.loss / double(q.rows) : r.loss;
  return {loss, a.grad_scale ? r.dscale : 0.0};
}

void soft_topk(const SoftTopKArgs& a) {
  const SoftTopKProblem& q = a;
  if (q.rows == 0) return;
  if (q.rows > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  const DeviceScope on(device_of(q.scores));
  const TopKPlan plan = plan_for(q, q.dtype);  // no gradient: the kernel's TG is unused
  TopKParams p{};
  Scratch s([&](auto& c) {
    p = shared_params(q, plan, c);
    p.threshold = c.template take<float>(q.rows);
    p.iterations = c.template take<int32_t>(q.rows);
  });
  p.values = a.values;
  p.log_output = a.output == TopKOutput::Log;
  solve_rows(q, p, plan, q.dtype);
  copy_to_host(a.threshold, p.threshold, size_t(q.rows) * sizeof(float));
  copy_to_host(a.iterations, p.iterations, size_t(q.rows) * sizeof(int32_t));
  s.release();
}

void soft_topk_vjp(const SoftTopKVjpArgs& a) {
  const SoftTopKProblem& q = a;
  if (q.rows == 0) return;
  if (q.rows > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  const DeviceScope on(device_of(q.scores));
  TopKVjpParams p{};
  static_cast<ScoresView&>(p) = scores_view(q);
  p.g_out = a.grad_output;
  p.grad = a.grad;
  p.alpha = q.alpha;
  p.log_output = a.output == TopKOutput::Log;
  Scratch s([&](auto& c) {
    p.threshold = c.upload(a.threshold, q.rows);
    if (q.exclude) {
      p.excl = CsrView{c.upload(q.exclude.row_ptr, q.rows + 1), c.upload(q.exclude.cols, q.exclude.nnz(q.rows))};
      p.mask_words = (q.cols + 31) / 32;
      p.mask = c.template take<uint32_t>(q.rows * p.mask_words);
    }
  });
  // On chip (a column's (v, own), 8 bytes) when the row fits one block's shared memory or, on
  // sm_90, a cluster's; else Global.
  const DeviceLimits dev = device_limits();
  dtype_switch(q.dtype, a.grad_dtype, [&](auto t, auto tg) {
    using T = decltype(t);
    using TG = decltype(tg);
    auto* block_kernel = topk_vjp_kernel<T, TG, Layout::Block>;
    auto* cluster_kernel = topk_vjp_kernel<T, TG, Layout::Cluster>;
    const size_t limit = raise_on_chip_smem(dev.smem_optin, dev.cc_major, block_kernel, cluster_kernel);
    const RowOnChip plan = row_on_chip_grid(q.rows, q.cols, int64_t(sizeof(float2)), limit, dev.cc_major);
    if (plan.blocks_per_row > 0 && launch_on_chip(plan, q.rows, kThreads, block_kernel, cluster_kernel, p, plan.slice)) return;
    topk_vjp_kernel<T, TG, Layout::Global><<<unsigned(p.rows), kThreads>>>(p, q.cols);
  });
  check_launch("softTopK vjp kernel");
  synchronize();  // a fault in the kernel is this call's error, not a later one's
  s.release();
}

}  // namespace fl::cuda
