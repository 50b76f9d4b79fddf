// infoNCE (MATH infoNCE, native/ops/contrastive_math.h) and decoupledContrastive (MATH decoupledContrastive, native/ops/contrastive_math.h) on the GPU. The per-row math is
// native/ops/contrastive_math.h, shared with the CPU.
//
// One-way InfoNCE and DCL: row_kernels.cuh softmax_row, as the softmax losses over positives
// (cuda/positives_losses.cu): the row on chip (one block, or a cluster of up to 8 on sm_90) when
// it fits, else one block per row; a skip mask built by each block for its columns (InfoNCE
// skips its exclusions, DCL the positive and the exclusions), the statistics sweep, the
// positives' terms spread over the row's first block, the dense gradient sweep (16-byte loads
// and stores), then the positives' exact gradients over the dense ones. Passes: on chip 1 read
// of S + 1 write; else 2 reads (the second from L2 only while the rows in flight fit it) + 1
// write.
//
// Symmetric (CLIP) InfoNCE on a square n×n matrix, three kernels:
//   1. statistics, one read of S: a block owns kSymCols columns of a chunk of kSymChunkRows
//      rows. Tiles of kSymTileRows rows are read into shared memory with 16-byte loads
//      (kInFlight in flight per thread; each row's unaligned head and tail one by one), then
//      each thread merges its column of the tile and each warp whole rows of it. Row partials go
//      to one slot per (row, column strip), column partials to one per (row chunk, column);
//   2. one thread per index i merges row i's and column i's partials in order, and computes
//      the pair's loss, the row and column gradient terms and the diagonal's exact gradient;
//   3. the gradient, one block per row, 16-byte loads and stores: the second read of S.
// Passes: 2 reads of S + 1 write (the column statistics need the whole matrix before any
// gradient).
// e^(z − max) by exp2f (MUFU, ≤ 2 ulp) everywhere; the row terms in double.
// Partials are merged in a fixed order and sums go to per-row slots, summed by one block: no
// float atomics (the first-bad index uses an integer atomicMin, which is order-free).
#include <cstdint>
#include <string>
#include <vector>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/ops/contrastive.h"
#include "../native/ops/contrastive_math.h"
#include "../native/ops/csr.h"
#include "check.cuh"
#include "common.cuh"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 512;

// log Σ e^z of a state: max + log1p(rest).
__device__ __forceinline__ double lse_of(const OnlineSumExp& s) {
  return s.max == -INFINITY ? -INFINITY : double(s.max) + log1p(double(s.rest));
}

template <class T>
__device__ __forceinline__ float score(const RowLossParams& p, int64_t row, int64_t c) {
  return to_float(static_cast<const T*>(p.x)[row * p.cols + c]);
}

// ---------- one-way InfoNCE and DCL ----------

enum class Mode { InfoNCE, Dcl };

// The losses over positives' parameters (row_kernels.cuh): skip_a the exclusions, skip_b DCL's
// positive.
struct RowParams : PositivesParams {
  const double* dcl_w;  // DCL's per-row w_i, or null for 1
};

