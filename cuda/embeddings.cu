// linearCrossEntropy and the <loss>FromEmbeddings on CUDA (docs/MATH.md §3.9–3.10): the CPU
// driver's plan (native/ops/embeddings.cpp) on device tensors, in its simplest correct form.
// The rows that count are taken in chunks of R (as many as memoryBudget holds), and each chunk
//   Q_c  = the chunk's queries (hidden rows), gathered as given; 1/‖q_i‖ with `normalize`
//   S_c  = Q_c·Kᵀ, times 1/‖q_i‖·1/‖k_j‖ (normalize), + b (bias)      GEMM 1 (cuda/gemm.cuh)
//   G_c  = dL/dS_c in place in S_c: the loss's own matrix-form CUDA launcher on the fp32 chunk
//          (cuda/cross_entropy.cu, positives_losses.cu, contrastive.cu, soft_topk.cu), so the
//          loss math is written once (native/ops/*_math.h, shared with the CPU)
//   G'_c = G_c·diag(1/‖k_j‖) (normalize)
//   dQ̂_c = G'_c·K, chained through the row normalisation, into gradQueries   GEMM 2
//   A   += (diag(1/‖q_i‖)·G'_c)ᵀ·Q_c into gradKeys (fp32)                     GEMM 3
//   db  += Σ_rows G_c (bias), the rows in order
// and at the end, with `normalize`, dk_j = A_j − k̂_j (k̂_j·A_j). Every gradKeys entry is owned
// by one GEMM block per chunk, which sums the chunk's rows in order and adds; the chunks run in
// order: dK is deterministic, with no float atomics. There is no B×N buffer; the scratch is the
// plan's (cuda/plan.h embeddings_plan) within memoryBudget.
//
// What is left to a GPU session (the issue's design, not needed for correctness): the loss
// folded into GEMM 1's epilogue (row statistics per tile, no S_c in memory), G formed in
// registers on a recomputed tile in the backward, and the GEMMs' cp.async/ldmatrix pipeline.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../native/api/args.h"
#include "../native/ops/chunk_args.h"
#include "../native/ops/contrastive.h"
#include "../native/ops/cross_entropy.h"
#include "embeddings_kernels.cuh"
#include "gemm.cuh"
#include "row_kernels.cuh"

namespace fl::cuda {
namespace {

constexpr int kThreads = 256;

// Symmetric InfoNCE's columns: every chunk's z = scale·s folded into each column's running
// (max, Σ e^(z − max)) in double, the rows in order (the CPU's sweep 1). A thread a column.
__global__ void column_stats_kernel(const float* s, int64_t rows, int64_t cols, float scale, double* cmax, double* csum) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= cols) return;
  double m = cmax[j], sum = csum[j];
  for (int64_t r = 0; r < rows; ++r) {
    const double z = double(scale) * double(s[r * cols + j]);
    if (z > m) {
      sum = sum * exp(m - z) + 1.0;
      m = z;
    } else {
      sum += exp(z - m);
    }
  }
  cmax[j] = m;
  csum[j] = sum;
}

// diag[idx[r]] = z of the chunk row's own column (the positive of symmetric InfoNCE).
__global__ void diagonal_kernel(const float* s, int64_t rows, int64_t cols, const int64_t* idx, float scale, double* diag) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r < rows) diag[idx[r]] = double(scale) * double(s[r * cols + idx[r]]);
}

__global__ void column_lse_kernel(const double* cmax, const double* csum, int64_t cols, double* lse) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j < cols) lse[j] = cmax[j] + log(csum[j]);
}

// Symmetric InfoNCE's column half on a chunk (the CPU's sweep 2): per entry
// dz = (u_j/2)·(e^(z − clse_j) − [j = idx r]); s = g + dz·scale where the gradient is wanted,
// and the row's Σ dz·x (dScale) into dscale[r]. One block a row.
__global__ void __launch_bounds__(kThreads) symmetric_columns_kernel(float* s, const float* g, int64_t cols, const int64_t* idx, float scale,
                                                                    const double* col_lse, Upstream up, double* dscale) {
  __shared__ double sd[kThreads / kWarp];
  const int64_t r = blockIdx.x;
  double d[1] = {0};
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const double x = double(s[r * cols + j]);
    const double dz = 0.5 * up.at(j) * (exp(double(scale) * x - col_lse[j]) - (j == idx[r] ? 1.0 : 0.0));
    d[0] += dz * x;
    if (g) s[r * cols + j] = g[r * cols + j] + float(dz * double(scale));
  }
  block_sums<kThreads>(d, sd);
  if (threadIdx.x == 0) dscale[r] = d[0];
}

