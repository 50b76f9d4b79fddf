// softTopKLoss on the GPU (SPEC 3.8). The per-row math (bracket, safeguarded Newton on
// log L − log R, backward factor) is native/ops/soft_topk_math.h, shared with the CPU.
//
// One block per row. When the row fits in shared memory (cols·4 bytes within the device's
// opt-in limit: about 56K columns on an H100), the block loads z = scale·x there once and
// every Newton pass, the loss and the gradient read it from there: HBM sees one read of the
// scores and one write of the gradient. A longer row is re-read from global memory on every
// pass (the passes of the rows in flight mostly hit L2); that is 2 + (Newton passes) reads.
// Exclusions: the bracket is taken over the whole row (a superset's extremes give a wider
// bracket that still holds), the excluded entries' terms are subtracted from each pass's sums,
// and their gradient is written 0 after the dense sweep. Sums are per-thread fp32 partials
// merged in double in a fixed order; row losses and dScale partials are summed by one final
// block: no float atomics, results independent of scheduling.
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
#include "runtime.h"

namespace fl::cuda {
namespace {

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
};

// Block-wide sum of a double, in a fixed order; the result is valid in every thread.
__device__ double block_sum_d(double v, double* shared) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  __syncthreads();  // `shared` may still be read from the previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double s = 0;
  for (int w = 0; w < kWarps; ++w) s += shared[w];
  return s;
}

__device__ float block_max_f(float v, float* shared) {
  for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < kWarps; ++w) m = fmaxf(m, shared[w]);
  return m;
}

// The row's z at column c: from shared memory, or from the scores.
template <class T, bool kShared>
struct RowView {
  const T* x;
  const float* z;
  float scale;
  __device__ float operator()(int64_t c) const {
    if constexpr (kShared) return z[c];
    else return to_float(x[c]) * scale;
  }
};

// One pass's sums at t over the columns of the row that are in (see TopKSums).
template <class View>
__device__ TopKSums pass_sums(const TopKParams& p, const View& z, int64_t row, float t, double* shared) {
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
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) add(z(c), 1.f);
  // Excluded entries take no part: their terms come off again (an excluded −inf adds 0 twice).
  if (p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x) add(z(p.excl_cols[e]), -1.f);
  TopKSums s;
  s.m = block_sum_d(m, shared);
  s.p_lo = block_sum_d(p_lo, shared);
  s.q_hi = block_sum_d(q_hi, shared);
  s.v_lo = block_sum_d(v_lo, shared);
  s.v_hi = block_sum_d(v_hi, shared);
  return s;
}