// row_kernels.cuh softmax_row, with the positives' terms of InfoNCE or DCL.
template <class T, class TG, Mode M, bool kOnChip, bool kCluster>
__global__ void __launch_bounds__(kThreads) row_kernel(RowParams q, int64_t slice) {
  const RowParams& p = q;
  const int64_t row = blockIdx.x / row_group<kCluster>().ranks;
  const double u = p.up.at(row);
  const int64_t e0 = q.pos_ptr[row], e1 = q.pos_ptr[row + 1];
  // InfoNCE does not skip its positives (lse over every column not excluded, SupCon).
  softmax_row<T, TG, kThreads, kOnChip, kCluster, M == Mode::InfoNCE>(q, slice, u, [&](float max, double rest, double lse, double (&sums)[2], double* sd) {
    if (M == Mode::InfoNCE) {
      // lse over every column not excluded, the positives included (SupCon); the positives'
      // terms spread over the block.
      const double n = double(e1 - e0);
      double W[1] = {0};
      for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) W[0] += q.pos_w ? q.pos_w[e] : 1.0;
      block_sums<kThreads>(W, sd);
      for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        const double w = q.pos_w ? q.pos_w[e] : 1.0;
        const float z = z_of(q.pos_x[e], p.scale);
        const SoftmaxEntry en = softmax_entry_at(z, z == max, rest, lse);
        sums[0] += info_nce_positive_loss(w, en) / n;
        q.pos_dz[e] = float(info_nce_positive_dz(w, W[0], n, u, en));
      }
      if (threadIdx.x == 0) sums[1] = e1 > e0 ? W[0] / n : 0.0;
    } else if (threadIdx.x == 0) {
      // lse is Z, the negatives' log-sum-exp: the positive and the exclusions are skipped.
      const double w = q.dcl_w ? q.dcl_w[row] : 1.0;
      sums[0] = dcl_row_loss(w, z_of(q.pos_x[e0], p.scale), lse);
      q.pos_dz[e0] = float(-u * w);
      sums[1] = 1.0;
    }
  });
}

// DCLW: each row's positive score S_ip, for the weights (computed on the host).
template <class T>
__global__ void positive_scores_kernel(RowParams q, float* out) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row < q.rows) out[row] = score<T>(q, row, q.pos_cols[q.pos_ptr[row]]);
}

// ---------- symmetric (CLIP) ----------

constexpr int kSymCols = 256;             // columns per block, one per thread
constexpr int kSymTileRows = 32;          // rows staged in shared memory at a time
constexpr int64_t kSymChunkRows = 1024;   // rows per block: a thread sums at most this many terms per column

struct SymParams {
  RowLossParams c;          // rows = cols = n
  int64_t strips, chunks;
  float2* row_part;         // [n][strips]: (max, rest) of row i over strip s
  float2* col_part;         // [chunks][n]: (max, rest) of column j over chunk k
  float *row_shift, *row_coef, *col_shift, *col_coef;  // [n]
  float* diag_dz;           // [n]: the diagonal's exact dL/dz
};