// DCLW's positive scores s_i = q_i·k_p(i) in double (times 1/‖q_i‖·1/‖k_p(i)‖ with normalize),
// as the CPU forms them; left in double so that the host adds the bias before the one rounding
// to float, as the CPU does. One block a row.
template <class T>
__global__ void __launch_bounds__(kThreads) positive_dots_kernel(const T* q, const T* k, const int32_t* pos_col, int64_t dim, bool normalize,
                                                                double* out) {
  __shared__ double sd[kThreads / kWarp * 3];
  const int64_t i = blockIdx.x;
  const T* qi = q + i * dim;
  const T* kj = k + int64_t(pos_col[i]) * dim;
  double s[3] = {0, 0, 0};
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
    const double a = to_float(qi[c]), b = to_float(kj[c]);
    s[0] += a * b;
    s[1] += a * a;
    s[2] += b * b;
  }
  block_sums<kThreads>(s, sd);
  if (threadIdx.x != 0) return;
  double d = s[0];
  if (normalize) {
    auto inv = [](double ss) { const double n = sqrt(ss); return n < kNormEps ? kTinyInv : float(1.0 / n); };
    d *= double(inv(s[1])) * double(inv(s[2]));
  }
  out[i] = d;
}

// ---------- the driver ----------

// The chunk's loss: the matrix-form launcher on `chunk` (device fp32 scores, in place for the
// gradient when chunk.grad is set; reduction None with each row's upstream factor as gradOutput
// and row_loss on the host). idx: the chunk rows' batch rows, on the host and on the device.
using ChunkLoss = std::function<LossResult(const LossArgs& chunk, const int64_t* idx, const int64_t* d_idx)>;

struct DriverExtras {
  const float* bias = nullptr;     // host, cols (linearCrossEntropy), added to S
  float* grad_bias = nullptr;      // device, cols
  int64_t extra_row_bytes = 0;     // scratch the loss keeps per chunk row, and per call
  int64_t extra_fixed_bytes = 0;
  std::function<void(int64_t row, int64_t col)> non_finite;  // throws ERR_NON_FINITE naming the inputs
};

// A NaN/+inf the chunk's launcher found at [r, col] of the chunk (its message's last "[r, c]")
// is row idx[r] of the batch.
[[noreturn]] void rethrow_non_finite(const Error& e, const int64_t* idx, const DriverExtras& x) {
  long long r = 0, col = 0;
  const size_t at = std::string(e.what()).rfind('[');
  if (at != std::string::npos) std::sscanf(e.what() + at, "[%lld, %lld]", &r, &col);
  x.non_finite(idx[r], col);
  throw;  // not reached: non_finite throws
}

