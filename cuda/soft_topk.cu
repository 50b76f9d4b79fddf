// softTopKLoss (SPEC 3.8) and the softTopK operator (SPEC 3.7) on the GPU. The per-row math (bracket, safeguarded Newton on
// log L − log R, backward factor) is native/ops/soft_topk_math.h, shared with the CPU.
//
// Each row is held on chip while its threshold is found, so that the whole loss costs one read
// of the scores and one write of the gradient in HBM (2 passes of B×N, within SPEC's 3):
//  - Block: the row's z = scale·x fits one block's shared memory (cols·4 bytes within the
//    device's opt-in limit: about 56K columns on an H100); one block per row;
//  - Cluster (sm_90): a cluster of up to 8 blocks per row, each holding a slice in its shared
//    memory (up to ~450K columns on an H100); the blocks add their partial sums through
//    distributed shared memory in rank order, so every block sees the same totals and takes
//    the same Newton steps;
//  - Global: a longer row (or an older GPU) is re-read on every pass: 2 + (Newton passes) reads.
// Exclusions: the bracket is taken over the whole row (a superset's extremes give a wider
// bracket that still holds), the excluded entries' terms are subtracted from each pass's sums,
// and their gradient is written 0 after the dense sweep. Sums are per-thread fp32 partials
// merged in double in a fixed order; row losses and dScale partials are summed by one final
// block: no float atomics, results independent of scheduling.
// The operator runs the same kernel with every row solved and its values written in place of
// the loss (one read, one write of B×N); its vjp reads the scores and upstream gradient twice
// with the saved thresholds (sums, then the gradient) and writes the gradient once.
#include <cooperative_groups.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../native/core/error.h"
#include "../native/ops/csr.h"
#include "../native/ops/soft_topk.h"
#include "../native/ops/soft_topk_math.h"
#include "check.cuh"
#include "common.cuh"
#include "ops.h"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / kWarp;