template <class T, class TG, bool kShared>
__global__ void __launch_bounds__(kThreads) topk_loss_kernel(TopKParams p) {
  extern __shared__ float zrow[];  // cols floats when kShared
  __shared__ double sred[kWarps];
  __shared__ float sred_f[kWarps];
  __shared__ TopKSolver solver;
  __shared__ bool skip_row;
  __shared__ float coef_s, t_s;
  __shared__ double factor_s;
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  const int32_t e0 = p.pos_ptr[row], e1 = p.pos_ptr[row + 1];
  const bool has_pos = e1 > e0;

  // Pass 1 (the one read of the row): extremes, −inf count, NaN/+inf; keep z in shared memory.
  float vmax = -INFINITY, vmin = INFINITY, ninf = 0.f;
  long long bad = INT64_MAX;
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const float v = to_float(x[c]);
    if (is_bad(v)) bad = min(bad, (long long)(row * p.cols + c));
    if (v == -INFINITY) ninf += 1.f;
    else vmin = fminf(vmin, v);
    vmax = fmaxf(vmax, v);
    if constexpr (kShared) zrow[c] = v * p.scale;
  }
  for (int off = kWarp / 2; off > 0; off /= 2) bad = min(bad, __shfl_xor_sync(0xffffffffu, bad, off));
  if (threadIdx.x % kWarp == 0 && bad != INT64_MAX) atomicMin(p.first_bad, bad);  // integer min: order-free
  float excl_in = 0.f;  // excluded entries that are not −inf
  if (p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x) excl_in += to_float(x[p.excl_cols[e]]) != -INFINITY ? 1.f : 0.f;
  vmax = block_max_f(vmax, sred_f);
  vmin = -block_max_f(-vmin, sred_f);
  const double n_in = double(p.cols) - block_sum_d(ninf, sred) - block_sum_d(excl_in, sred);

  if (threadIdx.x == 0) {
    skip_row = !has_pos;
    p.row_k_bad[row] = -1;
    if (has_pos) {
      const int32_t k = p.k_rows ? p.k_rows[row] : p.k;
      if (!(k > 0 && double(k) < n_in)) {
        p.row_k_bad[row] = int32_t(n_in);
        skip_row = true;
      } else {
        solver = topk_solver_init(double(vmax * p.scale), double(vmin * p.scale), k, n_in, p.alpha, p.tol);
      }
    }
  }
  __syncthreads();
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  if (skip_row) {  // no positives (or a k error, thrown by the host): loss 0, gradient 0
    if (g)
      for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) g[c] = from_float<TG>(0.f);
    if (threadIdx.x == 0) {
      p.row_loss[row] = 0;
      p.row_dscale[row] = 0;
    }
    return;
  }
  const RowView<T, kShared> z{x, zrow, p.scale};

  // The threshold: every pass's sums are block-wide, so every thread sees the same `done`.
  while (true) {
    const TopKSums s = pass_sums(p, z, row, float(solver.t), sred);
    if (threadIdx.x == 0) topk_solver_step(solver, s, p.max_iter);
    __syncthreads();
    if (solver.done) break;
  }

  // The loss and U = Σ_p u_p (a few positives: one thread).
  if (threadIdx.x == 0) {
    const float t = float(solver.t);
    const double n = double(e1 - e0);
    const double c = p.reduction == 0 ? 1.0 / double(p.rows) : p.reduction == 2 && p.grad_output ? double(p.grad_output[row]) : 1.0;
    double loss = 0, U = 0;
    for (int32_t e = e0; e < e1; ++e) {
      const double w = p.pos_weights ? p.pos_weights[e] : 1.0;
      const float zp = z(p.pos_cols[e]);
      if (zp == -INFINITY) {
        if (w != 0) loss = INFINITY;
        continue;
      }
      const float a = (zp + t) * p.alpha;
      if (w != 0) loss -= w / n * log_sigmoid_d(double(a));
      U += double(p.alpha) * (-c * w / n) * double(sigmoid_pair(a).q);
    }
    p.row_loss[row] = loss;
    factor_s = topk_backward_factor(U, p.alpha, topk_df(solver.at_t));
    coef_s = float(-double(p.scale) * double(p.alpha) * factor_s);
    t_s = t;
  }
  __syncthreads();

  // The gradient, written once: coef·p(1 − p) everywhere, then 0 at exclusions and the
  // positives' whole value scale·(u_p − v_p·U/V).
  const float t = t_s, coef = coef_s;
  float dsc = 0.f;
  if (g || p.want_dscale)
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float zc = z(c);
      const SigmoidPair s = sigmoid_pair((zc + t) * p.alpha);
      const float pq = s.p * s.q;  // 0 for −inf
      if (g) g[c] = from_float<TG>(coef * pq);
      if (zc != -INFINITY) dsc += pq * (zc / p.scale);
    }
  __syncthreads();  // the fixes below overwrite entries other threads wrote
  if (p.excl_ptr)
    for (int64_t e = p.excl_ptr[row] + threadIdx.x; e < p.excl_ptr[row + 1]; e += blockDim.x) {
      const int32_t c = p.excl_cols[e];
      if (g) g[c] = from_float<TG>(0.f);
      const float zc = z(c);
      if (zc != -INFINITY) {
        const SigmoidPair s = sigmoid_pair((zc + t) * p.alpha);
        dsc -= s.p * s.q * (zc / p.scale);
      }
    }
  double dscale = -double(p.alpha) * factor_s * block_sum_d(dsc, sred);
  if (threadIdx.x == 0) {
    const double n = double(e1 - e0);
    const double c = p.reduction == 0 ? 1.0 / double(p.rows) : p.reduction == 2 && p.grad_output ? double(p.grad_output[row]) : 1.0;
    for (int32_t e = e0; e < e1; ++e) {
      const int32_t col = p.pos_cols[e];
      const float zp = z(col);
      if (zp == -INFINITY) continue;
      const double w = p.pos_weights ? p.pos_weights[e] : 1.0;
      const SigmoidPair s = sigmoid_pair((zp + t) * p.alpha);
      const double u = double(p.alpha) * (-c * w / n) * double(s.q);
      const double dz = u - double(p.alpha) * double(s.p) * double(s.q) * factor_s;
      if (g) g[col] = from_float<TG>(float(double(p.scale) * dz));
      dscale += u * double(zp / p.scale);
    }
    p.row_dscale[row] = dscale;
  }
}

// Sums the row losses and dScale parts in a fixed order (one block, double).
__global__ void topk_reduce_kernel(TopKParams p) {
  __shared__ double sl[256], sd[256];
  double l = 0, d = 0;
  for (int64_t i = threadIdx.x; i < p.rows; i += blockDim.x) {
    l += p.row_loss[i];
    d += p.row_dscale[i];
  }
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
    p.result[0] = sl[0];
    p.result[1] = sd[0];
  }
}

// Device scratch, freed on every exit path.
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
  template <class U> U* copy(const U* host, int64_t n) {
    U* d = take<U>(n);
    if (n > 0) copy_to_device(d, host, size_t(n) * sizeof(U));
    return d;
  }
};
constexpr size_t padded(size_t bytes) { return (bytes + 255) / 256 * 256; }

