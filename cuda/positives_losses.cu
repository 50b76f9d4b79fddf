// decoupledSoftmax (SPEC 3.4), multiLabelSoftmax (SPEC 3.2) and binaryCrossEntropy (SPEC 3.6)
// on the GPU. The per-positive math is native/ops/positives_math.h, shared with the CPU.
//
// The softmax losses (row_kernels.cuh softmax_row): the row on chip (cuda/plan.h
// row_on_chip_grid) when it fits one block's shared memory (about 58K float32 / 116K bf16
// columns on an H100) or, on sm_90, a cluster of up to 8 blocks', each holding a slice; else one
// block per row. The row's skip mask (positives ∪ exclusions, or exclusions only for the
// multi-label softmax; row_kernels.cuh) is built by each block for its columns from the CSR
// lists. Per row
//   1. the first block (rank 0) reads its positives' scores (before any gradient store);
//   2. the statistics sweep over the columns not skipped (online max and rest = Σ − 1), 16-byte
//      loads with kInFlight in flight, the values kept in shared memory on chip; the blocks of
//      a cluster merge their statistics in rank order;
//   3. rank 0 computes the positives' terms, spread over its threads and summed in a fixed
//      order: the row's loss, the dense coefficient and each positive's exact dℓ/dz;
//   4. the dense gradient sweep (skipped columns get 0) from shared memory on chip, else from
//      HBM again, 16-byte stores;
//   5. after a barrier over the row's blocks, rank 0 writes the positives' gradients over the
//      dense ones, rounded once.
// bce: one block per row, elementwise, then the positives.
// Passes over memory as designed: softmax losses on chip 1 read of S + 1 write of the gradient
// (at 4096×131072 float32: a cluster of 3 per row on an H100), else 2 reads (the second from L2
// only while the rows in flight fit it) + 1 write; bce 1 read + 1 write. (Plus the positives'
// scattered scores, and the skip mask in L2.) exp2f (MUFU, ≤ 2 ulp) for the dense terms, IEEE
// division; the positives' terms in double.
// Row losses and dScale partials go to per-row slots, summed in a fixed order by one final
// block: no float atomics (the first-bad index uses an integer atomicMin, which is order-free).
#include <cstdint>
#include <string>
#include <vector>

#include "../native/api/error.h"
#include "../native/ops/csr.h"
#include "../native/ops/positives_losses.h"
#include "../native/ops/positives_math.h"
#include "check.cuh"
#include "common.cuh"
#include "ops.h"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / kWarp;

enum class Kind { Decoupled, MultiLabel, Bce };

struct PlParams {
  const void* x;
  void* grad;  // null: no gradient (dScale may still be wanted)
  int64_t rows, cols;
  float scale;
  CsrView skip_a, skip_b;   // the skipped columns: positives and/or exclusions
  uint32_t* mask;           // rows × mask_words (scratch)
  int64_t mask_words;
  const int32_t* pos_ptr;   // rows + 1
  const int32_t* pos_cols;
  const float* pos_w;       // null: every weight 1
  const float* grad_output; // reduction None only
  int reduction;
  double mean_divisor;      // B, or B·N for bce
  bool grad_scale;
  float* pos_x;             // per positive: its score, read before the sweep
  float* pos_dz;            // per positive: its exact dℓ/dz times the row's upstream factor
  double* row_loss;         // rows
  float* dscale_part;       // rows
  long long* first_bad;
  double* result;           // [Σ row_loss, Σ dscale_part]
};

__device__ __forceinline__ double upstream(const PlParams& p, int64_t row) {
  if (p.reduction == 0) return 1.0 / p.mean_divisor;
  if (p.reduction == 2 && p.grad_output) return p.grad_output[row];
  return 1.0;
}

template <class T>
__device__ __forceinline__ float score(const PlParams& p, int64_t row, int64_t c) {
  return to_float(static_cast<const T*>(p.x)[row * p.cols + c]);
}

template <class TG>
__device__ __forceinline__ void store(const PlParams& p, int64_t row, int64_t c, float g) {
  if (p.grad) static_cast<TG*>(p.grad)[row * p.cols + c] = from_float<TG>(g);
}

