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

// Each side's sums at t scaled so that they cannot leave fp32's range. Near the root of a row
// whose top entries saturate, Σ_{a≥0}(1 − p) and Σ_{a<0} p are both sums of e^{−|a|} with every
// |a| large (e^{−95} and below at α·gap ≈ 200, under fp32's e^{−87}), and what matters is their
// ratio. So every block first finds, per side, the smallest |a| it holds (its largest term),
// c_lo and c_hi, and sums e^{c − |a|} ≤ 1 instead of e^{−|a|}: the block's largest term is 1 and
// only terms 2^{−126} below it are lost. The block's sums are scaled back by e^{−c} in double
// (range e^{−708}), so the sums the solver and the backward see are exact to fp32 terms.
struct SideShift {
  float lo, hi;          // c_lo, c_hi (0 for a side the block does not hold)
  float inv_lo, inv_hi;  // e^{−c} in fp32 (0 past 2^{−149}: the e it rebuilds is then negligible)
};
// The per-side smallest |a| of a block of entries; each_arg(f) calls f(a) for its vectors.
template <class V, class Each>
static inline SideShift block_side_shift(Each&& each_arg) {
  using F = typename V::F;
  const F zero = V::zero(), pinf = V::set1(INFINITY);
  F lo = pinf, hi = pinf;
  each_arg([&](F a) {
    const F abs_a = V::max(a, V::sub(zero, a));
    lo = V::min(lo, V::select_lt(a, zero, abs_a, pinf));
    hi = V::min(hi, V::select_lt(a, zero, pinf, abs_a));
  });
  float clo = -V::hmax(V::sub(zero, lo)), chi = -V::hmax(V::sub(zero, hi));
  clo = clo < INFINITY ? clo : 0.f;
  chi = chi < INFINITY ? chi : 0.f;
  return {clo, chi, std::exp(-clo), std::exp(-chi)};
}
template <class V>
struct VSideShift {
  typename V::F c;    // per lane: c_lo where a < 0, c_hi elsewhere
  typename V::F inv;  // e^{−c}
};
template <class V>
static inline VSideShift<V> vside_shift(typename V::F a, const SideShift& s) {
  const typename V::F zero = V::zero();
  return {V::select_lt(a, zero, V::set1(s.lo), V::set1(s.hi)), V::select_lt(a, zero, V::set1(s.inv_lo), V::set1(s.inv_hi))};
}
// For an entry at a: es = e^{c − |a|} (the scaled e^{−|a|}) and r = 1/(1 + e^{−|a|}), so that
// σ(−|a|) = e·r is es·r scaled and p(1 − p) = e·r² is es·r² scaled.
template <class V>
struct VScaledSigmoid {
  typename V::F es, r;
};
template <class V>
static inline VScaledSigmoid<V> vscaled_sigmoid(typename V::F a, const VSideShift<V>& sh) {
  const typename V::F abs_a = V::max(a, V::sub(V::zero(), a));
  const typename V::F es = V::exp(V::sub(sh.c, abs_a));
  return {es, V::div(V::set1(1.f), V::add(V::set1(1.f), V::mul(es, sh.inv)))};
}

// Calls take(v, j, tail) for the vectors of entries [b0, b1) of x (the last one partial, its
// lanes past the end at −inf: out).
template <class V, class T, class Take>
static inline void for_each_vector(const T* x, int64_t b0, int64_t b1, Take&& take) {
  int64_t j = b0;
  for (; j + V::W <= b1; j += V::W) take(V::load(x + j), j, 0);
  if (j < b1) take(V::load_tail(x + j, int(b1 - j), -INFINITY), j, int(b1 - j));
}