struct TopKParams {
  const void* x;
  void* grad;  // null: no gradient (dScale may still be wanted)
  int64_t rows, cols;
  float scale, alpha, tol;
  int max_iter;
  int32_t k;                 // every row's k, unless k_rows
  const int32_t* k_rows;     // rows, or null
  const int32_t* pos_ptr;    // rows + 1
  const int32_t* pos_cols;
  const float* pos_weights;  // or null
  float* pos_z;              // per positive: its z, read in the first pass (before an in-place sweep)
  const int64_t* excl_ptr;   // rows + 1 (sorted exclusion lists, SkipLists), or null
  const int32_t* excl_cols;
  int reduction;             // 0 mean, 1 sum, 2 none
  const float* grad_output;  // rows (reduction none), or null
  bool want_dscale;
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

// How a row is laid out over the GPU.
enum class Layout {
  Block,    // one block; z in its shared memory
  Cluster,  // a cluster of blocks (sm_90), each holding a slice of z in its shared memory
  Global,   // one block reading the scores on every pass
};

// Sums of Nv doubles over the block, then over the cluster's blocks in rank order: every thread
// of every block of the row gets the same totals, so each block can run the same solver step.
// `shared` holds kWarps·Nv doubles; `part` (Nv doubles of block shared memory) carries the
// block's totals to the other blocks of the cluster.
template <Layout L, int Nv>
__device__ void row_sums(double (&v)[Nv], double* shared, double* part) {
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

// The block's slice [c0, c1) of its row, and the row's z.
template <class T, Layout L>
struct RowSlice {
  const T* x;
  const float* z;  // z[c − c0] for the slice (shared memory), unless Global
  float scale;
  int64_t c0, c1;
  __device__ bool owns(int64_t c) const { return c >= c0 && c < c1; }
  // z at a column of the slice.
  __device__ float operator()(int64_t c) const {
    if constexpr (L == Layout::Global) return to_float(x[c]) * scale;
    else return z[c - c0];
  }
};

// One pass's sums at t over the row's entries that are in (see TopKSums).
template <class T, Layout L>
__device__ TopKSums pass_sums(const TopKParams& p, const RowSlice<T, L>& z, int64_t row, float t, double* shared, double* part) {
  float m = 0.f, p_lo = 0.f, q_hi = 0.f, v_lo = 0.f, v_hi = 0.f;
  auto add = [&](float zc, float sign) {
    const float a = (zc + t) * p.alpha;
    const SigmoidPair s = sigmoid_pair(a);
    if (a < 0.f) {
      p_lo += sign * s.p;
      v_lo += sign * s.p * s.q;
    } else {
      m += sign;
      q_hi += sign * s.q;
      v_hi += sign * s.p * s.q;
    }
  };
  for (int64_t c = z.c0 + threadIdx.x; c < z.c1; c += blockDim.x) add(z(c), 1.f);
  // Excluded entries take no part: their terms come off again (an excluded −inf adds 0 twice).
  if (p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x)
      if (z.owns(p.excl_cols[e])) add(z(p.excl_cols[e]), -1.f);
  double v[5] = {m, p_lo, q_hi, v_lo, v_hi};
  row_sums<L>(v, shared, part);
  TopKSums s;
  s.m = v[0];
  s.p_lo = v[1];
  s.q_hi = v[2];
  s.v_lo = v[3];
  s.v_hi = v[4];
  return s;
}

// The row's upstream factor c_i of its loss (SPEC 3.8: 'mean' divides by B).
__device__ double upstream(const TopKParams& p, int64_t row) {
  if (p.reduction == 0) return 1.0 / double(p.rows);
  return p.reduction == 2 && p.grad_output ? double(p.grad_output[row]) : 1.0;
}

template <class T, class TG, Layout L>
__global__ void __launch_bounds__(kThreads) topk_loss_kernel(TopKParams p, int64_t slice) {
  extern __shared__ float zrow[];  // the slice's z (Block, Cluster)
  __shared__ double sred[kWarps * 5];
  __shared__ double part[5];
  __shared__ TopKSolver solver;
  __shared__ bool skip_row;
  __shared__ float coef_s, t_s;
  __shared__ double factor_s;
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
  const RowSlice<T, L> z{x, zrow, p.scale, c0, c1};
  const bool op = p.values != nullptr;
  const int32_t e0 = op ? 0 : p.pos_ptr[row], e1 = op ? 0 : p.pos_ptr[row + 1];
  const bool has_pos = op || e1 > e0;  // the row needs a threshold

  // Pass 1 (the one read of the scores): extremes, −inf count, NaN/+inf; z into shared memory.
  float vmax = -INFINITY, nvmin = -INFINITY, ninf = 0.f;
  long long bad = INT64_MAX;
  for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
    const float v = to_float(x[c]);
    if (is_bad(v)) bad = min(bad, (long long)(row * p.cols + c));
    if (v == -INFINITY) ninf += 1.f;
    else nvmin = fmaxf(nvmin, -v);
    vmax = fmaxf(vmax, v);
    if constexpr (L != Layout::Global) zrow[c - c0] = v * p.scale;
  }
  // The positives' z, by the block that owns the column: the loss and the fixes below read them
  // from here, since with inplace the gradient sweep (of any block of a cluster) overwrites the
  // scores. The barriers of row_sums below publish them to the row's blocks.
  for (int32_t e = e0 + threadIdx.x; e < e1; e += blockDim.x)
    if (z.owns(p.pos_cols[e])) p.pos_z[e] = to_float(x[p.pos_cols[e]]) * p.scale;
  for (int off = kWarp / 2; off > 0; off /= 2) bad = min(bad, __shfl_xor_sync(0xffffffffu, bad, off));
  if (threadIdx.x % kWarp == 0 && bad != INT64_MAX) atomicMin(p.first_bad, bad);  // integer min: order-free
  float excl_in = 0.f;  // excluded entries that are not −inf
  if (p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x)
      if (z.owns(p.excl_cols[e])) excl_in += to_float(x[p.excl_cols[e]]) != -INFINITY ? 1.f : 0.f;
  double counts[2] = {ninf, excl_in};
  row_sums<L>(counts, sred, part);
  const double n_in = double(p.cols) - counts[0] - counts[1];
  // max x and max(−x) over the row: per warp, per block, then per cluster (exact, any order).
  for (int off = kWarp / 2; off > 0; off /= 2) {
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, off));
    nvmin = fmaxf(nvmin, __shfl_xor_sync(0xffffffffu, nvmin, off));
  }
  __syncthreads();
  if (threadIdx.x % kWarp == 0) {
    sred[threadIdx.x / kWarp * 2] = vmax;
    sred[threadIdx.x / kWarp * 2 + 1] = nvmin;
  }
  __syncthreads();
  double hi_x = -INFINITY, nlo_x = -INFINITY;
  for (int w = 0; w < kWarps; ++w) {
    hi_x = fmax(hi_x, sred[w * 2]);
    nlo_x = fmax(nlo_x, sred[w * 2 + 1]);
  }
  if constexpr (L == Layout::Cluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) {
      part[0] = hi_x;
      part[1] = nlo_x;
    }
    cluster.sync();
    for (unsigned r = 0; r < ranks; ++r) {
      const double* q = cluster.map_shared_rank(part, r);
      hi_x = fmax(hi_x, q[0]);
      nlo_x = fmax(nlo_x, q[1]);
    }
    cluster.sync();
