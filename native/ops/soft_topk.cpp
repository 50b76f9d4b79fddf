#include "soft_topk.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../api/error.h"
#include "../core/context.h"
#include "../core/dtype.h"
#include "../core/parallel.h"
#include "../isa/kernels.h"
#include "csr.h"
#include "loss.h"
#include "soft_topk_math.h"

namespace fl {
namespace {

// Candidate lists. After a row's first pass, a pass at t keeps the entries with |a| ≤ kCandWindow
// (a = α(z + t)) and summarises the others per side by S1 = Σ e^{−|a|} and S2 = Σ e^{−2|a|}. While
// the solver's t stays within kCandReach/α of that pass's t_g, every summarised entry has
// |a| ≥ kCandWindow − kCandReach = 8.5, where p = e^a − e^{2a} + O(e^{3a}) (below; 1 − p alike
// above) holds to e^{−17} ≈ 4e-8 relative, and p(1 − p) = e^a − 2e^{2a} to 3× that: so their
// share of the sums at t is e^{d}S1 − e^{2d}S2 (d = α(t − t_g)), and a pass costs a sweep of the
// candidates only: the same root as full passes, to fp32. Further away the list is rebuilt, as
// it is when a tile's candidates exceed a quarter of it; after kMaxGathers lists (a flat row)
// the row keeps full passes.
constexpr float kCandWindow = 12.f;
constexpr double kCandReach = 3.5;
constexpr int kMaxGathers = 3;
enum class PassKind { Full, Gather, Candidates };

struct TileCandidates {
  std::vector<float> x;  // the candidates' scores as float32 (z = scale·x as in the full passes)
  TopKGather g{};        // their count (> g.cap: overflowed) and the others' summary
};

struct RowState {
  TopKSolver s{};
  bool gathered = false;     // the tiles' candidate lists are current, from a pass at t_g
  bool full_only = false;    // candidates did not pay (or did not fit): full passes
  bool guessed = false;      // the search starts at a first guess inside the bracket
  int gathers = 0;
  float t_g = 0;
  bool below = false, above = false;  // entries were summarised below / above the window
  bool need = false;    // the row needs a threshold
  int64_t bad = -1;     // column of the first NaN/+inf
  int64_t n_in = 0;     // N_i
  bool k_out = false;   // k outside (0, N_i)
};

// The threshold search over every row, and a sweep after it. Rows are solved one per task
// while there are enough rows to keep the pool busy, so each row stays in cache across its
// Newton passes and the sweep; otherwise (a few huge rows) every pass is spread over the row's
// tiles. Both ways sum the same tiles in the same order: results do not depend on the thread
// count.
class TopKRows {
 public:
  TopKRows(Context& ctx, const SoftTopKProblem& p)
      : ctx_(ctx), p_(p), tiles_(tiles_per_row(p.cols)), rows_(size_t(p.rows)), cands_(size_t(p.rows * tiles_)), skip_(p.rows, Csr{}, p.exclude) {}

  const RowState& row(int64_t r) const { return rows_[size_t(r)]; }
  float threshold(int64_t r) const { return float(rows_[size_t(r)].s.t); }

  RowSkip skip(int64_t r) const { return skip_.row(r); }
  float x(int64_t r, int64_t c) const {
    return load_element(p_.scores, p_.dtype, r * p_.cols + c);
  }
  // α(z + t) for an entry, formed in fp32 exactly as the SIMD sweeps form it.
  float arg(float xv, float t) const { return (xv * p_.scale + t) * p_.alpha; }
  const void* at(int64_t r, int64_t c) const { return static_cast<const char*>(p_.scores) + (r * p_.cols + c) * dtype_size(p_.dtype); }

