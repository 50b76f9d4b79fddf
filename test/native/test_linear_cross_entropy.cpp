// linearCrossEntropy on every ISA this CPU has, against a long-double reference of MATH softmaxCrossEntropy (native/ops/cross_entropy_math.h) on
// S = H·Wᵀ (+ b) chained to dH, dW, db: options, odd sizes, D from 1 to 1024, N > 65536, ignored
// rows, peaked rows, small budgets (many chunks), half inputs, accumulate, thread counts, and
// outputs poisoned with NaN beforehand.
#include <cstring>
#include <vector>

#include "check.h"
#include "native/api/error.h"
#include "native/core/context.h"
#include "native/core/dtype.h"
#include "native/ops/embeddings.h"

using namespace fl;
using fltest::isas;
using fltest::Rng;

namespace {

struct Ref {
  std::vector<long double> row_loss, lse, dh, dw, db;
  long double loss = 0, dscale = 0;
};

struct Case {
  int64_t B, D, N;
  float scale, cap, eps, lambda;
  bool weights, bias;
  Reduction red;
  bool grad_output;
  int64_t budget;  // bytes; 0: the default; < 0: room for −budget rows per chunk
  float spread;    // standard deviation of S (peaked rows: large)
};

struct Inputs {
  std::vector<float> h, w, b, cw, go;
  std::vector<int32_t> y;
};

Inputs make_inputs(const Case& c, Rng& rng) {
  Inputs in;
  in.h.resize(size_t(c.B * c.D));
  in.w.resize(size_t(c.N * c.D));
  // S_ij = Σ_k h_ik w_jk has standard deviation `spread`.
  const double sd = std::sqrt(double(c.spread) / std::sqrt(double(c.D)));
  for (auto& v : in.h) v = float(rng.normal() * sd);
  for (auto& v : in.w) v = float(rng.normal() * sd);
  if (c.bias) {
    in.b.resize(size_t(c.N));
    for (auto& v : in.b) v = float(rng.normal());
  }
  if (c.weights) {
    in.cw.resize(size_t(c.N));
    for (auto& v : in.cw) v = float(0.5 + rng.uniform());
  }
  if (c.grad_output) {
    in.go.resize(size_t(c.B));
    for (auto& v : in.go) v = float(rng.normal());
  }
  in.y.resize(size_t(c.B));
  for (int64_t i = 0; i < c.B; ++i) in.y[size_t(i)] = (i % 3 == 1) ? -100 : int32_t(rng.uniform() * double(c.N));
  return in;
}

Ref reference(const Case& c, const Inputs& in) {
  const int64_t B = c.B, D = c.D, N = c.N;
  Ref r;
  r.row_loss.assign(size_t(B), 0);
  r.lse.assign(size_t(B), 0);
  r.dh.assign(size_t(B * D), 0);
  r.dw.assign(size_t(N * D), 0);
  r.db.assign(size_t(N), 0);
  const float* cw = in.cw.empty() ? nullptr : in.cw.data();
  long double wsum = 0, wmean = 0;
  for (int64_t j = 0; j < N; ++j) wmean += cw ? cw[j] : 1;
  wmean /= N;
  for (int64_t i = 0; i < B; ++i)
    if (in.y[size_t(i)] >= 0) wsum += cw ? cw[in.y[size_t(i)]] : 1;
  const size_t n = static_cast<size_t>(N);
  std::vector<long double> s(n), z(n), dzdx(n), dzds(n), g(n);
  for (int64_t i = 0; i < B; ++i) {
    const int32_t t = in.y[size_t(i)];
    if (t < 0) continue;
    long double m = -INFINITY;
    for (int64_t j = 0; j < N; ++j) {
      long double v = in.b.empty() ? 0 : in.b[size_t(j)];
      for (int64_t k = 0; k < D; ++k) v += (long double)in.h[size_t(i * D + k)] * in.w[size_t(j * D + k)];
      s[size_t(j)] = v;
      if (c.cap > 0) {
        const long double th = std::tanh(c.scale * v / c.cap);
        z[size_t(j)] = c.cap * th, dzdx[size_t(j)] = c.scale * (1 - th * th), dzds[size_t(j)] = v * (1 - th * th);
      } else {
        z[size_t(j)] = c.scale * v, dzdx[size_t(j)] = c.scale, dzds[size_t(j)] = v;
      }
      m = std::max(m, z[size_t(j)]);
    }
    long double sum = 0, lin = 0;
    for (int64_t j = 0; j < N; ++j) sum += std::exp(z[size_t(j)] - m), lin += (cw ? cw[j] : 1) * z[size_t(j)];
    const long double lse = m + std::log(sum), wy = cw ? cw[t] : 1;
    const long double l = wy * (1 - c.eps) * (lse - z[size_t(t)]) + c.eps * (wmean * lse - lin / N) + c.lambda * lse * lse;
    r.row_loss[size_t(i)] = l;
    r.lse[size_t(i)] = lse;
    const long double u = c.red == Reduction::Mean ? 1 / wsum : (c.red == Reduction::None && c.grad_output) ? in.go[size_t(i)] : 1;
    r.loss += c.red == Reduction::Mean ? l / wsum : l;
    for (int64_t j = 0; j < N; ++j) {
      long double d = (wy * (1 - c.eps) + c.eps * wmean + 2 * c.lambda * lse) * std::exp(z[size_t(j)] - lse) - c.eps * (cw ? cw[j] : 1) / N;
      if (j == t) d -= (1 - c.eps) * wy;
      g[size_t(j)] = u * d * dzdx[size_t(j)];
      r.dscale += u * d * dzds[size_t(j)];
      r.db[size_t(j)] += g[size_t(j)];
      for (int64_t k = 0; k < D; ++k) {
        r.dh[size_t(i * D + k)] += g[size_t(j)] * in.w[size_t(j * D + k)];
        r.dw[size_t(j * D + k)] += g[size_t(j)] * in.h[size_t(i * D + k)];
      }
    }
  }
  return r;
}

double rel(const std::vector<float>& got, const std::vector<long double>& want) {
  long double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const long double d = (long double)got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return double(std::sqrt(num / (den > 0 ? den : 1)));
}

struct Out {
  std::vector<float> dh, dw, db, row_loss, lse;
  LossResult res;
};

Out run(Context& ctx, const Case& c, const Inputs& in, DType dt = DType::Float32, bool accumulate = false, const Out* start = nullptr) {
  Out o;
  o.dh.assign(size_t(c.B * c.D), NAN);
  o.dw.assign(size_t(c.N * c.D), NAN);
  o.db.assign(c.bias ? size_t(c.N) : 0, NAN);
  o.row_loss.assign(size_t(c.B), NAN);
  o.lse.assign(size_t(c.B), NAN);
  if (start) o.dh = start->dh, o.dw = start->dw, o.db = start->db;
  std::vector<uint16_t> h16, w16;
  const void *hp = in.h.data(), *wp = in.w.data();
  if (dt != DType::Float32) {
    for (float v : in.h) h16.push_back(dt == DType::Float16 ? to_f16(v).bits : to_bf16(v).bits);
    for (float v : in.w) w16.push_back(dt == DType::Float16 ? to_f16(v).bits : to_bf16(v).bits);
    hp = h16.data(), wp = w16.data();
  }
  LinearCrossEntropyArgs a{};
  a.hidden = hp;
  a.weight = wp;
  a.bias = c.bias ? in.b.data() : nullptr;
  a.dtype = dt;
  a.rows = c.B, a.dim = c.D, a.classes = c.N;
  a.labels = in.y.data();
  a.ignore_index = -100;
  a.scale = c.scale, a.softcap = c.cap, a.label_smoothing = c.eps, a.z_loss = c.lambda;
  a.class_weights = c.weights ? in.cw.data() : nullptr;
  a.reduction = c.red;
  a.grad_output = c.grad_output ? in.go.data() : nullptr;
  a.grad_hidden = o.dh.data();
  a.grad_dtype = DType::Float32;
  a.grad_weight = o.dw.data();
  a.grad_bias = c.bias ? o.db.data() : nullptr;
  a.accumulate = accumulate;
  a.grad_scale = true;
  a.row_loss = o.row_loss.data();
  a.lse = o.lse.data();
  a.memory_budget = c.budget > 0 ? c.budget : kDefaultMemoryBudget;
  if (c.budget < 0) {  // room for exactly −budget rows per chunk
    a.memory_budget = int64_t(1) << 40;
    const int64_t one = linear_cross_entropy_plan(ctx, a, 1).scratch_bytes, two = linear_cross_entropy_plan(ctx, a, 2).scratch_bytes;
    a.memory_budget = one + (-c.budget - 1) * (two - one);
  }
  int64_t active = 0;
  for (int32_t y : in.y) active += y != -100;
  const EmbeddingsPlan plan = linear_cross_entropy_plan(ctx, a, active);
  FL_CHECK(plan.scratch_bytes <= a.memory_budget, "plan needs %lld bytes of a %lld budget", (long long)plan.scratch_bytes,
           (long long)a.memory_budget);
  // The strategy the case means to test: row chunks (all columns) unless few rows fit.
  const bool want_tiles = c.budget < 0 && -c.budget < std::min<int64_t>(active, 64);
  FL_CHECK((plan.tile_cols < c.N) == want_tiles, "B=%lld N=%lld: plan %lld rows x %lld columns", (long long)c.B, (long long)c.N,
           (long long)plan.chunk_rows, (long long)plan.tile_cols);
  o.res = linear_cross_entropy(ctx, a);
  return o;
}

// Widens inputs through a half dtype, so a float32 reference sees the values the kernel sees.
Inputs rounded(const Inputs& in, DType dt) {
  Inputs r = in;
  for (auto* v : {&r.h, &r.w})
    for (auto& x : *v) x = dt == DType::Float16 ? to_float(to_f16(x)) : to_float(to_bf16(x));
  return r;
}

void check_against(const char* what, Isa isa, const Case& c, const Out& o, const Ref& r, double tol) {
  const double eloss = std::fabs(double((long double)o.res.loss - r.loss)) / std::max(1e-30, double(std::fabs(r.loss)));
  const double eds = std::fabs(double((long double)o.res.dscale - r.dscale)) / std::max(1e-30, double(std::fabs(r.dscale)));
  std::vector<long double> lse_ref = r.lse;
  std::vector<float> lse = o.lse;
  for (int64_t i = 0; i < c.B; ++i)
    if (i % 3 == 1) {
      FL_CHECK(std::isnan(o.lse[size_t(i)]) && o.row_loss[size_t(i)] == 0.f, "%s: ignored row %lld", what, (long long)i);
      lse[size_t(i)] = 0;
    }
  const double edh = rel(o.dh, r.dh), edw = rel(o.dw, r.dw), edb = c.bias ? rel(o.db, r.db) : 0, erl = rel(o.row_loss, r.row_loss),
               else_ = rel(lse, lse_ref);
  FL_CHECK(eloss <= tol && edh <= tol && edw <= tol && edb <= tol && erl <= tol && else_ <= tol && eds <= 10 * tol,
           "%s %s B=%lld D=%lld N=%lld: loss %.2g dH %.2g dW %.2g db %.2g rowLoss %.2g lse %.2g dScale %.2g", what, isa_name(isa),
           (long long)c.B, (long long)c.D, (long long)c.N, eloss, edh, edw, edb, erl, else_, eds);
}

const Case kCases[] = {
    {7, 1, 97, 1, 0, 0, 0, false, false, Reduction::Mean, false, 0, 3},
    {5, 33, 1001, 2.5f, 0, 0.1f, 0, true, true, Reduction::Mean, false, 0, 3},
    {9, 130, 513, 1, 4, 0, 1e-3f, false, true, Reduction::Sum, false, 0, 8},
    {13, 17, 2049, 1.3f, 0, 0.2f, 1e-4f, true, false, Reduction::None, true, -2, 3},  // chunks of 2 rows
    {4, 1024, 67, 1, 0, 0, 0, false, true, Reduction::Mean, false, 0, 3},
    {6, 50, 300, 1, 0, 0, 0, false, false, Reduction::Mean, false, 0, 60},                   // peaked rows
    {600, 8, 300, 1.5f, 0, 0.1f, 0, true, true, Reduction::Mean, false, -256, 3},           // row chunks of 256
    {40, 9, 1500, 1, 3, 0.1f, 1e-3f, true, true, Reduction::Sum, false, -3, 3},             // column tiles, every option
};

}  // namespace