// The sums of a pass at t over a run, split by the sign of a = α(z + t) (see TopKSums), each
// side scaled by its block's shift (above) and scaled back in double. With kGather, the pass
// also keeps the candidates (|a| ≤ window: copied out as float32, in order) and summarises the
// rest (see TopKGather): e^{−|a|} and e^{−2|a|} summed per side, scaled like the sums.
template <class V, class T, bool kGather>
TopKSums topk_sums_run(const TopKSumsTile& a, TopKGather* gather) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), zero = V::zero(), one = V::set1(1.f);
  const F whi = V::set1(kGather ? gather->window : 0.f), wlo = V::sub(zero, whi);
  auto arg = [&](F v) { return V::mul(V::add(V::mul(v, vs), vt), valpha); };
  TopKSums total{};
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    const SideShift shift = block_side_shift<V>([&](auto&& f) { for_each_vector<V>(x, b0, b1, [&](F v, int64_t, int) { f(arg(v)); }); });
    F m = zero, p_lo = zero, q_hi = zero, v_lo = zero, v_hi = zero;
    F lo1 = zero, lo2 = zero, hi1 = zero, hi2 = zero, hi_n = zero;
    for_each_vector<V>(x, b0, b1, [&](F v, int64_t, int) {
      const F s = arg(v);
      const VScaledSigmoid<V> g = vscaled_sigmoid<V>(s, vside_shift<V>(s, shift));
      const F small = V::mul(g.es, g.r), pq = V::mul(small, g.r);  // σ(−|a|) and p(1 − p), scaled
      // Lanes with a < 0 add p to p_lo; the others add 1 to m and 1 − p to q_hi. An out entry
      // (−inf) has a = −inf and es = 0: it adds nothing.
      m = V::add(m, V::select_lt(s, zero, zero, one));
      p_lo = V::add(p_lo, V::select_lt(s, zero, small, zero));
      q_hi = V::add(q_hi, V::select_lt(s, zero, zero, small));
      v_lo = V::add(v_lo, V::select_lt(s, zero, pq, zero));
      v_hi = V::add(v_hi, V::select_lt(s, zero, zero, pq));
      if constexpr (kGather) {
        const F below = V::select_lt(s, wlo, g.es, zero), above = V::select_lt(whi, s, g.es, zero);
        lo1 = V::add(lo1, below);
        lo2 = V::fma(below, below, lo2);
        hi1 = V::add(hi1, above);
        hi2 = V::fma(above, above, hi2);
        hi_n = V::add(hi_n, V::select_lt(whi, s, one, zero));
        if (const uint32_t bits = V::lanes_within(s, wlo, whi)) {
          const int n = __builtin_popcount(bits);
          if (gather->count + n <= gather->cap) {
            // Store the whole vector, then move its candidates down in place (lane i to slot ≤ i).
            float* out = gather->out + gather->count;
            V::store(out, v);
            int j = 0;
            for (uint32_t b = bits; b; b &= b - 1) out[j++] = out[__builtin_ctz(b)];
            gather->count += n;
          } else {
            gather->count = gather->cap + 1;  // overflowed: the caller falls back to full passes
          }
        }
      }
    });
    const double back_lo = std::exp(-double(shift.lo)), back_hi = std::exp(-double(shift.hi));
    total.m += double(V::sum(m));
    total.p_lo += double(V::sum(p_lo)) * back_lo;
    total.q_hi += double(V::sum(q_hi)) * back_hi;
    total.v_lo += double(V::sum(v_lo)) * back_lo;
    total.v_hi += double(V::sum(v_hi)) * back_hi;
    if constexpr (kGather) {
      gather->lo1 += double(V::sum(lo1)) * back_lo;
      gather->lo2 += double(V::sum(lo2)) * back_lo * back_lo;
      gather->hi1 += double(V::sum(hi1)) * back_hi;
      gather->hi2 += double(V::sum(hi2)) * back_hi * back_hi;
      gather->hi_count += double(V::sum(hi_n));
    }
  }
  return total;
}
template <class V, class T>
TopKSums topk_sums(const TopKSumsTile& a) {
  return topk_sums_run<V, T, false>(a, nullptr);
}
template <class V, class T>
TopKSums topk_sums_gather(const TopKSumsTile& a, TopKGather& gather) {
  return topk_sums_run<V, T, true>(a, &gather);
}