  // Solves the rows where need(r), then calls prepare(r) once per row and sweep(r, c0, c1) once
  // per tile of every row without an error; returns each row's sum of its sweep results (in
  // tile order). Throws for NaN/+inf (any row) and for k out of range (rows that need it).
  template <class Need, class Prepare, class Sweep>
  std::vector<double> run(Need&& need, Prepare&& prepare, Sweep&& sweep) {
    std::vector<double> parts(size_t(p_.rows * tiles_), 0.0);
    auto tile_end = [&](int64_t k) { return std::min(p_.cols, (k + 1) * kRowTile); };
    if (tiles_ == 1 || p_.rows >= ctx_.pool.threads()) {
      const int64_t per_task = std::max<int64_t>(1, kRowTile / std::max<int64_t>(p_.cols, 1));
      ctx_.pool.parallel_for((p_.rows + per_task - 1) / per_task, [&](int64_t task) {
        for (int64_t r = task * per_task; r < std::min(p_.rows, (task + 1) * per_task); ++r) {
          TopKTileStats st = empty_stats();
          for (int64_t k = 0; k < tiles_; ++k) merge_stats(st, stats(r, k * kRowTile, tile_end(k)));
          if (!start(r, st, need(r))) continue;
          RowState& rs = rows_[size_t(r)];
          while (rs.need && !rs.s.done) {
            const PassKind kind = pass_kind(rs);
            TopKSums s{};
            for (int64_t k = 0; k < tiles_; ++k) merge(s, tile_pass(r, k, k * kRowTile, tile_end(k), kind));
            after_pass(r, kind);
            topk_solver_step(rs.s, s, p_.max_iter);
          }
          release(r);
          prepare(r);
          for (int64_t k = 0; k < tiles_; ++k) parts[size_t(r * tiles_ + k)] = sweep(r, k * kRowTile, tile_end(k));
        }
      });
    } else {
      std::vector<TopKTileStats> st(size_t(p_.rows * tiles_));
      for_each_row_tile(ctx_.pool, p_.rows, p_.cols, [&](int64_t r, int64_t k, int64_t c0, int64_t c1) { st[size_t(r * tiles_ + k)] = stats(r, c0, c1); });
      std::vector<int64_t> active;
      for (int64_t r = 0; r < p_.rows; ++r) {
        TopKTileStats m = empty_stats();
        for (int64_t k = 0; k < tiles_; ++k) merge_stats(m, st[size_t(r * tiles_ + k)]);
        if (start(r, m, need(r)) && rows_[size_t(r)].need) active.push_back(r);
      }
      std::vector<TopKSums> s(active.size() * size_t(tiles_));
      std::vector<PassKind> kinds(active.size());
      while (!active.empty()) {
        for (size_t a = 0; a < active.size(); ++a) kinds[a] = pass_kind(rows_[size_t(active[a])]);
        ctx_.pool.parallel_for(int64_t(active.size()) * tiles_, [&](int64_t i) {
          const int64_t r = active[size_t(i / tiles_)], k = i % tiles_;
          s[size_t(i)] = tile_pass(r, k, k * kRowTile, tile_end(k), kinds[size_t(i / tiles_)]);
        });
        std::vector<int64_t> still;
        for (size_t a = 0; a < active.size(); ++a) {
          TopKSums m{};
          for (int64_t k = 0; k < tiles_; ++k) merge(m, s[a * size_t(tiles_) + size_t(k)]);
          after_pass(active[a], kinds[a]);
          TopKSolver& sv = rows_[size_t(active[a])].s;
          topk_solver_step(sv, m, p_.max_iter);
          if (!sv.done) still.push_back(active[a]);
          else release(active[a]);
        }
        active.swap(still);
      }
      ctx_.pool.parallel_for(p_.rows, [&](int64_t r) {
        if (ok(r)) prepare(r);
      });
      for_each_row_tile(ctx_.pool, p_.rows, p_.cols, [&](int64_t r, int64_t k, int64_t c0, int64_t c1) {
        if (ok(r)) parts[size_t(r * tiles_ + k)] = sweep(r, c0, c1);
      });
    }
    throw_if_bad();
    std::vector<double> per_row(size_t(p_.rows), 0.0);
    for (int64_t r = 0; r < p_.rows; ++r)
      for (int64_t k = 0; k < tiles_; ++k) per_row[size_t(r)] += parts[size_t(r * tiles_ + k)];
    return per_row;
  }

