// softTopK (docs/MATH.md §3.7), the sigmoid-threshold operator, and softTopKLoss (docs/MATH.md §3.8, DEXML's
// "topk" loss) on the CPU: per row, the threshold t with Σ_j σ(α(z_j + t)) = k by safeguarded
// Newton (native/ops/soft_topk_math.h), then the outputs, the loss or the gradient.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

// The threshold problem of a softTopKLoss call.
inline SoftTopKProblem topk_problem(const SoftTopKLossArgs& a) { return {ScoresArgs(a), TopKSolve(a)}; }

}  // namespace fl
