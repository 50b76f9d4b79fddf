// The reads of a rank's block for the label-sharded losses (docs/MATH.md §5): the partials
// (row statistics over the local columns) and the finish (the dense gradient from the row
// statistics merged across ranks). lib/sharded.ts runs the rounds and the per-row math between.
#pragma once
#include "../api/args.h"

namespace fl {

struct Context;

// Fills a.max, a.rest and the requested sums; a NaN/+inf score is reported in a.bad, not thrown.
void sharded_row_stats(Context& ctx, const ShardedRowStatsArgs& a);
void sharded_softmax_grad(Context& ctx, const ShardedSoftmaxGradArgs& a);

}  // namespace fl
