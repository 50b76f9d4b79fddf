// softmaxCrossEntropy on the GPU (MATH softmaxCrossEntropy, native/ops/cross_entropy_math.h). The per-row math is cross_entropy_row() from
// native/ops/cross_entropy_math.h, shared with the CPU.
//
// Three layouts (cuda/plan.h ce_plan), same arithmetic:
//  - on chip (B ≥ 2·SMs, the row fits the shared memory of one block, or of a cluster of up to
//    8 on sm_90: about 58K float32 / 116K bf16 columns a block on an H100): the row is read once
//    into shared memory with the statistics, and the gradient is computed from there: 1 read
//    of the logits + 1 write of the gradient in HBM;
//  - one block per row (B large, N up to kFusedCols, the row too wide for the above): the block
//    sweeps its row twice, for the statistics and then for the gradient; the second sweep finds
//    the row in L2 only while the rows in flight fit it;
//  - tiles (few rows, or very wide rows): a statistics kernel per (row, tile), a per-row
//    kernel that merges the tiles and computes the row's terms, and a gradient kernel per
//    (row, tile). Wide rows then fill the GPU, at the cost of a second read.
// The label's whole gradient comes from the row's terms (d = label_dz at j = y), so it is
// computed in fp32 and rounded once. Passes over memory: on chip 1 read + 1 write (at 4096×131072
// float32: a cluster of 3 blocks per row on an H100); fused 2 reads of the logits (the second
// from L2 only while the rows in flight fit it) + 1 write; tiled 2 reads + 1 write. 16-byte loads (kInFlight in flight per thread) and 16-byte
// gradient stores. e^(z − max) by exp2f (MUFU, ≤ 2 ulp), tanhf for the softcap, IEEE division;
// the row's terms in double. Losses and dScale partials are written per row / per
// block and summed in a fixed order by one final block: no float atomics.
#include <algorithm>
#include <cstdint>
#include <string>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/ops/cross_entropy.h"
#include "../native/ops/cross_entropy_math.h"
#include "check.cuh"
#include "common.cuh"
#include "row_kernels.cuh"
#include "runtime.h"

namespace fl::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int64_t kFusedCols = 262144;  // widest row one block sweeps alone
constexpr int64_t kTileCols = 32768;    // tile width of the tiled layout

struct RowTerms {
  float shift;        // the row's max z: p_j = coef-part · e^(z_j − shift) (not the lse:
                      // rounded to float, that is off by an ulp of lse)
  float coef, bias, colw_coef, label_dz;
};

// dscale_part: one per block (rows·tiles, or rows·blocks_per_row on chip).
struct CeParams : RowLossParams {
  int64_t tiles;              // tiles per row: 1 but in the tiled layout
  float cap;                  // 0: no softcap
  const int32_t* labels;
  int32_t ignore_index;
  const float* class_weights;
  float label_smoothing, z_loss, n_cols, mean_w;
  bool want_lin;
  float2* part;               // rows·tiles (max, rest) (OnlineSumExp)
  float* part_lin;            // rows·tiles Σ w_j z_j
  RowTerms* terms;            // rows
  float* lse;                 // rows
};

template <bool kSoftcap>
__device__ __forceinline__ float transform(float x, float scale, float cap) {
  if constexpr (kSoftcap) return cap * tanhf(scale * x / cap);
  else return scale * x;
}

// Statistics of z over [c0, c1) of a row, merged into thread 0: (max, rest) and Σ w·z·2^-64.
template <class T, bool kSoftcap>
// With `stash` (shared memory), the values also stay on chip: stash[c − c0].
__device__ void tile_stats(const CeParams& p, int64_t row, int64_t c0, int64_t c1, OnlineSumExp& s, float& lin, T* stash = nullptr) {
  __shared__ float smax[kThreads / kWarp], srest[kThreads / kWarp], slin[kThreads / kWarp];
  __shared__ long long sbad[kThreads / kWarp];
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  long long bad = INT64_MAX;
  lin = 0.f;
  for_each_pack(x, c0, c1, [&](int64_t c0v, auto& vs) {
#pragma unroll
    for (int j = 0; j < length_of<decltype(vs)>; ++j) {
      const int64_t c = c0v + j;
      const float v = vs[j];
      if (stash) stash[c - c0] = from_float<T>(v);  // exact: v came from a T
      if (is_bad(v)) bad = min(bad, (long long)(row * p.cols + c));
      const float z = transform<kSoftcap>(v, p.scale, p.cap);
      s.add(v == -INFINITY ? -INFINITY : z);  // −inf is out, also under a softcap (→ −cap)
      // Σ w·z on z·2^-64 (exact scaling) so that huge logits cannot overflow the float sum.
      if (p.want_lin && v != -INFINITY) lin += (p.class_weights ? p.class_weights[c] : 1.f) * (z * 0x1p-64f);
    }
  });
  block_merge<kThreads>(s, bad, smax, srest, sbad);
  if (p.want_lin) lin = block_sum(lin, slin);
  if (threadIdx.x == 0 && bad != INT64_MAX) atomicMin(p.first_bad, bad);  // integer min: order-free
}

