// linearCrossEntropy on the CPU (see linear_cross_entropy.h), Cut Cross-Entropy's idea with a
// CPU's cache sizes: S is never held for all rows at once.
//
// Strategy: bounded row chunks × all N columns. The rows that are not ignored (ignored rows
// cost no matrix work) are taken in chunks of R rows, R as large as the memory budget allows
// (R·N fp32 scores plus the chunk's H and dH), and each chunk does
//   S  = H_c·Wᵀ (+ b)                    GEMM 1 (scores, fp32)
//   G  = dL/dS, in place in S            the per-row cross-entropy engine (softmax_rows.h),
//                                        the same code as softmaxCrossEntropy on given scores
//   dH_c = G·W                           GEMM 2
//   dW += Gᵀ·H_c,  db += Σ_rows G        GEMM 3 and a column sum
// Three GEMMs of 2·R·N·D flops, and S is computed once. Each chunk's S is written once and read
// by the engine and the two GEMMs while the chunk is the only big thing in use; nothing of size
// B×N exists. This needs room for one row of S (4·N bytes) besides the fixed scratch; a budget
// smaller than that is an error (a column-tiled recompute sweep would lift it; not built yet).
//
// Every sum runs in a fixed order (the GEMMs per C entry over K, chunks in row order, db over
// rows in order), so results do not depend on the thread count. Chunks of at least kGemmKc rows
// are multiples of it, which keeps dW's order the same whatever the chunking; a budget too small
// for that (under 256 rows) changes the order of dW's terms, and dScale's per-chunk partials.
#include "linear_cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.h"
#include "../core/parallel.h"
#include "../gemm/gemm.h"

