// SIMD part of symmetric (CLIP) InfoNCE (native/ops/infonce.cpp): the row and the column
// statistics of a square score matrix from one read, then the gradient from a second read.
// Included into each ISA namespace by native/isa/isa_body.inl.
//
// Statistics go by column strips (SymStatsStrip): a strip's columns are complete in its task,
// and each row gets one partial (max, rest) per strip, merged later in strip order. Inside a
// strip, blocks of kSymBlockRows rows (L1-resident) are read twice: first for each row's max
// and each column's block max, then for Σ exp(z − max) both ways. A block's column sums are
// fp32 sums of at most kSymBlockRows terms, merged into the strip's double state in block
// order, so nothing depends on the thread count and the error does not grow with B.
//
// Sums are kept as `rest` = Σ exp(z − max) − 1 (see MaxSumExp): terms of exactly 1 (the max's
// own, and ties) are counted instead of added (V::add_unless_one), so they cost no precision.

constexpr int64_t kSymBlockRows = kSymStatsBlockRows;

template <class V, class T>
int64_t sym_stats(const SymStatsStrip& a) {
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  const int64_t w = a.c1 - a.c0;
  const int64_t main = w - w % V::W;
  const int tail = int(w - main);
  float* bm = a.scratch;          // block column max of x
  float* cd = a.scratch + w;      // block column Σ e over e != 1
  float* cc = a.scratch + 2 * w;  // block column count of e == 1 (integer lanes)
  float* ea = a.scratch + 3 * w;  // merge factors: strip state and block
  float* eb = a.scratch + 4 * w;
  const F vs = V::set1(a.scale), ninf = V::set1(-INFINITY), zero = V::zero();
  for (int64_t j = 0; j < w; ++j) {
    a.col_max[j] = -INFINITY;
    a.col_rest[j] = 0;
  }
  float rmax[kSymBlockRows];
  for (int64_t r0 = 0; r0 < a.rows; r0 += kSymBlockRows) {
    const int64_t r1 = a.rows - r0 < kSymBlockRows ? a.rows : r0 + kSymBlockRows;
    // 1. Row maxima and block column maxima; NaN/+inf anywhere.
    for (int64_t j = 0; j < w; ++j) bm[j] = -INFINITY;
    typename V::Bad bad = V::no_bad();
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = x + r * a.n + a.c0;
      F m = ninf;
      for (int64_t j = 0; j < main; j += V::W) {
        const F v = V::load(row + j);
        m = V::max(m, v);
        V::store(bm + j, V::max(V::load(bm + j), v));
        bad = V::bad(bad, v);
      }
      if (tail) {
        const F v = V::load_tail(row + main, tail, -INFINITY);
        m = V::max(m, v);
        V::store_tail(bm + main, V::max(V::load_tail(bm + main, tail, -INFINITY), v), tail);
        bad = V::bad(bad, v);
      }
      rmax[r - r0] = V::hmax(m);
    }
    if (V::any(bad)) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < w; ++j) {
          const float v = to_float(x[r * a.n + a.c0 + j]);
          if (v != v || v == INFINITY) return r * a.n + a.c0 + j;
        }
    }
    // 2. Σ exp(z − row max) per row and Σ exp(z − block column max) per column. A max of −inf
    //    (nothing but −inf) shifts by 0 instead: every term is then exp(−inf) = 0.
    //    When every finite block column max cz_j is within kSymSpread of the block's largest
    //    row max K (CLIP's cosines times a logit scale ≤ 20 always are), the column term is the
    //    row term times e^{zr − K}·e^{K − cz_j}: one exponential per entry instead of two. The
    //    factors cannot overflow (e^{K − cz_j} ≤ e^40), a column term lost to the row term's
    //    underflow is below e^-47 of its column's max term, and the max term itself (x equal to
    //    the block column max) is counted as exactly 1, as the two-exponential path counts it.
    float K = -INFINITY;
    for (int64_t r = r0; r < r1; ++r)
      if (rmax[r - r0] != -INFINITY) K = std::max(K, a.scale * rmax[r - r0]);
    bool factor = K != -INFINITY;
    for (int64_t j = 0; j < w && factor; ++j)
      if (bm[j] != -INFINITY && double(K) - double(a.scale * bm[j]) > kSymSpread) factor = false;
    float* colb = ea;  // ea and eb are free until step 3
    float* coleq = eb;
    if (factor)
      for (int64_t j = 0; j < w; ++j) {
        colb[j] = bm[j] == -INFINITY ? 0.f : float(std::exp(double(K) - double(a.scale * bm[j])));
        coleq[j] = bm[j] == -INFINITY ? NAN : bm[j];  // NaN: an all −inf column has no max term
      }
    std::memset(cd, 0, size_t(2 * w) * sizeof(float));  // cd and cc: 0.f and integer 0
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = x + r * a.n + a.c0;
      // The strip's rows are short stretches a row length apart, which the hardware prefetcher
      // does not follow: ask for the next block's row while this one is summed.
      const T* next = r + kSymBlockRows < a.rows ? row + kSymBlockRows * a.n : nullptr;
      const float zr = rmax[r - r0] == -INFINITY ? -INFINITY : a.scale * rmax[r - r0];
      const F vr = V::set1(zr == -INFINITY ? 0.f : -zr);
      F rd = zero;
      typename V::Tally rc = V::tally_zero();
      const F ar = V::set1(factor && zr != -INFINITY ? float(std::exp(double(zr) - double(K))) : 0.f);
      auto step = [&](F v, int64_t j, int n) {
        const F z = V::mul(v, vs);
        const F e = V::exp(V::add(z, vr));
        V::add_unless_one(e, rd, rc);
        F d = n ? V::load_tail(cd + j, n) : V::load(cd + j), c = n ? V::load_tail(cc + j, n) : V::load(cc + j);
        if (factor) {
          const F b = n ? V::load_tail(colb + j, n) : V::load(colb + j);
          const F eq = n ? V::load_tail(coleq + j, n, NAN) : V::load(coleq + j);
          V::add_or_count_where_eq(V::mul(e, V::mul(ar, b)), v, eq, d, c);
        } else {
          const F cz = V::mul(n ? V::load_tail(bm + j, n, -INFINITY) : V::load(bm + j), vs);
          V::add_unless_one(V::exp(V::sub(z, V::zero_where_eq(cz, cz, ninf))), d, c);
        }
        if (n) {
          V::store_tail(cd + j, d, n);
          V::store_tail(cc + j, c, n);
        } else {
          V::store(cd + j, d);
          V::store(cc + j, c);
        }
      };
      // One prefetch per 64-byte line, spread over the row's steps.
      constexpr int64_t kLine = 64 / int64_t(sizeof(T));
      for (int64_t j = 0; j < main; j += V::W) {
        if (next && j % kLine < V::W) __builtin_prefetch(next + j);
        step(V::load(row + j), j, 0);
      }
      if (tail) step(V::load_tail(row + main, tail, -INFINITY), main, tail);
      a.row_max[r] = zr;
      a.row_rest[r] = zr == -INFINITY ? 0.0 : double(V::sum(rd)) + (double(V::count(rc, rd)) - 1.0);
    }
    // 3. Merge the block's columns into the strip's: with m = max(m_a, m_b),
    //    Σ = (1 + rest_a)·e^{m_a − m} + (1 + rest_b)·e^{m_b − m}, so
    //    rest = rest_a·e_a + rest_b·e_b + (e_a + e_b − 1), exact where one factor is 1.
    auto factors = [&](int64_t j, int n) {
      const F om = n ? V::load_tail(a.col_max + j, n, -INFINITY) : V::load(a.col_max + j);
      const F bz = V::mul(n ? V::load_tail(bm + j, n, -INFINITY) : V::load(bm + j), vs);
      const F m = V::max(om, bz);
      const F m0 = V::zero_where_eq(m, m, ninf);
      if (n) {
        V::store_tail(ea + j, V::exp(V::sub(om, m0)), n);
        V::store_tail(eb + j, V::exp(V::sub(bz, m0)), n);
        V::store_tail(a.col_max + j, m, n);
      } else {
        V::store(ea + j, V::exp(V::sub(om, m0)));
        V::store(eb + j, V::exp(V::sub(bz, m0)));
        V::store(a.col_max + j, m);
      }
    };
    for (int64_t j = 0; j < main; j += V::W) factors(j, 0);
    if (tail) factors(main, tail);
    for (int64_t j = 0; j < w; ++j) {
      int32_t ones;
      std::memcpy(&ones, cc + j, sizeof ones);
      const double rest_b = double(cd[j]) + (double(ones) - 1.0);
      a.col_rest[j] = a.col_rest[j] * ea[j] + rest_b * eb[j] + ((double(ea[j]) + double(eb[j])) - 1.0);
    }
  }
  // A column of nothing but −inf: rest 0 (the merges above leave −1 there).
  for (int64_t j = 0; j < w; ++j)
    if (a.col_max[j] == -INFINITY) a.col_rest[j] = 0;
  return -1;
}