#endif
  }

  if (threadIdx.x == 0) {
    skip_row = !has_pos;
    if (rank == 0) p.row_k_bad[row] = -1;
    if (has_pos) {
      const int32_t k = p.k_rows ? p.k_rows[row] : p.k;
      if (!(k > 0 && double(k) < n_in)) {
        if (rank == 0) p.row_k_bad[row] = int32_t(n_in);
        skip_row = true;
      } else {
        solver = topk_solver_init(double(float(hi_x) * p.scale), double(float(-nlo_x) * p.scale), k, n_in, p.alpha, p.tol);
      }
    }
  }
  __syncthreads();
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  if (skip_row) {  // no positives (or a k error, thrown by the host): loss 0, gradient 0
    if (op) return;
    if (g)
      for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) g[c] = from_float<TG>(0.f);
    if (threadIdx.x == 0 && rank == 0) {
      p.row_loss[row] = 0;
      p.row_dscale[row] = 0;
    }
    return;
  }

  // The threshold. Every block of the row sees the same sums, so all take the same steps.
  while (true) {
    const TopKSums s = pass_sums(p, z, row, float(solver.t), sred, part);
    if (threadIdx.x == 0) topk_solver_step(solver, s, p.max_iter);
    __syncthreads();
    if (solver.done) break;
  }

  if (op) {  // the operator's values, written once; excluded entries out (0, or −inf for log p)
    const float t = float(solver.t);
    if (threadIdx.x == 0 && rank == 0) {
      p.threshold[row] = t;
      p.iterations[row] = solver.iterations;
    }
    float* out = p.values + row * p.cols;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
      const float a = (z(c) + t) * p.alpha;  // −inf for a −inf score: p = 0, log p = −inf
      out[c] = p.log_output ? fminf(a, 0.f) - log1pf(expf(-fabsf(a))) : sigmoid_pair(a).p;
    }
    __syncthreads();  // the exclusions overwrite entries other threads wrote
    if (p.excl_ptr)
      for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x)
        if (z.owns(p.excl_cols[e])) out[p.excl_cols[e]] = p.log_output ? -INFINITY : 0.f;
    return;
  }

  // The loss and U = Σ_p u_p (a few positives: one thread of each block, the same result).
  const double cu = upstream(p, row), n = double(e1 - e0);
  if (threadIdx.x == 0) {
    const float t = float(solver.t);
    double loss = 0, U = 0;
    for (int32_t e = e0; e < e1; ++e) {
      const double w = p.pos_weights ? p.pos_weights[e] : 1.0;
      const float zp = p.pos_z[e];
      if (zp == -INFINITY) {
        if (w != 0) loss = INFINITY;
        continue;
      }
      const float a = (zp + t) * p.alpha;
      if (w != 0) loss -= w / n * log_sigmoid_d(double(a));
      U += double(p.alpha) * (-cu * w / n) * double(sigmoid_pair(a).q);
    }
    if (rank == 0) p.row_loss[row] = loss;
    factor_s = topk_backward_factor(U, p.alpha, topk_df(solver.at_t));
    coef_s = float(-double(p.scale) * double(p.alpha) * factor_s);
    t_s = t;
  }
  __syncthreads();

  // The gradient, written once per entry: coef·p(1 − p), then 0 at exclusions and the
  // positives' whole value scale·(u_p − v_p·U/V), each by the block that owns the column.
  const float t = t_s, coef = coef_s;
  float dsc = 0.f;
  // The exclusions' dense terms come off dScale before the sweep can overwrite their scores.
  if (p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x) {
      const int32_t c = p.excl_cols[e];
      if (!z.owns(c)) continue;
      const float zc = z(c);
      if (zc != -INFINITY) {
        const SigmoidPair s = sigmoid_pair((zc + t) * p.alpha);
        dsc -= s.p * s.q * (zc / p.scale);
      }
    }
  if (g || p.want_dscale)
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
      const float zc = z(c);
      const SigmoidPair s = sigmoid_pair((zc + t) * p.alpha);
      const float pq = s.p * s.q;  // 0 for −inf
      if (g) g[c] = from_float<TG>(coef * pq);
      if (zc != -INFINITY) dsc += pq * (zc / p.scale);
    }
  __syncthreads();  // the fixes below overwrite entries other threads wrote
  if (g && p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x)
      if (z.owns(p.excl_cols[e])) g[p.excl_cols[e]] = from_float<TG>(0.f);
  double fix = 0;
  if (threadIdx.x == 0)
    for (int32_t e = e0; e < e1; ++e) {
      const int32_t col = p.pos_cols[e];
      const float zp = p.pos_z[e];
      if (!z.owns(col) || zp == -INFINITY) continue;
      const double w = p.pos_weights ? p.pos_weights[e] : 1.0;
      const SigmoidPair s = sigmoid_pair((zp + t) * p.alpha);
      const double u = double(p.alpha) * (-cu * w / n) * double(s.q);
      const double dz = u - double(p.alpha) * double(s.p) * double(s.q) * factor_s;
      if (g) g[col] = from_float<TG>(float(double(p.scale) * dz));
      fix += u * double(zp / p.scale);
    }
  double d[2] = {dsc, fix};
  row_sums<L>(d, sred, part);
  if (threadIdx.x == 0 && rank == 0) p.row_dscale[row] = -double(p.alpha) * factor_s * d[0] + d[1];
}

