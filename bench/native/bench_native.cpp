// Native microbenchmarks, llm.c's dev/ habit: each op is first validated at the bench shape
// against its long-double reference (test/native/reference.h), and only then timed. Prints the
// median time, the bandwidth over the bytes the op must move and that as a share of this
// machine's copy floor (fl::parallel_copy on the same pool, as bench/run.mjs measures it).
//
//   bench_native OP:ROWS:COLS:BYTES ...
//
// bench/native/run.mjs (npm run bench:native) passes every op's bench sizes and byte counts from
// the op registry, scripts/ops.mjs. Exit status 1 when an op fails its validation.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "native/core/context.h"
#include "native/ops/copy.h"
#include "native/api/args.h"
#include "native/ops/soft_topk.h"
#include "test/native/reference.h"

using namespace fltest;
using Clock = std::chrono::steady_clock;

namespace {

// Times of repeated calls: at least 2, and until `seconds` have passed.
void sample(const std::function<void()>& fn, double seconds, std::vector<double>& t) {
  const auto start = Clock::now();
  for (size_t n = 0; n < 2 || (std::chrono::duration<double>(Clock::now() - start).count() < seconds && n < 100); ++n) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median ms of the op and of the floor copy, after a warm-up, timed in 5 alternating rounds (as
// bench/run.mjs does): a shared machine's drift then hits both alike.
std::pair<double, double> time_ms(const std::function<void()>& op, const std::function<void()>& copy) {
  op();
  copy();
  std::vector<double> t_op, t_copy;
  for (int round = 0; round < 5; ++round) {
    sample(op, 0.12, t_op);
    sample(copy, 0.04, t_copy);
  }
  return {median(t_op), median(t_copy)};
}

// An op at one shape: `run` is the timed call, `validate` the reason it is wrong (empty: right).
struct Bench {
  std::function<void()> run;
  std::function<std::string()> validate;
};

std::string check(const char* what, ld err, ld tol) {
  if (err <= tol) return "";
  char buf[128];
  std::snprintf(buf, sizeof buf, "%s error %.3Lg > %.3Lg", what, err, tol);
  return buf;
}

ld rel_l2(const std::vector<float>& got, const std::vector<ld>& want) {
  ld num = 0, den = 0;
  for (size_t k = 0; k < want.size(); ++k) {
    num += (got[k] - want[k]) * (got[k] - want[k]);
    den += want[k] * want[k];
  }
  return std::sqrt(num / std::max<ld>(den, 1e-300L));
}

std::vector<float> normal_scores(Rng& rng, int64_t rows, int64_t cols) {
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (auto& v : x) v = float(rng.normal() * 3);
  return x;
}

// CLIP-like cosine similarities (bench/run.mjs's 'cosine' rows): matched pairs on the diagonal.
std::vector<float> cosine_scores(Rng& rng, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      x[size_t(i * n + j)] = i == j ? float(0.3 + 0.6 * rng.uniform()) : float(std::clamp(0.2 * rng.normal(), -1.0, 1.0));
  return x;
}

// What every bench keeps alive between calls: inputs and outputs (the gradient reused, as a
// training loop reuses it).
struct Buffers {
  Problem p;
  std::vector<float> grad, row_loss, go;
  std::vector<int32_t> labels;
};

// The common part of a loss's arguments: fp32 scores, 'mean', the fp32 gradient into b.grad.
void loss_args(fl::LossArgs& a, const float* scores, int64_t rows, int64_t cols, float scale, Buffers& b, bool dscale) {
  a.scores = scores;
  a.dtype = fl::DType::Float32;
  a.rows = rows;
  a.cols = cols;
  a.scale = scale;
  a.reduction = Reduction::Mean;
  a.grad = b.grad.data();
  a.grad_dtype = fl::DType::Float32;
  a.grad_scale = dscale;
  a.row_loss = b.row_loss.data();
}

Bench csr_loss(fl::Context& ctx, Loss loss, Problem problem, float scale) {
  auto b = std::make_shared<Buffers>();
  b->p = std::move(problem);
  b->grad.assign(b->p.s.size(), NAN);
  b->row_loss.assign(size_t(b->p.B), NAN);
  const float sigma = 0.5f;
  return {[&ctx, b, loss, scale, sigma] { call(ctx, loss, b->p, {}, scale, Reduction::Mean, b->go, sigma, b->grad, b->row_loss, false); },
          [&ctx, b, loss, scale, sigma] {
            const LossResult got = call(ctx, loss, b->p, {}, scale, Reduction::Mean, b->go, sigma, b->grad, b->row_loss);
            const Reduced want = reduce(b->p, rows_reference(b->p, loss, scale, sigma), scale, Reduction::Mean, b->go);
            std::string why = check("loss", std::fabs(got.loss - want.loss) / std::max<ld>(1, std::fabs(want.loss)), 1e-5);
            if (why.empty()) why = check("grad", rel_l2(b->grad, want.grad), 1e-5);
            return why;
          }};
}

// per_row() distinct columns in each row, no exclusions, unit weights.
Problem positives_problem(Rng& rng, int64_t rows, int64_t cols, const std::function<int()>& per_row, std::vector<float> s) {
  Problem p{rows, cols, std::move(s), {}, {}, false};
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<int32_t> taken;
    const int64_t n = std::min<int64_t>(per_row(), cols);
    while (int64_t(taken.size()) < n) {
      const int32_t c = int32_t(rng.next() % uint64_t(cols));
      if (std::find(taken.begin(), taken.end(), c) == taken.end()) taken.push_back(c);
    }
    p.pos.cols.insert(p.pos.cols.end(), taken.begin(), taken.end());
    p.pos.w.insert(p.pos.w.end(), taken.size(), 1.f);
    p.pos.ptr.push_back(int32_t(p.pos.cols.size()));
    p.ex.ptr.push_back(0);
  }
  return p;
}

// The inputs of each op as bench/run.mjs times them (scripts/ops.mjs: make and bench.prepare).
Bench make_bench(fl::Context& ctx, const std::string& op, int64_t rows, int64_t cols) {
  Rng rng(42);
  if (op == "logSumExp") {
    auto x = std::make_shared<std::vector<float>>(normal_scores(rng, rows, cols));
    auto out = std::make_shared<std::vector<float>>(size_t(rows), NAN);
    auto run = [&ctx, x, out, rows, cols] {
      fl::LogSumExpArgs a{};
      a.scores = x->data();
      a.dtype = fl::DType::Float32;
      a.rows = rows;
      a.cols = cols;
      a.scale = 1.f;
      a.out = out->data();
      fl::log_sum_exp(ctx, a);
    };
    return {run, [run, x, out, rows, cols] {
              run();
              ld worst = 0;
              for (int64_t r = 0; r < rows; ++r) {
                const ld want = ref_lse(x->data() + r * cols, cols, 1.0);
                worst = std::max(worst, std::fabs((*out)[size_t(r)] - want) / std::max<ld>(1, std::fabs(want)));
              }
              return check("lse", worst, 1e-5);
            }};
  }
  if (op == "softmaxCrossEntropy") {
    auto b = std::make_shared<Buffers>();
    b->p.s = normal_scores(rng, rows, cols);
    for (int64_t i = 0; i < rows; ++i) b->labels.push_back(int32_t(rng.next() % uint64_t(cols)));
    b->grad.assign(b->p.s.size(), NAN);
    b->row_loss.assign(size_t(rows), NAN);
    auto args = [b, rows, cols](bool dscale) {
      fl::CrossEntropyArgs a{};
      loss_args(a, b->p.s.data(), rows, cols, 1.f, *b, dscale);
      a.labels = b->labels.data();
      a.ignore_index = -100;
      return a;
    };
    return {[&ctx, args] { fl::cross_entropy(ctx, args(false)); },
            [&ctx, args, b, rows, cols] {
              const LossResult got = fl::cross_entropy(ctx, args(true));
              const Ref want = cross_entropy_reference(b->p.s, rows, cols, b->labels, 1.f, 0.f, 0.f, nullptr, 0.f, Reduction::Mean);
              std::string why = check("loss", std::fabs(got.loss - want.loss) / std::fabs(want.loss), 1e-5);
              if (why.empty()) why = check("grad", rel_l2(b->grad, want.grad), 1e-5);
              return why;
            }};
  }
  if (op == "decoupledSoftmax" || op == "multiLabelSoftmax" || op == "binaryCrossEntropy") {
    const Loss loss = op == "decoupledSoftmax" ? Loss::DecoupledSoftmax : op == "multiLabelSoftmax" ? Loss::MultiLabelSoftmax : Loss::BCE;
    return csr_loss(ctx, loss, positives_problem(rng, rows, cols, [] { return 3; }, normal_scores(rng, rows, cols)), 1.f);
  }
  if (op == "decoupledContrastive") {
    // DCLW at logit scale 20, σ = 0.5, diagonal positives.
    Problem p = positives_problem(rng, rows, cols, [] { return 0; }, cosine_scores(rng, rows));
    for (int64_t i = 0; i < rows; ++i) {
      p.pos.cols.push_back(int32_t(i));
      p.pos.w.push_back(1.f);
      p.pos.ptr[size_t(i) + 1] = int32_t(i + 1);
    }
    return csr_loss(ctx, Loss::DCLW, std::move(p), 20.f);
  }
  if (op == "infoNCE") {
    // CLIP: symmetric, logit scale 20 ('mean' is the 'sum' loss over n).
    auto b = std::make_shared<Buffers>();
    b->p.s = cosine_scores(rng, rows);
    b->grad.assign(b->p.s.size(), NAN);
    b->row_loss.assign(size_t(rows), NAN);
    auto args = [b, rows](bool dscale) {
      fl::InfoNCEArgs a{};
      loss_args(a, b->p.s.data(), rows, rows, 20.f, *b, dscale);
      a.symmetric = true;
      return a;
    };
    return {[&ctx, args] { fl::info_nce(ctx, args(false)); },
            [&ctx, args, b, rows] {
              const LossResult got = fl::info_nce(ctx, args(true));
              Ref want = sym_reference(b->p.s, rows, 20.f);
              for (auto& g : want.grad) g /= rows;
              std::string why = check("loss", std::fabs(got.loss - want.loss / rows) / std::fabs(want.loss / rows), 1e-5);
              if (why.empty()) why = check("grad", rel_l2(b->grad, want.grad), 1e-5);
              return why;
            }};
  }
  if (op == "softTopKLoss") {
    // DEXML's k = 5, α = 2; 1 to 3 positives per row.
    auto b = std::make_shared<Buffers>();
    b->p = positives_problem(rng, rows, cols, [&rng] { return 1 + int(rng.next() % 3); }, normal_scores(rng, rows, cols));
    b->grad.assign(b->p.s.size(), NAN);
    b->row_loss.assign(size_t(rows), NAN);
    auto args = [b, rows, cols](bool dscale) {
      fl::SoftTopKLossArgs a{};
      loss_args(a, b->p.s.data(), rows, cols, 1.f, *b, dscale);
      a.alpha = 2.f;
      a.k = 5;
      a.tol = 1e-5f;
      a.max_iter = 100;
      a.positives = b->p.pos.csr(false);
      return a;
    };
    return {[&ctx, args] { fl::soft_topk_loss(ctx, args(false)); },
            [&ctx, args, b, cols] {
              // The long-double threshold bisects each row 100 times: the first 8 rows (of the
              // same call at the bench shape) keep the check to seconds.
              fl::soft_topk_loss(ctx, args(true));
              const int64_t rows = std::min<int64_t>(8, b->p.B);
              ld worst = 0;
              std::vector<float> got(b->grad.begin(), b->grad.begin() + rows * cols);
              std::vector<ld> grad;
              const std::vector<bool> out(static_cast<size_t>(cols), false);
              for (int64_t r = 0; r < rows; ++r) {
                const std::vector<float> row(b->p.s.begin() + r * cols, b->p.s.begin() + (r + 1) * cols);
                const std::vector<int32_t> pos(b->p.pos.cols.begin() + b->p.pos.ptr[size_t(r)], b->p.pos.cols.begin() + b->p.pos.ptr[size_t(r) + 1]);
                ld l;
                std::vector<ld> g;
                ref_loss_row(row, cols, pos, out, 5, 2, l, g);
                worst = std::max(worst, std::fabs(b->row_loss[size_t(r)] - l) / std::max<ld>(1, std::fabs(l)));
                for (ld v : g) grad.push_back(v / b->p.B);  // 'mean' divides by B
              }
              std::string why = check("row loss", worst, 1e-5);
              if (why.empty()) why = check("grad", rel_l2(got, grad), 1e-5);
              return why;
            }};
  }
  std::fprintf(stderr, "bench_native: no op %s\n", op.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  fl::Context ctx;
  // The copy floor: 256 MiB through the pool, one read and one write per byte.
  const size_t copy_bytes = size_t(256) << 20;
  std::vector<char> src(copy_bytes, 1), dst(copy_bytes);
  const auto copy = [&] { fl::parallel_copy(ctx, dst.data(), src.data(), copy_bytes); };
  std::printf("%s, %d threads; the floor: a %zu MiB copy through the pool, timed alongside each op\n", fl::isa_name(ctx.isa), ctx.pool.threads(),
              copy_bytes >> 20);
  int status = 0;
  for (int i = 1; i < argc; ++i) {
    char name[64];
    long long rows, cols;
    double bytes;
    if (std::sscanf(argv[i], "%63[^:]:%lld:%lld:%lf", name, &rows, &cols, &bytes) != 4) {
      std::fprintf(stderr, "bench_native: expected OP:ROWS:COLS:BYTES, got %s\n", argv[i]);
      return 2;
    }
    const Bench b = make_bench(ctx, name, rows, cols);
    const std::string why = b.validate();
    if (!why.empty()) {
      std::printf("%-22s %12s  FAIL: %s (not timed)\n", name, (std::to_string(rows) + "x" + std::to_string(cols)).c_str(), why.c_str());
      status = 1;
      continue;
    }
    const auto [ms, copy_ms] = time_ms(b.run, copy);
    const double copy_bw = 2.0 * double(copy_bytes) / (copy_ms / 1e3), floor_ms = bytes / copy_bw * 1e3;
    std::printf("%-22s %12s  ok  %9.3f ms  %6.1f GB/s  %4.0f%% of copy floor (copy %.1f GB/s)\n", name,
                (std::to_string(rows) + "x" + std::to_string(cols)).c_str(), ms, bytes / (ms / 1e3) / 1e9, 100 * floor_ms / ms, copy_bw / 1e9);
  }
  return status;
}
