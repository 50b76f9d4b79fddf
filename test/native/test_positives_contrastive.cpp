// The losses over positives and the one-way contrastive losses on every ISA this CPU has,
// against long-double references (docs/MATH.md): decoupledSoftmax, multiLabelSoftmax,
// binaryCrossEntropy (native/ops/positives_losses.cpp, bce.inl), one-way InfoNCE and DCL/DCLW
// (native/ops/infonce.cpp, decoupled_contrastive.cpp). Loss, row losses, gradient and dScale
// at odd and multi-tile widths, on normal, flat, peaked, saturated rows and rows with −∞
// entries (out), fp32 and bf16 scores (fp32 gradient), every reduction. Outputs start as NaN,
// so an element a kernel leaves unwritten fails the comparison. (Symmetric InfoNCE, and BCE at
// larger spreads: test_bce_infonce_sym.cpp.)
#include <vector>

#include "check.h"
#include "reference.h"

using namespace fltest;
using fl::Context;
using fl::Isa;

namespace {

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

FL_TEST_MAIN()
