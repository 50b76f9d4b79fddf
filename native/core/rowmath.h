// Per-row numerics shared by the CPU and CUDA kernels (FL_HD = host and device).
#pragma once
#include <cmath>
#include "hd.h"

namespace fl {

// Running (max, sum-exp) of a stream of scores: sum = Σ exp(x − max). Two partial states merge
// exactly (up to rounding), so a row can be split across SIMD lanes, threads or CUDA blocks and
// recombined in a fixed order: the result does not depend on how many workers there were.
// Acc is double on the host, where the partials of a 10^7-wide row are combined, so the
// combination adds no error that grows with N; CUDA uses float with a tree reduction.
template <class Acc>
struct MaxSumExp {
  float max;  // -inf when nothing (or only -inf) has been seen
  Acc sum;    // Σ exp(x − max); 0 when max is -inf
};

template <class Acc> FL_HD MaxSumExp<Acc> max_sum_exp_empty() { return MaxSumExp<Acc>{-INFINITY, Acc(0)}; }

template <class Acc> FL_HD void merge(MaxSumExp<Acc>& a, const MaxSumExp<Acc>& b) {
  if (b.max == -INFINITY) return;
  if (a.max == -INFINITY) { a = b; return; }
  if (b.max > a.max) {
    a.sum = a.sum * Acc(expf(a.max - b.max)) + b.sum;
    a.max = b.max;
  } else {
    a.sum = a.sum + b.sum * Acc(expf(b.max - a.max));
  }
}

// log Σ exp(x); -inf for an empty row.
template <class Acc> FL_HD double log_sum_exp(const MaxSumExp<Acc>& s) {
  return s.max == -INFINITY ? double(-INFINITY) : double(s.max) + log(double(s.sum));
}

// softplus(x) = log(1 + e^x) and log σ(x) = −softplus(−x), stable for every finite x.
FL_HD float softplus(float x) { return x > 0.f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }
FL_HD float log_sigmoid(float x) { return -softplus(-x); }
// σ(x) without overflow on either side.
FL_HD float sigmoid(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  const float e = expf(x);
  return e / (1.f + e);
}

// tanh(u) and sech²(u) = 1 − tanh²(u), the latter as 4e/(e + 1)² with e = e^{2u} so that it
// stays accurate where tanh saturates (1 − tanh² would cancel). For the softcap's gradient.
FL_HD float tanh_sech2(float u, float* sech2) {
  const float e = expf(2.f * u);
  const float e1 = e + 1.f;
  *sech2 = e == INFINITY ? 0.f : 4.f * e / (e1 * e1);
  return tanhf(u);
}

}  // namespace fl
