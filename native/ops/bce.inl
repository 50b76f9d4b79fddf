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
  // Where the exp keeps a NaN (V::kExpKeepsNaN), a NaN score makes the block's loss sum NaN (z,
  // e and log1p(e) are NaN), so the NaN/+inf test is one max for +inf instead of two compares.
  constexpr bool kNanFromSum = V::kExpKeepsNaN;
  // kDscale: the dScale sum is wanted (five vector operations an entry, left out otherwise).
  auto sweep = [&](auto dscale_tag) {
    constexpr bool kDscale = decltype(dscale_tag)::value;
    BceSums out{0.0, 0.0, -1};
    for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
      const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
      F loss = zero, ds = zero, vmax = ninf;
      typename V::Bad bad = V::no_bad();
      auto step = [&](F v, int64_t j, int tail) {
        if constexpr (kNanFromSum) vmax = V::max(vmax, v);
        else bad = V::bad(bad, v);
        const F z = V::mul(v, vs);
        const F e = V::exp(V::sub(zero, V::max(z, V::sub(zero, z))));  // e^{−|z|}; 0 for z = −∞
        const F inv = V::div(one, V::add(one, e));
        const F sig = V::select_lt(z, zero, V::mul(e, inv), inv);
        loss = V::add(loss, V::zero_where_eq(V::add(V::max(z, zero), log1p_unit<V>(e)), v, ninf));
        if constexpr (kDscale) ds = V::add(ds, V::mul(V::mul(sig, vu), V::zero_where_eq(v, v, ninf)));
        if (g) {
          const F d = V::mul(sig, vgs);
          if (tail) V::store_tail(g + j, d, tail);
          else V::store(g + j, d);
        }
      };
      // step() on v[0] at j and v[1] at j + W, bit for bit.
      auto step2 = [&](F v0, F v1, int64_t j) {
        const F v[2] = {v0, v1};
        F z[2], e[2], inv[2], sig[2], l[2];
        for (int k = 0; k < 2; ++k) {
          if constexpr (kNanFromSum) vmax = V::max(vmax, v[k]);
          else bad = V::bad(bad, v[k]);
        }
        for (int k = 0; k < 2; ++k) z[k] = V::mul(v[k], vs);
        for (int k = 0; k < 2; ++k) e[k] = V::exp(V::sub(zero, V::max(z[k], V::sub(zero, z[k]))));
        for (int k = 0; k < 2; ++k) inv[k] = V::div(one, V::add(one, e[k]));
        for (int k = 0; k < 2; ++k) sig[k] = V::select_lt(z[k], zero, V::mul(e[k], inv[k]), inv[k]);
        for (int k = 0; k < 2; ++k) l[k] = V::zero_where_eq(V::add(V::max(z[k], zero), log1p_unit<V>(e[k])), v[k], ninf);
        loss = V::add(V::add(loss, l[0]), l[1]);
        if constexpr (kDscale)
          for (int k = 0; k < 2; ++k) ds = V::add(ds, V::mul(V::mul(sig[k], vu), V::zero_where_eq(v[k], v[k], ninf)));
        if (g)
          for (int k = 0; k < 2; ++k) V::store(g + j + k * V::W, V::mul(sig[k], vgs));
      };
      // Two vectors at a time, stage by stage: each entry is one long chain of dependent
      // operations (exp, quotient, log1p series), and interleaving two in program order lets the
      // core overlap them where its scheduler, filled by one chain, otherwise could not.
      int64_t j = b0;
      for (; j + 2 * V::W <= b1; j += 2 * V::W) step2(V::load(x + j), V::load(x + j + V::W), j);
      for (; j + V::W <= b1; j += V::W) step(V::load(x + j), j, 0);
      if (j < b1) step(V::load_tail(x + j, int(b1 - j), -INFINITY), j, int(b1 - j));
      const float block_loss = V::sum(loss);
      const bool any_bad = kNanFromSum ? (block_loss != block_loss || V::hmax(vmax) == INFINITY) : V::any(bad);
      if (any_bad) {
        for (int64_t i = b0; i < b1; ++i) {
          const float v = to_float(x[i]);
          if (v != v || v == INFINITY) return BceSums{0.0, 0.0, i};
        }
      }
      out.loss += double(block_loss);
      if constexpr (kDscale) out.dscale += double(V::sum(ds));
    }
    return out;
  };
  return a.dscale ? sweep(std::true_type{}) : sweep(std::false_type{});
}
