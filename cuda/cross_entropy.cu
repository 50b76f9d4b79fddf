// softmaxCrossEntropy on the GPU (SPEC 3.1). The per-row math is cross_entropy_row() from
// native/ops/cross_entropy_math.h, shared with the CPU.
//
// Two layouts, same arithmetic:
//  - one block per row (B large, N up to kFusedCols): the block sweeps its row twice, for the
//    statistics and then for the gradient; the second sweep finds the row in L2 (a 50257-wide
//    bf16 row is 100 KB; the rows in flight fit the 50 MB L2), so HBM sees one read of the
//    logits and one write of the gradient;
//  - tiles (few rows, or very wide rows): a statistics kernel per (row, tile), a per-row
//    kernel that merges the tiles and computes the row's terms, and a gradient kernel per
//    (row, tile). Wide rows then fill the GPU, at the cost of a second read.
// The label's whole gradient comes from the row's terms (d = label_dz at j = y), so it is
// computed in fp32 and rounded once. Losses and dScale partials are written per row / per
// block and summed in a fixed order by one final block: no float atomics.
#include <cstdint>
#include <string>
#include <vector>

#include "../native/core/error.h"
#include "../native/ops/cross_entropy.h"
#include "../native/ops/cross_entropy_math.h"
#include "check.cuh"
#include "common.cuh"
#include "ops.h"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int64_t kFusedCols = 262144;  // widest row one block sweeps alone
constexpr int64_t kTileCols = 32768;    // tile width of the tiled layout
constexpr float kLog2e = 1.4426950408889634f;

struct RowTerms {
  float shift2;       // the row's max of y = z·log2(e): p_j = coef-part · 2^(y_j − shift2)
                      // (not lse·log2(e): rounded to float, that is off by an ulp of lse)
  float coef, bias, colw_coef, label_dz;
};

struct CeParams {
  const void* x;
  void* grad;                 // null: no gradient (dScale may still be wanted)
  int64_t rows, cols, tiles;  // tiles = 1 in the fused layout
  float scale, cap;           // cap = 0: no softcap
  const int32_t* labels;
  int32_t ignore_index;
  const float* class_weights;
  const float* grad_output;   // reduction None only
  float eps, lambda, n_cols, mean_w, mean_scale;  // mean_scale = 1/Σw_y for 'mean', else 1
  int reduction;
  bool want_lin, want_dscale;
  float2* part;               // rows·tiles (max2, rest) in base 2 (Online2)
  float* part_lin;            // rows·tiles Σ w_j z_j
  RowTerms* terms;            // rows
  double* row_loss;           // rows
  float* lse;                 // rows
  float* dscale_part;         // rows·tiles
  long long* first_bad;
  double* result;             // [loss, dScale]
};

template <bool kSoftcap>
__device__ __forceinline__ float transform(float x, float scale, float cap) {
  if constexpr (kSoftcap) return cap * tanhf(scale * x / cap);
  else return scale * x;
}

// Loads 16 bytes at a time where the address allows (scalar head and tail otherwise) and
// calls f(col, value) for every column of [c0, c1), in any order, over the block's threads.
template <class T, class F>
__device__ __forceinline__ void for_each_col(const T* row, int64_t c0, int64_t c1, F&& f) {
  constexpr int kPack = Pack<T>::N;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(row + c0);
  int64_t head = int64_t((16 - addr % 16) % 16) / int64_t(sizeof(T));
  if (head > c1 - c0) head = c1 - c0;
  for (int64_t c = c0 + threadIdx.x; c < c0 + head; c += blockDim.x) f(c, to_float(row[c]));
  const int64_t body = c0 + head, packs = (c1 - body) / kPack;
  const uint4* v = reinterpret_cast<const uint4*>(row + body);
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) {
    float e[kPack];
    unpack16<T>(__ldg(v + i), e);
#pragma unroll
    for (int j = 0; j < kPack; ++j) f(body + i * kPack + j, e[j]);
  }
  for (int64_t c = body + packs * kPack + threadIdx.x; c < c1; c += blockDim.x) f(c, to_float(row[c]));
}