template <class T>
LossResult run_driver(const EmbeddingsArgs& a, const std::vector<int64_t>& act, double mean_divisor, const ChunkLoss& loss, const DriverExtras& x) {
  const int64_t D = a.dim, N = a.cols;
  const int64_t esize = int64_t(sizeof(T));
  const bool want_grad = a.grad_queries || a.grad_keys || x.grad_bias;
  const bool kdot_needed = a.normalize && a.accumulate && a.grad_keys;
  const int64_t fixed = (a.normalize ? 4 * N : 0) + (kdot_needed ? 4 * N : 0) + (x.bias ? 4 * N : 0) + 1024 + x.extra_fixed_bytes;
  const int64_t per_row = embeddings_row_bytes(N, D, esize, a.grad_queries != nullptr, loss_row_bytes(N)) + x.extra_row_bytes;
  const int64_t n_act = int64_t(act.size());
  const EmbeddingsPlan plan = embeddings_plan(a.memory_budget, fixed, per_row, n_act);
  if (plan.chunk_rows < 1)
    fail(err::kArg, "opts.memoryBudget: expected at least " + std::to_string(fixed + per_row) + " bytes (one row of " + std::to_string(N) +
                        " float32 scores and its query on the device), received " + std::to_string(a.memory_budget));
  const int64_t R = plan.chunk_rows;
  if (R > INT32_MAX || N > INT32_MAX) fail(err::kShape, "keys: too many rows for one launch");

  float *kinv = nullptr, *kdot = nullptr, *bias = nullptr, *s = nullptr, *dqh = nullptr, *qinv = nullptr;
  T* qc = nullptr;
  int64_t* d_idx = nullptr;
  unsigned* d_absmax = nullptr;
  Scratch scratch([&](auto& c) {
    kinv = a.normalize ? c.template take<float>(N) : nullptr;
    kdot = kdot_needed ? c.template take<float>(N) : nullptr;
    bias = x.bias ? c.upload(x.bias, N) : nullptr;
    s = c.template take<float>(R * N);
    qc = c.template take<T>(R * D);
    dqh = a.grad_queries ? c.template take<float>(R * D) : nullptr;
    qinv = c.template take<float>(R);
    d_idx = c.template take<int64_t>(R);
    d_absmax = c.template take<unsigned>(1);
  });
  const T* keys = static_cast<const T*>(a.keys);
  if (a.normalize) {
    inv_norm_kernel<T><<<unsigned(N), kThreads>>>(keys, D, kinv);
    check_launch("key norms kernel");
    if (kdot) {
      key_dot_kernel<T><<<unsigned(N), kThreads>>>(keys, a.grad_keys, kinv, D, kdot);
      check_launch("key projections kernel");
    }
  }

  std::vector<float> upstream(static_cast<size_t>(R)), rl(static_cast<size_t>(R));
  const double u_mean = mean_divisor > 0 ? 1.0 / mean_divisor : 0.0;
  double total = 0, dscale = 0;
  for (int64_t c0 = 0; c0 < n_act; c0 += R) {
    const int64_t rows = std::min(R, n_act - c0);
    const int64_t* idx = act.data() + c0;
    copy_to_device(d_idx, idx, size_t(rows) * sizeof(int64_t));
    gather_rows_kernel<T><<<stride_blocks(rows * D), kThreads>>>(static_cast<const T*>(a.queries), d_idx, rows, D, qc);
    check_launch("query gather kernel");
    if (a.normalize) {
      inv_norm_kernel<T><<<unsigned(rows), kThreads>>>(qc, D, qinv);
      check_launch("query norms kernel");
    }
    for (int64_t r = 0; r < rows; ++r) {
      double u = 1.0;
      if (a.reduction == Reduction::Mean) u = u_mean;
      else if (a.reduction == Reduction::None && a.grad_output) u = double(a.grad_output[idx[r]]);
      upstream[size_t(r)] = float(u);
    }

    // GEMM 1: S_c = Q_c·Kᵀ (· 1/‖q_i‖ · 1/‖k_j‖) (+ b).
    gemm<T, true, true>(rows, N, D, GemmInput<T>{qc, D, 1.f}, GemmInput<T>{keys, D, 1.f},
                        GemmEpilogue{s, N, 1.f, a.normalize ? qinv : nullptr, kinv, bias, false}, "scores GEMM");

    const LossArgs chunk = chunk_loss_args(a, s, rows, N, upstream.data(), want_grad, rl.data());
    LossResult part;
    try {
      part = loss(chunk, idx, d_idx);
    } catch (const Error& e) {
      if (e.code != err::kNonFinite) throw;
      rethrow_non_finite(e, idx, x);
    }
    for (int64_t r = 0; r < rows; ++r) {
      a.row_loss[idx[r]] = rl[size_t(r)];
      total += double(rl[size_t(r)]);
    }
    dscale += part.dscale;
    if (!want_grad) continue;

    // G' = G·diag(1/‖k‖): then dQ̂ = G'·K and dK̂ = diag(‖k‖)·G'ᵀ·Q̂, with the raw keys.
    if (a.normalize) {
      scale_kernel<<<stride_blocks(rows * N), kThreads>>>(s, rows, N, nullptr, kinv);
      check_launch("gradient column scale kernel");
    }
    if (x.grad_bias) {
      column_sums_kernel<<<unsigned((N + kThreads - 1) / kThreads), kThreads>>>(s, rows, N, x.grad_bias);
      check_launch("bias gradient kernel");
    }
    if (a.grad_queries) {
      // GEMM 2: dQ̂_c = G'·K, then chained through the normalisation into gradQueries.
      const float gs = operand_scale<T>(s, rows * N, d_absmax);
      gemm<T, true, false>(rows, D, N, GemmInput<float>{s, N, gs}, GemmInput<T>{keys, D, 1.f},
                           GemmEpilogue{dqh, D, 1.f / gs, nullptr, nullptr, nullptr, false}, "query gradient GEMM");
      dtype_switch(a.dtype, a.grad_dtype, [&](auto, auto tg) {
        using TG = decltype(tg);
        grad_queries_kernel<T, TG><<<unsigned(rows), kThreads>>>(dqh, qc, qinv, d_idx, D, a.normalize, a.accumulate, static_cast<TG*>(a.grad_queries));
      });
      check_launch("query gradient kernel");
    }
    if (a.grad_keys) {
      // GEMM 3: gradKeys += (diag(1/‖q‖)·G')ᵀ·Q_c, each entry's chunk sum in row order, then added.
      if (a.normalize) {
        scale_kernel<<<stride_blocks(rows * N), kThreads>>>(s, rows, N, qinv, nullptr);
        check_launch("gradient row scale kernel");
      }
      const float gs = operand_scale<T>(s, rows * N, d_absmax);
      gemm<T, false, false>(N, D, rows, GemmInput<float>{s, N, gs}, GemmInput<T>{qc, D, 1.f},
                            GemmEpilogue{a.grad_keys, D, 1.f / gs, nullptr, nullptr, nullptr, true}, "key gradient GEMM");
    }
  }
  if (a.normalize && a.grad_keys) {
    key_projection_kernel<T><<<unsigned(N), kThreads>>>(keys, a.grad_keys, kinv, kdot, D);
    check_launch("key gradient projection kernel");
  }
  synchronize();
  scratch.release();
  if (a.reduction == Reduction::Mean) total = mean_divisor > 0 ? total / mean_divisor : 0.0;
  return {total, a.grad_scale ? dscale : 0.0};
}