FL_TEST(linear_cross_entropy_matches_reference_every_isa) {
  for (Isa isa : isas()) {
    Context ctx(isa, 3);
    Rng rng(41);
    for (const Case& c : kCases) {
      const Inputs in = make_inputs(c, rng);
      check_against("fp32", isa, c, run(ctx, c, in), reference(c, in), 1e-5);
    }
  }
}

FL_TEST(linear_cross_entropy_wide_vocabulary) {
  // N > 65536: rows wider than the engine's tile; a budget for 2 such rows makes column tiles.
  const Case c{5, 7, 70001, 1, 0, 0.05f, 0, true, true, Reduction::Mean, false, -2, 3};
  Rng rng(42);
  const Inputs in = make_inputs(c, rng);
  const Ref r = reference(c, in);
  Context ctx(detect_isa(), 3);
  check_against("wide", detect_isa(), c, run(ctx, c, in), r, 1e-5);
}

FL_TEST(linear_cross_entropy_half_inputs) {
  // Row chunks (the default budget) and column tiles (room for 2 rows of S).
  for (const int64_t budget : {int64_t(0), int64_t(-2)}) {
    const Case c{11, 40, 777, 1.5f, 0, 0.1f, 0, false, true, Reduction::Mean, false, budget, 3};
    for (Isa isa : isas()) {
      Context ctx(isa, 2);
      Rng rng(43);
      const Inputs in = make_inputs(c, rng);
      for (DType dt : {DType::Float16, DType::BFloat16}) {
        const Inputs r = rounded(in, dt);
        check_against(dtype_name(dt), isa, c, run(ctx, c, in, dt), reference(c, r), 1e-5);
      }
    }
  }
}