template <class T, class TG>
void launch(const TopKParams& p, size_t smem_optin) {
  const size_t row_bytes = size_t(p.cols) * sizeof(float);
  if (row_bytes <= smem_optin) {
    if (row_bytes > 48 * 1024)
      FL_CUDA_CHECK(cudaFuncSetAttribute(topk_loss_kernel<T, TG, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(row_bytes)));
    topk_loss_kernel<T, TG, true><<<unsigned(p.rows), kThreads, row_bytes>>>(p);
  } else {
    topk_loss_kernel<T, TG, false><<<unsigned(p.rows), kThreads, 0>>>(p);
  }
  check_launch("softTopKLoss kernel");
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

  int device = 0, optin = 0, static_smem_reserve = 4096;
  FL_CUDA_CHECK(cudaGetDevice(&device));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const size_t smem_optin = optin > static_smem_reserve ? size_t(optin - static_smem_reserve) : 0;

  const size_t rows = size_t(q.rows);
  Scratch s(padded(4 * (rows + 1)) + padded(4 * size_t(pos_nnz)) + padded(4 * size_t(pos_nnz)) + padded(8 * (rows + 1)) +
            padded(4 * size_t(excl_nnz)) + padded(4 * rows) * 3 + padded(8 * rows) * 2 + padded(8) + padded(16));
  TopKParams p{};
  p.x = q.x;
  p.grad = a.grad;
  p.rows = q.rows;
  p.cols = q.cols;
  p.scale = q.scale;
  p.alpha = q.alpha;
  p.tol = q.tol;
  p.max_iter = q.max_iter;
  p.k = q.k;
  p.k_rows = q.k_rows ? s.copy(q.k_rows, q.rows) : nullptr;
  p.pos_ptr = s.copy(a.positives.row_ptr, q.rows + 1);
  p.pos_cols = s.copy(a.positives.cols, pos_nnz);
  p.pos_weights = a.positives.weights ? s.copy(a.positives.weights, pos_nnz) : nullptr;
  if (q.exclude) {
    p.excl_ptr = s.copy(excl.offsets().data(), q.rows + 1);
    p.excl_cols = s.copy(excl.all_cols().data(), excl_nnz);
  }
  p.reduction = int(a.reduction);
  p.grad_output = a.grad_output && a.reduction == Reduction::None ? s.copy(a.grad_output, q.rows) : nullptr;
  p.want_dscale = a.want_dscale;
  p.row_loss = s.take<double>(q.rows);
  p.row_dscale = s.take<double>(q.rows);
  p.row_k_bad = s.take<int32_t>(q.rows);
  p.first_bad = s.take<long long>(1);
  p.result = s.take<double>(2);
  const long long none = INT64_MAX;
  copy_to_device(p.first_bad, &none, sizeof none);

  const bool g32 = a.grad_float32 || q.dtype == DType::Float32;
  switch (q.dtype) {
    case DType::Float32: launch<float, float>(p, smem_optin); break;
    case DType::Float16: g32 ? launch<f16_t, float>(p, smem_optin) : launch<f16_t, f16_t>(p, smem_optin); break;
    case DType::BFloat16: g32 ? launch<bf16_t, float>(p, smem_optin) : launch<bf16_t, bf16_t>(p, smem_optin); break;
  }
  topk_reduce_kernel<<<1, 256>>>(p);
  check_launch("softTopKLoss reduce kernel");

  long long bad = 0;
  copy_to_host(&bad, p.first_bad, sizeof bad);
  if (bad != INT64_MAX)
    fail("ERR_NON_FINITE", "scores: expected finite values or -Infinity, received NaN or +Infinity at [" + std::to_string(bad / q.cols) +
                               ", " + std::to_string(bad % q.cols) + "]");
  std::vector<int32_t> k_bad(rows);
  copy_to_host(k_bad.data(), p.row_k_bad, rows * 4);
  for (int64_t r = 0; r < q.rows; ++r)
    if (k_bad[size_t(r)] >= 0) {
      const int32_t k = q.k_rows ? q.k_rows[r] : q.k;
      fail("ERR_K_RANGE", (q.k_rows ? "k[" + std::to_string(r) + "]" : std::string("k")) + ": expected 0 < k < N_i = " +
                              std::to_string(k_bad[size_t(r)]) + " (the entries of row " + std::to_string(r) +
                              " that are neither excluded nor -Infinity), received " + std::to_string(k));
    }
  double result[2];
  copy_to_host(result, p.result, sizeof result);
  std::vector<double> row_loss(rows);
  copy_to_host(row_loss.data(), p.row_loss, rows * sizeof(double));
  for (int64_t i = 0; i < q.rows; ++i) a.row_loss[i] = float(row_loss[size_t(i)]);
  const double loss = a.reduction == Reduction::Mean ? result[0] / double(q.rows) : result[0];
  return {loss, a.want_dscale ? result[1] : 0.0};
}

}  // namespace fl::cuda