[[noreturn]] void embeddings_non_finite(int64_t row, int64_t col) { fail_non_finite_product("scores queries·keysᵀ (+ bias)", "query", "key", row, col); }

// The driver on the queries' device: rows for which `active` is false cost nothing (loss 0,
// gradient 0); the gradients are zeroed first unless accumulated into. 'mean' divides by
// mean_divisor.
LossResult embeddings_loss(const EmbeddingsArgs& a, const std::function<bool(int64_t)>& active, double mean_divisor, const ChunkLoss& loss,
                           DriverExtras x = {}) {
  if (!x.non_finite) x.non_finite = embeddings_non_finite;
  std::vector<int64_t> act;
  act.reserve(size_t(a.rows));
  for (int64_t i = 0; i < a.rows; ++i) {
    if (active(i)) act.push_back(i);
    else a.row_loss[i] = 0.f;
  }
  // The inputs' device (the keys: at least one; no device pointer at all for D = 0).
  const void* where = a.rows * a.dim > 0 ? a.queries : a.keys;
  std::optional<DeviceScope> on;
  if (where) on.emplace(device_of(where));
  // bias and gradBias are host arrays (napi reads them so on every device): the bias goes up
  // with the driver's scratch, and dL/db is summed in a device copy (holding the caller's values
  // under accumulate) that goes back to the host at the end, whatever rows were active.
  float* d_grad_bias = nullptr;
  Scratch bias_grad([&](auto& c) { d_grad_bias = a.grad_bias ? c.template take<float>(a.cols) : nullptr; });
  x.bias = a.bias;
  x.grad_bias = d_grad_bias;
  if (a.grad_bias) x.extra_fixed_bytes += 4 * a.cols;
  if (a.grad_bias && a.accumulate) copy_to_device(d_grad_bias, a.grad_bias, size_t(a.cols) * sizeof(float));
  if (a.grad_queries && !a.accumulate)
    FL_CUDA_CHECK(cudaMemsetAsync(a.grad_queries, 0, size_t(a.rows * a.dim * dtype_size(a.grad_dtype)), cudaStreamPerThread));
  if (a.grad_keys && !a.accumulate) FL_CUDA_CHECK(cudaMemsetAsync(a.grad_keys, 0, size_t(a.cols * a.dim) * sizeof(float), cudaStreamPerThread));
  if (d_grad_bias && !a.accumulate) FL_CUDA_CHECK(cudaMemsetAsync(d_grad_bias, 0, size_t(a.cols) * sizeof(float), cudaStreamPerThread));
  LossResult r{};
  if (!act.empty() && a.cols > 0) with_dtype(a.dtype, [&](auto t) { r = run_driver<decltype(t)>(a, act, mean_divisor, loss, x); });
  if (a.grad_bias) copy_to_host(a.grad_bias, d_grad_bias, size_t(a.cols) * sizeof(float));  // synchronises
  else synchronize();
  bias_grad.release();
  return r;
}

