// The embeddings driver (docs/MATH.md §3.9–3.10): the losses of section 3 on S = Q·Kᵀ (+ b), or
// the cosine scores with `normalize`, with dQ, dK (and db), without a B×N buffer. One tiling
// engine serves every row-separable loss and linearCrossEntropy: it computes bounded chunks of S
// (rows × all columns, or rows × column tiles) by the GEMM core and runs the loss's own
// matrix-form CPU op on them (embeddings.cpp). The entry points are in native/api/args.h.
#pragma once
#include <cstdint>
#include <functional>

#include "../api/args.h"

namespace fl {

struct Context;  // native/core/context.h

// The matrix-form loss on one chunk: `chunk` holds the chunk's scores (fp32, in place for the
// gradient when chunk.grad is set), reduction None with each row's upstream factor as
// grad_output, and row_loss; idx[r] is chunk row r's row in the batch.
// With the column-tile plan, chunk.scores is null and `tiles` gives them (score_tiles.h);
// otherwise tiles is null.
class ScoreTiles;
using ChunkLossFn = std::function<LossResult(Context&, const LossArgs& chunk, const int64_t* idx, ScoreTiles* tiles)>;

// The driver: rows for which `active` is false cost nothing (loss 0, gradient 0). 'mean' divides
// by mean_divisor, as the matrix form does over all rows. Throws ERR_ARG when the budget holds
// no row of S, ERR_NON_FINITE naming the query and key of a NaN/+inf score.
// `column_tiles`: the loss runs on tiles (its gradient needs only per-row statistics).
// `extra_row_bytes`, `extra_fixed_bytes`: scratch the loss itself keeps per chunk row and per
// call (counted in the budget).
LossResult embeddings_loss(Context& ctx, const EmbeddingsArgs& a, const std::function<bool(int64_t)>& active, double mean_divisor,
                           const ChunkLossFn& loss, bool column_tiles, int64_t extra_row_bytes = 0, int64_t extra_fixed_bytes = 0);

// How a call splits its work: chunks of chunk_rows rows, each over all N columns at once
// (tile_cols = N) or in column tiles; scratch_bytes is what it allocates (≤ the budget).
struct EmbeddingsPlan {
  int64_t chunk_rows, tile_cols, scratch_bytes;
};
EmbeddingsPlan embeddings_plan(const Context& ctx, const EmbeddingsArgs& a, int64_t active_rows, bool column_tiles, int64_t extra_row_bytes = 0,
                               int64_t extra_fixed_bytes = 0);

// linearCrossEntropy's plan (linear_cross_entropy.cpp): the driver's, with its per-row extras.
EmbeddingsPlan linear_cross_entropy_plan(const Context& ctx, const LinearCrossEntropyArgs& args, int64_t active_rows);

}  // namespace fl