// c·p(1 − p) = ±e^{log|c| − |a|}·r² for a per-row factor c that can be as large as p(1 − p) is
// small (the backward's U/V on a saturated row: e^{95} and more), formed without leaving fp32:
// one exp where |log|c|| ≤ 60 (e = e^{−|a|} for r is then that exp times e^{−log|c|}, exact
// enough: where that product underflows, e < e^{−27} and r = 1), two beyond.
template <class V, bool kTwoExp>
struct VScaledTerm {
  typename V::F cpq;  // |c|·p(1 − p)
  typename V::F e;    // e^{−|a|} = σ(−|a|)/r
  typename V::F r;
};
template <class V, bool kTwoExp>
static inline VScaledTerm<V, kTwoExp> vscaled_term(typename V::F a, typename V::F log_c, typename V::F inv_c) {
  using F = typename V::F;
  const F abs_a = V::max(a, V::sub(V::zero(), a));
  const F ec = V::exp(V::sub(log_c, abs_a));
  const F e = kTwoExp ? V::exp(V::sub(V::zero(), abs_a)) : V::mul(ec, inv_c);
  const F r = V::div(V::set1(1.f), V::add(V::set1(1.f), e));
  return {V::mul(ec, V::mul(r, r)), e, r};
}

// The dense part of the loss's gradient over a run: g_j = sign·scale·|c|·p_j(1 − p_j) with
// log|c| = log_coef, stored as TG (unless g is null), returning Σ_j |c|·p_j(1 − p_j)·x_j for
// dScale (out entries: 0 and 0).
template <class V, class TX, class TG, bool kTwoExp>
double topk_grad_run(const TopKGradTile& a) {
  using F = typename V::F;
  const TX* x = static_cast<const TX*>(a.x);
  TG* g = static_cast<TG*>(a.g);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), vstore = V::set1(a.coef_sign * a.scale);
  const F vlog = V::set1(a.log_coef), vinv = V::set1(std::exp(-a.log_coef));
  const F ninf = V::set1(-INFINITY);
  double total = 0;
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    F acc = V::zero();
    for_each_vector<V>(x, b0, b1, [&](F v, int64_t j, int tail) {
      const F w = vscaled_term<V, kTwoExp>(V::mul(V::add(V::mul(v, vs), vt), valpha), vlog, vinv).cpq;
      if (g) {
        if (tail) V::store_tail(g + j, V::mul(vstore, w), tail);
        else V::store(g + j, V::mul(vstore, w));
      }
      acc = V::fma(w, V::zero_where_eq(v, v, ninf), acc);
    });
    total += double(V::sum(acc));
  }
  return total;
}
template <class V, class TX, class TG>
double topk_grad(const TopKGradTile& a) {
  return std::fabs(a.log_coef) <= kOneExpLogRange ? topk_grad_run<V, TX, TG, false>(a) : topk_grad_run<V, TX, TG, true>(a);
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

// The operator's vjp over a run, with v = α·p(1 − p) = α·σ(a)σ(−a) and own = g·v ('prob') or
// α·g·(1 − p) ('log'); out entries take no part (own = 0 even where g is not).
// Pass 1: V = Σ v and G = Σ own, each side scaled by its block's shift (as topk_sums: on a
// saturated row every v is below fp32's range, and so is G where g sits on saturated entries).
// 'log' on the a < 0 side has own = α·g·r, O(g): summed unscaled.
template <class V, class T, bool kLog>
TopKVjpSums topk_vjp_sums(const TopKVjpTile& a) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), zero = V::zero(), ninf = V::set1(-INFINITY);
  auto arg = [&](F v) { return V::mul(V::add(V::mul(v, vs), vt), valpha); };
  TopKVjpSums total{0.0, 0.0};
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    const SideShift shift = block_side_shift<V>([&](auto&& f) { for_each_vector<V>(x, b0, b1, [&](F v, int64_t, int) { f(arg(v)); }); });
    F v_lo = zero, v_hi = zero, g_lo = zero, g_hi = zero;
    for_each_vector<V>(x, b0, b1, [&](F v, int64_t j, int tail) {
      const F s = arg(v);
      const F gv = tail ? V::load_tail(a.g_out + j, tail) : V::load(a.g_out + j);
      const VScaledSigmoid<V> e = vscaled_sigmoid<V>(s, vside_shift<V>(s, shift));
      const F small = V::mul(e.es, e.r), pq = V::mul(small, e.r);
      const F vv = V::mul(valpha, pq);
      // 'log': own = α·g·(1 − p): r where a < 0 (unscaled), the scaled σ(−|a|) elsewhere.
      const F own = V::zero_where_eq(kLog ? V::mul(valpha, V::mul(gv, V::select_lt(s, zero, e.r, small))) : V::mul(gv, vv), v, ninf);
      v_lo = V::add(v_lo, V::select_lt(s, zero, vv, zero));
      v_hi = V::add(v_hi, V::select_lt(s, zero, zero, vv));
      g_lo = V::add(g_lo, V::select_lt(s, zero, own, zero));
      g_hi = V::add(g_hi, V::select_lt(s, zero, zero, own));
    });
    const double back_lo = std::exp(-double(shift.lo)), back_hi = std::exp(-double(shift.hi));
    total.v += double(V::sum(v_lo)) * back_lo + double(V::sum(v_hi)) * back_hi;
    total.g += double(V::sum(g_lo)) * (kLog ? 1.0 : back_lo) + double(V::sum(g_hi)) * back_hi;
  }
  return total;
}