// Bytes of a CSR's arrays (the chunk's share is uploaded by the launcher; counted whole).
int64_t csr_bytes(const Csr& c, int64_t rows) { return c ? 4 * (rows + 1) + 8 * c.nnz(rows) : 0; }

// The losses over CSR positives: the chunk's positives and exclusions, re-based.
template <LossResult (*Op)(const PositivesLossArgs&)>
LossResult positives_from_embeddings(const PositivesEmbeddingsArgs& a, bool skip_empty, double mean_divisor) {
  DriverExtras x;
  x.extra_fixed_bytes = 2 * (csr_bytes(a.positives, a.rows) + csr_bytes(a.exclude, a.rows));  // their uploads, and the per-positive terms
  return embeddings_loss(
      a, [&](int64_t i) { return !skip_empty || a.positives.size(i) > 0; }, mean_divisor,
      [&](const LossArgs& chunk, const int64_t* idx, const int64_t*) { return Op(PositivesChunk(a, chunk, idx).args); },
      x);
}

// Symmetric InfoNCE (CLIP) as the CPU runs it (native/ops/embeddings.cpp symmetric_info_nce):
// sweep 1 folds every chunk's scores into the columns' (max, Σ exp) and keeps the diagonal;
// sweep 2 runs one-way InfoNCE for the row half (upstream u_i/2) into a second chunk buffer and
// adds the column half entry by entry.
LossResult symmetric_info_nce(const InfoNCEEmbeddingsArgs& a) {
  const int64_t B = a.rows, N = a.cols;
  const DeviceScope on(device_of(a.queries));
  double *cmax = nullptr, *csum = nullptr, *diag = nullptr, *clse = nullptr;
  Upstream up{};
  Scratch cols([&](auto& c) {
    cmax = c.template take<double>(N);
    csum = c.template take<double>(N);
    diag = c.template take<double>(N);
    clse = c.template take<double>(N);
    up = carve_upstream(c, a.reduction, a.grad_output, N, 1.0 / double(B));
  });
  {
    const std::vector<double> lowest(size_t(N), -INFINITY);
    copy_to_device(cmax, lowest.data(), size_t(N) * sizeof(double));
    FL_CUDA_CHECK(cudaMemsetAsync(csum, 0, size_t(N) * sizeof(double), cudaStreamPerThread));
  }
  const int64_t column_bytes = 40 * N;  // the arrays above, counted in both sweeps' budget
  {
    EmbeddingsArgs stats = a;
    stats.grad_queries = nullptr;
    stats.grad_keys = nullptr;
    stats.grad_bias = nullptr;  // the statistics sweep has no gradient (it would sum the scores into db)
    stats.grad_scale = false;
    std::vector<float> ignored(static_cast<size_t>(B));
    stats.row_loss = ignored.data();
    DriverExtras x;
    x.extra_fixed_bytes = column_bytes;
    embeddings_loss(
        stats, [](int64_t) { return true; }, double(B),
        [&](const LossArgs& chunk, const int64_t*, const int64_t* d_idx) {
          const float* s = static_cast<const float*>(chunk.scores);
          column_stats_kernel<<<unsigned((N + kThreads - 1) / kThreads), kThreads>>>(s, chunk.rows, N, a.scale, cmax, csum);
          check_launch("symmetric infoNCE column statistics kernel");
          diagonal_kernel<<<unsigned((chunk.rows + kThreads - 1) / kThreads), kThreads>>>(s, chunk.rows, N, d_idx, a.scale, diag);
          check_launch("symmetric infoNCE diagonal kernel");
          return LossResult{0.0, 0.0};
        },
        x);
  }
  column_lse_kernel<<<unsigned((N + kThreads - 1) / kThreads), kThreads>>>(cmax, csum, N, clse);
  check_launch("symmetric infoNCE column lse kernel");
  std::vector<double> h_lse(static_cast<size_t>(N)), h_diag(static_cast<size_t>(N));
  copy_to_host(h_lse.data(), clse, size_t(N) * sizeof(double));
  copy_to_host(h_diag.data(), diag, size_t(N) * sizeof(double));

  DriverExtras x;
  x.extra_fixed_bytes = column_bytes;
  x.extra_row_bytes = 4 * N + 8;  // the row half's gradient, and the row's dScale
  const LossResult r = embeddings_loss(
      a, [](int64_t) { return true; }, double(B),
      [&](const LossArgs& chunk, const int64_t* idx, const int64_t* d_idx) {
        const int64_t rows = chunk.rows;
        float* s = static_cast<float*>(const_cast<void*>(chunk.scores));
        float* g = nullptr;
        double* d_dscale = nullptr;
        Scratch half_buf([&](auto& c) {
          g = chunk.grad ? c.template take<float>(rows * N) : nullptr;
          d_dscale = c.template take<double>(rows);
        });
        std::vector<float> half(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) half[size_t(r)] = 0.5f * chunk.grad_output[r];
        const ChunkCsr pos(idx, rows);
        InfoNCEArgs p{};
        static_cast<LossArgs&>(p) = chunk;
        p.grad = g;
        p.grad_output = half.data();
        p.positives = pos.view();
        const LossResult part = info_nce(p);
        symmetric_columns_kernel<<<unsigned(rows), kThreads>>>(s, g, N, d_idx, a.scale, clse, up, d_dscale);
        check_launch("symmetric infoNCE column gradient kernel");
        std::vector<double> dsc(static_cast<size_t>(rows));
        copy_to_host(dsc.data(), d_dscale, dsc.size() * sizeof(double));
        half_buf.release();
        double d = part.dscale;
        for (int64_t r = 0; r < rows; ++r) {
          d += dsc[size_t(r)];
          chunk.row_loss[r] = float(0.5 * (double(chunk.row_loss[r]) + (h_lse[size_t(idx[r])] - h_diag[size_t(idx[r])])));
        }
        return LossResult{0.0, d};
      },
      x);
  cols.release();
  return r;
}

}  // namespace

