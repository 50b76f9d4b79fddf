// decoupledSoftmax (SPEC 3.4), multiLabelSoftmax (SPEC 3.2) and binaryCrossEntropy (SPEC 3.6)
// on the GPU. The per-positive math is native/ops/positives_math.h, shared with the CPU.
//
// One block per row. The row's skip list (positives ∪ exclusions, or exclusions only for the
// multi-label softmax; sorted, built once per call on the host: native/ops/csr.h) is walked by
// each thread with a pointer that only moves forward, since a thread's columns increase. Per
// row the block
//   1. reads its positives' scores (before an in-place sweep can overwrite them);
//   2. softmax losses: the statistics sweep over the columns not skipped (online max and
//      rest = Σ − 1 in base 2), then one thread turns them and the positives into the row's loss, the dense
//      coefficient and each positive's exact dℓ/dz;
//   3. the gradient sweep (skipped columns get 0; bce computes its loss here too);
//   4. the positives' gradients overwrite the dense ones, rounded once.
// Row losses and dScale partials go to per-row slots, summed in a fixed order by one final
// block: no float atomics (the first-bad index uses an integer atomicMin, which is order-free).
#include <cstdint>
#include <string>
#include <vector>

#include "../native/core/error.h"
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
constexpr float kLog2e = 1.4426950408889634f;

enum class Kind { Decoupled, MultiLabel, Bce };

struct PlParams {
  const void* x;
  void* grad;  // null: no gradient (dScale may still be wanted)
  int64_t rows, cols;
  float scale;
  const int64_t* skip_off;  // rows + 1
  const int32_t* skip_cols;
  const int32_t* pos_ptr;   // rows + 1
  const int32_t* pos_cols;
  const float* pos_w;       // null: every weight 1
  const float* grad_output; // reduction None only
  int reduction;
  double mean_divisor;      // B, or B·N for bce
  bool want_dscale;
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

// The softmax losses: statistics, the row's terms (thread 0), the gradient sweep, the positives.
template <class T, class TG, Kind K>
__global__ void __launch_bounds__(kThreads) softmax_kernel(PlParams p) {
  __shared__ float smax[kThreads / kWarp], srest[kThreads / kWarp], sred[kThreads / kWarp];
  __shared__ long long sbad[kThreads / kWarp];
  __shared__ float shift2, coef;
  const int64_t row = blockIdx.x;
  const int32_t* skip = p.skip_cols + p.skip_off[row];
  const int32_t* skip_end = p.skip_cols + p.skip_off[row + 1];
  read_positives<T>(p, row);

  Online2 s;
  long long bad = INT64_MAX;
  SkipCursor cur(skip, skip_end);
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const float v = score<T>(p, row, c);
    note_bad(p, row, c, v, bad);  // skipped columns are checked too
    if (!cur.skipped(c)) s.add(v == -INFINITY ? -INFINITY : p.scale * v * kLog2e);
  }
  block_merge<kThreads>(s, bad, smax, srest, sbad);
  if (threadIdx.x == 0) {
    if (bad != INT64_MAX) atomicMin(p.first_bad, bad);
    const double rest = s.rest;
    const double lse = s.max == -INFINITY ? -INFINITY : double(s.max) * 0.6931471805599453 + log1p(rest);
    const double u = upstream(p, row);
    const int64_t e0 = p.pos_ptr[row], e1 = p.pos_ptr[row + 1];
    double loss = 0, dense = 0;
    if (K == Kind::Decoupled) {
      // lse is Z, the negatives' log-sum-exp: positives and exclusions are skipped.
      const double inv_n = e1 > e0 ? 1.0 / double(e1 - e0) : 0.0;
      for (int64_t e = e0; e < e1; ++e) {
        const double w = p.pos_w ? p.pos_w[e] : 1.0;
        const float x = p.pos_x[e];
        const DecoupledPositive d = decoupled_positive(x == -INFINITY ? -INFINITY : double(p.scale * x), lse, w);
        loss += d.loss;
        dense += w * d.s;
        p.pos_dz[e] = float(-u * w * inv_n * d.s);
      }
      loss *= inv_n;
      dense *= inv_n;
    } else {
      // lse over every column not excluded; ℓ = Σ_p w_p (lse − z_p), dℓ/dz_j = W·p_j − w_j[j ∈ P].
      double W = 0;
      for (int64_t e = e0; e < e1; ++e) W += p.pos_w ? p.pos_w[e] : 1.0;
      for (int64_t e = e0; e < e1; ++e) {
        const double w = p.pos_w ? p.pos_w[e] : 1.0;
        const float x = p.pos_x[e];
        if (x == -INFINITY) {
          if (w > 0) loss = INFINITY;
          p.pos_dz[e] = 0.f;
          continue;
        }
        // A positive that is the row max (bitwise as the sweep saw it) uses lse − z = log1p(rest)
        // and p − 1 = −rest/(1 + rest): exact however confident the row; elsewhere p ≤ 1/2.
        const float z = p.scale * x;
        const bool is_max = z * kLog2e == s.max;
        loss += w * (is_max ? log1p(rest) : lse - double(z));
        p.pos_dz[e] = float(u * (is_max ? (W - w) - W * rest / (1.0 + rest) : W * exp(double(z) - lse) - w));
      }
      dense = lse == -INFINITY ? 0.0 : W;
    }
    p.row_loss[row] = loss;
    shift2 = s.max;
    coef = s.max == -INFINITY ? 0.f : float(u * dense / (1.0 + rest));
  }
  __syncthreads();
  const float sh = shift2, cf = coef;
  float dsc = 0.f;
  if (p.grad || p.want_dscale) {
    cur = SkipCursor(skip, skip_end);
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float v = score<T>(p, row, c);
      float d = 0.f;
      if (!cur.skipped(c) && v != -INFINITY) d = cf * exp2f(p.scale * v * kLog2e - sh);
      store<TG>(p, row, c, d * p.scale);
      if (d != 0.f) dsc += d * v;
    }
  }
  dsc = block_sum(dsc, sred);  // also orders the sweep's stores before the positives' below
  if (threadIdx.x == 0) {
    // The positives' exact gradients replace the dense ones (0 where skipped), and dScale
    // trades the dense term for the exact one.
    double fix = 0;
    for (int64_t e = p.pos_ptr[row]; e < p.pos_ptr[row + 1]; ++e) {
      const float x = p.pos_x[e];
      if (x == -INFINITY) continue;
      const float dense = K == Kind::MultiLabel ? cf * exp2f(p.scale * x * kLog2e - sh) : 0.f;
      store<TG>(p, row, p.pos_cols[e], p.pos_dz[e] * p.scale);
      fix += (double(p.pos_dz[e]) - double(dense)) * double(x);
    }
    p.dscale_part[row] = float(double(dsc) + fix);
  }
}