// Statistics of z over [c0, c1) of a row, merged into thread 0: (max, rest) in base 2 and
// Σ w·z·2^-64.
template <class T, bool kSoftcap>
__device__ void tile_stats(const CeParams& p, int64_t row, int64_t c0, int64_t c1, Online2& s, float& lin) {
  __shared__ float smax[kThreads / kWarp], srest[kThreads / kWarp], slin[kThreads / kWarp];
  __shared__ long long sbad[kThreads / kWarp];
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  long long bad = INT64_MAX;
  lin = 0.f;
  for_each_col(x, c0, c1, [&](int64_t c, float v) {
    if (is_bad(v)) bad = min(bad, (long long)(row * p.cols + c));
    const float z = transform<kSoftcap>(v, p.scale, p.cap);
    s.add(v == -INFINITY ? -INFINITY : z * kLog2e);  // −inf is out, also under a softcap (→ −cap)
    // Σ w·z on z·2^-64 (exact scaling) so that huge logits cannot overflow the float sum.
    if (p.want_lin && v != -INFINITY) lin += (p.class_weights ? p.class_weights[c] : 1.f) * (z * 0x1p-64f);
  });
  block_merge<kThreads>(s, bad, smax, srest, sbad);
  if (p.want_lin) lin = block_sum(lin, slin);
  if (threadIdx.x == 0 && bad != INT64_MAX) atomicMin(p.first_bad, bad);  // integer min: order-free
}

// The row's loss and gradient terms from its merged statistics (one thread).
template <class T, bool kSoftcap>
__device__ RowTerms finish_row(const CeParams& p, int64_t row, float max2, float rest, float lin) {
  const double lse = max2 == -INFINITY ? -INFINITY : double(max2) * 0.6931471805599453 + log1p(double(rest));
  p.lse[row] = float(lse);
  const int32_t y = p.labels[row];
  if (y == p.ignore_index) {
    p.row_loss[row] = 0;
    return RowTerms{max2, 0.f, 0.f, 0.f, 0.f};
  }
  const float z_y = transform<kSoftcap>(to_float(static_cast<const T*>(p.x)[row * p.cols + y]), p.scale, p.cap);
  const double u = p.reduction == 2 ? (p.grad_output ? double(p.grad_output[row]) : 1.0) : double(p.mean_scale);
  const double w_y = p.class_weights ? p.class_weights[y] : 1.0;
  // The label is the row max when its base-2 value equals max2 (as tile_stats computed it, bitwise).
  const LabelTerms lt = label_terms(z_y * kLog2e == max2, double(rest), lse, double(z_y));
  const CrossEntropyRow r = cross_entropy_row(lse, lt.margin, lt.p_minus_one, double(lin) * 0x1p64, w_y, p.mean_w, p.n_cols, p.eps, p.lambda, u);
  p.row_loss[row] = r.loss;
  RowTerms t{max2, float(r.coef / (1.0 + double(rest))), 0.f, 0.f, r.label_dz};
  if (p.class_weights) t.colw_coef = -r.smooth;
  else t.bias = -r.smooth;
  return t;
}

// The gradient sweep over [c0, c1): returns this thread's share of dScale.
template <class T, class TG, bool kSoftcap>
__device__ float tile_grad(const CeParams& p, int64_t row, int64_t c0, int64_t c1, const RowTerms& t) {
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  const int32_t y = p.labels[row];
  float dsc = 0.f;
  for_each_col(x, c0, c1, [&](int64_t c, float v) {
    float d = 0.f, dzdx = 0.f, dzds = 0.f;
    if (v != -INFINITY) {
      float z;
      if constexpr (kSoftcap) {
        float sech2;
        const float th = tanh_sech2(p.scale * v / p.cap, &sech2);
        z = p.cap * th;
        dzdx = p.scale * sech2;
        dzds = v * sech2;
      } else {
        z = p.scale * v;
        dzdx = p.scale;
        dzds = v;
      }
      d = t.coef * exp2f(z * kLog2e - t.shift2) + t.bias + (p.class_weights ? t.colw_coef * p.class_weights[c] : 0.f);
      if (c == y) d = t.label_dz;
    }
    if (g) g[c] = from_float<TG>(d * dzdx);
    dsc += d * dzds;
  });
  return dsc;
}

