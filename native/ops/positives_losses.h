// Losses over CSR positives (DEXML's family): decoupledSoftmax (SPEC 3.4), multiLabelSoftmax
// (SPEC 3.2) and binaryCrossEntropy (SPEC 3.6); loss and gradient in one call.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

struct Context;  // native/core/context.h

// Each throws ERR_CSR for an exclusion that is also a positive and ERR_NON_FINITE for NaN/+inf
// scores. 'mean' divides by B (decoupled, multi-label) or B·N (bce).
LossResult decoupled_softmax(Context& ctx, const PositivesLossArgs& args);
LossResult multi_label_softmax(Context& ctx, const PositivesLossArgs& args);
LossResult binary_cross_entropy(Context& ctx, const PositivesLossArgs& args);

}  // namespace fl
