// decoupledSoftmax (MATH decoupledSoftmax, native/ops/positives_math.h), multiLabelSoftmax (MATH multiLabelSoftmax, native/ops/positives_math.h) and binaryCrossEntropy (MATH binaryCrossEntropy, native/ops/positives_math.h)
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

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/ops/csr.h"
#include "../native/ops/positives_math.h"
#include "check.cuh"
#include "common.cuh"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / kWarp;

enum class Kind { Decoupled, MultiLabel, Bce };

// The softmax losses (row_kernels.cuh softmax_row): statistics, the positives' terms, the
// gradient sweep, the positives' exact gradients.
template <class T, class TG, Kind K, bool kOnChip, bool kCluster>
__global__ void __launch_bounds__(kThreads) softmax_kernel(PositivesParams p, int64_t slice) {
  const int64_t row = blockIdx.x / row_group<kCluster>().ranks;
  const double u = p.up.at(row);
  const int64_t e0 = p.pos_ptr[row], e1 = p.pos_ptr[row + 1];
  // The multi-label softmax does not skip its positives (lse is over every column not excluded).
  softmax_row<T, TG, kThreads, kOnChip, kCluster, K == Kind::MultiLabel>(p, slice, u, [&](float max, double rest, double lse, double (&sums)[2], double* sd) {
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
__global__ void __launch_bounds__(kThreads) bce_kernel(PositivesParams p) {
  __shared__ float sred[kWarps];
  __shared__ long long sbad[kWarps];
  __shared__ double sd[kWarps * 2];
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  // The positives' scores, ordered before the sweep writes 0 over them by the mask's barriers.
  for (int64_t e = p.pos_ptr[row] + threadIdx.x; e < p.pos_ptr[row + 1]; e += blockDim.x) p.pos_x[e] = to_float(x[p.pos_cols[e]]);
  const RowMask mask = build_row_mask(p.mask + row * p.mask_words, p.cols, row, p.skip_a, p.skip_b);
  const float u = float(p.up.at(row));
  float loss = 0.f, dsc = 0.f;
  long long bad = INT64_MAX;
  for_each_pack(x, 0, p.cols, [&](int64_t c, auto& v) {
    constexpr int n = length_of<decltype(v)>;
    float d[n];
#pragma unroll
    for (int j = 0; j < n; ++j) {
      if (is_bad(v[j])) bad = min(bad, (long long)(row * p.cols + c + j));
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
    if (g) g[p.pos_cols[e]] = from_float<TG>(float(dz * double(p.scale)));
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
void launch(const PositivesParams& p, const DeviceLimits& dev) {
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
LossResult run(const PositivesLossArgs& a) {
  // An exclusion that is also a positive is an error (ERR_CSR), for every kind. The kernels skip
  // positives ∪ exclusions, or the exclusions only for the multi-label softmax.
  { const SkipLists overlap(a.rows, a.positives, a.exclude); }
  if (a.rows == 0) return {0, 0};
  if (a.rows > INT32_MAX) fail(err::kShape, "scores: too many rows for one launch");
  const DeviceScope on(device_of(a.scores));
  const double mean_divisor = K == Kind::Bce ? double(a.rows) * double(a.cols) : double(a.rows);
  PositivesParams p{};
  Scratch s([&](auto& c) {
    p = carve_positives(c, a, mean_divisor, a.positives, a.exclude, K != Kind::MultiLabel);
  });
  start_row_loss(p, p.rows);
  dtype_switch(a.dtype, a.grad_dtype, [&](auto t, auto tg) { launch<decltype(t), decltype(tg), K>(p, device_limits()); });
  return finish_loss(p, a.row_loss, a.reduction, mean_divisor, s);
}

}  // namespace

LossResult decoupled_softmax(const PositivesLossArgs& args) { return run<Kind::Decoupled>(args); }
LossResult multi_label_softmax(const PositivesLossArgs& args) { return run<Kind::MultiLabel>(args); }
LossResult binary_cross_entropy(const PositivesLossArgs& args) { return run<Kind::Bce>(args); }

}  // namespace fl::cuda
