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
#include "embeddings.h"
#include "score_tiles.h"

namespace fl {

namespace {

EmbeddingsArgs as_embeddings(const LinearCrossEntropyArgs& a) {
  EmbeddingsArgs e{};
  e.queries = a.hidden;
  e.keys = a.weight;
  e.dtype = a.dtype;
  e.rows = a.rows, e.dim = a.dim, e.cols = a.classes;
  e.normalize = false;
  e.scale = a.scale;
  e.reduction = a.reduction;
  e.grad_output = a.grad_output;
  e.grad_queries = a.grad_hidden;
  e.grad_dtype = a.grad_dtype;
  e.grad_keys = a.grad_weight;
  e.accumulate = a.accumulate;
  e.grad_scale = a.grad_scale;
  e.row_loss = a.row_loss;
  e.memory_budget = a.memory_budget;
  e.bias = a.bias;
  e.grad_bias = a.grad_bias;
  return e;
}

// Per chunk row: its label and lse.
constexpr int64_t kLabelRowBytes = 8;

}  // namespace

EmbeddingsPlan linear_cross_entropy_plan(const Context& ctx, const LinearCrossEntropyArgs& a, int64_t active_rows) {
  return embeddings_plan(ctx, as_embeddings(a), active_rows, true, kLabelRowBytes);
}

LossResult linear_cross_entropy(Context& ctx, const LinearCrossEntropyArgs& a) {
  // Labels are checked (ERR_LABEL_RANGE) and the 'mean' denominator formed over every row.
  CrossEntropyArgs whole{};
  whole.rows = a.rows;
  whole.cols = a.classes;
  whole.labels = a.labels;
  whole.ignore_index = a.ignore_index;
  whole.class_weights = a.class_weights;
  const CrossEntropyTotals totals = cross_entropy_totals(whole);
  if (a.lse)
    for (int64_t i = 0; i < a.rows; ++i)
      if (a.labels[i] == a.ignore_index) a.lse[i] = NAN;  // not computed: ignored rows cost no matrix work
  try {
    return embeddings_loss(
        ctx, as_embeddings(a), [&](int64_t i) { return a.labels[i] != a.ignore_index; }, totals.weight_sum,
        [&](Context& c, const LossArgs& chunk, const int64_t* idx, ScoreTiles* tiles) {
          std::vector<int32_t> labels(static_cast<size_t>(chunk.rows));
          std::vector<float> lse(static_cast<size_t>(chunk.rows));
          for (int64_t r = 0; r < chunk.rows; ++r) labels[size_t(r)] = a.labels[idx[r]];
          CrossEntropyArgs ce{};
          static_cast<LossArgs&>(ce) = chunk;
          ce.labels = labels.data();
          ce.ignore_index = a.ignore_index;
          ce.softcap = a.softcap;
          ce.label_smoothing = a.label_smoothing;
          ce.class_weights = a.class_weights;
          ce.z_loss = a.z_loss;
          ce.lse = lse.data();
          const LossResult part = tiles ? cross_entropy(c, ce, *tiles) : cross_entropy(c, ce);
          if (a.lse)
            for (int64_t r = 0; r < chunk.rows; ++r) a.lse[idx[r]] = lse[size_t(r)];
          return part;
        },
        true, kLabelRowBytes);
  } catch (const Error& e) {
    if (e.code != err::kNonFinite) throw;
    // The driver names queries and keys; here they are hidden and weight (and the bias).
    long long i = 0, j = 0;
    const size_t at = std::string(e.what()).find("at [");
    if (at != std::string::npos) std::sscanf(e.what() + at, "at [%lld, %lld]", &i, &j);
    fail(err::kNonFinite, "scores hidden·weightᵀ" + std::string(a.bias ? " + bias" : "") + ": expected finite values, received NaN or +Infinity at [" +
                              std::to_string(i) + ", " + std::to_string(j) + "] (check hidden row " + std::to_string(i) + " and weight row " +
                              std::to_string(j) + ")");
  }
}

}  // namespace fl