// The label's logit (0 for an ignored row, whose label may be any index). Read before any block of
// the row stores a gradient: with an in-place gradient that store overwrites it.
template <class T>
__device__ __forceinline__ float label_logit(const CeParams& p, int64_t row) {
  const int32_t y = p.labels[row];
  return y == p.ignore_index ? 0.f : to_float(static_cast<const T*>(p.x)[row * p.cols + y]);
}

// The row's loss and gradient terms from its merged statistics and its label's logit x_y
// (label_logit; one thread; `owner`: the one that writes the row's lse and loss, when several
// blocks compute the same terms).
template <class T, bool kSoftcap>
__device__ RowTerms finish_row(const CeParams& p, int64_t row, float max, float rest, float lin, float x_y, bool owner = true) {
  const double lse = max == -INFINITY ? -INFINITY : double(max) + log1p(double(rest));
  if (owner) p.lse[row] = float(lse);
  const int32_t y = p.labels[row];
  if (y == p.ignore_index) {
    if (owner) p.row_loss[row] = 0;
    return RowTerms{max, 0.f, 0.f, 0.f, 0.f};
  }
  // A label at −inf is out, as in the statistics sweep: −inf, not the softcap's −cap (the loss is
  // then +inf, as on the CPU).
  const float z_y = x_y == -INFINITY ? -INFINITY : transform<kSoftcap>(x_y, p.scale, p.cap);
  const double u = p.up.at(row);
  const double w_y = p.class_weights ? p.class_weights[y] : 1.0;
  // The label is the row max when its z equals max (as tile_stats computed it, bitwise).
  const LabelTerms lt = label_terms(z_y == max, double(rest), lse, double(z_y));
  const CrossEntropyRow r = cross_entropy_row(lse, lt.margin, lt.p_minus_one, double(lin) * 0x1p64, w_y, p.mean_w, p.n_cols, p.label_smoothing, p.z_loss, u);
  if (owner) p.row_loss[row] = r.loss;
  RowTerms t{max, float(r.coef / (1.0 + double(rest))), 0.f, 0.f, r.label_dz};
  if (p.class_weights) t.colw_coef = -r.smooth;
  else t.bias = -r.smooth;
  return t;
}

// dℓ/dx at column c of value v (0 at −inf), and its dScale term added to dsc.
template <bool kSoftcap>
__device__ __forceinline__ float grad_at(const CeParams& p, const RowTerms& t, int32_t y, int64_t c, float v, float& dsc) {
  if (v == -INFINITY) return 0.f;
  float z, dzdx, dzds;
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
  float d = t.coef * exp_shifted(z, t.shift) + t.bias + (p.class_weights ? t.colw_coef * p.class_weights[c] : 0.f);
  if (c == y) d = t.label_dz;
  dsc += d * dzds;
  return d * dzdx;
}

// The gradient sweep over [c0, c1) from the logits in HBM: returns this thread's share of dScale.
template <class T, class TG, bool kSoftcap>
__device__ float tile_grad(const CeParams& p, int64_t row, int64_t c0, int64_t c1, const RowTerms& t) {
  const T* x = static_cast<const T*>(p.x) + row * p.cols;
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  const int32_t y = p.labels[row];
  float dsc = 0.f;
  for_each_pack(x, c0, c1, [&](int64_t c, auto& vs) {
    constexpr int n = length_of<decltype(vs)>;
    float out[n];
#pragma unroll
    for (int j = 0; j < n; ++j) out[j] = grad_at<kSoftcap>(p, t, y, c + j, vs[j], dsc);
    if (g) store_pack<TG>(g + c, out);
  });
  return dsc;
}

