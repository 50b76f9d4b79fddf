// A chunk of score rows that is never held whole: the embeddings driver (embeddings.cpp)
// computes it column tile by column tile, and the matrix-form losses whose gradient needs only
// per-row statistics (the softmax-row engine's losses, and bce, which is elementwise) run on
// it through the overloads below: sweep 1 folds each tile into the rows' statistics while it
// is in cache, sweep 2 recomputes each tile, writes G = dL/dS in place and hands it back.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

struct Context;  // native/core/context.h

class ScoreTiles {
 public:
  virtual ~ScoreTiles() = default;
  // Columns per tile (the last may be narrower).
  virtual int64_t tile_cols() const = 0;
  // Scores of columns [c0, c0 + w) of every row, fp32, row stride w. Bitwise the same on
  // every call for the same tile (the same GEMM blocks), so both sweeps see the same scores.
  virtual float* scores(int64_t c0, int64_t w) = 0;
  // The buffer scores() returned now holds dL/dS of those columns: fold it into the gradients.
  virtual void gradient(int64_t c0, int64_t w) = 0;
};

// The matrix-form ops on a tiled chunk: `args` is the chunk's LossArgs with scores unused (null)
// and grad only a flag (non-null: hand each tile's gradient back); the rest as the plain op.
LossResult decoupled_softmax(Context& ctx, const PositivesLossArgs& args, ScoreTiles& tiles);
LossResult multi_label_softmax(Context& ctx, const PositivesLossArgs& args, ScoreTiles& tiles);
LossResult binary_cross_entropy(Context& ctx, const PositivesLossArgs& args, ScoreTiles& tiles);
LossResult info_nce(Context& ctx, const InfoNCEArgs& args, ScoreTiles& tiles);  // one-way only
LossResult decoupled_contrastive(Context& ctx, const DecoupledContrastiveArgs& args, ScoreTiles& tiles);
LossResult cross_entropy(Context& ctx, const CrossEntropyArgs& args, ScoreTiles& tiles);

}  // namespace fl
