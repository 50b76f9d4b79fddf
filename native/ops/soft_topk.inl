// SIMD part of soft top-k (native/ops/soft_topk.cpp): the sweeps the threshold solver and the
// loss's gradient make over a run of a row. Included into each ISA namespace by
// native/isa/isa_body.inl. z = scale·x; an entry at −inf is out (σ = 0, gradient 0).
//
// Sums are fp32 lane sums over blocks of kBlock entries, merged in double, so their error does
// not grow with N; a run is always cut into the same blocks, so a result does not depend on
// which thread computed it.

// σ(a) and σ(−a) from e = exp(−|a|) (as sigmoid_pair in soft_topk_math.h).
template <class V>
static inline void vsigmoid_pair(typename V::F a, typename V::F* p, typename V::F* q) {
  using F = typename V::F;
  const F zero = V::zero();
  const F e = V::exp(V::sub(zero, V::max(a, V::sub(zero, a))));
  const F r = V::div(V::set1(1.f), V::add(V::set1(1.f), e));
  const F er = V::mul(e, r);
  *p = V::select_lt(a, zero, er, r);
  *q = V::select_lt(a, zero, r, er);
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
      F p, q;
      vsigmoid_pair<V>(arg, &p, &q);
      const F pq = V::mul(p, q);
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
      F p, q;
      vsigmoid_pair<V>(V::mul(V::add(V::mul(v, vs), vt), valpha), &p, &q);
      const F pq = V::mul(p, q);
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