// The operator's vjp (SPEC 3.7 backward), one block per row, with the thresholds saved by the
// forward: pass 1 sums V = Σ v and G = Σ own over the entries that are in, v = α·p(1 − p) and
// own = g·v ('prob') or α·g·(1 − p) ('log'); pass 2 writes scale·(own − v·G/V), 0 where out.
struct TopKVjpParams {
  const void* x;
  const float* g_out;       // rows × cols
  void* grad;               // rows × cols
  int64_t rows, cols;
  float scale, alpha;
  bool log_output;
  const float* threshold;   // rows
  const int64_t* excl_ptr;  // rows + 1, or null
  const int32_t* excl_cols;
};

struct VjpTerms {
  float v, own;
};
__device__ VjpTerms vjp_terms(const TopKVjpParams& p, float x, float g, float t) {
  if (x == -INFINITY) return {0.f, 0.f};
  const SigmoidPair s = sigmoid_pair((x * p.scale + t) * p.alpha);
  const float v = p.alpha * s.p * s.q;
  return {v, p.log_output ? p.alpha * g * s.q : g * v};
}

template <class T, class TG>
__global__ void __launch_bounds__(kThreads) topk_vjp_kernel(TopKVjpParams p) {
  __shared__ double sred[kWarps * 2];
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  const float* go = p.g_out + row * p.cols;
  TG* g = static_cast<TG*>(p.grad) + row * p.cols;
  const float t = p.threshold[row];
  float sv = 0.f, sg = 0.f;
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const VjpTerms u = vjp_terms(p, to_float(x[c]), go[c], t);
    sv += u.v;
    sg += u.own;
  }
  if (p.excl_ptr)  // excluded entries take no part: their terms come off again
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x) {
      const int32_t c = p.excl_cols[e];
      const VjpTerms u = vjp_terms(p, to_float(x[c]), go[c], t);
      sv -= u.v;
      sg -= u.own;
    }
  double v[2] = {sv, sg};
  row_sums<Layout::Global>(v, sred, nullptr);
  const float factor = float(topk_backward_factor(v[1], 1.0, v[0]));
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const VjpTerms u = vjp_terms(p, to_float(x[c]), go[c], t);
    g[c] = from_float<TG>(p.scale * (u.own - u.v * factor));
  }
  __syncthreads();  // the exclusions overwrite entries other threads wrote
  if (p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x) g[p.excl_cols[e]] = from_float<TG>(0.f);
}