// On-chip layout: the row (a slice of it per block of a cluster, sm_90) stays in shared memory
// between the statistics and the gradient: one read of the logits and one write of the gradient
// in HBM. The blocks of a cluster merge their statistics through distributed shared memory in
// rank order, so each computes the same row terms.
template <class T, class TG, bool kSoftcap, bool kCluster>
__global__ void __launch_bounds__(kThreads) ce_onchip_kernel(CeParams p, int64_t slice) {
  extern __shared__ __align__(16) unsigned char ce_smem[];
  T* xs = reinterpret_cast<T*>(ce_smem);
  __shared__ RowTerms terms;
  __shared__ float sred[kThreads / kWarp];
  const RowGroup<kCluster> grp = row_group<kCluster>();
  const int64_t row = blockIdx.x / grp.ranks;
  const int64_t c0 = min(p.cols, int64_t(grp.rank) * slice), c1 = min(p.cols, c0 + slice);
  OnlineSumExp s;
  float lin;
  tile_stats<T, kSoftcap>(p, row, c0, c1, s, lin, xs);
  // Before merge_over_row's barriers: after them another block of the cluster may store the
  // label's gradient over its logit (in place).
  const float x_y = threadIdx.x == 0 ? label_logit<T>(p, row) : 0.f;
  merge_over_row(grp, s, lin);
  if (threadIdx.x == 0) terms = finish_row<T, kSoftcap>(p, row, s.max, s.rest, lin, x_y, grp.rank == 0);
  __syncthreads();  // also: the stash is complete
  const RowTerms t = terms;
  if (!p.grad && !p.grad_scale) return;
  TG* g = p.grad ? static_cast<TG*>(p.grad) + row * p.cols : nullptr;
  const int32_t y = p.labels[row];
  float dsc = 0.f;
  for_each_on_chip(xs, g, c0, c1, [&](int64_t c, float v) { return grad_at<kSoftcap>(p, t, y, c, v, dsc); });
  dsc = block_sum(dsc, sred);
  if (threadIdx.x == 0) p.dscale_part[blockIdx.x] = dsc;
}

// Fused layout: one block per row.
template <class T, class TG, bool kSoftcap>
__global__ void __launch_bounds__(kThreads) ce_fused_kernel(CeParams p) {
  __shared__ RowTerms terms;
  __shared__ float sred[kThreads / kWarp];
  const int64_t row = blockIdx.x;
  OnlineSumExp s;
  float lin;
  tile_stats<T, kSoftcap>(p, row, 0, p.cols, s, lin);
  if (threadIdx.x == 0) terms = finish_row<T, kSoftcap>(p, row, s.max, s.rest, lin, label_logit<T>(p, row));
  __syncthreads();
  const RowTerms t = terms;
  if (!p.grad && !p.grad_scale) return;
  const float dsc = block_sum(tile_grad<T, TG, kSoftcap>(p, row, 0, p.cols, t), sred);
  if (threadIdx.x == 0) p.dscale_part[row] = dsc;
}

// Tiled layout, step 1: statistics per (row, tile).
template <class T, bool kSoftcap>
__global__ void __launch_bounds__(kThreads) ce_stats_kernel(CeParams p) {
  const int64_t row = blockIdx.x / p.tiles, tile = blockIdx.x % p.tiles;
  const int64_t c0 = tile * kTileCols, c1 = min(p.cols, c0 + kTileCols);
  OnlineSumExp s;
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
  OnlineSumExp s;
  float lin = 0.f;
  for (int64_t k = 0; k < p.tiles; ++k) {
    const float2 q = p.part[row * p.tiles + k];
    s.merge(q.x, q.y);
    lin += p.part_lin[row * p.tiles + k];
  }
  p.terms[row] = finish_row<T, kSoftcap>(p, row, s.max, s.rest, lin, label_logit<T>(p, row));
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

// Launches the on-chip layout; false when a cluster of that size cannot be resident here (the
// caller then takes the fused or tiled layout).
template <class T, class TG, bool kSoftcap>
bool launch_onchip(const CeParams& p, const CePlan& plan) {
  const RowOnChip r{plan.blocks_per_row, plan.slice, plan.dynamic_smem};
  if (!launch_on_chip(r, p.rows, kThreads, ce_onchip_kernel<T, TG, kSoftcap, false>, ce_onchip_kernel<T, TG, kSoftcap, true>, p, plan.slice))
    return false;
  check_launch(plan.blocks_per_row == 1 ? "softmaxCrossEntropy on-chip kernel" : "softmaxCrossEntropy on-chip cluster kernel");
  return true;
}

template <class T, class TG, bool kSoftcap>
void launch(CeParams& p, const CePlan& plan) {
  if (plan.layout == CeLayout::Fused) {
    ce_fused_kernel<T, TG, kSoftcap><<<unsigned(p.rows), kThreads>>>(p);
    check_launch("softmaxCrossEntropy fused kernel");
    return;
  }
  const unsigned blocks = unsigned(p.rows * p.tiles);
  ce_stats_kernel<T, kSoftcap><<<blocks, kThreads>>>(p);
  check_launch("softmaxCrossEntropy statistics kernel");
  ce_terms_kernel<T, kSoftcap><<<unsigned((p.rows + 127) / 128), 128>>>(p);
  check_launch("softmaxCrossEntropy row kernel");
  if (p.grad || p.grad_scale) {
    ce_grad_kernel<T, TG, kSoftcap><<<blocks, kThreads>>>(p);
    check_launch("softmaxCrossEntropy gradient kernel");
  }
}

}  // namespace

