// The losses over positives and the one-way contrastive losses on every ISA this CPU has,
// against long-double references (docs/MATH.md): decoupledSoftmax, multiLabelSoftmax,
// binaryCrossEntropy (native/ops/positives_losses.cpp, bce.inl), one-way InfoNCE and DCL/DCLW
// (native/ops/infonce.cpp, decoupled_contrastive.cpp). Loss, row losses, gradient and dScale
// at odd and multi-tile widths, on normal, flat, peaked, saturated rows and rows with −∞
// entries (out), fp32 and bf16 scores (fp32 gradient), every reduction. Outputs start as NaN,
// so an element a kernel leaves unwritten fails the comparison. (Symmetric InfoNCE, and BCE at
// larger spreads: test_bce_infonce_sym.cpp.) Here too: their long-double reference
// (rows_reference), their inputs of every kind, one call of each through its C++ arguments, and
// their bench cases (FL_BENCH, lab.h).
#include <vector>

#include "check.h"
#include "lab.h"
#include "reference.h"
#include "native/api/args.h"
#include "native/core/context.h"
#include "native/core/dtype.h"
#include "native/ops/contrastive.h"

using namespace fltest;
using fl::Context;
using fl::Isa;

namespace {

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

void check_loss(Loss loss) {
  Rng rng(0x5eed + uint64_t(loss));
  struct Shape { int64_t B, N; };
  const Shape shapes[] = {{3, 7}, {5, 33}, {4, 1001}, {2, 70001}};
  const Kind kinds[] = {Kind::Normal, Kind::Flat, Kind::Peaked, Kind::Saturated, Kind::NegInf};
  const Reduction reds[] = {Reduction::Mean, Reduction::Sum, Reduction::None};
  int run = 0;
  for (const Shape sh : shapes)
    for (const Kind kind : kinds)
      for (const bool bf16 : {false, true}) {
        const Reduction red = reds[run++ % 3];
        const float scale = kind == Kind::Flat ? 14.f : kind == Kind::Saturated ? 1.f : 0.7f, sigma = 0.5f;
        const Problem p = make_problem(rng, loss, sh.B, sh.N, kind, bf16);
        std::vector<uint16_t> half;
        if (bf16)
          for (float v : p.s) half.push_back(fl::to_bf16(v).bits);
        std::vector<float> go(static_cast<size_t>(sh.B));
        for (auto& v : go) v = float(rng.normal());
        const Reduced want = reduce(p, rows_reference(p, loss, scale, sigma), scale, red, go);
        // dScale's fp32 sums cancel up to Σ_j |dℓ/dz_ij| (≤ 4·W_i ≤ 24 here) times the row's largest |S|.
        ld allowance = 0;
        for (int64_t i = 0; i < sh.B; ++i) {
          ld row_max = 0;
          for (int64_t j = 0; j < sh.N; ++j)
            if (std::isfinite(p.s[size_t(i * sh.N + j)])) row_max = std::max<ld>(row_max, std::fabs(p.s[size_t(i * sh.N + j)]));
          allowance += 24 * std::fabs(want.u[size_t(i)]) * row_max;
        }
        for (Isa isa : isas()) {
          Context ctx(isa, 2);
          std::vector<float> g(p.s.size(), NAN), rl(size_t(sh.B), NAN);
          const LossResult got = call(ctx, loss, p, half, scale, red, go, sigma, g, rl);
          ld rows_err = 0, num = 0;
          for (int64_t i = 0; i < sh.B; ++i)
            rows_err = std::max(rows_err, std::fabs(rl[size_t(i)] - want.row_loss[size_t(i)]) / std::max<ld>(1, std::fabs(want.row_loss[size_t(i)])));
          for (size_t k = 0; k < g.size(); ++k) num += (g[k] - want.grad[k]) * (g[k] - want.grad[k]);
          // An fp32 gradient that is 0 in long double (W·p − w at a positive holding all the
          // probability) comes out at ~1e-7 of the row's scale: not an error.
          const ld grad_err = std::sqrt(num), grad_tol = 1e-5 * want.grad_norm + 1e-6 * ld(scale) * want.sum_u + 1e-30;
          const ld loss_err = std::fabs(got.loss - want.loss) / std::max<ld>(1, std::fabs(want.loss));
          const ld dscale_err = std::fabs(got.dscale - want.dscale);
          FL_CHECK(loss_err <= 1e-5 && rows_err <= 1e-5 && grad_err <= grad_tol &&
                       dscale_err <= 1e-4 * std::max<ld>(1, std::fabs(want.dscale)) + 1e-6 * allowance,
                   "%s %s %lldx%lld %s%s reduction %d: loss %.9g want %.9Lg, rows %.3Lg, grad err %.3Lg (tol %.3Lg), dscale %.9g want %.9Lg",
                   loss_name(loss), isa_name(isa), (long long)sh.B, (long long)sh.N, kind_name(kind), bf16 ? " bf16" : "", int(red), got.loss,
                   want.loss, rows_err, grad_err, grad_tol, got.dscale, want.dscale);
        }
      }
}

}  // namespace

