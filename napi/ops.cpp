// The op table: one struct per op (see napi/op_table.h for the shape), each read from the
// options object whose keys its lib/ops/<op>.ts types. A new op adds a struct here and a line to
// define_ops.
#include "ops.h"

#include "../native/ops/contrastive.h"
#include "op_table.h"

namespace fl::napi {
namespace {

// logSumExp({ scores, dtype, rows, cols, scale, out })
struct LogSumExp {
  using Args = LogSumExpArgs;
  static constexpr const char* name = "logSumExp";
  static void read(Reader& r, Args& a) {
    r.scores(a);
    a.out = r.required_host<float>("out", a.rows);
  }
  static void cpu(Context& ctx, const Args& a) { log_sum_exp(ctx, a); }
  static void cuda(const Args& a) { cuda::log_sum_exp(a); }
};

// softmaxCrossEntropy({ logits, labels, ignoreIndex, softcap, labelSmoothing, classWeights?,
//                       zLoss, lse?, ...the loss options (Reader::loss) })
struct SoftmaxCrossEntropy {
  using Args = CrossEntropyArgs;
  static constexpr const char* name = "softmaxCrossEntropy";
  static void read(Reader& r, Args& a) {
    r.loss(a, "logits");
    a.labels = r.required_host<const int32_t>("labels", a.rows);
    a.ignore_index = int32_t(r.number("ignoreIndex"));
    a.softcap = float(r.number("softcap"));
    a.label_smoothing = float(r.number("labelSmoothing"));
    a.class_weights = r.host<const float>("classWeights", a.cols);
    a.z_loss = float(r.number("zLoss"));
    a.lse = r.host<float>("lse", a.rows);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return cross_entropy(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::cross_entropy(a); }
};

// The loss options, then positives (absent: the diagonal, where `optional`) and exclude?.
template <class A>
void read_loss_with_positives(Reader& r, A& a, bool optional) {
  r.loss(a);
  a.positives = r.csr("positives", a, optional);
  a.exclude = r.exclude(a);
}

// decoupledSoftmax / multiLabelSoftmax / binaryCrossEntropy({ scores, positives, exclude?, ...})
struct PositivesLoss {
  using Args = PositivesLossArgs;
  static void read(Reader& r, Args& a) { read_loss_with_positives(r, a, false); }
};
struct DecoupledSoftmax : PositivesLoss {
  static constexpr const char* name = "decoupledSoftmax";
  static LossResult cpu(Context& ctx, const Args& a) { return decoupled_softmax(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::decoupled_softmax(a); }
};
struct MultiLabelSoftmax : PositivesLoss {
  static constexpr const char* name = "multiLabelSoftmax";
  static LossResult cpu(Context& ctx, const Args& a) { return multi_label_softmax(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::multi_label_softmax(a); }
};
struct BinaryCrossEntropy : PositivesLoss {
  static constexpr const char* name = "binaryCrossEntropy";
  static LossResult cpu(Context& ctx, const Args& a) { return binary_cross_entropy(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::binary_cross_entropy(a); }
};

// infoNCE({ scores, positives?, exclude?, symmetric, ... }); positives absent: the diagonal.
struct InfoNCE {
  using Args = InfoNCEArgs;
  static constexpr const char* name = "infoNCE";
  static void read(Reader& r, Args& a) {
    read_loss_with_positives(r, a, true);
    a.symmetric = r.flag("symmetric");
    check_info_nce_shape(a);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return info_nce(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::info_nce(a); }
};

// DCLW's σ (a number >= 0; 0: plain DCL).
float read_sigma(Reader& r) {
  const float sigma = float(r.number("sigma"));
  if (!(sigma >= 0)) fail(err::kArg, "sigma: expected a number >= 0");
  return sigma;
}

// decoupledContrastive({ scores, positives?, exclude?, sigma, ... }); sigma 0: plain DCL.
struct DecoupledContrastive {
  using Args = DecoupledContrastiveArgs;
  static constexpr const char* name = "decoupledContrastive";
  static void read(Reader& r, Args& a) {
    read_loss_with_positives(r, a, true);
    a.sigma = read_sigma(r);
    check_decoupled_contrastive_shape(a);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return decoupled_contrastive(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::decoupled_contrastive(a); }
};

// The threshold search's options: alpha and exclude?; with `with_k`, also k (a number, or an
// Int32Array of one k per row), tol and maxIter.
void read_solve(Reader& r, const ScoresArgs& m, TopKSolve& s, bool with_k) {
  s.alpha = float(r.number("alpha"));
  if (!(s.alpha > 0)) fail(err::kArg, "alpha: expected a finite number > 0");
  s.exclude = r.exclude(m);
  if (!with_k) return;
  if (r.is_array("k")) s.k_rows = r.host<const int32_t>("k", m.rows);
  else s.k = int32_t(r.integer("k"));
  s.tol = float(r.number("tol"));
  s.max_iter = int32_t(r.integer("maxIter"));
  if (s.max_iter < 1) fail(err::kArg, "maxIter: expected an integer >= 1");
}

// softTopK({ scores, alpha, k, tol, maxIter, exclude?, output, values, threshold, iterations })
struct SoftTopK {
  using Args = SoftTopKArgs;
  static constexpr const char* name = "softTopK";
  static void read(Reader& r, Args& a) {
    r.scores(a);
    read_solve(r, a, a, true);
    a.output = r.code<TopKOutput>("output", 1);
    a.values = static_cast<float*>(r.matrix("values", DType::Float32, a.rows * a.cols, Access::Write, true));
    a.threshold = r.required_host<float>("threshold", a.rows);
    a.iterations = r.required_host<int32_t>("iterations", a.rows);
  }
  static void cpu(Context& ctx, const Args& a) { soft_topk(ctx, a); }
  static void cuda(const Args& a) { cuda::soft_topk(a); }
};

// softTopKVjp({ scores, alpha, exclude?, output, threshold, gradOutput, grad, gradDtype })
struct SoftTopKVjp {
  using Args = SoftTopKVjpArgs;
  static constexpr const char* name = "softTopKVjp";
  static void read(Reader& r, Args& a) {
    r.scores(a);
    read_solve(r, a, a, false);
    a.output = r.code<TopKOutput>("output", 1);
    a.threshold = r.required_host<const float>("threshold", a.rows);
    a.grad_output = static_cast<const float*>(r.matrix("gradOutput", DType::Float32, a.rows * a.cols, Access::Read, true));
    a.grad_dtype = r.grad_dtype(a);
    a.grad = r.matrix("grad", a.grad_dtype, a.rows * a.cols, Access::Write, true);
  }
  static void cpu(Context& ctx, const Args& a) { soft_topk_vjp(ctx, a); }
  static void cuda(const Args& a) { cuda::soft_topk_vjp(a); }
};

// softTopKLoss({ scores, positives, alpha, k, tol, maxIter, exclude?, ... })
struct SoftTopKLoss {
  using Args = SoftTopKLossArgs;
  static constexpr const char* name = "softTopKLoss";
  static void read(Reader& r, Args& a) {
    r.loss(a);
    read_solve(r, a, a, true);
    a.positives = r.csr("positives", a, false);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return soft_topk_loss(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::soft_topk_loss(a); }
};

// linearCrossEntropy({ hidden, weight, labels, dtype, rows, dim, classes, bias?, scale, softcap,
//                      ignoreIndex, labelSmoothing, classWeights?, zLoss, reduction, gradOutput?,
//                      gradHidden?, gradDtype, gradWeight?, gradBias?, accumulate, gradScale,
//                      rowLoss, lse?, memoryBudget }): CPU only (the TS layer refuses cuda tensors).
struct LinearCrossEntropy {
  using Args = LinearCrossEntropyArgs;
  static constexpr const char* name = "linearCrossEntropy";
  static void read(Reader& r, Args& a) {
    a.dtype = r.dtype("dtype");
    a.rows = r.integer("rows");
    a.dim = r.integer("dim");
    a.classes = r.integer("classes");
    a.hidden = r.input("hidden", a.dtype, a.rows * a.dim);
    a.weight = r.matrix("weight", a.dtype, a.classes * a.dim, Access::Read, true);
    a.bias = r.host<const float>("bias", a.classes);
    a.labels = r.required_host<const int32_t>("labels", a.rows);
    a.ignore_index = int32_t(r.number("ignoreIndex"));
    a.scale = float(r.number("scale"));
    if (!(a.scale > 0)) fail(err::kArg, "scale: expected a finite number > 0");
    a.softcap = float(r.number("softcap"));
    a.label_smoothing = float(r.number("labelSmoothing"));
    a.class_weights = r.host<const float>("classWeights", a.classes);
    a.z_loss = float(r.number("zLoss"));
    a.reduction = r.code<Reduction>("reduction", 2);
    a.grad_output = r.host<const float>("gradOutput", a.rows);
    a.accumulate = r.flag("accumulate");
    a.grad_dtype = r.dtype("gradDtype");
    if (a.grad_dtype != DType::Float32 && a.grad_dtype != a.dtype)
      fail(err::kDType, std::string("gradDtype: expected float32 or hidden's dtype ") + dtype_name(a.dtype));
    a.grad_hidden = r.accumulated("gradHidden", a.grad_dtype, a.rows * a.dim);
    a.grad_weight = static_cast<float*>(r.accumulated("gradWeight", DType::Float32, a.classes * a.dim));
    a.grad_bias = r.host_accumulated("gradBias", a.classes);  // a Float32Array on every device
    a.grad_scale = r.flag("gradScale");
    a.row_loss = r.required_host<float>("rowLoss", a.rows);
    a.lse = r.host<float>("lse", a.rows);
    a.memory_budget = r.integer("memoryBudget");
  }
  static LossResult cpu(Context& ctx, const Args& a) { return linear_cross_entropy(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::linear_cross_entropy(a); }
};

// The block every label-sharded loss reads (lib/shardedMath.ts): localScores, dtype, rows, cols,
// scale. float32 on the host (the TS layer widens a half block once); any dtype on the device
// (cuda/sharded.cu widens as it reads).
void read_sharded_scores(Reader& r, ScoresArgs& a) {
  r.scores(a, "localScores");
  if (a.dtype != DType::Float32 && !r.on_device()) fail(err::kDType, "localScores: expected float32 on the host (the sharded losses convert half blocks)");
}

// A sharded op's gradient block: gradDtype (float32, or the block's dtype) on the block's device.
void read_sharded_grad(Reader& r, const ScoresArgs& a, void*& grad, DType& grad_dtype, bool required) {
  grad_dtype = r.grad_dtype(a);
  grad = r.matrix("grad", grad_dtype, a.rows * a.cols, Access::Write, required);
}

// The softmax losses' block: the scores, softcap, skip? (sorted local columns per row) and
// classWeights? (the shard's slice).
void read_sharded_block(Reader& r, ShardedSoftmaxBlock& a) {
  read_sharded_scores(r, a);
  a.softcap = float(r.number("softcap"));
  if (!(a.softcap >= 0)) fail(err::kArg, "softcap: expected a number >= 0");
  a.skip = r.csr("skip", a, true);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t e = a.skip.begin(i) + 1; e < a.skip.end(i); ++e)
      if (a.skip.cols[e - 1] >= a.skip.cols[e]) fail(err::kCsr, "skip row " + std::to_string(i) + ": expected increasing columns");
  a.class_weights = r.host<const float>("classWeights", a.cols);
}

// shardedRowStats({ localScores, ..., max, rest, lin?, expDScale?, linDScale?, bad })
struct ShardedRowStats {
  using Args = ShardedRowStatsArgs;
  static constexpr const char* name = "shardedRowStats";
  static void read(Reader& r, Args& a) {
    read_sharded_block(r, a);
    a.max = r.required_host<double>("max", a.rows);
    a.rest = r.required_host<double>("rest", a.rows);
    a.lin = r.host<double>("lin", a.rows);
    a.exp_dscale = r.host<double>("expDScale", a.rows);
    a.lin_dscale = r.host<double>("linDScale", a.rows);
    a.bad = r.required_host<int32_t>("bad", 2);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_row_stats(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_row_stats(a); }
};

// shardedSoftmaxGrad({ localScores, ..., max, rest, coef, lin?, grad })
struct ShardedSoftmaxGrad {
  using Args = ShardedSoftmaxGradArgs;
  static constexpr const char* name = "shardedSoftmaxGrad";
  static void read(Reader& r, Args& a) {
    read_sharded_block(r, a);
    a.max = r.required_host<const double>("max", a.rows);
    a.rest = r.required_host<const double>("rest", a.rows);
    a.coef = r.required_host<const double>("coef", a.rows);
    a.lin = r.host<const double>("lin", a.rows);
    read_sharded_grad(r, a, a.grad, a.grad_dtype, true);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_softmax_grad(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_softmax_grad(a); }
};

// A block's entries by flat index (Float64Array: B·N_r may pass 2^31): count, index. float32 on
// the host; any dtype on the device (read widened, written rounded once).
void read_indexed(Reader& r, const char* key, ScoresArgs& s, const double*& index, int64_t& count) {
  r.scores(s, key);
  if (s.dtype != DType::Float32 && !r.on_device()) fail(err::kDType, std::string(key) + ": expected float32 on the host");
  count = r.integer("count");
  index = r.required_host<const double>("index", count);
  const double size = double(s.rows) * double(s.cols);
  for (int64_t k = 0; k < count; ++k)
    if (!(index[k] >= 0 && index[k] < size && index[k] == double(int64_t(index[k]))))
      fail(err::kArg, "index[" + std::to_string(k) + "]: expected a flat index in [0, " + std::to_string(int64_t(size)) + ")");
}

// shardedGather({ localScores, dtype, rows, cols, scale, count, index, values })
struct ShardedGather {
  using Args = ShardedGatherArgs;
  static constexpr const char* name = "shardedGather";
  static void read(Reader& r, Args& a) {
    ScoresArgs s{};
    read_indexed(r, "localScores", s, a.index, a.count);
    a.block = s.scores;
    a.dtype = s.dtype;
    a.size = s.rows * s.cols;
    a.values = r.required_host<float>("values", a.count);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_gather(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_gather(a); }
};

// shardedScatter({ grad, dtype, rows, cols, scale, count, index, values })
struct ShardedScatter {
  using Args = ShardedScatterArgs;
  static constexpr const char* name = "shardedScatter";
  static void read(Reader& r, Args& a) {
    ScoresArgs s{};
    read_indexed(r, "grad", s, a.index, a.count);
    a.size = s.rows * s.cols;
    a.dtype = s.dtype;
    a.block = r.matrix("grad", s.dtype, a.size, Access::Write, true);
    a.values = r.required_host<const float>("values", a.count);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_scatter(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_scatter(a); }
};

// shardedColumnStats({ localScores, ..., max, rest, bad })
struct ShardedColumnStats {
  using Args = ShardedColumnStatsArgs;
  static constexpr const char* name = "shardedColumnStats";
  static void read(Reader& r, Args& a) {
    read_sharded_scores(r, a);
    a.max = r.required_host<double>("max", a.cols);
    a.rest = r.required_host<double>("rest", a.cols);
    a.bad = r.required_host<int32_t>("bad", 2);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_column_stats(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_column_stats(a); }
};

// shardedSymmetricGrad({ localScores, ..., rowMax, rowCoef, colMax, colCoef, grad? }) → { dScale }
struct ShardedSymmetricGrad {
  using Args = ShardedSymmetricGradArgs;
  static constexpr const char* name = "shardedSymmetricGrad";
  static void read(Reader& r, Args& a) {
    read_sharded_scores(r, a);
    a.row_max = r.required_host<const double>("rowMax", a.rows);
    a.row_coef = r.required_host<const double>("rowCoef", a.rows);
    a.col_max = r.required_host<const double>("colMax", a.cols);
    a.col_coef = r.required_host<const double>("colCoef", a.cols);
    read_sharded_grad(r, a, a.grad, a.grad_dtype, false);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return sharded_symmetric_grad(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::sharded_symmetric_grad(a); }
};

// Soft top-k's sharded block: localScores, alpha and exclude? (local columns).
void read_sharded_topk(Reader& r, ShardedTopKBlock& a) {
  read_sharded_scores(r, a);
  a.alpha = float(r.number("alpha"));
  if (!(a.alpha > 0)) fail(err::kArg, "alpha: expected a finite number > 0");
  a.exclude = r.exclude(a);
  // Sorted, as lib/sharded.ts sends them: the CUDA sweeps find a column by binary search.
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t e = a.exclude.begin(i) + 1; e < a.exclude.end(i); ++e)
      if (a.exclude.cols[e - 1] >= a.exclude.cols[e]) fail(err::kCsr, "exclude row " + std::to_string(i) + ": expected increasing columns");
}

// shardedTopKRange({ localScores, ..., alpha, exclude?, max, min, count, bad })
struct ShardedTopKRange {
  using Args = ShardedTopKRangeArgs;
  static constexpr const char* name = "shardedTopKRange";
  static void read(Reader& r, Args& a) {
    read_sharded_topk(r, a);
    a.max = r.required_host<double>("max", a.rows);
    a.min = r.required_host<double>("min", a.rows);
    a.count = r.required_host<double>("count", a.rows);
    a.bad = r.required_host<int32_t>("bad", 2);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_topk_range(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_topk_range(a); }
};

// shardedTopKSums({ localScores, ..., alpha, exclude?, searching, rowsAt, t, sums })
struct ShardedTopKSums {
  using Args = ShardedTopKSumsArgs;
  static constexpr const char* name = "shardedTopKSums";
  static void read(Reader& r, Args& a) {
    read_sharded_topk(r, a);
    a.searching = r.integer("searching");
    a.rows_at = r.required_host<const int32_t>("rowsAt", a.searching);
    a.t = r.required_host<const double>("t", a.searching);
    a.sums = r.required_host<float>("sums", 5 * a.searching);
    for (int64_t k = 0; k < a.searching; ++k)
      if (a.rows_at[k] < 0 || a.rows_at[k] >= a.rows) fail(err::kArg, "rowsAt: expected rows in [0, " + std::to_string(a.rows) + ")");
  }
  static void cpu(Context& ctx, const Args& a) { sharded_topk_sums(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_topk_sums(a); }
};

// shardedTopKGrad({ localScores, ..., alpha, exclude?, t, coef, grad }) → { dScale }
struct ShardedTopKGrad {
  using Args = ShardedTopKGradArgs;
  static constexpr const char* name = "shardedTopKGrad";
  static void read(Reader& r, Args& a) {
    read_sharded_topk(r, a);
    a.t = r.required_host<const double>("t", a.rows);
    a.coef = r.required_host<const double>("coef", a.rows);
    read_sharded_grad(r, a, a.grad, a.grad_dtype, true);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return sharded_topk_grad(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::sharded_topk_grad(a); }
};

// The key-embedding form's chunk: { queries, queriesDtype, row0, queryRows, keys, keysDtype,
// rows, cols, dim, keyScale?, queryScale? }: rows [row0, row0 + rows) of the query_rows queries.
// On the host float32 queries (Q̂, normalised by the caller); on the device the raw queries, of
// the keys' dtype, on the keys' device.
void read_sharded_chunk(Reader& r, ShardedEmbeddingsChunk& a) {
  a.rows = r.integer("rows");
  a.cols = r.integer("cols");
  a.dim = r.integer("dim");
  a.row0 = r.integer("row0");
  a.query_rows = r.integer("queryRows");
  if (a.row0 + a.rows > a.query_rows) fail(err::kArg, "row0: expected the chunk's rows within queryRows");
  a.queries_dtype = r.dtype("queriesDtype");
  a.keys_dtype = r.dtype("keysDtype");
  a.queries = r.input("queries", a.queries_dtype, a.query_rows * a.dim);
  a.keys = r.matrix("keys", a.keys_dtype, a.cols * a.dim, Access::Read, a.cols * a.dim > 0);
  if (r.on_device() ? a.queries_dtype != a.keys_dtype : a.queries_dtype != DType::Float32)
    fail(err::kDType, "queries: expected float32 on the host, the keys' dtype on the device");
  a.key_scale = r.host<const float>("keyScale", a.cols);
  a.query_scale = r.host<const float>("queryScale", a.rows);
}

// shardedScores({ ...the chunk, bias?, scores }): scores on the queries' device.
struct ShardedScores {
  using Args = ShardedScoresArgs;
  static constexpr const char* name = "shardedScores";
  static void read(Reader& r, Args& a) {
    read_sharded_chunk(r, a);
    a.bias = r.host<const float>("bias", a.cols);
    a.scores = static_cast<float*>(r.matrix("scores", DType::Float32, a.rows * a.cols, Access::Write, true));
  }
  static void cpu(Context& ctx, const Args& a) { sharded_scores(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_scores(a); }
};

// shardedEmbeddingsGrad({ ...the chunk, grad, gradQueries, gradKeys, overwriteKeys, gradBias? }):
// grad, gradQueries (queryRows × dim) and gradKeys float32 on the queries' device; gradBias host.
struct ShardedEmbeddingsGrad {
  using Args = ShardedEmbeddingsGradArgs;
  static constexpr const char* name = "shardedEmbeddingsGrad";
  static void read(Reader& r, Args& a) {
    read_sharded_chunk(r, a);
    a.grad = static_cast<float*>(r.matrix("grad", DType::Float32, a.rows * a.cols, Access::Write, true));
    a.grad_queries = static_cast<float*>(r.matrix("gradQueries", DType::Float32, a.query_rows * a.dim, Access::Write, true));
    a.grad_keys = static_cast<float*>(r.matrix("gradKeys", DType::Float32, a.cols * a.dim, Access::Write, true));
    a.overwrite_keys = r.flag("overwriteKeys");
    a.grad_bias = r.host<float>("gradBias", a.cols);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_embeddings_grad(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_embeddings_grad(a); }
};

// shardedNorms({ x, dtype, rows, dim, inv }): inv on the host.
struct ShardedNorms {
  using Args = ShardedNormsArgs;
  static constexpr const char* name = "shardedNorms";
  static void read(Reader& r, Args& a) {
    a.dtype = r.dtype("dtype");
    a.rows = r.integer("rows");
    a.dim = r.integer("dim");
    a.x = r.input("x", a.dtype, a.rows * a.dim);
    a.inv = r.required_host<float>("inv", a.rows);
  }
  static void cpu(Context& ctx, const Args& a) { sharded_norms(ctx, a); }
  static void cuda(const Args& a) { cuda::sharded_norms(a); }
};

// shardedEmbeddingsFinish({ queries, keys, dtype, rows, cols, dim, queryScale?, keyScale?,
// gradQueriesIn, gradQueries, gradDtype, gradKeysIn, gradKeys, accumulate }): the device form's
// end (the host form finishes in lib/shardedSource.ts).
struct ShardedEmbeddingsFinish {
  using Args = ShardedEmbeddingsFinishArgs;
  static constexpr const char* name = "shardedEmbeddingsFinish";
  static void read(Reader& r, Args& a) {
    a.dtype = r.dtype("dtype");
    a.rows = r.integer("rows");
    a.cols = r.integer("cols");
    a.dim = r.integer("dim");
    a.queries = r.input("queries", a.dtype, a.rows * a.dim);
    a.keys = r.matrix("keys", a.dtype, a.cols * a.dim, Access::Read, true);
    a.query_scale = r.host<const float>("queryScale", a.rows);
    a.key_scale = r.host<const float>("keyScale", a.cols);
    a.grad_queries_in = static_cast<const float*>(r.matrix("gradQueriesIn", DType::Float32, a.rows * a.dim, Access::Read, true));
    a.grad_dtype = r.dtype("gradDtype");
    if (a.grad_dtype != DType::Float32 && a.grad_dtype != a.dtype) fail(err::kDType, "gradDtype: expected float32 or the queries' dtype");
    a.grad_queries = r.matrix("gradQueries", a.grad_dtype, a.rows * a.dim, Access::Write, true);
    a.grad_keys_in = static_cast<float*>(r.matrix("gradKeysIn", DType::Float32, a.cols * a.dim, Access::Write, true));
    a.grad_keys = static_cast<float*>(r.matrix("gradKeys", DType::Float32, a.cols * a.dim, Access::Write, true));
    a.accumulate = r.flag("accumulate");
  }
  static void cpu(Context&, const Args&) { fail(err::kDevice, "shardedEmbeddingsFinish: device tensors only (the host form finishes in lib/shardedSource.ts)"); }
  static void cuda(const Args& a) { cuda::sharded_embeddings_finish(a); }
};

// What every <loss>FromEmbeddings reads: { queries, keys, dtype, rows, dim, cols, normalize,
// scale, reduction, gradOutput?, gradQueries?, gradDtype, gradKeys?, accumulate, gradScale,
// rowLoss, memoryBudget }. On the host or the queries' device. Returns the B×N grid of
// the scores the call never holds whole, which the loss's CSRs index.
ScoresArgs read_embeddings(Reader& r, EmbeddingsArgs& a) {
  a.dtype = r.dtype("dtype");
  a.rows = r.integer("rows");
  a.dim = r.integer("dim");
  a.cols = r.integer("cols");
  a.queries = r.input("queries", a.dtype, a.rows * a.dim);
  a.keys = r.matrix("keys", a.dtype, a.cols * a.dim, Access::Read, true);
  a.normalize = r.flag("normalize");
  a.bias = r.host<const float>("bias", a.cols);
  a.scale = float(r.number("scale"));
  if (!(a.scale > 0)) fail(err::kArg, "scale: expected a finite number > 0");
  a.reduction = r.code<Reduction>("reduction", 2);
  a.grad_output = r.host<const float>("gradOutput", a.rows);
  a.accumulate = r.flag("accumulate");
  a.grad_dtype = r.dtype("gradDtype");
  if (a.grad_dtype != DType::Float32 && a.grad_dtype != a.dtype)
    fail(err::kDType, std::string("gradDtype: expected float32 or the queries' dtype ") + dtype_name(a.dtype));
  a.grad_queries = r.accumulated("gradQueries", a.grad_dtype, a.rows * a.dim);
  a.grad_keys = static_cast<float*>(r.accumulated("gradKeys", DType::Float32, a.cols * a.dim));
  a.grad_bias = r.host_accumulated("gradBias", a.cols);
  a.grad_scale = r.flag("gradScale");
  a.row_loss = r.required_host<float>("rowLoss", a.rows);
  a.memory_budget = r.integer("memoryBudget");
  if (a.memory_budget < 1) fail(err::kArg, "memoryBudget: expected a whole number of bytes > 0");
  ScoresArgs grid{};
  grid.rows = a.rows;
  grid.cols = a.cols;
  return grid;
}

// decoupledSoftmax / multiLabelSoftmax / binaryCrossEntropy FromEmbeddings({ ...the embeddings
// options, positives, exclude? }).
struct PositivesFromEmbeddings {
  using Args = PositivesEmbeddingsArgs;
  static void read(Reader& r, Args& a) {
    const ScoresArgs grid = read_embeddings(r, a);
    a.positives = r.csr("positives", grid, false);
    a.exclude = r.exclude(grid);
  }
};
struct DecoupledSoftmaxFromEmbeddings : PositivesFromEmbeddings {
  static constexpr const char* name = "decoupledSoftmaxFromEmbeddings";
  static LossResult cpu(Context& ctx, const Args& a) { return decoupled_softmax_from_embeddings(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::decoupled_softmax_from_embeddings(a); }
};
struct MultiLabelSoftmaxFromEmbeddings : PositivesFromEmbeddings {
  static constexpr const char* name = "multiLabelSoftmaxFromEmbeddings";
  static LossResult cpu(Context& ctx, const Args& a) { return multi_label_softmax_from_embeddings(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::multi_label_softmax_from_embeddings(a); }
};
struct BinaryCrossEntropyFromEmbeddings : PositivesFromEmbeddings {
  static constexpr const char* name = "binaryCrossEntropyFromEmbeddings";
  static LossResult cpu(Context& ctx, const Args& a) { return binary_cross_entropy_from_embeddings(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::binary_cross_entropy_from_embeddings(a); }
};

// infoNCEFromEmbeddings({ ...the embeddings options, positives?, exclude?, symmetric }).
struct InfoNCEFromEmbeddings {
  using Args = InfoNCEEmbeddingsArgs;
  static constexpr const char* name = "infoNCEFromEmbeddings";
  static void read(Reader& r, Args& a) {
    const ScoresArgs grid = read_embeddings(r, a);
    a.positives = r.csr("positives", grid, true);
    a.exclude = r.exclude(grid);
    a.symmetric = r.flag("symmetric");
  }
  static LossResult cpu(Context& ctx, const Args& a) { return info_nce_from_embeddings(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::info_nce_from_embeddings(a); }
};

// decoupledContrastiveFromEmbeddings({ ...the embeddings options, positives?, exclude?, sigma })
struct DecoupledContrastiveFromEmbeddings {
  using Args = DecoupledContrastiveEmbeddingsArgs;
  static constexpr const char* name = "decoupledContrastiveFromEmbeddings";
  static void read(Reader& r, Args& a) {
    const ScoresArgs grid = read_embeddings(r, a);
    a.positives = r.csr("positives", grid, true);
    a.exclude = r.exclude(grid);
    a.sigma = read_sigma(r);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return decoupled_contrastive_from_embeddings(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::decoupled_contrastive_from_embeddings(a); }
};

// softTopKLossFromEmbeddings({ ...the embeddings options, positives, alpha, k, tol, maxIter, exclude? })
struct SoftTopKLossFromEmbeddings {
  using Args = SoftTopKLossEmbeddingsArgs;
  static constexpr const char* name = "softTopKLossFromEmbeddings";
  static void read(Reader& r, Args& a) {
    const ScoresArgs grid = read_embeddings(r, a);
    read_solve(r, grid, a, true);
    a.positives = r.csr("positives", grid, false);
  }
  static LossResult cpu(Context& ctx, const Args& a) { return soft_topk_loss_from_embeddings(ctx, a); }
  static LossResult cuda(const Args& a) { return cuda::soft_topk_loss_from_embeddings(a); }
};

}  // namespace

void define_ops(Napi::Env env, Napi::Object exports) {
  define_op<LogSumExp>(env, exports);
  define_op<SoftmaxCrossEntropy>(env, exports);
  define_op<DecoupledSoftmax>(env, exports);
  define_op<MultiLabelSoftmax>(env, exports);
  define_op<BinaryCrossEntropy>(env, exports);
  define_op<InfoNCE>(env, exports);
  define_op<DecoupledContrastive>(env, exports);
  define_op<SoftTopK>(env, exports);
  define_op<SoftTopKVjp>(env, exports);
  define_op<SoftTopKLoss>(env, exports);
  define_op<LinearCrossEntropy>(env, exports);
  define_op<ShardedRowStats>(env, exports);
  define_op<ShardedSoftmaxGrad>(env, exports);
  define_op<ShardedColumnStats>(env, exports);
  define_op<ShardedSymmetricGrad>(env, exports);
  define_op<ShardedTopKRange>(env, exports);
  define_op<ShardedTopKSums>(env, exports);
  define_op<ShardedTopKGrad>(env, exports);
  define_op<ShardedGather>(env, exports);
  define_op<ShardedScatter>(env, exports);
  define_op<ShardedScores>(env, exports);
  define_op<ShardedEmbeddingsGrad>(env, exports);
  define_op<ShardedNorms>(env, exports);
  define_op<ShardedEmbeddingsFinish>(env, exports);
  define_op<DecoupledSoftmaxFromEmbeddings>(env, exports);
  define_op<MultiLabelSoftmaxFromEmbeddings>(env, exports);
  define_op<BinaryCrossEntropyFromEmbeddings>(env, exports);
  define_op<InfoNCEFromEmbeddings>(env, exports);
  define_op<DecoupledContrastiveFromEmbeddings>(env, exports);
  define_op<SoftTopKLossFromEmbeddings>(env, exports);
}

}  // namespace fl::napi