template <class T>
__device__ void read_positives(const PlParams& p, int64_t row) {
  for (int64_t e = p.pos_ptr[row] + threadIdx.x; e < p.pos_ptr[row + 1]; e += blockDim.x) p.pos_x[e] = score<T>(p, row, p.pos_cols[e]);
}

__device__ __forceinline__ void note_bad(const PlParams& p, int64_t row, int64_t c, float v, long long& bad) {
  if (is_bad(v)) bad = min(bad, (long long)(row * p.cols + c));
}

// The softmax losses (row_kernels.cuh softmax_row): statistics, the positives' terms, the
// gradient sweep, the positives' exact gradients.
template <class T, class TG, Kind K, bool kOnChip, bool kCluster>
__global__ void __launch_bounds__(kThreads) softmax_kernel(PlParams p, int64_t slice) {
  const int64_t row = blockIdx.x / row_group<kCluster>().ranks;
  const SoftmaxRowArgs a{p.x, p.grad, p.cols, p.scale, p.grad_scale, K == Kind::MultiLabel, p.skip_a, p.skip_b, p.mask, p.mask_words,
                         p.pos_ptr, p.pos_cols, p.pos_x, p.pos_dz, p.row_loss, p.dscale_part, p.first_bad};
  const double u = upstream(p, row);
  const int64_t e0 = p.pos_ptr[row], e1 = p.pos_ptr[row + 1];
  softmax_row<T, TG, kThreads, kOnChip, kCluster>(a, slice, u, [&](float max, double rest, double lse, double (&sums)[2], double* sd) {
    if (K == Kind::Decoupled) {
      // lse is Z, the negatives' log-sum-exp: positives and exclusions are skipped.
      const double inv_n = e1 > e0 ? 1.0 / double(e1 - e0) : 0.0;
      for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        const double w = p.pos_w ? p.pos_w[e] : 1.0;
        const float xe = p.pos_x[e];
        const DecoupledPositive d = decoupled_positive(xe == -INFINITY ? -INFINITY : double(p.scale * xe), lse, w);
        sums[0] += d.loss * inv_n;
        sums[1] += w * d.s * inv_n;
        p.pos_dz[e] = float(-u * w * inv_n * d.s);
      }
    } else {
      // lse over every column not excluded; ℓ = Σ_p w_p (lse − z_p), dℓ/dz_j = W·p_j − w_j[j ∈ P].
      double W[1] = {0};
      for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) W[0] += p.pos_w ? p.pos_w[e] : 1.0;
      block_sums<kThreads>(W, sd);
      for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        const double w = p.pos_w ? p.pos_w[e] : 1.0;
        const float xe = p.pos_x[e];
        if (xe == -INFINITY) {
          if (w > 0) sums[0] += INFINITY;
          p.pos_dz[e] = 0.f;
          continue;
        }
        // A positive that is the row max (bitwise as the sweep saw it) uses lse − z = log1p(rest)
        // and p − 1 = −rest/(1 + rest): exact however confident the row; elsewhere p ≤ 1/2.
        const float z = p.scale * xe;
        const bool is_max = z == max;
        sums[0] += w * (is_max ? log1p(rest) : lse - double(z));
        p.pos_dz[e] = float(u * (is_max ? (W[0] - w) - W[0] * rest / (1.0 + rest) : W[0] * exp(double(z) - lse) - w));
      }
      if (threadIdx.x == 0) sums[1] = lse == -INFINITY ? 0.0 : W[0];  // W is the block's total: added once
    }
  });
}

