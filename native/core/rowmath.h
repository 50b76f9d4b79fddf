// Per-row numerics shared by the CPU and CUDA kernels (FL_HD = host and device).
#pragma once
#include <cmath>
#include "hd.h"

namespace fl {

// Running (max, sum-exp) of a stream of scores, kept as (max, rest) with
//     Σ exp(x − max) = 1 + rest,
// i.e. rest sums every term but one instance of the max. Keeping the 1 apart is what makes a
// confident row exact: when the rest is 1e-9, log Σ = log1p(rest) and 1 − p_max = rest/(1+rest)
// keep their relative accuracy, where a plain fp32 sum would have rounded 1 + 1e-9 to 1.
// Two partial states merge exactly (up to rounding), so a row can be split across SIMD lanes,
// threads or CUDA blocks and recombined in a fixed order: the result does not depend on how
// many workers there were. Acc is double on the host, so merging 10^4 tiles of a 10^7-wide row
// adds no error that grows with N.
template <class Acc>
struct MaxSumExp {
  float max;  // -inf when nothing (or only -inf) has been seen
  Acc rest;   // Σ exp(x − max) − 1; 0 when max is -inf
};

template <class Acc> FL_HD MaxSumExp<Acc> max_sum_exp_empty() { return MaxSumExp<Acc>{-INFINITY, Acc(0)}; }

template <class Acc> FL_HD void merge(MaxSumExp<Acc>& a, const MaxSumExp<Acc>& b) {
  if (b.max == -INFINITY) return;
  if (a.max == -INFINITY) { a = b; return; }
  if (b.max > a.max) {
    a.rest = b.rest + (Acc(1) + a.rest) * Acc(expf(a.max - b.max));
    a.max = b.max;
  } else if (b.max < a.max) {
    a.rest += (Acc(1) + b.rest) * Acc(expf(b.max - a.max));
  } else {
    a.rest += Acc(1) + b.rest;  // b's max term is one more ordinary term now
  }
}

// log Σ exp(x) = max + log1p(rest); -inf for an empty row.
template <class Acc> FL_HD double log_sum_exp(const MaxSumExp<Acc>& s) {
  return s.max == -INFINITY ? double(-INFINITY) : double(s.max) + log1p(double(s.rest));
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
  *sech2 = e == INFINITY ? 0.f : (4.f / e1) * (e / e1);  // never forms e², which overflows
  return tanhf(u);
}

}  // namespace fl