constexpr size_t padded(size_t bytes) { return (bytes + 255) / 256 * 256; }

// The layout of a row: one block when its z fits one block's shared memory, a cluster of up to
// 8 blocks (sm_90) when it fits theirs, else one block reading the scores on every pass.
struct Plan {
  Layout layout;
  int blocks_per_row;
  int64_t slice;  // columns per block
};

Plan plan(int64_t cols, size_t smem_optin, int cc_major) {
  const int64_t fit = int64_t(smem_optin / sizeof(float));
  if (cols <= fit) return {Layout::Block, 1, cols};
  if (cc_major >= 9) {
    const int64_t per = (cols + fit - 1) / fit;
    if (per <= 8) {
      const int64_t slice = (cols + per - 1) / per;
      return {Layout::Cluster, int(per), slice};
    }
  }
  return {Layout::Global, 1, cols};
}

template <class T, class TG>
void launch(const TopKParams& p, const Plan& plan) {
  const size_t bytes = plan.layout == Layout::Global ? 0 : size_t(plan.slice) * sizeof(float);
  if (plan.layout == Layout::Block) {
    if (bytes > 48 * 1024)
      FL_CUDA_CHECK(cudaFuncSetAttribute(topk_loss_kernel<T, TG, Layout::Block>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    topk_loss_kernel<T, TG, Layout::Block><<<unsigned(p.rows), kThreads, bytes>>>(p, plan.slice);
    check_launch("softTopKLoss kernel");
    return;
  }
  if (plan.layout == Layout::Cluster) {
    auto* kernel = topk_loss_kernel<T, TG, Layout::Cluster>;
    FL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(unsigned(p.rows * plan.blocks_per_row));
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = bytes;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = unsigned(plan.blocks_per_row);  // at most 8: a portable cluster size
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    // A cluster whose blocks cannot be co-resident (a partitioned GPU, another context's shared
    // memory) would fail to launch: the row is then re-read from global memory instead.
    int clusters = 0;
    FL_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg));
    if (clusters > 0) {
      FL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, p, plan.slice));
      check_launch("softTopKLoss cluster kernel");
      return;
    }
  }
  topk_loss_kernel<T, TG, Layout::Global><<<unsigned(p.rows), kThreads, 0>>>(p, int64_t(p.cols));
  check_launch("softTopKLoss kernel");
}

// The scratch either entry point takes (pos_nnz: 0 for the operator).
size_t scratch_bytes(size_t rows, int64_t pos_nnz, int64_t excl_nnz) {
  return padded(4 * (rows + 1)) + padded(4 * size_t(pos_nnz)) * 3 + padded(8 * (rows + 1)) + padded(4 * size_t(excl_nnz)) +
         padded(4 * rows) * 5 + padded(8 * rows) * 2 + padded(8) + padded(16);
}