// binaryCrossEntropy: elementwise over the columns not skipped, then the positives.
template <class T, class TG>
__global__ void __launch_bounds__(kThreads) bce_kernel(PlParams p) {
  __shared__ float sred[kWarps];
  __shared__ long long sbad[kWarps];
  __shared__ double sd[kWarps * 2];
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  read_positives<T>(p, row);  // ordered before the sweep writes 0 over them by the mask's barriers
  const RowMask mask = build_row_mask(p.mask + row * p.mask_words, p.cols, row, p.skip_a, p.skip_b);
  const float u = float(upstream(p, row));
  float loss = 0.f, dsc = 0.f;
  long long bad = INT64_MAX;
  for_each_pack(x, 0, p.cols, [&](int64_t c, auto& v) {
    constexpr int n = length_of<decltype(v)>;
    float d[n];
#pragma unroll
    for (int j = 0; j < n; ++j) {
      note_bad(p, row, c + j, v[j], bad);
      d[j] = 0.f;
      if (!mask.skipped(c + j) && v[j] != -INFINITY) {
        const float z = p.scale * v[j];
        const float e = expf(-fabsf(z));
        const float sig = z < 0.f ? e / (1.f + e) : 1.f / (1.f + e);
        loss += fmaxf(z, 0.f) + log1pf(e);
        d[j] = u * sig;
        dsc += d[j] * v[j];
      }
      d[j] *= p.scale;
    }
    if (g) store_pack<TG>(g + c, d);
  });
  bad = warp_min(bad);
  if (threadIdx.x % kWarp == 0) sbad[threadIdx.x / kWarp] = bad;
  loss = block_sum(loss, sred);  // its barriers also order the sweep's stores before the positives'
  dsc = block_sum(dsc, sred);
  double sums[2] = {0, 0};
  for (int64_t e = p.pos_ptr[row] + threadIdx.x; e < p.pos_ptr[row + 1]; e += blockDim.x) {
    const float xe = p.pos_x[e];
    const double y = p.pos_w ? p.pos_w[e] : 1.0;
    const double z = double(p.scale * xe);
    sums[0] += bce_loss(xe == -INFINITY ? -INFINITY : z, y);
    if (xe == -INFINITY) continue;
    const double dz = double(u) * bce_slope(z, y);
    store<TG>(p, row, p.pos_cols[e], float(dz * double(p.scale)));
    sums[1] += dz * double(xe);
  }
  block_sums<kThreads>(sums, sd);
  if (threadIdx.x == 0) {
    for (int w = 0; w < kWarps; ++w) bad = min(bad, sbad[w]);  // written before block_sum's barriers
    if (bad != INT64_MAX) atomicMin(p.first_bad, bad);
    p.row_loss[row] = double(loss) + sums[0];
    p.dscale_part[row] = float(double(dsc) + sums[1]);
  }
}

// The softmax losses: the row on chip when it fits one block's shared memory or (sm_90) a
// cluster's, else one block a row reading it twice. bce: one block a row, one read.
template <class T, class TG, Kind K>
void launch(const PlParams& p, const DeviceLimits& dev) {
  if constexpr (K == Kind::Bce) {
    bce_kernel<T, TG><<<unsigned(p.rows), kThreads>>>(p);
    check_launch("binaryCrossEntropy kernel");
  } else {
    const char* what = K == Kind::Decoupled ? "decoupledSoftmax kernel" : "multiLabelSoftmax kernel";
    auto* block_kernel = softmax_kernel<T, TG, K, true, false>;
    auto* cluster_kernel = softmax_kernel<T, TG, K, true, true>;
    const size_t limit = raise_on_chip_smem(dev.smem_optin, dev.cc_major, block_kernel, cluster_kernel);
    const RowOnChip plan = row_on_chip_grid(p.rows, p.cols, int64_t(sizeof(T)), limit, dev.cc_major);
    if (plan.blocks_per_row > 0 && launch_on_chip(plan, p.rows, kThreads, block_kernel, cluster_kernel, p, plan.slice)) {
      check_launch(what);
      return;
    }
    softmax_kernel<T, TG, K, false, false><<<unsigned(p.rows), kThreads>>>(p, p.cols);
    check_launch(what);
  }
}

template <Kind K>
void dispatch(const PlParams& p, DType dtype, bool grad_float32, const DeviceLimits& dev) {
  switch (dtype) {
    case DType::Float32: launch<float, float, K>(p, dev); break;
    case DType::Float16: grad_float32 ? launch<f16_t, float, K>(p, dev) : launch<f16_t, f16_t, K>(p, dev); break;
    case DType::BFloat16: grad_float32 ? launch<bf16_t, float, K>(p, dev) : launch<bf16_t, bf16_t, K>(p, dev); break;
  }
}

