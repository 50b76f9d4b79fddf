// The long-double references of every op (the formulas of docs/MATH.md), shared by the native
// tests and the microbenchmarks (bench/native/), which validate each op against them before
// timing it. For the losses over CSR positives and the one-way contrastive losses also their
// inputs of every kind and one call of each through its C++ arguments.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "check.h"
#include "native/core/context.h"
#include "native/core/dtype.h"
#include "native/ops/contrastive.h"
#include "native/ops/cross_entropy.h"
#include "native/api/args.h"

namespace fltest {

using ld = long double;
using fl::Csr;
using fl::DType;
using fl::LossResult;
using fl::Reduction;

// ---------- logSumExp ----------

// log Σ_j exp(scale·x_j) of one row; −∞ when every entry is.
inline long double ref_lse(const float* x, int64_t n, double scale) {
  long double m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max<long double>(m, scale * x[i]);
  if (m == -INFINITY) return m;
  long double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp((long double)scale * x[i] - m);
  return m + std::log(s);
}

// ---------- softmaxCrossEntropy ----------

struct Ref {
  std::vector<long double> row_loss, grad;
  long double loss = 0, dscale = 0;
};

// docs/MATH.md §3.1 in long double, straight from the formulas.
inline Ref cross_entropy_reference(const std::vector<float>& x, int64_t B, int64_t N, const std::vector<int32_t>& y, float scale, float cap,
                     float eps, const float* cw, float lambda, Reduction red) {
  Ref r;
  r.row_loss.assign(size_t(B), 0);
  r.grad.assign(size_t(B * N), 0);
  long double wsum = 0, wmean = 0;
  for (int64_t j = 0; j < N; ++j) wmean += cw ? cw[j] : 1;
  wmean /= N;
  for (int64_t i = 0; i < B; ++i) if (y[size_t(i)] >= 0) wsum += cw ? cw[y[size_t(i)]] : 1;
  for (int64_t i = 0; i < B; ++i) {
    if (y[size_t(i)] < 0) continue;
    std::vector<long double> z(static_cast<size_t>(N)), dzdx(static_cast<size_t>(N)), dzds(static_cast<size_t>(N));
    long double m = -INFINITY;
    for (int64_t j = 0; j < N; ++j) {
      const long double v = x[size_t(i * N + j)];
      if (cap > 0) {
        const long double t = std::tanh(scale * v / cap);
        z[size_t(j)] = cap * t; dzdx[size_t(j)] = scale * (1 - t * t); dzds[size_t(j)] = v * (1 - t * t);
      } else {
        z[size_t(j)] = scale * v; dzdx[size_t(j)] = scale; dzds[size_t(j)] = v;
      }
      m = std::max(m, z[size_t(j)]);
    }
    long double s = 0, lin = 0;
    for (int64_t j = 0; j < N; ++j) { s += std::exp(z[size_t(j)] - m); lin += (cw ? cw[j] : 1) * z[size_t(j)]; }
    const long double lse = m + std::log(s);
    const int32_t t = y[size_t(i)];
    const long double wy = cw ? cw[t] : 1;
    const long double l = wy * (1 - eps) * (lse - z[size_t(t)]) + eps * (wmean * lse - lin / N) + lambda * lse * lse;
    r.row_loss[size_t(i)] = l;
    const long double u = red == Reduction::Mean ? 1 / wsum : 1;
    r.loss += red == Reduction::Mean ? l / wsum : l;
    for (int64_t j = 0; j < N; ++j) {
      const long double p = std::exp(z[size_t(j)] - lse);
      long double d = (wy * (1 - eps) + eps * wmean + 2 * lambda * lse) * p - eps * (cw ? cw[j] : 1) / N;
      if (j == t) d -= (1 - eps) * wy;
      r.grad[size_t(i * N + j)] = u * d * dzdx[size_t(j)];
      r.dscale += u * d * dzds[size_t(j)];
    }
  }
  return r;
}

// ---------- softTopKLoss ----------

inline long double sig(long double a) { return a >= 0 ? 1 / (1 + std::exp(-a)) : std::exp(a) / (1 + std::exp(a)); }

// The root of Σσ(α(x + t)) = k as log L = log R with each term exact (see soft_topk_math.h),
// by bisection in long double: sharp even where the top entries saturate.
inline long double ref_threshold(const float* x, int64_t n, long double k, long double alpha) {
  auto h = [&](long double t) {
    long double L = 0, R = 0, m = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (x[j] == -INFINITY) continue;
      const long double a = alpha * (x[j] + t);
      if (a < 0) L += sig(a);
      else { R += sig(-a); m += 1; }
    }
    return std::log(L + std::max<long double>(m - k, 0)) - std::log(R + std::max<long double>(k - m, 0));
  };
  long double lo = -1e4, hi = 1e4;
  for (int i = 0; i < 100; ++i) {  // 2e4 / 2^100: far below an ulp of any root here
    const long double mid = (lo + hi) / 2;
    (h(mid) < 0 ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

// ℓ and dℓ/dx of one row in long double (docs/MATH.md §3.8, sum reduction, unit weights).
inline void ref_loss_row(const std::vector<float>& x, int64_t N, const std::vector<int32_t>& pos, const std::vector<bool>& out, int32_t k,
                         long double alpha, long double& loss, std::vector<long double>& grad) {
  std::vector<float> xin(x);
  for (int64_t j = 0; j < N; ++j) if (out[size_t(j)]) xin[size_t(j)] = -INFINITY;
  const long double t = ref_threshold(xin.data(), N, k, alpha);
  const long double n = (long double)pos.size();
  loss = 0;
  grad.assign(static_cast<size_t>(N), 0);
  long double U = 0, V = 0;
  for (int32_t j : pos) {
    const long double a = alpha * (x[size_t(j)] + t);
    loss -= std::log(sig(a)) / n;
    const long double u = alpha * (-1 / n) * sig(-a);
    grad[size_t(j)] = u;
    U += u;
  }
  for (int64_t j = 0; j < N; ++j) if (!out[size_t(j)]) V += alpha * sig(alpha * (x[size_t(j)] + t)) * sig(-alpha * (x[size_t(j)] + t));
  for (int64_t j = 0; j < N; ++j)
    if (!out[size_t(j)]) grad[size_t(j)] -= alpha * sig(alpha * (x[size_t(j)] + t)) * sig(-alpha * (x[size_t(j)] + t)) * U / V;
}

// ---------- symmetric InfoNCE ----------

// docs/MATH.md §3.3 symmetric (CLIP), diagonal positives, sum reduction: rowLoss_i = (r_i + c_i)/2.
inline Ref sym_reference(const std::vector<float>& x, int64_t n, float scale) {
  Ref r;
  r.row_loss.assign(size_t(n), 0);
  r.grad.assign(size_t(n * n), 0);
  std::vector<long double> row_lse(static_cast<size_t>(n)), col_lse(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    long double mr = -INFINITY, mc = -INFINITY, sr = 0, sc = 0;
    for (int64_t j = 0; j < n; ++j) {
      mr = std::max<long double>(mr, scale * (long double)x[size_t(i * n + j)]);
      mc = std::max<long double>(mc, scale * (long double)x[size_t(j * n + i)]);
    }
    for (int64_t j = 0; j < n; ++j) {
      sr += std::exp(scale * (long double)x[size_t(i * n + j)] - mr);
      sc += std::exp(scale * (long double)x[size_t(j * n + i)] - mc);
    }
    row_lse[size_t(i)] = mr + std::log(sr);
    col_lse[size_t(i)] = mc + std::log(sc);
  }
  for (int64_t i = 0; i < n; ++i) {
    const long double zii = scale * (long double)x[size_t(i * n + i)];
    r.row_loss[size_t(i)] = (row_lse[size_t(i)] - zii + col_lse[size_t(i)] - zii) / 2;
    r.loss += r.row_loss[size_t(i)];
    for (int64_t j = 0; j < n; ++j) {
      const long double s = x[size_t(i * n + j)], z = scale * s;
      const long double d = (std::exp(z - row_lse[size_t(i)]) + std::exp(z - col_lse[size_t(j)]) - (i == j ? 2 : 0)) / 2;
      r.grad[size_t(i * n + j)] = scale * d;
      r.dscale += d * s;
    }
  }
  return r;
}

// ---------- the losses over CSR positives, one-way InfoNCE, DCL and DCLW ----------


enum class Loss { DecoupledSoftmax, MultiLabelSoftmax, BCE, InfoNCE, DCL, DCLW };
inline const char* loss_name(Loss l) {
  switch (l) {
    case Loss::DecoupledSoftmax: return "decoupledSoftmax";
    case Loss::MultiLabelSoftmax: return "multiLabelSoftmax";
    case Loss::BCE: return "binaryCrossEntropy";
    case Loss::InfoNCE: return "infoNCE";
    case Loss::DCL: return "DCL";
    case Loss::DCLW: return "DCLW";
  }
  return "?";
}

enum class Kind { Normal, Flat, Peaked, Saturated, NegInf };
inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Normal: return "normal";
    case Kind::Flat: return "flat";
    case Kind::Peaked: return "peaked";
    case Kind::Saturated: return "saturated";
    case Kind::NegInf: return "-inf";
  }
  return "?";
}

struct CsrArrays {
  std::vector<int32_t> ptr{0}, cols;
  std::vector<float> w;
  Csr csr(bool weighted) const { return Csr{ptr.data(), cols.data(), weighted ? w.data() : nullptr}; }
};

struct Problem {
  int64_t B, N;
  std::vector<float> s;  // the scores as the kernel sees them (bf16 dequantized)
  CsrArrays pos, ex;
  bool weighted;
};

// Scores of a kind; the positives of a row always stay finite (a −∞ positive costs +∞).
inline Problem make_problem(Rng& rng, Loss loss, int64_t B, int64_t N, Kind kind, bool bf16) {
  Problem p{B, N, std::vector<float>(size_t(B * N)), {}, {}, loss != Loss::DCL && loss != Loss::DCLW};
  const bool one_positive = loss == Loss::DCL || loss == Loss::DCLW;
  for (int64_t i = 0; i < B; ++i) {
    // Positives: one (DCL) or 1–3 distinct columns; the first row of a multi-row problem gets none
    // for the losses where a row may have none.
    const int64_t want = one_positive ? 1 : (i == 0 && B > 1 ? 0 : std::min<int64_t>(N, 1 + int64_t(rng.next() % 3)));
    std::vector<int32_t> taken;
    while (int64_t(taken.size()) < want) {
      const int32_t c = int32_t(rng.next() % uint64_t(N));
      if (std::find(taken.begin(), taken.end(), c) == taken.end()) taken.push_back(c);
    }
    for (int32_t c : taken) {
      p.pos.cols.push_back(c);
      p.pos.w.push_back(float(0.5 + rng.uniform()));
    }
    p.pos.ptr.push_back(int32_t(p.pos.cols.size()));
    // Up to 2 exclusions, never a positive, and at least 2 columns left in the row.
    for (int e = 0; e < 2 && N - int64_t(taken.size()) - e > 2; ++e) {
      const int32_t c = int32_t(rng.next() % uint64_t(N));
      if (std::find(taken.begin(), taken.end(), c) != taken.end()) continue;
      if (std::find(p.ex.cols.begin() + p.ex.ptr.back(), p.ex.cols.end(), c) != p.ex.cols.end()) continue;
      p.ex.cols.push_back(c);
    }
    p.ex.ptr.push_back(int32_t(p.ex.cols.size()));
    float* row = p.s.data() + i * N;
    for (int64_t j = 0; j < N; ++j) {
      const double sigma = kind == Kind::Flat ? 0.05 : 3.0;
      row[j] = float(rng.normal() * sigma);
    }
    if (kind == Kind::Peaked)
      for (int k = 0; k < 3; ++k) row[rng.next() % uint64_t(N)] *= 20.f;
    if (kind == Kind::Saturated) {
      // One entry 80 above the rest: its probability is 1 − e^−80, everything else underflows.
      row[rng.next() % uint64_t(N)] += 80.f;
      if (!taken.empty()) row[taken[0]] += 80.f;
    }
    if (kind == Kind::NegInf)
      for (int64_t j = 0; j < N; ++j)
        if (rng.uniform() < 0.2 && std::find(taken.begin(), taken.end(), int32_t(j)) == taken.end()) row[j] = -INFINITY;
  }
  if (bf16)
    for (auto& v : p.s) v = fl::to_float(fl::to_bf16(v));
  return p;
}

struct RowsRef {
  std::vector<ld> row_loss, dz;  // ℓ_i and ∂ℓ_i/∂z_ij, unweighted by the reduction
  ld denom = 0;                  // what 'mean' divides by
};

inline ld lse_of(const std::vector<ld>& z) {
  ld m = -INFINITY;
  for (ld v : z) m = std::max(m, v);
  if (m == -INFINITY) return m;
  ld s = 0;
  for (ld v : z) s += std::exp(v - m);
  return m + std::log(s);
}
inline ld log_sigmoid(ld a) { return a >= 0 ? -std::log1p(std::exp(-a)) : a - std::log1p(std::exp(a)); }

// docs/MATH.md, per loss, in long double on z = fl(scale·s) (the kernel rounds z to fp32).
inline RowsRef rows_reference(const Problem& p, Loss loss, float scale, float sigma) {
  const int64_t B = p.B, N = p.N;
  RowsRef r{std::vector<ld>(size_t(B), 0), std::vector<ld>(size_t(B * N), 0), 0};
  std::vector<ld> dclw(size_t(B), 1);
  if (loss == Loss::DCLW) {
    // w_i = 2 − B·softmax_i(S_ip/σ), on the raw scores.
    std::vector<ld> a(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) a[size_t(i)] = ld(p.s[size_t(i * N + p.pos.cols[size_t(p.pos.ptr[size_t(i)])])]) / sigma;
    const ld l = lse_of(a);
    for (int64_t i = 0; i < B; ++i) dclw[size_t(i)] = 2 - B * std::exp(a[size_t(i)] - l);
  }
  std::vector<ld> z(static_cast<size_t>(N));
  for (int64_t i = 0; i < B; ++i) {
    for (int64_t j = 0; j < N; ++j) z[size_t(j)] = ld(float(scale * p.s[size_t(i * N + j)]));
    for (int32_t e = p.ex.ptr[size_t(i)]; e < p.ex.ptr[size_t(i) + 1]; ++e) z[size_t(p.ex.cols[size_t(e)])] = -INFINITY;
    const int32_t e0 = p.pos.ptr[size_t(i)], e1 = p.pos.ptr[size_t(i) + 1];
    const int64_t n = e1 - e0;
    auto w = [&](int32_t e) { return p.weighted ? ld(p.pos.w[size_t(e)]) : ld(1); };
    ld* dz = r.dz.data() + i * N;
    if (loss == Loss::DCL || loss == Loss::DCLW || loss == Loss::DecoupledSoftmax) {
      // The negatives only: positives (and out entries) leave the log-sum-exp.
      std::vector<ld> neg = z;
      for (int32_t e = e0; e < e1; ++e) neg[size_t(p.pos.cols[size_t(e)])] = -INFINITY;
      const ld Z = lse_of(neg);
      if (loss == Loss::DecoupledSoftmax) {
        if (n == 0) continue;
        ld l = 0, neg_coef = 0;
        for (int32_t e = e0; e < e1; ++e) {
          const int32_t c = p.pos.cols[size_t(e)];
          const ld x = z[size_t(c)] - Z;
          l -= w(e) * log_sigmoid(x);
          neg_coef += w(e) * sig(-x) / ld(n);
          dz[c] = -(w(e) / ld(n)) * sig(-x);
        }
        r.row_loss[size_t(i)] = l / ld(n);
        if (Z != -INFINITY)
          for (int64_t j = 0; j < N; ++j)
            if (neg[size_t(j)] != -INFINITY) dz[j] = neg_coef * std::exp(neg[size_t(j)] - Z);
      } else {
        const int32_t c = p.pos.cols[size_t(e0)];
        r.row_loss[size_t(i)] = -dclw[size_t(i)] * z[size_t(c)] + Z;
        dz[c] = -dclw[size_t(i)];
        for (int64_t j = 0; j < N; ++j)
          if (neg[size_t(j)] != -INFINITY) dz[j] = std::exp(neg[size_t(j)] - Z);
      }
      continue;
    }
    if (loss == Loss::BCE) {
      // Σ_j softplus(z_j) − Σ_p y_p z_p over the entries in; ∂/∂z_j = σ(z_j) − y_j.
      std::vector<ld> y(static_cast<size_t>(N), 0);
      for (int32_t e = e0; e < e1; ++e) y[size_t(p.pos.cols[size_t(e)])] = w(e);
      for (int64_t j = 0; j < N; ++j) {
        const ld zj = z[size_t(j)];
        if (zj == -INFINITY) continue;
        r.row_loss[size_t(i)] += (zj > 0 ? zj + std::log1p(std::exp(-zj)) : std::log1p(std::exp(zj))) - y[size_t(j)] * zj;
        dz[j] = sig(zj) - y[size_t(j)];
      }
      continue;
    }
    // multiLabelSoftmax and InfoNCE: the log-sum-exp over every column in; InfoNCE divides by n.
    if (n == 0) continue;
    r.denom += 1;
    const ld lse = lse_of(z), per = loss == Loss::InfoNCE ? ld(n) : 1;
    ld W = 0, l = 0;
    for (int32_t e = e0; e < e1; ++e) {
      W += w(e);
      l += w(e) * (lse - z[size_t(p.pos.cols[size_t(e)])]);
    }
    r.row_loss[size_t(i)] = l / per;
    for (int64_t j = 0; j < N; ++j)
      if (z[size_t(j)] != -INFINITY) dz[j] = W / per * std::exp(z[size_t(j)] - lse);
    for (int32_t e = e0; e < e1; ++e) dz[p.pos.cols[size_t(e)]] -= w(e) / per;
  }
  // 'mean' divides by B, B·N for BCE, and for InfoNCE by the rows with positives.
  if (loss == Loss::BCE) r.denom = ld(B) * ld(N);
  else if (loss != Loss::InfoNCE) r.denom = ld(B);
  return r;
}

// One call of `loss` on the problem (bf16 scores when `bf16` is not empty), the gradient in
// float32 into g, row losses into rl; dScale only when asked.
inline fl::LossResult call(fl::Context& ctx, Loss loss, const Problem& p, const std::vector<uint16_t>& bf16, float scale, Reduction red,
                           const std::vector<float>& go, float sigma, std::vector<float>& g, std::vector<float>& rl, bool dscale = true) {
  // What every loss takes (fl::LossArgs), then each loss's own fields.
  auto common = [&](fl::LossArgs& a) {
    a.scores = bf16.empty() ? static_cast<const void*>(p.s.data()) : bf16.data();
    a.dtype = bf16.empty() ? DType::Float32 : DType::BFloat16;
    a.rows = p.B;
    a.cols = p.N;
    a.scale = scale;
    a.reduction = red;
    a.grad_output = red == Reduction::None ? go.data() : nullptr;
    a.grad = g.data();
    a.grad_dtype = DType::Float32;
    a.grad_scale = dscale;
    a.row_loss = rl.data();
  };
  if (loss == Loss::DecoupledSoftmax || loss == Loss::MultiLabelSoftmax || loss == Loss::BCE) {
    fl::PositivesLossArgs a{};
    common(a);
    a.positives = p.pos.csr(p.weighted);
    a.exclude = p.ex.csr(false);
    return loss == Loss::DecoupledSoftmax ? fl::decoupled_softmax(ctx, a) : loss == Loss::BCE ? fl::binary_cross_entropy(ctx, a) : fl::multi_label_softmax(ctx, a);
  }
  if (loss == Loss::InfoNCE) {
    fl::InfoNCEArgs a{};
    common(a);
    a.positives = p.pos.csr(p.weighted);
    a.exclude = p.ex.csr(false);
    return fl::info_nce(ctx, a);
  }
  fl::DecoupledContrastiveArgs a{};
  common(a);
  a.positives = p.pos.csr(false);
  a.exclude = p.ex.csr(false);
  a.sigma = loss == Loss::DCLW ? sigma : 0.f;
  return fl::decoupled_contrastive(ctx, a);
}

// The reduced loss, gradient dL/dS and dScale of a reference: u_i = 1/denom ('mean'), 1 ('sum')
// or gradOutput_i ('none') times each row's own.
struct Reduced {
  ld loss = 0, dscale = 0, grad_norm = 0, sum_u = 0;
  std::vector<ld> row_loss, grad, u;
};
inline Reduced reduce(const Problem& p, const RowsRef& ref, float scale, Reduction red, const std::vector<float>& go) {
  Reduced r;
  r.row_loss = ref.row_loss;
  r.grad.assign(ref.dz.size(), 0);
  r.u.assign(size_t(p.B), 0);
  for (int64_t i = 0; i < p.B; ++i) {
    const ld u = red == Reduction::Mean ? (ref.denom > 0 ? 1 / ref.denom : 0) : red == Reduction::Sum ? 1 : go[size_t(i)];
    r.u[size_t(i)] = u;
    r.sum_u += std::fabs(u);
    r.loss += red == Reduction::Mean ? ref.row_loss[size_t(i)] * u : ref.row_loss[size_t(i)];
    for (int64_t j = 0; j < p.N; ++j) {
      const size_t k = size_t(i * p.N + j);
      const ld d = u * ref.dz[k];
      if (d != 0) r.dscale += d * p.s[k];
      r.grad[k] = ld(scale) * d;
      r.grad_norm += r.grad[k] * r.grad[k];
    }
  }
  r.grad_norm = std::sqrt(r.grad_norm);
  return r;
}

}  // namespace fltest