LossResult cross_entropy(const CrossEntropyArgs& a) {
  const CrossEntropyTotals totals = cross_entropy_totals(a);  // also validates the labels
  if (a.rows == 0) return {0, 0};
  const DeviceScope on(device_of(a.scores));
  const DeviceLimits dev = device_limits();
  // Calls f(T{}, TG{}, softcap) with the logits' and the gradient's types.
  auto with_types = [&](auto&& f) {
    dtype_switch(a.dtype, a.grad_dtype, [&](auto t, auto tg) { bool_switch(a.softcap > 0, [&](auto cap) { f(t, tg, cap); }); });
  };
  size_t limit = 0;
  with_types([&](auto t, auto tg, auto cap) {
    using T = decltype(t);
    using TG = decltype(tg);
    constexpr bool kCap = decltype(cap)::value;
    limit = raise_on_chip_smem(dev.smem_optin, dev.cc_major, ce_onchip_kernel<T, TG, kCap, false>, ce_onchip_kernel<T, TG, kCap, true>);
  });
  CePlan plan = ce_plan(a.rows, a.cols, dtype_size(a.dtype), dev.sms, kFusedCols, kTileCols, limit, dev.cc_major);
  // Where a cluster cannot be resident (checked at launch), the layout without shared memory.
  const CePlan fallback = ce_plan(a.rows, a.cols, dtype_size(a.dtype), dev.sms, kFusedCols, kTileCols, 0, 0);
  const int64_t blocks = a.rows * std::max({plan.tiles, int64_t(plan.blocks_per_row), fallback.tiles});
  if (blocks > INT32_MAX) fail(err::kShape, "logits: too many rows for one launch");

  CeParams p{};
  static_cast<RowLossParams&>(p) = row_loss_params(a);
  p.tiles = plan.tiles;
  p.cap = a.softcap;
  p.ignore_index = a.ignore_index;
  p.label_smoothing = a.label_smoothing;
  p.z_loss = a.z_loss;
  p.n_cols = float(a.cols);
  p.mean_w = float(totals.mean_class_weight);
  p.want_lin = a.label_smoothing > 0;
  // 'mean': 1/Σw_y, rounded to float as the kernels have always taken it.
  const double mean_scale = totals.weight_sum > 0 ? double(float(1.0 / totals.weight_sum)) : 0.0;
  Scratch s([&](auto& c) {
    carve_row_loss(c, p, a.reduction, a.grad_output, mean_scale, blocks);
    p.labels = c.upload(a.labels, a.rows);
    p.class_weights = a.class_weights ? c.upload(a.class_weights, a.cols) : nullptr;
    p.part = c.template take<float2>(blocks);
    p.part_lin = c.template take<float>(blocks);
    p.terms = c.template take<RowTerms>(a.rows);
    p.lse = c.template take<float>(a.rows);
  });
  start_row_loss(p, blocks);  // dScale partials that are not written stay 0

  with_types([&](auto t, auto tg, auto cap) {
    using T = decltype(t);
    using TG = decltype(tg);
    constexpr bool kCap = decltype(cap)::value;
    if (plan.layout == CeLayout::OnChip && launch_onchip<T, TG, kCap>(p, plan)) return;
    if (plan.layout == CeLayout::OnChip) {  // a cluster that cannot be resident here
      plan = fallback;
      p.tiles = plan.tiles;
    }
    launch<T, TG, kCap>(p, plan);
  });
  throw_if_bad(p.first_bad, a.cols, "logits");
  const RowTotals r = sum_rows(p.row_loss, p.rows, p.dscale_part, blocks, p.result, a.row_loss);
  if (a.lse) copy_to_host(a.lse, p.lse, size_t(a.rows) * 4);
  s.release();
  const double loss = a.reduction == Reduction::Mean ? mean_of(r.loss, totals.weight_sum) : r.loss;
  return {loss, a.grad_scale ? r.dscale : 0.0};
}

}  // namespace fl::cuda