  // The dense gradient over [c0, c1) of row r (see topk_grad): sign·scale·|c|·p(1 − p) at the
  // columns that are in, 0 at excluded ones; returns Σ |c|·p(1 − p)·x for dScale. At the row's
  // solved threshold, or at `t` given (a sharded row's, solved across ranks).
  double dense_grad(int64_t r, int64_t c0, int64_t c1, LogFactor coef, void* grad, DType grad_dtype) const {
    return dense_grad_at(r, c0, c1, threshold(r), coef, grad, grad_dtype);
  }
  double dense_grad_at(int64_t r, int64_t c0, int64_t c1, float t, LogFactor coef, void* grad, DType grad_dtype) const {
    const int64_t esize = dtype_size(grad_dtype);
    const TopKGradFn fn = ctx_.kernels->topk_grad[int(p_.dtype)][grad_dtype == DType::Float32 ? 0 : 1];
    double d = 0;
    int64_t c = c0;
    auto zero = [&](int64_t a, int64_t b) {
      if (grad && b > a) std::fill_n(static_cast<char*>(grad) + (r * p_.cols + a) * esize, size_t((b - a) * esize), char(0));
    };
    for_each_run(c0, c1, skip(r), [&](int64_t a, int64_t b) {
      zero(c, a);
      void* g = grad ? static_cast<char*>(grad) + (r * p_.cols + a) * esize : nullptr;
      d += fn(TopKGradTile{at(r, a), g, b - a, p_.scale, p_.alpha, t, coef.log_abs, coef.sign});
      c = b;
    });
    zero(c, c1);
    return d;
  }

  // Max and min of x, the count of the entries that are in, and the first NaN/+inf over
  // [c0, c1) of row r (excluded entries are checked too).
  TopKTileStats stats(int64_t r, int64_t c0, int64_t c1) const {
    TopKTileStats m = empty_stats();
    for_each_run(c0, c1, skip(r), [&](int64_t a, int64_t b) {
      TopKTileStats t = ctx_.kernels->topk_stats[int(p_.dtype)](at(r, a), b - a);
      if (t.first_bad >= 0) t.first_bad += a;
      merge_stats(m, t);
    }, [&](int64_t c) {
      // An excluded entry takes no part, but NaN/+inf anywhere in the scores is still an error.
      const float v = x(r, c);
      if ((v != v || v == INFINITY) && m.first_bad < 0) m.first_bad = c;
    });
    return m;
  }

  // The split sums over [c0, c1) of row r at threshold t (a full pass).
  TopKSums sums(int64_t r, int64_t c0, int64_t c1, float t) const {
    TopKSums m{};
    for_each_run(c0, c1, skip(r), [&](int64_t a, int64_t b) {
      merge(m, ctx_.kernels->topk_sums[int(p_.dtype)](TopKSumsTile{at(r, a), b - a, p_.scale, p_.alpha, t}));
    });
    return m;
  }

 private:
  static TopKTileStats empty_stats() { return TopKTileStats{-INFINITY, INFINITY, 0, -1}; }
  static void merge_stats(TopKTileStats& a, const TopKTileStats& b) {
    if (a.first_bad >= 0) return;
    if (b.first_bad >= 0) {
      a.first_bad = b.first_bad;
      return;
    }
    a.max = std::max(a.max, b.max);
    a.min = std::min(a.min, b.min);
    a.in += b.in;
  }

  // How the row's next pass runs: its first pass (at an end of the bracket, where every entry
  // would be summarised) and rows without candidates sweep the whole row; then the candidates,
  // while t is within reach of the pass that kept them, else a pass that keeps them anew.
  PassKind pass_kind(RowState& rs) const {
    if (rs.full_only || (rs.s.iterations == 0 && !rs.guessed)) return PassKind::Full;
    if (rs.gathered) {
      const double d = double(p_.alpha) * (double(float(rs.s.t)) - double(rs.t_g));
      if ((!rs.below || d <= kCandReach) && (!rs.above || -d <= kCandReach)) return PassKind::Candidates;
    }
    if (rs.gathers >= kMaxGathers) {
      rs.full_only = true;
      return PassKind::Full;
    }
    return PassKind::Gather;
  }