// Pass 2: dL/dx = scale·(own − v·factor), factor = G/V of the row given as log|α·factor| and
// its sign (v·factor formed as in vscaled_term), stored as TG.
template <class V, class T, class TG, bool kLog, bool kTwoExp>
void topk_vjp_grad_run(const TopKVjpTile& a) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  TG* g = static_cast<TG*>(a.g);
  const F vs = V::set1(a.scale), valpha = V::set1(a.alpha), vt = V::set1(a.t), zero = V::zero(), ninf = V::set1(-INFINITY);
  const F vlog = V::set1(a.log_factor), vinv = V::set1(std::exp(-a.log_factor)), vsign = V::set1(a.factor_sign);
  auto grad = [&](F xv, F gv) {
    const F s = V::mul(V::add(V::mul(xv, vs), vt), valpha);
    const VScaledTerm<V, kTwoExp> u = vscaled_term<V, kTwoExp>(s, vlog, vinv);
    const F small = V::mul(u.e, u.r), pq = V::mul(small, u.r);  // σ(−|a|) and p(1 − p)
    const F own = kLog ? V::mul(valpha, V::mul(gv, V::select_lt(s, zero, u.r, small))) : V::mul(gv, V::mul(valpha, pq));
    return V::mul(vs, V::sub(V::zero_where_eq(own, xv, ninf), V::mul(vsign, u.cpq)));
  };
  int64_t j = 0;
  for (; j + V::W <= a.n; j += V::W) V::store(g + j, grad(V::load(x + j), V::load(a.g_out + j)));
  if (j < a.n) {
    const int tail = int(a.n - j);
    V::store_tail(g + j, grad(V::load_tail(x + j, tail, -INFINITY), V::load_tail(a.g_out + j, tail)), tail);
  }
}
// Here e itself enters own (not only r), so one exp only where |c| ≥ 1: then e = e^{log|c| − |a|}·e^{−log|c|}
// underflows no earlier than e^{−|a|} does.
template <class V, class T, class TG, bool kLog>
void topk_vjp_grad(const TopKVjpTile& a) {
  if (a.log_factor >= 0 && a.log_factor <= kOneExpLogRange) topk_vjp_grad_run<V, T, TG, kLog, false>(a);
  else topk_vjp_grad_run<V, T, TG, kLog, true>(a);
}