// binaryCrossEntropy: elementwise over the columns not skipped, then the positives.
template <class T, class TG>
__global__ void __launch_bounds__(kThreads) bce_kernel(PlParams p) {
  __shared__ float sred[kThreads / kWarp];
  __shared__ long long sbad[kThreads / kWarp];
  const int64_t row = blockIdx.x;
  read_positives<T>(p, row);
  __syncthreads();  // the positives' scores are read before the sweep writes 0 over them
  const float u = float(upstream(p, row));
  SkipCursor cur(p.skip_cols + p.skip_off[row], p.skip_cols + p.skip_off[row + 1]);
  float loss = 0.f, dsc = 0.f;
  long long bad = INT64_MAX;
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const float v = score<T>(p, row, c);
    note_bad(p, row, c, v, bad);
    float g = 0.f;
    if (!cur.skipped(c) && v != -INFINITY) {
      const float z = p.scale * v;
      const float e = expf(-fabsf(z));
      const float sig = z < 0.f ? e / (1.f + e) : 1.f / (1.f + e);
      loss += fmaxf(z, 0.f) + log1pf(e);
      g = u * sig;
      dsc += g * v;
    }
    store<TG>(p, row, c, g * p.scale);
  }
  bad = warp_min(bad);
  if (threadIdx.x % kWarp == 0) sbad[threadIdx.x / kWarp] = bad;
  loss = block_sum(loss, sred);
  dsc = block_sum(dsc, sred);
  if (threadIdx.x == 0) {
    for (int w = 0; w < kThreads / kWarp; ++w) bad = min(bad, sbad[w]);  // written before block_sum's barriers
    if (bad != INT64_MAX) atomicMin(p.first_bad, bad);
    double l = loss, d = dsc;
    for (int64_t e = p.pos_ptr[row]; e < p.pos_ptr[row + 1]; ++e) {
      const float x = p.pos_x[e];
      const double y = p.pos_w ? p.pos_w[e] : 1.0;
      const double z = double(p.scale * x);
      l += bce_loss(x == -INFINITY ? -INFINITY : z, y);
      if (x == -INFINITY) continue;
      const double dz = double(u) * bce_slope(z, y);
      store<TG>(p, row, p.pos_cols[e], float(dz * double(p.scale)));
      d += dz * double(x);
    }
    p.row_loss[row] = l;
    p.dscale_part[row] = float(d);
  }
}

