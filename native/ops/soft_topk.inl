// SIMD part of soft top-k (native/ops/soft_topk.cpp): the sweeps the threshold solver, the
// loss's gradient, and the operator's values and vjp make over a run of a row. Included into each ISA namespace by
// native/isa/isa_body.inl. z = scale·x; an entry at −inf is out (σ = 0, gradient 0).
//
// Sums are fp32 lane sums over blocks of kBlock entries, merged in double, so their error does
// not grow with N; a run is always cut into the same blocks, so a result does not depend on
// which thread computed it.

// σ(a) and σ(−a) from e = exp(−|a|) (as sigmoid_pair in soft_topk_math.h). Returned by value:
// no address-taken locals in the sweeps (ASan would give them unwinding cleanups, and with them
// an exported personality-routine reference that the ISA symbol check rejects).
template <class V>
struct VSigmoidPair {
  typename V::F p, q;
};
template <class V>
static inline VSigmoidPair<V> vsigmoid_pair(typename V::F a) {
  using F = typename V::F;
  const F zero = V::zero();
  const F e = V::exp(V::sub(zero, V::max(a, V::sub(zero, a))));
  const F r = V::div(V::set1(1.f), V::add(V::set1(1.f), e));
  const F er = V::mul(e, r);
  return {V::select_lt(a, zero, er, r), V::select_lt(a, zero, r, er)};
}

// max and min of x over the entries that are in, how many are in, and the first NaN/+inf.
template <class V, class T>
TopKTileStats topk_stats(const void* xv, int64_t n) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(xv);
  const F ninf = V::set1(-INFINITY), pinf = V::set1(INFINITY), lowest = V::set1(-3.4028234663852886e38f);
  const F one = V::set1(1.f), zero = V::zero();
  F vmax = ninf, vmin = pinf;
  int64_t in = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t len = n - b0 < kBlock ? n - b0 : kBlock;
    const int64_t main = len - len % V::W;
    const int tail = int(len - main);
    typename V::Bad bad = V::no_bad();
    F out = zero;  // per-lane count of −inf entries (exact: at most kBlock/W per lane)
    auto take = [&](F v) {
      vmax = V::max(vmax, v);
      vmin = V::min(vmin, V::select_lt(v, lowest, pinf, v));
      out = V::add(out, V::select_lt(v, lowest, one, zero));
      bad = V::bad(bad, v);
    };
    for (int64_t i = 0; i < main; i += V::W) take(V::load(x + b0 + i));
    if (tail) take(V::load_tail(x + b0 + main, tail, -INFINITY));  // −inf lanes: neutral, counted out
    if (V::any(bad))
      for (int64_t i = 0; i < len; ++i) {
        const float v = to_float(x[b0 + i]);
        if (v != v || v == INFINITY) return TopKTileStats{NAN, NAN, 0, b0 + i};
      }
    in += len - (int64_t(V::sum(out)) - (tail ? V::W - tail : 0));
  }
  return TopKTileStats{V::hmax(vmax), -V::hmax(V::sub(zero, vmin)), in, -1};
}

// The sums of a pass at t over a run, split by the sign of a = α(z + t) (see TopKSums).
template <class V, class T>
TopKSums topk_sums(const TopKSumsTile& a) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), zero = V::zero(), one = V::set1(1.f);
  TopKSums total{};
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    F m = zero, p_lo = zero, q_hi = zero, v_lo = zero, v_hi = zero;
    auto take = [&](F v) {
      const F arg = V::mul(V::add(V::mul(v, vs), vt), valpha);
      const VSigmoidPair<V> s = vsigmoid_pair<V>(arg);
      const F p = s.p, q = s.q, pq = V::mul(p, q);
      // Lanes with a < 0 add p to p_lo; the others add 1 to m and q to q_hi. An out entry
      // (−inf) has a = −inf and p = 0: it adds nothing.
      m = V::add(m, V::select_lt(arg, zero, zero, one));
      p_lo = V::add(p_lo, V::select_lt(arg, zero, p, zero));
      q_hi = V::add(q_hi, V::select_lt(arg, zero, zero, q));
      v_lo = V::add(v_lo, V::select_lt(arg, zero, pq, zero));
      v_hi = V::add(v_hi, V::select_lt(arg, zero, zero, pq));
    };
    int64_t j = b0;
    for (; j + V::W <= b1; j += V::W) take(V::load(x + j));
    if (j < b1) take(V::load_tail(x + j, int(b1 - j), -INFINITY));
    total.m += double(V::sum(m));
    total.p_lo += double(V::sum(p_lo));
    total.q_hi += double(V::sum(q_hi));
    total.v_lo += double(V::sum(v_lo));
    total.v_hi += double(V::sum(v_hi));
  }
  return total;
}