namespace fl {

namespace {

// Per-call bookkeeping besides the big buffers: the engine keeps per-row vectors and, for rows of
// up to kRowTile columns, a thread-local copy of the row's exponentials (4·N bytes a thread).
int64_t fixed_scratch(const Context& ctx, int64_t classes) {
  const int64_t threads = ctx.pool.threads();
  return threads * (gemm_scratch_bytes(ctx) + 4 * std::min(classes, kRowTile) + 4096) + (int64_t(64) << 10);
}
// Bytes per chunk row: its scores (fp32), H_c and dH_c (fp32), the engine's per-row state.
int64_t row_scratch(int64_t classes, int64_t dim) { return 4 * classes + 8 * dim + 64 + 16 * tiles_per_row(classes); }

template <class T>
void widen_row(const void* src, int64_t row, int64_t dim, float* dst) {
  const T* s = static_cast<const T*>(src) + row * dim;
  for (int64_t k = 0; k < dim; ++k) dst[k] = to_float(s[k]);
}

}  // namespace

LinearCrossEntropyPlan linear_cross_entropy_plan(const Context& ctx, const LinearCrossEntropyArgs& a, int64_t active) {
  const int64_t fixed = fixed_scratch(ctx, a.classes), per_row = row_scratch(a.classes, a.dim);
  if (a.memory_budget < fixed + per_row)
    fail("ERR_ARG", "opts.memoryBudget: expected at least " + std::to_string(fixed + per_row) + " bytes (one row of " +
                        std::to_string(a.classes) + " scores and the GEMM's panels), received " + std::to_string(a.memory_budget));
  const int64_t fit = (a.memory_budget - fixed) / per_row;
  int64_t rows = std::max<int64_t>(1, std::min(active, fit));
  if (rows < active) {
    // Chunks of a multiple of the GEMM's K slice add dW's terms in the same order as one chunk
    // would (C += slice by slice), so the result does not depend on the budget (nor on the
    // thread count, whose panels the budget pays for). Below one slice: equal chunks.
    if (rows >= kGemmKc) rows -= rows % kGemmKc;
    else rows = (active + (active + rows - 1) / rows - 1) / ((active + rows - 1) / rows);
  }
  return {rows, fixed + rows * per_row};
}

LossResult linear_cross_entropy(Context& ctx, const LinearCrossEntropyArgs& a) {
  const int64_t B = a.rows, D = a.dim, N = a.classes;
  // Labels are checked (ERR_LABEL_RANGE) and the 'mean' denominator formed over every row.
  CrossEntropyArgs whole{};
  whole.rows = B;
  whole.cols = N;
  whole.labels = a.labels;
  whole.ignore_index = a.ignore_index;
  whole.class_weights = a.class_weights;
  const CrossEntropyTotals totals = cross_entropy_totals(whole);

  std::vector<int64_t> active;
  active.reserve(size_t(B));
  for (int64_t i = 0; i < B; ++i) {
    if (a.labels[i] != a.ignore_index) active.push_back(i);
    else {
      a.row_loss[i] = 0.f;
      if (a.lse) a.lse[i] = NAN;
    }
  }
  const int64_t hsize = a.grad_hidden_float32 ? 4 : dtype_size(a.dtype);
  if (a.grad_hidden && !a.accumulate) std::memset(a.grad_hidden, 0, size_t(B * D * hsize));
  if (a.grad_weight && !a.accumulate) std::memset(a.grad_weight, 0, size_t(N * D) * sizeof(float));
  if (a.grad_bias && !a.accumulate) std::memset(a.grad_bias, 0, size_t(N) * sizeof(float));
  if (active.empty() || N == 0) return {0.0, 0.0};

  const LinearCrossEntropyPlan plan = linear_cross_entropy_plan(ctx, a, int64_t(active.size()));
  const int64_t R = plan.chunk_rows;
  const bool want_grad = a.grad_hidden || a.grad_weight || a.grad_bias;
  std::vector<float> s(static_cast<size_t>(R * N)), h(static_cast<size_t>(R * D)), dh(a.grad_hidden ? static_cast<size_t>(R * D) : 0);
  std::vector<int32_t> labels(static_cast<size_t>(R));
  std::vector<float> upstream(static_cast<size_t>(R)), row_loss(static_cast<size_t>(R)), lse(static_cast<size_t>(R));
  const double u_mean = totals.weight_sum > 0 ? 1.0 / totals.weight_sum : 0.0;
  double total = 0, dscale = 0;

  for (size_t c0 = 0; c0 < active.size(); c0 += size_t(R)) {
    const int64_t rows = std::min<int64_t>(R, int64_t(active.size() - c0));
    const int64_t* idx = active.data() + c0;
    // H_c, widened to fp32 (the GEMMs' A operand is fp32; W is widened while packed).
    ctx.pool.parallel_for(rows, [&](int64_t r) {
      float* dst = h.data() + r * D;
      if (a.dtype == DType::Float32) std::memcpy(dst, static_cast<const float*>(a.hidden) + idx[r] * D, size_t(D) * sizeof(float));
      else if (a.dtype == DType::Float16) widen_row<f16_t>(a.hidden, idx[r], D, dst);
      else widen_row<bf16_t>(a.hidden, idx[r], D, dst);
      labels[size_t(r)] = a.labels[idx[r]];
      upstream[size_t(r)] = float(a.reduction == Reduction::Mean ? u_mean
                                  : a.reduction == Reduction::None && a.grad_output ? double(a.grad_output[idx[r]])
                                                                                    : 1.0);
    });
    gemm(ctx, rows, N, D, GemmOperand{h.data(), DType::Float32, D, false}, GemmOperand{a.weight, a.dtype, D, true}, s.data(), N, false);
    if (a.bias)
      ctx.pool.parallel_for(rows, [&](int64_t r) {
        float* row = s.data() + r * N;
        for (int64_t j = 0; j < N; ++j) row[j] += a.bias[j];
      });

    // The per-row loss on the chunk, G = dL/dS in place. Reduction None with each row's upstream
    // factor as gradOutput gives exactly the rows of the whole batch's gradient.
    CrossEntropyArgs ce{};
    ce.logits = s.data();
    ce.dtype = DType::Float32;
    ce.rows = rows;
    ce.cols = N;
    ce.labels = labels.data();
    ce.ignore_index = a.ignore_index;
    ce.scale = a.scale;
    ce.softcap = a.softcap;
    ce.label_smoothing = a.label_smoothing;
    ce.class_weights = a.class_weights;
    ce.z_loss = a.z_loss;
    ce.reduction = Reduction::None;
    ce.grad_output = upstream.data();
    ce.grad = want_grad ? s.data() : nullptr;
    ce.grad_float32 = true;
    ce.want_dscale = a.want_dscale;
    ce.row_loss = row_loss.data();
    ce.lse = lse.data();
    LossResult part;
    try {
      part = cross_entropy(ctx, ce);
    } catch (const Error& e) {
      if (e.code != "ERR_NON_FINITE") throw;
      long long r = 0, col = 0;
      const size_t at = std::string(e.what()).rfind('[');
      if (at != std::string::npos) std::sscanf(e.what() + at, "[%lld, %lld]", &r, &col);
      fail("ERR_NON_FINITE", "scores hidden·weightᵀ" + std::string(a.bias ? " + bias" : "") +
                                 ": expected finite values, received NaN or +Infinity at [" + std::to_string(idx[r]) + ", " +
                                 std::to_string(col) + "] (check hidden row " + std::to_string(idx[r]) + " and weight row " +
                                 std::to_string(col) + ")");
    }
    for (int64_t r = 0; r < rows; ++r) {
      a.row_loss[idx[r]] = row_loss[size_t(r)];
      if (a.lse) a.lse[idx[r]] = lse[size_t(r)];
      total += double(row_loss[size_t(r)]);
    }
    dscale += part.dscale;
    if (!want_grad) continue;

    if (a.grad_hidden) {
      gemm(ctx, rows, D, N, GemmOperand{s.data(), DType::Float32, N, false}, GemmOperand{a.weight, a.dtype, D, false}, dh.data(), D, false);
      ctx.pool.parallel_for(rows, [&](int64_t r) {
        const float* src = dh.data() + r * D;
        const int64_t off = idx[r] * D;
        if (a.grad_hidden_float32 || a.dtype == DType::Float32) {
          float* dst = static_cast<float*>(a.grad_hidden) + off;
          for (int64_t k = 0; k < D; ++k) dst[k] = a.accumulate ? dst[k] + src[k] : src[k];
        } else if (a.dtype == DType::Float16) {
          f16_t* dst = static_cast<f16_t*>(a.grad_hidden) + off;
          for (int64_t k = 0; k < D; ++k) dst[k] = to_f16(a.accumulate ? to_float(dst[k]) + src[k] : src[k]);
        } else {
          bf16_t* dst = static_cast<bf16_t*>(a.grad_hidden) + off;
          for (int64_t k = 0; k < D; ++k) dst[k] = to_bf16(a.accumulate ? to_float(dst[k]) + src[k] : src[k]);
        }
      });
    }
    if (a.grad_weight)
      gemm(ctx, N, D, rows, GemmOperand{s.data(), DType::Float32, N, true}, GemmOperand{h.data(), DType::Float32, D, false}, a.grad_weight, D,
           true);
    if (a.grad_bias) {
      // Column sums over the chunk's rows, in row order, by column stripes.
      constexpr int64_t kStripe = 4096;
      ctx.pool.parallel_for((N + kStripe - 1) / kStripe, [&](int64_t t) {
        const int64_t j0 = t * kStripe, j1 = std::min(N, j0 + kStripe);
        float* db = a.grad_bias;
        for (int64_t r = 0; r < rows; ++r) {
          const float* g = s.data() + r * N;
          for (int64_t j = j0; j < j1; ++j) db[j] += g[j];
        }
      });
    }
  }
  if (a.reduction == Reduction::Mean) total = totals.weight_sum > 0 ? total / totals.weight_sum : 0.0;
  return {total, a.want_dscale ? dscale : 0.0};
}

}  // namespace fl