template <class T, class TG, Kind K>
void launch(const PlParams& p) {
  if constexpr (K == Kind::Bce) bce_kernel<T, TG><<<unsigned(p.rows), kThreads>>>(p);
  else softmax_kernel<T, TG, K><<<unsigned(p.rows), kThreads>>>(p);
  check_launch(K == Kind::Bce ? "binaryCrossEntropy kernel" : K == Kind::Decoupled ? "decoupledSoftmax kernel" : "multiLabelSoftmax kernel");
}

template <Kind K>
void dispatch(const PlParams& p, DType dtype, bool grad_float32) {
  switch (dtype) {
    case DType::Float32: launch<float, float, K>(p); break;
    case DType::Float16: grad_float32 ? launch<f16_t, float, K>(p) : launch<f16_t, f16_t, K>(p); break;
    case DType::BFloat16: grad_float32 ? launch<bf16_t, float, K>(p) : launch<bf16_t, bf16_t, K>(p); break;
  }
}

template <Kind K>
LossResult run(const PositivesLossArgs& a) {
  // Skip lists on the host; building positives ∪ exclusions rejects an exclusion that is also
  // a positive. The multi-label softmax skips the exclusions only.
  SkipLists skips(a.rows, a.positives, a.exclude);
  if (K == Kind::MultiLabel) skips = SkipLists(a.rows, a.exclude, Csr{});
  if (a.rows == 0) return {0, 0};
  if (a.rows > INT32_MAX) fail("ERR_SHAPE", "scores: too many rows for one launch");
  const int64_t nnz = a.positives.nnz(a.rows);
  const int64_t nskip = int64_t(skips.all_cols().size());
  Scratch s(size_t(a.rows + 1) * 12 + size_t(nskip) * 4 + size_t(nnz) * 16 + size_t(a.rows) * (4 + 8 + 4) + 16 * 256);
  PlParams p{};
  p.x = a.scores;
  p.grad = a.grad;
  p.rows = a.rows;
  p.cols = a.cols;
  p.scale = a.scale;
  p.skip_off = s.upload(skips.offsets().data(), a.rows + 1);
  p.skip_cols = s.upload(skips.all_cols().data(), nskip);
  p.pos_ptr = s.upload(a.positives.row_ptr, a.rows + 1);
  p.pos_cols = s.upload(a.positives.cols, nnz);
  p.pos_w = a.positives.weights ? s.upload(a.positives.weights, nnz) : nullptr;
  p.grad_output = a.grad_output && a.reduction == Reduction::None ? s.upload(a.grad_output, a.rows) : nullptr;
  p.reduction = int(a.reduction);
  p.mean_divisor = K == Kind::Bce ? double(a.rows) * double(a.cols) : double(a.rows);
  p.want_dscale = a.want_dscale;
  p.pos_x = s.take<float>(nnz);
  p.pos_dz = s.take<float>(nnz);
  p.row_loss = s.take<double>(a.rows);
  p.dscale_part = s.take<float>(a.rows);
  p.first_bad = s.take<long long>(1);
  p.result = s.take<double>(2);
  const long long none = INT64_MAX;
  FL_CUDA_CHECK(cudaMemcpy(p.first_bad, &none, sizeof none, cudaMemcpyHostToDevice));

  dispatch<K>(p, a.dtype, a.grad_float32);
  sum_rows_kernel<<<1, 256>>>(p.row_loss, p.rows, p.dscale_part, p.rows, p.result);
  check_launch("positives loss reduce kernel");

  long long bad = 0;
  FL_CUDA_CHECK(cudaMemcpy(&bad, p.first_bad, sizeof bad, cudaMemcpyDeviceToHost));
  if (bad != INT64_MAX)
    fail("ERR_NON_FINITE", "scores: expected finite values or -Infinity, received NaN or +Infinity at [" + std::to_string(bad / a.cols) +
                               ", " + std::to_string(bad % a.cols) + "]");
  double result[2];
  FL_CUDA_CHECK(cudaMemcpy(result, p.result, sizeof result, cudaMemcpyDeviceToHost));
  std::vector<double> row_loss(size_t(a.rows));
  FL_CUDA_CHECK(cudaMemcpy(row_loss.data(), p.row_loss, row_loss.size() * sizeof(double), cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < a.rows; ++i) a.row_loss[i] = float(row_loss[size_t(i)]);
  const double loss = a.reduction == Reduction::Mean && p.mean_divisor > 0 ? result[0] / p.mean_divisor : result[0];
  return {loss, a.want_dscale ? result[1] : 0.0};
}

}  // namespace

LossResult decoupled_softmax(const PositivesLossArgs& args) { return run<Kind::Decoupled>(args); }
LossResult multi_label_softmax(const PositivesLossArgs& args) { return run<Kind::MultiLabel>(args); }
LossResult binary_cross_entropy(const PositivesLossArgs& args) { return run<Kind::Bce>(args); }

}  // namespace fl::cuda