template <class T>
__global__ void __launch_bounds__(kSymCols) sym_stats_kernel(SymParams q) {
  constexpr int kPack = Pack<T>::N;
  constexpr int kRowPacks = kSymCols / kPack;  // the most whole packs a row of the tile holds
  __shared__ float tile[kSymTileRows][kSymCols + 1];
  __shared__ long long sbad[kSymCols / kWarp];
  const RowLossParams& p = q.c;
  const int64_t n = p.rows;
  const int64_t c0 = int64_t(blockIdx.x) * kSymCols;
  const int width = int(min(int64_t(kSymCols), n - c0));  // the strip's columns
  const int64_t r_begin = int64_t(blockIdx.y) * kSymChunkRows;
  const int64_t r_end = min(n, r_begin + kSymChunkRows);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  // Row r of the strip: its start, and the columns before its first 16-byte boundary (head) and
  // in whole packs after it (packs).
  auto strip = [&](int64_t r, int& head, int& packs) {
    const T* s = static_cast<const T*>(p.x) + r * n + c0;
    head = int((16 - reinterpret_cast<uintptr_t>(s) % 16) % 16 / sizeof(T));
    head = min(head, width);
    packs = (width - head) / kPack;
    return s;
  };
  long long bad = INT64_MAX;
  auto put = [&](int k, int64_t r, int j, float v) {
    if (is_bad(v)) bad = min(bad, (long long)(r * n + c0 + j));
    tile[k][j] = z_of(v, p.scale);
  };
  OnlineSumExp col;
  for (int64_t r0 = r_begin; r0 < r_end; r0 += kSymTileRows) {
    const int rows = int(min(int64_t(kSymTileRows), r_end - r0));
    // The tile into shared memory: each row's aligned body in 16-byte loads, kInFlight in flight
    // per thread; then the head and tail of each row (fewer than kPack columns each), one by one.
    const int items = rows * kRowPacks;
    for (int i0 = threadIdx.x; i0 < items; i0 += kSymCols * kInFlight) {
      uint4 raw[kInFlight];
      int col0[kInFlight];  // the pack's first column in the strip, −1: none
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) {
        const int i = i0 + u * kSymCols, k = i / kRowPacks, j = i % kRowPacks;
        col0[u] = -1;
        if (i < items) {
          int head, packs;
          const T* s = strip(r0 + k, head, packs);
          if (j < packs) {
            raw[u] = reinterpret_cast<const uint4*>(s + head)[j];
            col0[u] = head + j * kPack;
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kInFlight; ++u)
        if (col0[u] >= 0) {
          const int k = (i0 + u * kSymCols) / kRowPacks;
          float v[kPack];
          unpack16<T>(raw[u], v);
#pragma unroll
          for (int e = 0; e < kPack; ++e) put(k, r0 + k, col0[u] + e, v[e]);
        }
    }
    for (int i = threadIdx.x; i < rows * 2 * kPack; i += kSymCols) {
      const int k = i / (2 * kPack), m = i % (2 * kPack);
      int head, packs;
      const T* s = strip(r0 + k, head, packs);
      const int j = m < kPack ? m : head + packs * kPack + (m - kPack);
      if (m < kPack ? j < head : j < width) put(k, r0 + k, j, to_float(s[j]));
    }
    __syncthreads();
    // Each thread its column over the tile's rows in order; each warp whole rows of the tile.
    if (int(threadIdx.x) < width)
      for (int k = 0; k < rows; ++k) col.add(tile[k][threadIdx.x]);
    for (int k = warp; k < rows; k += kSymCols / kWarp) {
      OnlineSumExp s;
      for (int i = lane; i < width; i += kWarp) s.add(tile[k][i]);
      warp_merge(s);
      if (lane == 0) q.row_part[(r0 + k) * q.strips + blockIdx.x] = make_float2(s.max, s.rest);
    }
    __syncthreads();  // the tile is read before the next one overwrites it
  }
  if (int(threadIdx.x) < width) q.col_part[int64_t(blockIdx.y) * n + c0 + threadIdx.x] = make_float2(col.max, col.rest);
  bad = warp_min(bad);
  if (lane == 0) sbad[warp] = bad;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 0; w < kSymCols / kWarp; ++w) bad = min(bad, sbad[w]);
    if (bad != INT64_MAX) atomicMin(p.first_bad, bad);
  }
}

// Row i and column i: merge the partials in order; the pair's loss (r_i + c_i)/2 and the terms
// of dL/dz_ij = a_i·p_ij + b_j·q_ij − (a_i + b_j)[i = j], a and b half the upstream factors.
template <class T>
__global__ void sym_terms_kernel(SymParams q) {
  const RowLossParams& p = q.c;
  const int64_t n = p.rows;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  OnlineSumExp row, col;
  for (int64_t s = 0; s < q.strips; ++s) row.merge(q.row_part[i * q.strips + s].x, q.row_part[i * q.strips + s].y);
  for (int64_t k = 0; k < q.chunks; ++k) col.merge(q.col_part[k * n + i].x, q.col_part[k * n + i].y);
  const float x = score<T>(p, i, i);
  const float z = x == -INFINITY ? -INFINITY : p.scale * x;
  const SoftmaxEntry er = softmax_entry_at(z, z == row.max, row.rest, lse_of(row));
  const SoftmaxEntry ec = softmax_entry_at(z, z == col.max, col.rest, lse_of(col));
  p.row_loss[i] = (er.margin + ec.margin) / 2;
  const double u = p.up.at(i) / 2;
  q.row_shift[i] = row.max;
  q.row_coef[i] = row.max == -INFINITY ? 0.f : float(u / (1.0 + double(row.rest)));
  q.col_shift[i] = col.max;
  q.col_coef[i] = col.max == -INFINITY ? 0.f : float(u / (1.0 + double(col.rest)));
  q.diag_dz[i] = float(u * (er.p_minus_one + ec.p_minus_one));
}