template <Kind K>
LossResult run(const PositivesLossArgs& a) {
  // An exclusion that is also a positive is an error (ERR_CSR), for every kind. The kernels skip
  // positives ∪ exclusions, or the exclusions only for the multi-label softmax.
  { const SkipLists overlap(a.rows, a.positives, a.exclude); }
  if (a.rows == 0) return {0, 0};
  if (a.rows > INT32_MAX) fail("ERR_SHAPE", "scores: too many rows for one launch");
  const DeviceScope on(device_of(a.scores));
  const int64_t nnz = a.positives.nnz(a.rows);
  const int64_t excl_nnz = a.exclude.nnz(a.rows), mask_words = (a.cols + 31) / 32;
  Scratch s(positives_scratch_bytes(a.rows, nnz, excl_nnz, mask_words));
  PlParams p{};
  p.x = a.scores;
  p.grad = a.grad;
  p.rows = a.rows;
  p.cols = a.cols;
  p.scale = a.scale;
  p.pos_ptr = s.upload(a.positives.row_ptr, a.rows + 1);
  p.pos_cols = s.upload(a.positives.cols, nnz);
  const CsrView excl = a.exclude ? CsrView{s.upload(a.exclude.row_ptr, a.rows + 1), s.upload(a.exclude.cols, excl_nnz)} : CsrView{};
  p.skip_a = excl;
  if (K != Kind::MultiLabel) p.skip_b = CsrView{p.pos_ptr, p.pos_cols};
  p.mask = s.take<uint32_t>(a.rows * mask_words);
  p.mask_words = mask_words;
  p.pos_w = a.positives.weights ? s.upload(a.positives.weights, nnz) : nullptr;
  p.grad_output = a.grad_output && a.reduction == Reduction::None ? s.upload(a.grad_output, a.rows) : nullptr;
  p.reduction = int(a.reduction);
  p.mean_divisor = K == Kind::Bce ? double(a.rows) * double(a.cols) : double(a.rows);
  p.grad_scale = a.grad_scale;
  p.pos_x = s.take<float>(nnz);
  p.pos_dz = s.take<float>(nnz);
  p.row_loss = s.take<double>(a.rows);
  p.dscale_part = s.take<float>(a.rows);
  p.first_bad = s.take<long long>(1);
  p.result = s.take<double>(2);
  const long long none = INT64_MAX;
  copy_to_device(p.first_bad, &none, sizeof none);

  dispatch<K>(p, a.dtype, a.grad_dtype == DType::Float32, device_limits());
  sum_rows_kernel<<<1, 256>>>(p.row_loss, p.rows, p.dscale_part, p.rows, p.result);
  check_launch("positives loss reduce kernel");

  long long bad = 0;
  copy_to_host(&bad, p.first_bad, sizeof bad);
  if (bad != INT64_MAX)
    fail_non_finite("scores", bad / a.cols, bad % a.cols);
  double result[2];
  copy_to_host(result, p.result, sizeof result);
  std::vector<double> row_loss(size_t(a.rows));
  copy_to_host(row_loss.data(), p.row_loss, row_loss.size() * sizeof(double));
  for (int64_t i = 0; i < a.rows; ++i) a.row_loss[i] = float(row_loss[size_t(i)]);
  s.release();
  const double loss = a.reduction == Reduction::Mean && p.mean_divisor > 0 ? result[0] / p.mean_divisor : result[0];
  return {loss, a.grad_scale ? result[1] : 0.0};
}

}  // namespace

LossResult decoupled_softmax(const PositivesLossArgs& args) { return run<Kind::Decoupled>(args); }
LossResult multi_label_softmax(const PositivesLossArgs& args) { return run<Kind::MultiLabel>(args); }
LossResult binary_cross_entropy(const PositivesLossArgs& args) { return run<Kind::Bce>(args); }

}  // namespace fl::cuda