  // One pass's sums over tile k ([c0, c1)) of row r at the row's current t.
  TopKSums tile_pass(int64_t r, int64_t k, int64_t c0, int64_t c1, PassKind kind) {
    const RowState& rs = rows_[size_t(r)];
    const float t = float(rs.s.t);
    if (kind == PassKind::Full) return sums(r, c0, c1, t);
    TileCandidates& tc = cands_[size_t(r * tiles_ + k)];
    if (kind == PassKind::Gather) {
      const int64_t cap = (c1 - c0) / 4;
      tc.x.resize(size_t(cap + 16));
      tc.g = TopKGather{kCandWindow, tc.x.data(), cap, 0, 0, 0, 0, 0, 0};
      const TopKGatherFn fn = ctx_.kernels->topk_sums_gather[int(p_.dtype)];
      TopKSums m{};
      for_each_run(c0, c1, skip(r), [&](int64_t a, int64_t b) { merge(m, fn(TopKSumsTile{at(r, a), b - a, p_.scale, p_.alpha, t}, tc.g)); });
      return m;
    }
    TopKSums m{};
    const TopKGather& g = tc.g;
    if (g.count) m = ctx_.kernels->topk_sums[int(DType::Float32)](TopKSumsTile{tc.x.data(), g.count, p_.scale, p_.alpha, t});
    const double d = double(p_.alpha) * (double(t) - double(rs.t_g));
    const double e1 = std::exp(d), e2 = e1 * e1, f1 = 1 / e1, f2 = f1 * f1;
    m.p_lo += e1 * g.lo1 - e2 * g.lo2;
    m.v_lo += e1 * g.lo1 - 2 * e2 * g.lo2;
    m.q_hi += f1 * g.hi1 - f2 * g.hi2;
    m.v_hi += f1 * g.hi1 - 2 * f2 * g.hi2;
    m.m += g.hi_count;
    return m;
  }

  // After a pass that kept candidates: the row uses them, unless a tile's did not fit (then the
  // next pass, nearer the root, keeps them anew, up to kMaxGathers times).
  void after_pass(int64_t r, PassKind kind) {
    if (kind != PassKind::Gather) return;
    RowState& rs = rows_[size_t(r)];
    rs.gathers += 1;
    rs.gathered = true;
    rs.t_g = float(rs.s.t);
    // (Counted, not read off the sums: terms far below the block's largest underflow to 0.)
    double kept = 0, above = 0;
    for (int64_t k = 0; k < tiles_; ++k) {
      const TopKGather& g = cands_[size_t(r * tiles_ + k)].g;
      if (g.count > g.cap) rs.gathered = false;
      kept += double(g.count);
      above += g.hi_count;
    }
    rs.above = above > 0;
    rs.below = double(rs.n_in) - kept - above > 0;
    if (!rs.gathered) release(r);
  }

  void release(int64_t r) {
    rows_[size_t(r)].gathered = false;
    for (int64_t k = 0; k < tiles_; ++k) cands_[size_t(r * tiles_ + k)] = TileCandidates{};
  }

  // Records the row's statistics; false when the row has an error (it is then left alone).
  bool start(int64_t r, const TopKTileStats& st, bool need) {
    RowState& rs = rows_[size_t(r)];
    rs.need = need;
    rs.bad = st.first_bad;
    if (rs.bad >= 0) return false;
    rs.n_in = st.in;
    if (!need) {
      rs.s.done = true;
      return true;
    }
    const int32_t k = p_.k_rows ? p_.k_rows[r] : p_.k;
    if (!(k > 0 && k < rs.n_in)) {
      rs.k_out = true;
      return false;
    }
    rs.s = topk_solver_init(double(st.max * p_.scale), double(st.min * p_.scale), k, double(rs.n_in), p_.alpha, p_.tol);
    // First guess where k ≪ N_i: the top entry at a = 0. On a row whose top scores spread out
    // (the usual case) the root lies within a few 1/α of it, so the first pass already keeps
    // the candidates the rest of the search needs; elsewhere the list is rebuilt nearer the
    // root. (The bracket end, where the solver would start otherwise, is ~log(N/k)/α below.)
    const double guess = -double(st.max * p_.scale);
    if (2 * int64_t(k) <= rs.n_in && guess > rs.s.lo && guess < rs.s.hi) {
      rs.s.t = guess;
      rs.guessed = true;
    }
    return true;
  }
  bool ok(int64_t r) const { return rows_[size_t(r)].bad < 0 && !rows_[size_t(r)].k_out; }

