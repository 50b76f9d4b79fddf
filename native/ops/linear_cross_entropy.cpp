// linearCrossEntropy on the CPU: softmaxCrossEntropy from embeddings with a bias. The hidden
// states are the queries, the weight's rows the keys, and the embeddings driver (embeddings.cpp)
// does the tiling: row chunks × all N columns when the budget holds enough rows of S, else
// chunks of rows swept over W in column tiles twice (Cut Cross-Entropy's way). The loss on each
// chunk is cross_entropy's own (the softmax-row engine, in tiles or on the chunk), with
// reduction None and each row's upstream factor, so nothing here repeats its math.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../api/error.h"
#include "../core/context.h"
#include "cross_entropy.h"
#include "chunk_args.h"
#include "embeddings.h"
#include "score_tiles.h"

namespace fl {

namespace {

// Per chunk row: its label and lse.
constexpr int64_t kLabelRowBytes = 8;

}  // namespace

EmbeddingsPlan linear_cross_entropy_plan(const Context& ctx, const LinearCrossEntropyArgs& a, int64_t active_rows) {
  return embeddings_plan(ctx, linear_as_embeddings(a), active_rows, true, kLabelRowBytes);
}

LossResult linear_cross_entropy(Context& ctx, const LinearCrossEntropyArgs& a) {
  const CrossEntropyTotals totals = linear_cross_entropy_totals(a);
  try {
    return embeddings_loss(
        ctx, linear_as_embeddings(a), [&](int64_t i) { return a.labels[i] != a.ignore_index; }, totals.weight_sum,
        [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles* tiles) {
          const CrossEntropyChunk ce(a, chunk, idx);
          const LossResult part = tiles ? cross_entropy(c, ce.args, *tiles) : cross_entropy(c, ce.args);
          ce.scatter_lse(a, idx);
          return part;
        },
        true, kLabelRowBytes);
  } catch (const Error& e) {
    if (e.code != err::kNonFinite) throw;
    // The driver names queries and keys; here they are hidden and weight (and the bias).
    long long i = 0, j = 0;
    const size_t at = std::string(e.what()).find("at [");
    if (at != std::string::npos) std::sscanf(e.what() + at, "at [%lld, %lld]", &i, &j);
    fail_linear_non_finite(a, i, j);
  }
}

}  // namespace fl