FL_TEST(linear_cross_entropy_same_on_any_thread_count_and_accumulates) {
  const Case c{23, 45, 3001, 1, 0, 0, 0, false, true, Reduction::Sum, false, -5, 3};
  Rng rng(44);
  const Inputs in = make_inputs(c, rng);
  Context c1(detect_isa(), 1), c3(detect_isa(), 3);
  const Out a = run(c1, c, in), b = run(c3, c, in);
  FL_CHECK(std::memcmp(a.dh.data(), b.dh.data(), a.dh.size() * 4) == 0 && std::memcmp(a.dw.data(), b.dw.data(), a.dw.size() * 4) == 0 &&
               std::memcmp(a.db.data(), b.db.data(), a.db.size() * 4) == 0 && a.res.loss == b.res.loss,
           "results differ between 1 and 3 threads");
  // accumulate: a second call adds its gradients to the first's.
  const Out twice = run(c3, c, in, DType::Float32, true, &b);
  std::vector<long double> dh2, dw2, db2;
  for (float v : b.dh) dh2.push_back(2.0L * v);
  for (float v : b.dw) dw2.push_back(2.0L * v);
  for (float v : b.db) db2.push_back(2.0L * v);
  FL_CHECK(rel(twice.dh, dh2) < 1e-6 && rel(twice.dw, dw2) < 1e-6 && rel(twice.db, db2) < 1e-6, "accumulate did not add");
}