FL_TEST(decoupled_softmax_every_isa) { check_loss(Loss::DecoupledSoftmax); }
FL_TEST(multi_label_softmax_every_isa) { check_loss(Loss::MultiLabelSoftmax); }
FL_TEST(binary_cross_entropy_rows_every_isa) { check_loss(Loss::BCE); }
FL_TEST(info_nce_one_way_every_isa) { check_loss(Loss::InfoNCE); }
FL_TEST(decoupled_contrastive_every_isa) { check_loss(Loss::DCL); }
FL_TEST(decoupled_contrastive_weighted_every_isa) { check_loss(Loss::DCLW); }

namespace {

// The bench of a loss over a Problem: fp32 scores, 'mean', the reduced loss and gradient against
// rows_reference.
Bench csr_loss(Context& ctx, Loss loss, Problem problem, float scale) {
  struct State {
    Problem p;
    std::vector<float> grad, row_loss, go;
  };
  auto s = std::make_shared<State>();
  s->p = std::move(problem);
  s->grad.assign(s->p.s.size(), NAN);
  s->row_loss.assign(size_t(s->p.B), NAN);
  const float sigma = 0.5f;
  return {[&ctx, s, loss, scale, sigma] { call(ctx, loss, s->p, {}, scale, Reduction::Mean, s->go, sigma, s->grad, s->row_loss, false); },
          [&ctx, s, loss, scale, sigma] {
            const LossResult got = call(ctx, loss, s->p, {}, scale, Reduction::Mean, s->go, sigma, s->grad, s->row_loss);
            const Reduced want = reduce(s->p, rows_reference(s->p, loss, scale, sigma), scale, Reduction::Mean, s->go);
            std::string why = within("loss", std::fabs(got.loss - want.loss) / std::max<ld>(1, std::fabs(want.loss)), 1e-5);
            if (why.empty()) why = within("grad", rel_l2(s->grad, want.grad), 1e-5);
            return why;
          }};
}

// per_row distinct columns in each row, no exclusions, unit weights, over the scores s.
Problem positives_problem(Rng& rng, int64_t rows, int64_t cols, int per_row, std::vector<float> s) {
  Problem p{rows, cols, std::move(s), {}, {}, false};
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<int32_t> taken;
    while (int64_t(taken.size()) < std::min<int64_t>(per_row, cols)) {
      const int32_t c = int32_t(rng.next() % uint64_t(cols));
      if (std::find(taken.begin(), taken.end(), c) == taken.end()) taken.push_back(c);
    }
    p.pos.cols.insert(p.pos.cols.end(), taken.begin(), taken.end());
    p.pos.w.insert(p.pos.w.end(), taken.size(), 1.f);
    p.pos.ptr.push_back(int32_t(p.pos.cols.size()));
    p.ex.ptr.push_back(0);
  }
  return p;
}

// bench: 3 positives per row over fp32 normal scores.
Bench positives_bench(Context& ctx, Loss loss, int64_t rows, int64_t cols) {
  Rng rng(42);
  return csr_loss(ctx, loss, positives_problem(rng, rows, cols, 3, normal_scores(rng, rows, cols)), 1.f);
}

}  // namespace

FL_BENCH(decoupledSoftmax)(Context& ctx, int64_t rows, int64_t cols) { return positives_bench(ctx, Loss::DecoupledSoftmax, rows, cols); }
FL_BENCH(multiLabelSoftmax)(Context& ctx, int64_t rows, int64_t cols) { return positives_bench(ctx, Loss::MultiLabelSoftmax, rows, cols); }
FL_BENCH(binaryCrossEntropy)(Context& ctx, int64_t rows, int64_t cols) { return positives_bench(ctx, Loss::BCE, rows, cols); }

// bench: DCLW at logit scale 20, σ = 0.5, over rows×rows cosine scores with diagonal positives.
FL_BENCH(decoupledContrastive)(Context& ctx, int64_t rows, int64_t) {
  Rng rng(42);
  Problem p = positives_problem(rng, rows, rows, 0, cosine_scores(rng, rows));
  for (int64_t i = 0; i < rows; ++i) {
    p.pos.cols.push_back(int32_t(i));
    p.pos.w.push_back(1.f);
    p.pos.ptr[size_t(i) + 1] = int32_t(i + 1);
  }
  return csr_loss(ctx, Loss::DCLW, std::move(p), 20.f);
}

FL_TEST_MAIN()
