// SIMD part of logSumExp (included into each ISA namespace by native/isa/isa_body.inl).
//
// A tile is processed in blocks of kLseBlock elements: a first sweep takes the block's max (and
// looks for NaN/+inf), a second sums exp(z − max) in fp32 lanes. The block is 8 KiB of fp32, so
// the second sweep reads L1, not memory: one pass over the scores from DRAM, one exp per
// element. Block sums go into the tile's running (max, sum) in double, so the error is that of a
// 2048-term fp32 sum, whatever N is.

constexpr int64_t kLseBlock = 2048;

template <class V, class T>
TileMaxSumExp tile_max_sum_exp(const void* data, int64_t n, float scale) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(data);
  MaxSumExp<double> run = max_sum_exp_empty<double>();
  for (int64_t b0 = 0; b0 < n; b0 += kLseBlock) {
    const T* xb = x + b0;
    const int64_t len = n - b0 < kLseBlock ? n - b0 : kLseBlock;
    const int64_t main = len - len % V::W;
    F vmax = V::set1(-INFINITY);
    typename V::Bad bad = V::no_bad();
    for (int64_t i = 0; i < main; i += V::W) {
      const F v = V::load(xb + i);
      vmax = V::max(vmax, v);
      bad = V::bad(bad, v);
    }
    float m = V::hmax(vmax);
    bool any_bad = V::any(bad);
    for (int64_t i = main; i < len; ++i) {
      const float v = to_float(xb[i]);
      any_bad |= (v != v) || v == INFINITY;
      m = v > m ? v : m;
    }
    if (any_bad) {
      for (int64_t i = 0; i < len; ++i) {
        const float v = to_float(xb[i]);
        if (v != v || v == INFINITY) return TileMaxSumExp{NAN, 0.0, b0 + i};
      }
    }
    if (m == -INFINITY) continue;  // an all -inf block adds nothing (and −inf − −inf is NaN)
    const float zmax = scale * m;
    const F vscale = V::set1(scale), vneg = V::set1(-zmax);
    F s0 = V::zero(), s1 = V::zero();
    int64_t i = 0;
    for (; i + 2 * V::W <= main; i += 2 * V::W) {
      s0 = V::add(s0, V::exp(V::fma(V::load(xb + i), vscale, vneg)));
      s1 = V::add(s1, V::exp(V::fma(V::load(xb + i + V::W), vscale, vneg)));
    }
    if (i < main) s0 = V::add(s0, V::exp(V::fma(V::load(xb + i), vscale, vneg)));
    float s = V::sum(V::add(s0, s1));
    for (int64_t j = main; j < len; ++j) s += expf(scale * to_float(xb[j]) - zmax);
    merge(run, MaxSumExp<double>{zmax, double(s)});
  }
  return TileMaxSumExp{run.max, run.sum, -1};
}