FL_TEST(linear_cross_entropy_errors) {
  Context ctx(detect_isa(), 2);
  Case c{3, 4, 10, 1, 0, 0, 0, false, false, Reduction::Mean, false, 0, 3};
  Rng rng(45);
  Inputs in = make_inputs(c, rng);
  in.y[0] = 10;
  bool threw = false;
  try { run(ctx, c, in); } catch (const Error& e) { threw = e.code == "ERR_LABEL_RANGE"; }
  FL_CHECK(threw, "label out of range not refused");
  in = make_inputs(c, rng);
  in.h[2 * 4 + 1] = NAN;
  threw = false;
  try { run(ctx, c, in); } catch (const Error& e) {
    threw = e.code == "ERR_NON_FINITE" && std::string(e.what()).find("[2, 0]") != std::string::npos;
    if (!threw) std::printf("  message: %s\n", e.what());
  }
  FL_CHECK(threw, "NaN in hidden not reported at its row");
  c.budget = 1000;
  threw = false;
  in = make_inputs(c, rng);
  try { run(ctx, c, in); } catch (const Error& e) { threw = e.code == "ERR_ARG"; }
  FL_CHECK(threw, "a budget below one row not refused");
  // Every row ignored: loss 0, gradients 0.
  for (auto& y : in.y) y = -100;
  c.budget = 0;
  const Out o = run(ctx, c, in);
  bool zero = o.res.loss == 0;
  for (float v : o.dh) zero = zero && v == 0.f;
  for (float v : o.dw) zero = zero && v == 0.f;
  FL_CHECK(zero, "all-ignored batch is not zero");
}

FL_TEST_MAIN()
