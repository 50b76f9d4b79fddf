// softTopK (SPEC 3.7), the sigmoid-threshold operator, and softTopKLoss (SPEC 3.8, DEXML's
// "topk" loss) on the CPU: per row, the threshold t with Σ_j σ(α(z_j + t)) = k by safeguarded
// Newton (native/ops/soft_topk_math.h), then the outputs, the loss or the gradient.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

struct Context;  // native/core/context.h

// Throws ERR_NON_FINITE for NaN/+inf scores and ERR_K_RANGE unless 0 < k_i < N_i (the
// entries of row i that are in).
void soft_topk(Context& ctx, const SoftTopKArgs& args);

// dL/dS for L = Σ_ij g_ij·values_ij, with the thresholds soft_topk returned (SPEC 3.7 backward).
void soft_topk_vjp(Context& ctx, const SoftTopKVjpArgs& args);

// ℓ_i = −(1/n_i) Σ_{p∈P_i} w_ip·log p_ip; 'mean' divides by rows. Rows without positives add 0
// and need no threshold (their k is not checked). Same errors as soft_topk.
LossResult soft_topk_loss(Context& ctx, const SoftTopKLossArgs& args);

// The block reads of softTopKLoss sharded over columns (docs/MATH.md §5; lib/sharded.ts runs
// the solver, in step on every rank): a NaN/+inf score is reported in a.bad, not thrown.
void sharded_topk_range(Context& ctx, const ShardedTopKRangeArgs& a);
void sharded_topk_sums(Context& ctx, const ShardedTopKSumsArgs& a);
LossResult sharded_topk_grad(Context& ctx, const ShardedTopKGradArgs& a);

// The threshold problem of a softTopKLoss call.
inline SoftTopKProblem topk_problem(const SoftTopKLossArgs& a) { return {ScoresArgs(a), TopKSolve(a)}; }

}  // namespace fl