// The parameters the loss and the operator share: the scores, the solver's options, k and the
// sorted exclusions on the device, and the per-row outputs the host checks.
TopKParams shared_params(const SoftTopKProblem& q, const SkipLists& excl, Scratch& s) {
  TopKParams p{};
  p.x = q.x;
  p.rows = q.rows;
  p.cols = q.cols;
  p.scale = q.scale;
  p.alpha = q.alpha;
  p.tol = q.tol;
  p.max_iter = q.max_iter;
  p.k = q.k;
  p.k_rows = q.k_rows ? s.upload(q.k_rows, q.rows) : nullptr;
  if (q.exclude) {
    p.excl_ptr = s.upload(excl.offsets().data(), q.rows + 1);
    p.excl_cols = s.upload(excl.all_cols().data(), int64_t(excl.all_cols().size()));
  }
  p.row_loss = s.take<double>(q.rows);
  p.row_dscale = s.take<double>(q.rows);
  p.row_k_bad = s.take<int32_t>(q.rows);
  p.first_bad = s.take<long long>(1);
  p.result = s.take<double>(2);
  const long long none = INT64_MAX;
  copy_to_device(p.first_bad, &none, sizeof none);
  return p;
}

// Lays the rows out, runs the kernel, and throws ERR_NON_FINITE for NaN/+inf scores and
// ERR_K_RANGE for a row (that needs a threshold) whose k is not in (0, N_i).
void solve_rows(const SoftTopKProblem& q, const TopKParams& p, bool grad_float32) {
  int device = 0, optin = 0, major = 0;
  FL_CUDA_CHECK(cudaGetDevice(&device));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  constexpr int kStaticSmem = 2048;  // the kernel's own __shared__ variables, rounded up
  const Plan layout = plan(q.cols, optin > kStaticSmem ? size_t(optin - kStaticSmem) : 0, major);
  if (q.rows * layout.blocks_per_row > INT32_MAX) fail("ERR_SHAPE", "scores: too many rows for one launch");

  const bool g32 = grad_float32 || q.dtype == DType::Float32;
  switch (q.dtype) {
    case DType::Float32: launch<float, float>(p, layout); break;
    case DType::Float16: g32 ? launch<f16_t, float>(p, layout) : launch<f16_t, f16_t>(p, layout); break;
    case DType::BFloat16: g32 ? launch<bf16_t, float>(p, layout) : launch<bf16_t, bf16_t>(p, layout); break;
  }

  long long bad = 0;
  copy_to_host(&bad, p.first_bad, sizeof bad);
  if (bad != INT64_MAX)
    fail("ERR_NON_FINITE", "scores: expected finite values or -Infinity, received NaN or +Infinity at [" + std::to_string(bad / q.cols) +
                               ", " + std::to_string(bad % q.cols) + "]");
  std::vector<int32_t> k_bad(size_t(q.rows));
  copy_to_host(k_bad.data(), p.row_k_bad, size_t(q.rows) * 4);
  for (int64_t r = 0; r < q.rows; ++r)
    if (k_bad[size_t(r)] >= 0) {
      const int32_t k = q.k_rows ? q.k_rows[r] : q.k;
      fail("ERR_K_RANGE", (q.k_rows ? "k[" + std::to_string(r) + "]" : std::string("k")) + ": expected 0 < k < N_i = " +
                              std::to_string(k_bad[size_t(r)]) + " (the entries of row " + std::to_string(r) +
                              " that are neither excluded nor -Infinity), received " + std::to_string(k));
    }
}

template <class T, class TG>
void launch_vjp(const TopKVjpParams& p) {
  topk_vjp_kernel<T, TG><<<unsigned(p.rows), kThreads>>>(p);
  check_launch("softTopK vjp kernel");
}

}  // namespace