  void throw_if_bad() const {
    for (int64_t r = 0; r < p_.rows; ++r)
      if (rows_[size_t(r)].bad >= 0) fail_non_finite("scores", r, rows_[size_t(r)].bad);
    for (int64_t r = 0; r < p_.rows; ++r)
      if (rows_[size_t(r)].k_out) {
        const int32_t k = p_.k_rows ? p_.k_rows[r] : p_.k;
        fail(err::kKRange, (p_.k_rows ? "k[" + std::to_string(r) + "]" : std::string("k")) + ": expected 0 < k < N_i = " +
                                std::to_string(rows_[size_t(r)].n_in) + " (the entries of row " + std::to_string(r) +
                                " that are neither excluded nor -Infinity), received " + std::to_string(k));
      }
  }

  Context& ctx_;
  SoftTopKProblem p_;
  int64_t tiles_;
  std::vector<RowState> rows_;
  std::vector<TileCandidates> cands_;  // rows × tiles
  SkipLists skip_;  // each row's excluded columns, sorted
};

}  // namespace

void soft_topk(Context& ctx, const SoftTopKArgs& a) {
  TopKRows rows(ctx, a);
  const int64_t cols = a.cols;
  const bool log = a.output == TopKOutput::Log;
  rows.run([](int64_t) { return true; },
           [&](int64_t r) {
             a.threshold[r] = rows.threshold(r);
             a.iterations[r] = rows.row(r).s.iterations;
           },
           [&](int64_t r, int64_t c0, int64_t c1) {
             const float t = rows.threshold(r);
             float* out = a.values + r * cols;
             std::fill(out + c0, out + c1, log ? -INFINITY : 0.f);  // excluded entries
             const TopKValuesFn fn = ctx.kernels->topk_values[int(a.dtype)][log ? 1 : 0];
             for_each_run(c0, c1, rows.skip(r), [&](int64_t u, int64_t w) { fn(TopKValuesTile{rows.at(r, u), out + u, w - u, a.scale, a.alpha, t}); });
             return 0.0;
           });
}

void soft_topk_vjp(Context& ctx, const SoftTopKVjpArgs& a) {
  TopKRows rows(ctx, a);
  const SoftTopKProblem& p = a;
  const int64_t tiles = tiles_per_row(p.cols);
  const int log = a.output == TopKOutput::Log ? 1 : 0;
  const int grad_in_dtype = a.grad_dtype == DType::Float32 ? 0 : 1;
  const TopKVjpSumsFn sums = ctx.kernels->topk_vjp_sums[int(p.dtype)][log];
  const TopKVjpGradFn grad = ctx.kernels->topk_vjp_grad[int(p.dtype)][2 * log + grad_in_dtype];
  const int64_t esize = grad_in_dtype ? dtype_size(p.dtype) : 4;
  auto tile = [&](int64_t r, int64_t c, int64_t n, LogFactor factor) {
    return TopKVjpTile{rows.at(r, c), a.grad_output + r * p.cols + c, static_cast<char*>(a.grad) + (r * p.cols + c) * esize,
                       n, p.scale, p.alpha, a.threshold[r], factor.log_abs, factor.sign};
  };
  // Pass 1, per tile: V = α·Σp(1 − p) and G = Σ g·v ('prob') or Σ u, u = α·g·(1 − p) ('log').
  std::vector<TopKVjpSums> part(size_t(p.rows * tiles), TopKVjpSums{0.0, 0.0});
  for_each_row_tile(ctx.pool, p.rows, p.cols, [&](int64_t r, int64_t k, int64_t c0, int64_t c1) {
    TopKVjpSums& s = part[size_t(r * tiles + k)];
    for_each_run(c0, c1, rows.skip(r), [&](int64_t u, int64_t w) {
      const TopKVjpSums t = sums(tile(r, u, w - u, LogFactor{}));
      s.v += t.v;
      s.g += t.g;
    });
  });
  std::vector<LogFactor> factor(size_t(p.rows));
  for (int64_t r = 0; r < p.rows; ++r) {
    double V = 0, G = 0;
    for (int64_t k = 0; k < tiles; ++k) {
      V += part[size_t(r * tiles + k)].v;
      G += part[size_t(r * tiles + k)].g;
    }
    factor[size_t(r)] = log_factor(double(p.alpha) * topk_backward_factor(G, 1.0, V));  // v·G/V = α·p(1 − p)·G/V
  }
  // Pass 2: ∂/∂S_m = scale·(own_m − v_m·G/V), own = g·v or u; 0 at out and excluded entries.
  for_each_row_tile(ctx.pool, p.rows, p.cols, [&](int64_t r, int64_t, int64_t c0, int64_t c1) {
    int64_t c = c0;
    auto zero = [&](int64_t u, int64_t w) {
      if (w > u) std::fill_n(static_cast<char*>(a.grad) + (r * p.cols + u) * esize, size_t((w - u) * esize), char(0));
    };
    for_each_run(c0, c1, rows.skip(r), [&](int64_t u, int64_t w) {
      zero(c, u);
      grad(tile(r, u, w - u, factor[size_t(r)]));
      c = w;
    });
    zero(c, c1);
  });
}

LossResult soft_topk_loss(Context& ctx, const SoftTopKLossArgs& a) {
  const SoftTopKProblem p = topk_problem(a);
  if (p.exclude) {
    const SkipLists overlap(p.rows, a.positives, p.exclude);  // throws ERR_CSR for a positive that is excluded
  }
  TopKRows rows(ctx, p);
  std::vector<double> loss(size_t(p.rows), 0.0), dscale_fix(size_t(p.rows), 0.0);
  std::vector<double> factor(size_t(p.rows), 0.0);
  const bool sweep = a.grad || a.grad_scale;
  const double alpha = p.alpha;
  auto upstream = [&](int64_t r) { return fl::upstream(a, r, double(p.rows)); };
  // The row's loss and U = Σ_{p∈P} u_p, u_p = α·g_p·(1 − p_p) with g_p = −c·w_p/n: the only
  // place the positives enter; the dense gradient is then −v_m·U/V everywhere.
  auto prepare = [&](int64_t r) {
    const int64_t e0 = a.positives.begin(r), e1 = a.positives.end(r);
    if (e0 == e1) return;
    const double n = double(e1 - e0), c = upstream(r);
    const float t = rows.threshold(r);
    double l = 0, U = 0;
    for (int64_t e = e0; e < e1; ++e) {
      const int32_t col = a.positives.cols[e];
      const double w = a.positives.weight(e);
      const float xv = rows.x(r, col);
      const bool out = xv == -INFINITY;  // (an excluded positive was rejected above)
      if (w != 0) l -= w / n * (out ? -INFINITY : log_sigmoid_d(double(rows.arg(xv, t))));
      if (!out) U += alpha * (-c * w / n) * sigmoid_pair_d(rows.arg(xv, t)).q;
    }
    loss[size_t(r)] = l;
    factor[size_t(r)] = topk_backward_factor(U, alpha, topk_df(rows.row(r).s.at_t));
  };
  // The dense gradient is −scale·α·factor·p(1 − p): |c| = α·|factor|, sign −sign(factor).
  auto dense_coef = [&](int64_t r) {
    const LogFactor c = log_factor(alpha * factor[size_t(r)]);
    return LogFactor{c.log_abs, -c.sign};
  };
  auto dense = [&](int64_t r, int64_t c0, int64_t c1) -> double {
    if (!sweep) return 0.0;
    if (a.positives.begin(r) == a.positives.end(r)) {  // no positives: no loss, no gradient
      if (a.grad) rows.dense_grad(r, c0, c1, log_factor(0.0), a.grad, a.grad_dtype);
      return 0.0;
    }
    const LogFactor c = dense_coef(r);
    return rows.dense_grad(r, c0, c1, c, a.grad, a.grad_dtype) * c.sign;
  };
  // Positives' entries must be read before an in-place sweep overwrites them: read in prepare
  // (before the row's sweep), so in place works; the corrections below read the saved values.
  std::vector<float> pos_x(size_t(a.positives.nnz(p.rows)));
  auto prepare_and_keep = [&](int64_t r) {
    for (int64_t e = a.positives.begin(r); e < a.positives.end(r); ++e) pos_x[size_t(e)] = rows.x(r, a.positives.cols[e]);
    prepare(r);
  };
  const std::vector<double> dense_dscale = rows.run([&](int64_t r) { return a.positives.begin(r) < a.positives.end(r); }, prepare_and_keep, dense);
  // The positives' gradient whole: scale·(u_p − v_p·U/V), rounded once.
  ctx.pool.parallel_for(p.rows, [&](int64_t r) {
    const int64_t e0 = a.positives.begin(r), e1 = a.positives.end(r);
    if (e0 == e1) return;
    const double n = double(e1 - e0), c = upstream(r), f = factor[size_t(r)];
    const float t = rows.threshold(r);
    double fix = 0;
    for (int64_t e = e0; e < e1; ++e) {
      const int32_t col = a.positives.cols[e];
      const float xv = pos_x[size_t(e)];
      if (xv == -INFINITY) continue;
      const double w = a.positives.weight(e);
      const SigmoidPairD s = sigmoid_pair_d(rows.arg(xv, t));
      const double u = alpha * (-c * w / n) * s.q;
      const double dz = u - alpha * s.p * s.q * f;
      if (a.grad) store_element(a.grad, a.grad_dtype, r * p.cols + col, float(double(p.scale) * dz));
      fix += u * double(xv);
    }
    dscale_fix[size_t(r)] = fix;
  });
  double dscale = 0;
  for (int64_t r = 0; r < p.rows; ++r) dscale += dense_dscale[size_t(r)] + dscale_fix[size_t(r)];
  return reduce_rows(a, loss, double(p.rows), dscale);
}

namespace {
// The solver-free view of a sharded block: TopKRows for its sweeps (the thresholds come from
// the solver lib/sharded.ts runs in step on every rank).
SoftTopKProblem sharded_problem(const ShardedTopKBlock& a) {
  TopKSolve s{};
  s.alpha = a.alpha;
  s.max_iter = 1;
  s.exclude = a.exclude;
  return {ScoresArgs(a), s};
}
}  // namespace

void sharded_topk_range(Context& ctx, const ShardedTopKRangeArgs& a) {
  const TopKRows rows(ctx, sharded_problem(a));
  std::vector<int64_t> bad(size_t(a.rows), -1);
  ctx.pool.parallel_for(a.rows, [&](int64_t r) {
    const TopKTileStats st = rows.stats(r, 0, a.cols);
    bad[size_t(r)] = st.first_bad;
    // z = scale·x is increasing in x: its max and min are those of x, scaled in fp32 as the sweeps do.
    a.max[r] = st.in > 0 ? double(st.max * a.scale) : -INFINITY;
    a.min[r] = st.in > 0 ? double(st.min * a.scale) : INFINITY;
    a.count[r] = double(st.in);
  });
  a.bad[0] = a.bad[1] = -1;
  for (int64_t r = 0; r < a.rows; ++r)
    if (bad[size_t(r)] >= 0) {
      a.bad[0] = int32_t(r);
      a.bad[1] = int32_t(bad[size_t(r)]);
      return;
    }
}

void sharded_topk_sums(Context& ctx, const ShardedTopKSumsArgs& a) {
  const TopKRows rows(ctx, sharded_problem(a));
  ctx.pool.parallel_for(a.searching, [&](int64_t k) {
    const TopKSums m = rows.sums(a.rows_at[k], 0, a.cols, float(a.t[k]));
    float* out = a.sums + 5 * k;
    out[0] = float(m.m);
    out[1] = float(m.p_lo);
    out[2] = float(m.q_hi);
    out[3] = float(m.v_lo);
    out[4] = float(m.v_hi);
  });
}

LossResult sharded_topk_grad(Context& ctx, const ShardedTopKGradArgs& a) {
  const TopKRows rows(ctx, sharded_problem(a));
  std::vector<double> d(size_t(a.rows), 0.0);
  ctx.pool.parallel_for(a.rows, [&](int64_t r) {
    if (a.coef[r] == 0) return;
    const LogFactor c = log_factor(a.coef[r]);
    d[size_t(r)] = rows.dense_grad_at(r, 0, a.cols, float(a.t[r]), c, a.grad, DType::Float32) * c.sign;
  });
  double total = 0;
  for (double x : d) total += x;
  return {0.0, total};
}

}  // namespace fl