LossResult decoupled_softmax_from_embeddings(const PositivesEmbeddingsArgs& a) {
  return positives_from_embeddings<decoupled_softmax>(a, true, double(a.rows));
}
LossResult multi_label_softmax_from_embeddings(const PositivesEmbeddingsArgs& a) {
  return positives_from_embeddings<multi_label_softmax>(a, true, double(a.rows));
}
LossResult binary_cross_entropy_from_embeddings(const PositivesEmbeddingsArgs& a) {
  return positives_from_embeddings<binary_cross_entropy>(a, false, double(a.rows) * double(a.cols));
}

// One-way InfoNCE: 'mean' divides by the rows with at least one positive; symmetric as above.
// The shape errors are the CPU's (native/ops/embeddings.cpp).
LossResult info_nce_from_embeddings(const InfoNCEEmbeddingsArgs& a) {
  check_info_nce_embeddings(a);
  if (a.symmetric) return symmetric_info_nce(a);
  const bool diagonal = !a.positives;
  auto has_positives = [&](int64_t i) { return diagonal || a.positives.size(i) > 0; };
  double counted = 0;
  for (int64_t i = 0; i < a.rows; ++i) counted += has_positives(i) ? 1 : 0;
  DriverExtras x;
  x.extra_fixed_bytes = 2 * (csr_bytes(a.positives, a.rows) + csr_bytes(a.exclude, a.rows)) + 16 * a.rows;
  return embeddings_loss(
      a, has_positives, counted,
      [&](const LossArgs& chunk, const int64_t* idx, const int64_t*) { return info_nce(InfoNCEChunk(a, chunk, idx).args); },
      x);
}