// The gradient of rows [r0, r1) (see SymGradRows in kernels.h); returns Σ dL/dz · x.
template <class V, class TX, class TG>
double sym_grad(const SymGradRows& a) {
  using F = typename V::F;
  const F vs = V::set1(a.scale), ninf = V::set1(-INFINITY);
  const int64_t main = a.n - a.n % V::W;
  const int tail = int(a.n - main);
  double total = 0;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const TX* row = static_cast<const TX*>(a.x) + r * a.n;
    TG* g = a.g ? static_cast<TG*>(a.g) + r * a.n : nullptr;
    const F rs = V::set1(-a.row_shift[r]), rc = V::set1(a.row_coef[r]);
    const F rd = V::set1(a.row_delta ? a.row_delta[r] : 0.f);
    F acc = V::zero();
    auto step = [&](F v, int64_t j, int n) {
      const F z = V::mul(v, vs);
      const F e = V::exp(V::add(z, rs));
      F d;
      if (a.col_gamma) {
        d = V::mul(e, V::fma(rd, n ? V::load_tail(a.col_gamma + j, n) : V::load(a.col_gamma + j), rc));
      } else {
        const F cs = n ? V::load_tail(a.col_shift + j, n) : V::load(a.col_shift + j);
        const F cc = n ? V::load_tail(a.col_coef + j, n) : V::load(a.col_coef + j);
        d = V::fma(rc, e, V::mul(cc, V::exp(V::sub(z, cs))));
      }
      d = V::zero_where_eq(d, v, ninf);
      if (g) {
        if (n) V::store_tail(g + j, V::mul(d, vs), n);
        else V::store(g + j, V::mul(d, vs));
      }
      acc = V::add(acc, V::mul(d, V::zero_where_eq(v, v, ninf)));
    };
    for (int64_t j = 0; j < main; j += V::W) step(V::load(row + j), j, 0);
    if (tail) step(V::load_tail(row + main, tail, -INFINITY), main, tail);
    total += double(V::sum(acc));
  }
  return total;
}