// The dense part of the loss's gradient over a run: g_j = coef·p_j(1 − p_j), stored as TG
// (unless g is null), returning Σ_j p_j(1 − p_j)·x_j for dScale (out entries: 0 and 0).
template <class V, class TX, class TG>
double topk_grad(const TopKGradTile& a) {
  using F = typename V::F;
  const TX* x = static_cast<const TX*>(a.x);
  TG* g = static_cast<TG*>(a.g);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), vcoef = V::set1(a.coef);
  const F ninf = V::set1(-INFINITY);
  double total = 0;
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    F acc = V::zero();
    auto take = [&](F v, int64_t j, int tail) {
      const VSigmoidPair<V> s = vsigmoid_pair<V>(V::mul(V::add(V::mul(v, vs), vt), valpha));
      const F pq = V::mul(s.p, s.q);
      if (g) {
        if (tail) V::store_tail(g + j, V::mul(vcoef, pq), tail);
        else V::store(g + j, V::mul(vcoef, pq));
      }
      acc = V::fma(pq, V::zero_where_eq(v, v, ninf), acc);
    };
    int64_t j = b0;
    for (; j + V::W <= b1; j += V::W) take(V::load(x + j), j, 0);
    if (j < b1) take(V::load_tail(x + j, int(b1 - j), -INFINITY), j, int(b1 - j));
    total += double(V::sum(acc));
  }
  return total;
}

// The operator's values over a run: p = σ(a), or log p = min(a, 0) − log1p(e^{−|a|}) (free of
// cancellation, finite far below the threshold). An out entry gives p = 0, log p = −inf.
template <class V, class T, bool kLog>
void topk_values(const TopKValuesTile& a) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), zero = V::zero();
  auto value = [&](F v) {
    const F arg = V::mul(V::add(V::mul(v, vs), vt), valpha);
    if constexpr (kLog) {
      const F e = V::exp(V::sub(zero, V::max(arg, V::sub(zero, arg))));
      return V::sub(V::min(arg, zero), log1p_unit<V>(e));
    } else {
      return vsigmoid_pair<V>(arg).p;
    }
  };
  int64_t j = 0;
  for (; j + V::W <= a.n; j += V::W) V::store(a.out + j, value(V::load(x + j)));
  if (j < a.n) V::store_tail(a.out + j, value(V::load_tail(x + j, int(a.n - j), -INFINITY)), int(a.n - j));
}

// The operator's vjp over a run, with v = α·p(1 − p) and own = g·v ('prob') or α·g·(1 − p)
// ('log'); out entries take no part (own = 0 even where g is not).
template <class V, bool kLog>
struct VTopKVjpTerms {
  typename V::F v, own;
};
template <class V, bool kLog>
static inline VTopKVjpTerms<V, kLog> vtopk_vjp_terms(typename V::F x, typename V::F g, typename V::F vs, typename V::F valpha,
                                                     typename V::F vt) {
  const VSigmoidPair<V> s = vsigmoid_pair<V>(V::mul(V::add(V::mul(x, vs), vt), valpha));
  const typename V::F v = V::mul(valpha, V::mul(s.p, s.q));
  const typename V::F own = kLog ? V::mul(valpha, V::mul(g, s.q)) : V::mul(g, v);
  return {v, V::zero_where_eq(own, x, V::set1(-INFINITY))};
}

// Pass 1: V = Σ v and G = Σ own.
template <class V, class T, bool kLog>
TopKVjpSums topk_vjp_sums(const TopKVjpTile& a) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t);
  TopKVjpSums total{0.0, 0.0};
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    F sv = V::zero(), sg = V::zero();
    int64_t j = b0;
    for (; j + V::W <= b1; j += V::W) {
      const VTopKVjpTerms<V, kLog> u = vtopk_vjp_terms<V, kLog>(V::load(x + j), V::load(a.g_out + j), vs, valpha, vt);
      sv = V::add(sv, u.v);
      sg = V::add(sg, u.own);
    }
    if (j < b1) {
      const int tail = int(b1 - j);
      const VTopKVjpTerms<V, kLog> u = vtopk_vjp_terms<V, kLog>(V::load_tail(x + j, tail, -INFINITY), V::load_tail(a.g_out + j, tail), vs, valpha, vt);
      sv = V::add(sv, u.v);
      sg = V::add(sg, u.own);
    }
    total.v += double(V::sum(sv));
    total.g += double(V::sum(sg));
  }
  return total;
}

// Pass 2: dL/dx = scale·(own − v·factor), factor = G/V of the row, stored as TG.
template <class V, class T, class TG, bool kLog>
void topk_vjp_grad(const TopKVjpTile& a) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  TG* g = static_cast<TG*>(a.g);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), vf = V::set1(a.factor);
  auto grad = [&](F xv, F gv) {
    const VTopKVjpTerms<V, kLog> u = vtopk_vjp_terms<V, kLog>(xv, gv, vs, valpha, vt);
    return V::mul(vs, V::sub(u.own, V::mul(u.v, vf)));
  };
  int64_t j = 0;
  for (; j + V::W <= a.n; j += V::W) V::store(g + j, grad(V::load(x + j), V::load(a.g_out + j)));
  if (j < a.n) {
    const int tail = int(a.n - j);
    V::store_tail(g + j, grad(V::load_tail(x + j, tail, -INFINITY), V::load_tail(a.g_out + j, tail)), tail);
  }
}