// Fused layout: one block per row.
template <class T, class TG, bool kSoftcap>
__global__ void __launch_bounds__(kThreads) ce_fused_kernel(CeParams p) {
  __shared__ RowTerms terms;
  __shared__ float sred[kThreads / kWarp];
  const int64_t row = blockIdx.x;
  Online2 s;
  float lin;
  tile_stats<T, kSoftcap>(p, row, 0, p.cols, s, lin);
  if (threadIdx.x == 0) terms = finish_row<T, kSoftcap>(p, row, s.max, s.rest, lin);
  __syncthreads();
  const RowTerms t = terms;
  if (!p.grad && !p.want_dscale) return;
  const float dsc = block_sum(tile_grad<T, TG, kSoftcap>(p, row, 0, p.cols, t), sred);
  if (threadIdx.x == 0) p.dscale_part[row] = dsc;
}

// Tiled layout, step 1: statistics per (row, tile).
template <class T, bool kSoftcap>
__global__ void __launch_bounds__(kThreads) ce_stats_kernel(CeParams p) {
  const int64_t row = blockIdx.x / p.tiles, tile = blockIdx.x % p.tiles;
  const int64_t c0 = tile * kTileCols, c1 = min(p.cols, c0 + kTileCols);
  Online2 s;
  float lin;
  tile_stats<T, kSoftcap>(p, row, c0, c1, s, lin);
  if (threadIdx.x == 0) {
    p.part[blockIdx.x] = make_float2(s.max, s.rest);
    p.part_lin[blockIdx.x] = lin;
  }
}

// Tiled layout, step 2: merge a row's tiles in order and compute its terms (one thread a row).
template <class T, bool kSoftcap>
__global__ void ce_terms_kernel(CeParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= p.rows) return;
  Online2 s;
  float lin = 0.f;
  for (int64_t k = 0; k < p.tiles; ++k) {
    const float2 q = p.part[row * p.tiles + k];
    s.merge(q.x, q.y);
    lin += p.part_lin[row * p.tiles + k];
  }
  p.terms[row] = finish_row<T, kSoftcap>(p, row, s.max, s.rest, lin);
}

// Tiled layout, step 3: the gradient per (row, tile).
template <class T, class TG, bool kSoftcap>
__global__ void __launch_bounds__(kThreads) ce_grad_kernel(CeParams p) {
  __shared__ float sred[kThreads / kWarp];
  const int64_t row = blockIdx.x / p.tiles, tile = blockIdx.x % p.tiles;
  const int64_t c0 = tile * kTileCols, c1 = min(p.cols, c0 + kTileCols);
  const float dsc = block_sum(tile_grad<T, TG, kSoftcap>(p, row, c0, c1, p.terms[row]), sred);
  if (threadIdx.x == 0) p.dscale_part[blockIdx.x] = dsc;
}

template <class T, class TG, bool kSoftcap>
void launch(CeParams& p, bool fused, int64_t blocks) {
  if (fused) {
    ce_fused_kernel<T, TG, kSoftcap><<<unsigned(blocks), kThreads>>>(p);
    check_launch("softmaxCrossEntropy fused kernel");
    return;
  }
  ce_stats_kernel<T, kSoftcap><<<unsigned(blocks), kThreads>>>(p);
  check_launch("softmaxCrossEntropy statistics kernel");
  ce_terms_kernel<T, kSoftcap><<<unsigned((p.rows + 127) / 128), 128>>>(p);
  check_launch("softmaxCrossEntropy row kernel");
  if (p.grad || p.want_dscale) {
    ce_grad_kernel<T, TG, kSoftcap><<<unsigned(blocks), kThreads>>>(p);
    check_launch("softmaxCrossEntropy gradient kernel");
  }
}

template <class T>
void dispatch(CeParams& p, bool grad_float32, bool fused, int64_t blocks) {
  const bool cap = p.cap > 0;
  if (grad_float32) cap ? launch<T, float, true>(p, fused, blocks) : launch<T, float, false>(p, fused, blocks);
  else cap ? launch<T, T, true>(p, fused, blocks) : launch<T, T, false>(p, fused, blocks);
}

}  // namespace