LossResult soft_topk_loss(const SoftTopKLossArgs& a) {
  const SoftTopKProblem& q = a.p;
  if (q.rows == 0) return {0, 0};
  if (q.rows > INT32_MAX) fail("ERR_SHAPE", "scores: too many rows for one launch");
  // Sorted exclusion lists (and ERR_CSR for an excluded positive), built on the host.
  const SkipLists excl = q.exclude ? SkipLists(q.rows, Csr{}, q.exclude) : SkipLists();
  if (q.exclude) {
    const SkipLists overlap(q.rows, a.positives, q.exclude);  // throws ERR_CSR for a positive that is excluded
  }
  const int64_t pos_nnz = a.positives.nnz(q.rows);
  const int64_t excl_nnz = q.exclude ? int64_t(excl.all_cols().size()) : 0;
  const size_t rows = size_t(q.rows);
  Scratch s(scratch_bytes(rows, pos_nnz, excl_nnz));
  TopKParams p = shared_params(q, excl, s);
  p.grad = a.grad;
  p.pos_ptr = s.upload(a.positives.row_ptr, q.rows + 1);
  p.pos_cols = s.upload(a.positives.cols, pos_nnz);
  p.pos_weights = a.positives.weights ? s.upload(a.positives.weights, pos_nnz) : nullptr;
  p.reduction = int(a.reduction);
  p.grad_output = a.grad_output && a.reduction == Reduction::None ? s.upload(a.grad_output, q.rows) : nullptr;
  p.want_dscale = a.want_dscale;
  p.pos_z = s.take<float>(pos_nnz);
  solve_rows(q, p, a.grad_float32);
  sum_rows_kernel<<<1, 256>>>(p.row_loss, p.rows, p.row_dscale, p.rows, p.result);
  check_launch("softTopKLoss reduce kernel");

  double result[2];
  copy_to_host(result, p.result, sizeof result);
  std::vector<double> row_loss(rows);
  copy_to_host(row_loss.data(), p.row_loss, rows * sizeof(double));
  for (int64_t i = 0; i < q.rows; ++i) a.row_loss[i] = float(row_loss[size_t(i)]);
  const double loss = a.reduction == Reduction::Mean ? result[0] / double(q.rows) : result[0];
  return {loss, a.want_dscale ? result[1] : 0.0};
}

void soft_topk(const SoftTopKArgs& a) {
  const SoftTopKProblem& q = a.p;
  if (q.rows == 0) return;
  if (q.rows > INT32_MAX) fail("ERR_SHAPE", "scores: too many rows for one launch");
  const SkipLists excl = q.exclude ? SkipLists(q.rows, Csr{}, q.exclude) : SkipLists();
  const int64_t excl_nnz = q.exclude ? int64_t(excl.all_cols().size()) : 0;
  Scratch s(scratch_bytes(size_t(q.rows), 0, excl_nnz));
  TopKParams p = shared_params(q, excl, s);
  p.values = a.values;
  p.log_output = a.log_output;
  p.threshold = s.take<float>(q.rows);
  p.iterations = s.take<int32_t>(q.rows);
  solve_rows(q, p, false);
  copy_to_host(a.threshold, p.threshold, size_t(q.rows) * sizeof(float));
  copy_to_host(a.iterations, p.iterations, size_t(q.rows) * sizeof(int32_t));
}

void soft_topk_vjp(const SoftTopKVjpArgs& a) {
  const SoftTopKProblem& q = a.p;
  if (q.rows == 0) return;
  if (q.rows > INT32_MAX) fail("ERR_SHAPE", "scores: too many rows for one launch");
  const SkipLists excl = q.exclude ? SkipLists(q.rows, Csr{}, q.exclude) : SkipLists();
  const int64_t excl_nnz = q.exclude ? int64_t(excl.all_cols().size()) : 0;
  Scratch s(padded(4 * size_t(q.rows)) + padded(8 * size_t(q.rows + 1)) + padded(4 * size_t(excl_nnz)));
  TopKVjpParams p{};
  p.x = q.x;
  p.g_out = a.grad_output;
  p.grad = a.grad;
  p.rows = q.rows;
  p.cols = q.cols;
  p.scale = q.scale;
  p.alpha = q.alpha;
  p.log_output = a.log_output;
  p.threshold = s.upload(a.threshold, q.rows);
  if (q.exclude) {
    p.excl_ptr = s.upload(excl.offsets().data(), q.rows + 1);
    p.excl_cols = s.upload(excl.all_cols().data(), excl_nnz);
  }
  const bool g32 = a.grad_float32 || q.dtype == DType::Float32;
  switch (q.dtype) {
    case DType::Float32: launch_vjp<float, float>(p); break;
    case DType::Float16: g32 ? launch_vjp<f16_t, float>(p) : launch_vjp<f16_t, f16_t>(p); break;
    case DType::BFloat16: g32 ? launch_vjp<bf16_t, float>(p) : launch_vjp<bf16_t, bf16_t>(p); break;
  }
}

}  // namespace fl::cuda
