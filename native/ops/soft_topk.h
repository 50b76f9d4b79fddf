// softTopK (MATH softTopK, native/ops/soft_topk_math.h), the sigmoid-threshold operator, and softTopKLoss (MATH softTopKLoss, native/ops/soft_topk_math.h; DEXML's
// "topk" loss) on the CPU: per row, the threshold t with Σ_j σ(α(z_j + t)) = k by safeguarded
// Newton (native/ops/soft_topk_math.h), then the outputs, the loss or the gradient.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

// The threshold problem of a softTopKLoss call.
inline SoftTopKProblem topk_problem(const SoftTopKLossArgs& a) { return {ScoresArgs(a), TopKSolve(a)}; }

}  // namespace fl
