// SIMD part of binaryCrossEntropy (native/ops/positives_losses.cpp): a stretch of a row whose
// entries are all negatives (target 0). Included into each ISA namespace by
// native/isa/isa_body.inl.
//
// With z = scale·x and e = e^{−|z|} ∈ (0, 1]:
//   softplus(z) = max(z, 0) + log1p(e),  σ(z) = e/(1 + e) for z < 0, 1/(1 + e) otherwise,
// both free of cancellation. log1p(e) = 2·atanh(s) with s = e/(2 + e) ∈ [0, 1/3], by the odd
// series to s^15 (truncation < 2e-9 relative): relative accuracy even for tiny e. One exp per
// entry. Sums are fp32 lanes per kBlock entries, merged in double, so the error does not grow
// with N. −∞ entries are out: loss 0, gradient 0, dScale term 0.
template <class V>
static inline typename V::F log1p_unit(typename V::F e) {
  const typename V::F s = V::div(e, V::add(V::set1(2.f), e));
  const typename V::F s2 = V::mul(s, s);
  typename V::F q = V::fma(s2, V::set1(1.f / 15), V::set1(1.f / 13));
  q = V::fma(s2, q, V::set1(1.f / 11));
  q = V::fma(s2, q, V::set1(1.f / 9));
  q = V::fma(s2, q, V::set1(1.f / 7));
  q = V::fma(s2, q, V::set1(1.f / 5));
  q = V::fma(s2, q, V::set1(1.f / 3));
  q = V::fma(s2, q, V::set1(1.f));
  return V::mul(V::add(s, s), q);
}

template <class V, class TX, class TG>
BceSums bce_negatives(const BceNegTile& a) {
  using F = typename V::F;
  const TX* x = static_cast<const TX*>(a.x);
  TG* g = static_cast<TG*>(a.g);
  const F vs = V::set1(a.scale), vgs = V::set1(a.u * a.scale), vu = V::set1(a.u);
  const F zero = V::zero(), one = V::set1(1.f), ninf = V::set1(-INFINITY);
  BceSums out{0.0, 0.0, -1};
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    F loss = zero, ds = zero;
    typename V::Bad bad = V::no_bad();
    auto step = [&](F v, int64_t j, int tail) {
      bad = V::bad(bad, v);
      const F z = V::mul(v, vs);
      const F e = V::exp(V::sub(zero, V::max(z, V::sub(zero, z))));  // e^{−|z|}; 0 for z = −∞
      const F inv = V::div(one, V::add(one, e));
      const F sig = V::select_lt(z, zero, V::mul(e, inv), inv);
      loss = V::add(loss, V::zero_where_eq(V::add(V::max(z, zero), log1p_unit<V>(e)), v, ninf));
      ds = V::add(ds, V::mul(V::mul(sig, vu), V::zero_where_eq(v, v, ninf)));
      if (g) {
        const F d = V::mul(sig, vgs);
        if (tail) V::store_tail(g + j, d, tail);
        else V::store(g + j, d);
      }
    };
    int64_t j = b0;
    for (; j + V::W <= b1; j += V::W) step(V::load(x + j), j, 0);
    if (j < b1) step(V::load_tail(x + j, int(b1 - j), -INFINITY), j, int(b1 - j));
    if (V::any(bad)) {
      for (int64_t i = b0; i < b1; ++i) {
        const float v = to_float(x[i]);
        if (v != v || v == INFINITY) return BceSums{0.0, 0.0, i};
      }
    }
    out.loss += double(V::sum(loss));
    out.dscale += double(V::sum(ds));
  }
  return out;
}