template <class T, class TG>
__global__ void __launch_bounds__(kThreads) sym_grad_kernel(SymParams q) {
  __shared__ float sred[kThreads / kWarp];
  const RowLossParams& p = q.c;
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  const float rs = q.row_shift[row], rc = q.row_coef[row], diag = q.diag_dz[row];
  float dsc = 0.f;
  // Each value is read before the same thread stores its gradient: in place is safe.
  for_each_pack(x, 0, p.cols, [&](int64_t c, auto& v) {
    constexpr int m = length_of<decltype(v)>;
    float out[m];
#pragma unroll
    for (int j = 0; j < m; ++j) {
      float d = 0.f;
      if (v[j] != -INFINITY) {
        const float z = z_of(v[j], p.scale);
        d = c + j == row ? diag : rc * exp_shifted(z, rs) + q.col_coef[c + j] * exp_shifted(z, q.col_shift[c + j]);
      }
      out[j] = d * p.scale;
      if (d != 0.f) dsc += d * v[j];
    }
    if (g) store_pack<TG>(g + c, out);
  });
  dsc = block_sum(dsc, sred);
  if (threadIdx.x == 0) p.dscale_part[row] = dsc;
}

// ---------- launchers ----------

// One-way InfoNCE (skips: the exclusions) or DCL (skips: the positive and the exclusions).
template <Mode M>
LossResult rows_loss(const LossArgs& a, const Csr& given_positives, const Csr& exclude, float sigma, const double* row_weights) {
  const PositivesOrDiagonal positives(given_positives, a.rows);
  const Csr& pos = positives.csr();
  if (M == Mode::Dcl) { const SkipLists overlap(a.rows, pos, exclude); }  // ERR_CSR: an excluded positive
  if (a.rows == 0) return {0, 0};
  if (a.rows > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  const DeviceScope on(device_of(a.scores));
  int64_t rows_with_positives = 0;
  for (int64_t r = 0; r < a.rows; ++r) rows_with_positives += pos.size(r) > 0;
  const double mean_divisor = M == Mode::Dcl ? double(a.rows) : double(rows_with_positives);
  const bool dclw = M == Mode::Dcl && sigma > 0;
  RowParams q{};
  float* d_scores = nullptr;  // DCLW: every row's positive score
  double* d_weights = nullptr;
  Scratch s([&](auto& c) {
    static_cast<PositivesParams&>(q) = carve_positives(c, a, mean_divisor, pos, exclude, M == Mode::Dcl);
    if (dclw) {
      d_scores = c.template take<float>(a.rows);
      d_weights = c.template take<double>(a.rows);
    }
  });
  start_row_loss(q, q.rows);
  const unsigned rows = unsigned(a.rows);
  if (dclw && row_weights) {
    // The weights given (the embeddings form forms them over all rows before taking chunks).
    copy_to_device(d_weights, row_weights, size_t(a.rows) * sizeof(double));
    q.dcl_w = d_weights;
  } else if (dclw) {
    // DCLW's weights need every row's positive score: gathered here, computed on the host.
    dtype_switch(a.dtype, DType::Float32, [&](auto t, auto) {
      positive_scores_kernel<decltype(t)><<<(rows + 255) / 256, 256>>>(q, d_scores);
    });
    check_launch("decoupledContrastive positive scores kernel");
    std::vector<float> h(size_t(a.rows));
    std::vector<double> w(size_t(a.rows));
    copy_to_host(h.data(), d_scores, h.size() * sizeof(float));
    dclw_weights(h.data(), a.rows, sigma, w.data());
    copy_to_device(d_weights, w.data(), w.size() * sizeof(double));
    q.dcl_w = d_weights;
  }
  // The row on chip when it fits one block's shared memory or (sm_90) a cluster's, else one block
  // a row reading it twice.
  const DeviceLimits dev = device_limits();
  dtype_switch(a.dtype, a.grad_dtype, [&](auto t, auto tg) {
    using T = decltype(t);
    using TG = decltype(tg);
    auto* block_kernel = row_kernel<T, TG, M, true, false>;
    auto* cluster_kernel = row_kernel<T, TG, M, true, true>;
    const size_t limit = raise_on_chip_smem(dev.smem_optin, dev.cc_major, block_kernel, cluster_kernel);
    const RowOnChip plan = row_on_chip_grid(a.rows, a.cols, int64_t(sizeof(T)), limit, dev.cc_major);
    if (plan.blocks_per_row > 0 && launch_on_chip(plan, a.rows, kThreads, block_kernel, cluster_kernel, q, plan.slice)) return;
    row_kernel<T, TG, M, false, false><<<rows, kThreads>>>(q, a.cols);
  });
  check_launch(M == Mode::Dcl ? "decoupledContrastive kernel" : "infoNCE kernel");
  return finish_loss(q, a.row_loss, a.reduction, mean_divisor, s);
}

LossResult symmetric(const LossArgs& a) {
  const int64_t n = a.rows;
  if (n == 0) return {0, 0};
  if (n > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  const DeviceScope on(device_of(a.scores));
  SymParams q{};
  q.strips = (n + kSymCols - 1) / kSymCols;
  q.chunks = (n + kSymChunkRows - 1) / kSymChunkRows;
  if (q.chunks > 65535) fail(err::kShape, "scores: too many rows for one launch (the row chunks are gridDim.y, at most 65535)");
  RowLossParams& p = q.c;
  p = row_loss_params(a);
  Scratch s([&](auto& c) {
    carve_row_loss(c, p, a.reduction, a.grad_output, inverse_or_zero(double(n)), n);
    q.row_part = c.template take<float2>(n * q.strips);
    q.col_part = c.template take<float2>(n * q.chunks);
    q.row_shift = c.template take<float>(n);
    q.row_coef = c.template take<float>(n);
    q.col_shift = c.template take<float>(n);
    q.col_coef = c.template take<float>(n);
    q.diag_dz = c.template take<float>(n);
  });
  start_row_loss(p, n);
  dtype_switch(a.dtype, a.grad_dtype, [&](auto t, auto tg) {
    using T = decltype(t);
    using TG = decltype(tg);
    sym_stats_kernel<T><<<dim3(unsigned(q.strips), unsigned(q.chunks)), kSymCols>>>(q);
    check_launch("symmetric infoNCE statistics kernel");
    sym_terms_kernel<T><<<unsigned((n + 127) / 128), 128>>>(q);
    check_launch("symmetric infoNCE terms kernel");
    if (a.grad || a.grad_scale) {
      sym_grad_kernel<T, TG><<<unsigned(n), kThreads>>>(q);
      check_launch("symmetric infoNCE gradient kernel");
    }
  });
  return finish_loss(p, a.row_loss, a.reduction, double(n), s);
}

}  // namespace

LossResult info_nce(const InfoNCEArgs& a) {
  check_info_nce_shape(a);
  return a.symmetric ? symmetric(a) : rows_loss<Mode::InfoNCE>(a, a.positives, a.exclude, 0.f, nullptr);
}

LossResult decoupled_contrastive(const DecoupledContrastiveArgs& a) {
  check_decoupled_contrastive_shape(a);
  return rows_loss<Mode::Dcl>(a, a.positives, a.exclude, a.sigma, a.row_weights);
}

}  // namespace fl::cuda