// DCL/DCLW: DCLW's w_i is a softmax over ALL rows of the positive scores, so those B dot products
// come first (on the device, in double), the weights on the host, then the chunks with them.
LossResult decoupled_contrastive_from_embeddings(const DecoupledContrastiveEmbeddingsArgs& a) {
  const bool diagonal = !a.positives;
  DecoupledContrastiveArgs shape{};
  shape.rows = a.rows;
  shape.cols = a.cols;
  shape.positives = a.positives;
  check_decoupled_contrastive_shape(shape);
  std::vector<double> w;
  if (a.sigma > 0 && a.rows > 0) {
    const DeviceScope on(device_of(a.queries));
    std::vector<int32_t> pcol(static_cast<size_t>(a.rows));
    for (int64_t i = 0; i < a.rows; ++i) pcol[size_t(i)] = diagonal ? int32_t(i) : a.positives.cols[a.positives.begin(i)];
    int32_t* d_pcol = nullptr;
    double* d_s = nullptr;
    Scratch sc([&](auto& c) {
      d_pcol = c.upload(pcol.data(), a.rows);
      d_s = c.template take<double>(a.rows);
    });
    with_dtype(a.dtype, [&](auto t) {
      using T = decltype(t);
      positive_dots_kernel<T><<<unsigned(a.rows), kThreads>>>(static_cast<const T*>(a.queries), static_cast<const T*>(a.keys), d_pcol, a.dim,
                                                              a.normalize, d_s);
    });
    check_launch("DCLW positive scores kernel");
    std::vector<double> dots(static_cast<size_t>(a.rows));
    copy_to_host(dots.data(), d_s, dots.size() * sizeof(double));
    sc.release();
    // S_{i,p(i)} with its bias, as the matrix form sees it.
    std::vector<float> s(static_cast<size_t>(a.rows));
    for (int64_t i = 0; i < a.rows; ++i) s[size_t(i)] = float(dots[size_t(i)] + (a.bias ? double(a.bias[pcol[size_t(i)]]) : 0.0));
    w.resize(size_t(a.rows));
    dclw_weights(s.data(), a.rows, a.sigma, w.data());
  }
  DriverExtras x;
  x.extra_fixed_bytes = 2 * (csr_bytes(a.positives, a.rows) + csr_bytes(a.exclude, a.rows)) + 24 * a.rows;
  return embeddings_loss(
      a, [](int64_t) { return true; }, double(a.rows),
      [&](const LossArgs& chunk, const int64_t* idx, const int64_t*) { return decoupled_contrastive(DecoupledContrastiveChunk(a, chunk, idx, w).args); },
      x);
}

// softTopKLoss: a row without positives has loss 0 and gradient 0, so it costs no matrix work.
LossResult soft_topk_loss_from_embeddings(const SoftTopKLossEmbeddingsArgs& a) {
  DriverExtras x;
  // The solver's per-row state (thresholds, brackets, iterations) and the CSR uploads.
  x.extra_row_bytes = 128;
  x.extra_fixed_bytes = 2 * (csr_bytes(a.positives, a.rows) + csr_bytes(a.exclude, a.rows)) + 4 * a.rows;
  return embeddings_loss(
      a, [&](int64_t i) { return a.positives.size(i) > 0; }, double(a.rows),
      [&](const LossArgs& chunk, const int64_t* idx, const int64_t*) { return soft_topk_loss(SoftTopKLossChunk(a, chunk, idx).args); },
      x);
}

// linearCrossEntropy: the driver with keys = weight, the bias in GEMM 1's epilogue and its
// gradient as column sums; the chunk's loss is softmaxCrossEntropy's launcher. Ignored rows cost
// no matrix work (loss 0, lse NaN); 'mean' divides by Σ w_y over the rows not ignored.
LossResult linear_cross_entropy(const LinearCrossEntropyArgs& a) {
  const CrossEntropyTotals totals = linear_cross_entropy_totals(a);  // ERR_LABEL_RANGE
  // The bias and gradBias stay in e: the driver uploads the one and sums the other on the device.
  const EmbeddingsArgs e = linear_as_embeddings(a);
  DriverExtras x;
  x.extra_fixed_bytes = a.class_weights ? 4 * a.classes : 0;
  x.extra_row_bytes = 4;  // the chunk's labels
  x.non_finite = [&](int64_t row, int64_t col) { fail_linear_non_finite(a, row, col); };
  const LossResult r = embeddings_loss(
      e, [&](int64_t i) { return a.labels[i] != a.ignore_index; }, totals.weight_sum,
      [&](const LossArgs& chunk, const int64_t* idx, const int64_t*) {
        const CrossEntropyChunk ce(a, chunk, idx);
        const LossResult part = cross_entropy(ce.args);
        ce.scatter_lse(a, idx);
        return part;
      },
      x);
  return r;
}

}  // namespace fl::cuda