LossResult cross_entropy(const CrossEntropyArgs& a) {
  const CrossEntropyTotals totals = cross_entropy_totals(a);  // also validates the labels
  if (a.rows == 0) return {0, 0};
  int device = 0, sms = 0;
  FL_CUDA_CHECK(cudaGetDevice(&device));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  // One block per row when that fills the GPU and the row is not too wide; tiles otherwise.
  const bool fused = a.rows >= 2 * int64_t(sms) && a.cols <= kFusedCols;
  // At least one tile: cols = 0 (every label ignored) must not make a 0-block grid.
  const int64_t tiles = fused || a.cols == 0 ? 1 : (a.cols + kTileCols - 1) / kTileCols;
  const int64_t blocks = a.rows * tiles;
  if (blocks > INT32_MAX) fail("ERR_SHAPE", "logits: too many rows for one launch");

  Scratch s(size_t(a.rows) * (4 + 4 + sizeof(RowTerms) + 8 + 4) + size_t(a.cols) * 4 +
            size_t(blocks) * (8 + 4 + 4) + 16 + 8 + 16 * 256);
  CeParams p{};
  p.x = a.logits;
  p.grad = a.grad;
  p.rows = a.rows;
  p.cols = a.cols;
  p.tiles = tiles;
  p.scale = a.scale;
  p.cap = a.softcap;
  p.ignore_index = a.ignore_index;
  p.eps = a.label_smoothing;
  p.lambda = a.z_loss;
  p.n_cols = float(a.cols);
  p.mean_w = float(totals.mean_class_weight);
  p.reduction = int(a.reduction);
  p.mean_scale = a.reduction == Reduction::Mean ? (totals.weight_sum > 0 ? float(1.0 / totals.weight_sum) : 0.f) : 1.f;
  p.want_lin = a.label_smoothing > 0;
  p.want_dscale = a.want_dscale;
  p.labels = s.upload(a.labels, a.rows);
  if (a.class_weights) p.class_weights = s.upload(a.class_weights, a.cols);
  if (a.grad_output && a.reduction == Reduction::None) p.grad_output = s.upload(a.grad_output, a.rows);
  p.part = s.take<float2>(blocks);
  p.part_lin = s.take<float>(blocks);
  p.terms = s.take<RowTerms>(a.rows);
  p.row_loss = s.take<double>(a.rows);
  p.lse = s.take<float>(a.rows);
  p.dscale_part = s.take<float>(blocks);
  p.first_bad = s.take<long long>(1);
  p.result = s.take<double>(2);
  const long long none = INT64_MAX;
  FL_CUDA_CHECK(cudaMemcpy(p.first_bad, &none, sizeof none, cudaMemcpyHostToDevice));
  FL_CUDA_CHECK(cudaMemset(p.dscale_part, 0, size_t(blocks) * 4));

  switch (a.dtype) {
    case DType::Float32: dispatch<float>(p, true, fused, blocks); break;
    case DType::Float16: dispatch<f16_t>(p, a.grad_float32, fused, blocks); break;
    case DType::BFloat16: dispatch<bf16_t>(p, a.grad_float32, fused, blocks); break;
  }
  // dScale partials that were not wanted stay 0 (memset above).
  sum_rows_kernel<<<1, 256>>>(p.row_loss, p.rows, p.dscale_part, blocks, p.result);
  check_launch("softmaxCrossEntropy reduce kernel");

  long long bad = 0;
  FL_CUDA_CHECK(cudaMemcpy(&bad, p.first_bad, sizeof bad, cudaMemcpyDeviceToHost));
  if (bad != INT64_MAX)
    fail("ERR_NON_FINITE", "logits: expected finite values or -Infinity, received NaN or +Infinity at [" +
                               std::to_string(bad / a.cols) + ", " + std::to_string(bad % a.cols) + "]");
  double result[2];
  FL_CUDA_CHECK(cudaMemcpy(result, p.result, sizeof result, cudaMemcpyDeviceToHost));
  // Row losses are kept in double on the device (the total above was summed from them).
  std::vector<double> row_loss(size_t(a.rows));
  FL_CUDA_CHECK(cudaMemcpy(row_loss.data(), p.row_loss, row_loss.size() * sizeof(double), cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < a.rows; ++i) a.row_loss[i] = float(row_loss[size_t(i)]);
  if (a.lse) FL_CUDA_CHECK(cudaMemcpy(a.lse, p.lse, size_t(a.rows) * 4, cudaMemcpyDeviceToHost));
  double loss = result[0];
  if (a.reduction == Reduction::Mean) loss = totals.weight_sum > 0 ? loss / totals.weight_sum : 0.0;
  return {loss, a.want_dscale ? result[1] : 0.0};
}

}  // namespace fl::cuda
