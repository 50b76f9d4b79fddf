// SIMD part of the softmax-row engine (native/ops/softmax_rows.h): the two sweeps every
// softmax-family loss makes over a stretch of a row. Included into each ISA namespace by
// native/isa/isa_body.inl.
//
// Scores are transformed on load: z = scale·x, or with a softcap c, z = c·tanh(scale·x / c).
// Both transforms are increasing, so max z = transform(max x): the statistics sweep takes the
// max of x over a block of kBlock elements (8 KiB of fp32, so the block is in L1 for the next
// step), then sums exp(z − max z), one exp per element. Block sums are fp32 lane sums of at
// most kBlock terms; blocks are merged in double, so the error does not grow with N.

constexpr int64_t kBlock = kSoftmaxBlock;

// tanh(u) and sech²(u) = 1 − tanh²(u) from e = e^{2u}:
//   tanh = 1 − 2/(e + 1), except |u| < 0.3, where that subtracts two numbers near 1 and the odd
//          Taylor series to u^11 is used instead (truncation < 1e-9 relative);
//   sech² = 4e/(e + 1)², which, unlike 1 − tanh², keeps its relative accuracy where tanh
//          saturates (the softcap's gradient for large scores).
// 2u is clamped to 87 (e^87 is finite), so large |u| gives tanh = ±1 and sech² = 0, never NaN.
template <class V>
static inline typename V::F vtanh(typename V::F u, typename V::F* sech2 = nullptr) {
  using F = typename V::F;
  const F e = V::exp(V::min(V::add(u, u), V::set1(87.f)));  // e^87 · 4 still fits a float
  const F e1 = V::add(e, V::set1(1.f));
  const F big = V::sub(V::set1(1.f), V::div(V::set1(2.f), e1));
  const F u2 = V::mul(u, u);
  F p = V::fma(u2, V::set1(-0.008863235529902197f), V::set1(0.021869488536155203f));  // −1382/155925, 62/2835
  p = V::fma(u2, p, V::set1(-0.05396825396825397f));                                   // −17/315
  p = V::fma(u2, p, V::set1(0.13333333333333333f));                                    // 2/15
  p = V::fma(u2, p, V::set1(-0.3333333333333333f));                                    // −1/3
  const F small = V::fma(V::mul(u2, u), p, u);
  // (4/(e+1))·(e/(e+1)): never forms e², which overflows for large u.
  if (sech2) *sech2 = V::mul(V::div(V::set1(4.f), e1), V::div(e, e1));
  return V::select_lt(u2, V::set1(0.09f), small, big);
}

template <class V>
static inline typename V::F softcap_z(typename V::F x, typename V::F scale, typename V::F cap, typename V::F inv_cap) {
  return V::mul(cap, vtanh<V>(V::mul(V::mul(x, scale), inv_cap)));
}

// One score through the same vector arithmetic (CpuKernels::softcap).
template <class V>
float softcap_one(float x, float scale, float cap) {
  return V::hmax(softcap_z<V>(V::set1(x), V::set1(scale), V::set1(cap), V::set1(1.f / cap)));
}

// Statistics of z over a tile (see StatsTile in kernels.h). kUnitScale: scale is 1, so z = x
// (the default, and a multiply less per element in the exp loop, its throughput limit).
template <class V, class T, bool kSoftcap, bool kLin, bool kUnitScale = false>
TileMaxSumExp tile_stats(const StatsTile& a) {
  if constexpr (!kSoftcap && !kUnitScale) {
    if (a.scale == 1.f) return tile_stats<V, T, false, kLin, true>(a);
  }
  using F = typename V::F;
  const T* x = static_cast<const T*>(a.x);
  const F vs = V::set1(a.scale), vc = V::set1(a.cap), vic = V::set1(kSoftcap ? 1.f / a.cap : 0.f);
  const F ninf = V::set1(-INFINITY);
  auto z_of = [&](F v) {
    if constexpr (kSoftcap) return softcap_z<V>(v, vs, vc, vic);
    else if constexpr (kUnitScale) return v;
    else return V::mul(v, vs);
  };
  MaxSumExp<double> run = max_sum_exp_empty<double>();
  double lin = 0;
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const T* xb = x + b0;
    const int64_t len = a.n - b0 < kBlock ? a.n - b0 : kBlock;
    const int64_t main = len - len % V::W;
    const int tail = int(len - main);
    // Sweep 1: max and min of x, and any NaN/+inf. Tail lanes are filled with −inf (neutral for
    // the max; for the min it only costs the block the faster sweep 2 below). A +inf shows in
    // the max; a NaN, which max would drop, is caught by one unordered compare per pair of
    // vectors (three vector operations per pair where a per-vector check takes four), or by
    // sweep 2's sum.
    // Where the exp keeps a NaN (V::kExpKeepsNaN) and there is no softcap (whose tanh clamps its
    // argument), a NaN score makes the block's sum NaN, which is tested after sweep 2 instead.
    constexpr bool kNanFromSum = V::kExpKeepsNaN && !kSoftcap;
    F vmax = ninf, vmin = V::set1(INFINITY), nan = V::zero();
    {
      // v0 and v1 are two vectors, or one vector twice.
      auto scan = [&](F v0, F v1) {
        vmax = V::max(vmax, V::max(v0, v1));
        if constexpr (!kSoftcap) vmin = V::min(vmin, V::min(v0, v1));  // sweep 2's underflow test
        if constexpr (!kNanFromSum) nan = V::unordered(nan, v0, v1);
      };
      int64_t i = 0;
      for (; i + 2 * V::W <= main; i += 2 * V::W) scan(V::load(xb + i), V::load(xb + i + V::W));
      if (i < main) {
        const F v = V::load(xb + i);
        scan(v, v);
      }
      if (tail) {
        const F v = V::load_tail(xb + main, tail, -INFINITY);
        scan(v, v);
      }
    }
    const float m = V::hmax(vmax);
    auto first_bad = [&]() -> int64_t {
      for (int64_t i = 0; i < len; ++i) {
        const float v = to_float(xb[i]);
        if (v != v || v == INFINITY) return b0 + i;
      }
      return -1;
    };
    // (m is NaN where the max kept a NaN; where it dropped them all, the block is all −inf and
    // NaN, which sweep 2 skips, so that block is scanned here.)
    if (V::any_set(nan) || m == INFINITY || m != m || (kNanFromSum && m == -INFINITY)) {
      const int64_t bad = first_bad();
      if (bad >= 0) return TileMaxSumExp{NAN, 0.0, 0.0, bad};
    }
    // A local copy of the pointer: GCC otherwise reloads a.keep after every store through it.
    float* const keep = kSoftcap ? nullptr : a.keep;
    if (m == -INFINITY) {  // an all −inf block adds nothing (and −inf − −inf is NaN)
      if (keep) {
        std::memset(keep + b0, 0, size_t(len) * sizeof(float));
        a.block_max[b0 / kBlock] = -INFINITY;
      }
      continue;
    }
    // Sweep 2 (L1-resident): Σ exp(z − max z), and Σ colw·z over finite entries when asked.
    // zmax comes from the same vector arithmetic as every z, so the max term is exactly 1, and
    // z − zmax is formed before the change to base 2 (x·scale·log2e would round x·log2e at the
    // magnitude of x, a 0.004 error in the exponent at |x| = 6e4). Terms of exactly 1 (the
    // max, and ties with it) are counted rather than summed: the block's
    // rest = Σ(other terms) + (count − 1) then keeps the small terms' precision instead of
    // rounding them against the 1 (see MaxSumExp). Two vectors per step, with their own sums,
    // give the core two independent exp chains to overlap.
    const float zmax = V::hmax(z_of(V::set1(m)));
    const F vneg = V::set1(-zmax), vlog2e = V::set1(kLog2e);
    F sum[2] = {V::zero(), V::zero()}, l = V::zero();
    typename V::Tally ones[2] = {V::tally_zero(), V::tally_zero()};
    // Where every z is within 87 of zmax, z − zmax ≥ −87 and every exp is at least 2^−125.6, a
    // normal float: no lane can underflow, and the exp needs no mask (two of its sixteen vector
    // operations). A −inf entry, or the −inf tail lanes, make the min −inf: masked path.
    bool may_underflow = true;
    if constexpr (!kSoftcap) {
      const float lo = -V::hmax(V::sub(V::zero(), vmin));  // min x; z is increasing in x
      may_underflow = !(zmax - V::hmax(z_of(V::set1(lo))) <= 87.f);
    }
    auto sweep2 = [&](auto may_underflow_tag) {
      constexpr bool kMayUnderflow = decltype(may_underflow_tag)::value;
      auto exp_of = [&](F v) {
        const F e = V::template exp2_mul<kMayUnderflow>(V::add(z_of(v), vneg), vlog2e);
        // A −inf score is out (probability 0). The softcap would map it to −cap, so mask it.
        if constexpr (kSoftcap) return V::zero_where_eq(e, v, ninf);
        else return e;
      };
      // Σ w·z is summed on z·2^-64 (exact scaling): 2048 fp32 terms of up to 3.4e38 would
      // overflow a lane; the block sum is scaled back in double.
      auto add_lin = [&](F v, int64_t i, int n) {
        if constexpr (kLin) {
          const F w = !a.colw ? V::set1(1.f) : n == V::W ? V::load(a.colw + b0 + i) : V::load_tail(a.colw + b0 + i, n);
          l = V::fma(V::mul(V::zero_where_eq(z_of(v), v, ninf), V::set1(0x1p-64f)), w, l);
        }
      };
      auto one_vector = [&](F v, int64_t i, int n, int k) {
        const F e = exp_of(v);
        if (keep) n == V::W ? V::store(keep + b0 + i, e) : V::store_tail(keep + b0 + i, e, n);
        V::add_unless_one(e, sum[k], ones[k]);
        add_lin(v, i, n);
      };
      // Sweep 1 of a block waits on memory and sweep 2 on the exp. Prefetching while the exp
      // runs overlaps the two (the hardware prefetcher sees no misses here): the block after the
      // next, into L2, which measured a little faster than the next block into L1.
      const char* next = reinterpret_cast<const char*>(xb + len + kBlock);
      const int64_t after_next = a.n - b0 - len - kBlock;
      const int64_t next_bytes = (after_next < kBlock ? std::max<int64_t>(after_next, 0) : kBlock) * int64_t(sizeof(T));
      int64_t i = 0;
      for (; i + 2 * V::W <= main; i += 2 * V::W) {
        // One prefetch per 64-byte line the step reads (AVX2 fp32: one). Steps shorter than a
        // line prefetch it more than once, which costs less than a branch to skip it.
        for (int64_t off = i * int64_t(sizeof(T)); off < (i + 2 * V::W) * int64_t(sizeof(T)); off += 64)
          if (off < next_bytes) V::prefetch_l2(next + off);
        one_vector(V::load(xb + i), i, V::W, 0);
        one_vector(V::load(xb + i + V::W), i + V::W, V::W, 1);
      }
      if (i < main) one_vector(V::load(xb + i), i, V::W, 0);
      if (tail) one_vector(V::load_tail(xb + main, tail, -INFINITY), main, tail, 1);
    };
    if (may_underflow) sweep2(std::true_type{});
    else sweep2(std::false_type{});
    const double summed = double(V::sum(V::add(sum[0], sum[1])));
    if constexpr (kNanFromSum) {
      if (summed != summed) {
        const int64_t bad = first_bad();
        if (bad >= 0) return TileMaxSumExp{NAN, 0.0, 0.0, bad};
      }
    }
    const double count = double(V::count(ones[0], sum[0]) + V::count(ones[1], sum[1]));
    const double rest = summed + (count - 1.0);
    if (keep) a.block_max[b0 / kBlock] = zmax;
    merge(run, MaxSumExp<double>{zmax, rest});
    if constexpr (kLin) lin += double(V::sum(l)) * 0x1p64;
  }
  return TileMaxSumExp{run.max, run.rest, lin, -1};
}

template <class V, class T>
TileMaxSumExp tile_max_sum_exp(const void* x, int64_t n, float scale) {
  return tile_stats<V, T, false, false>(StatsTile{x, n, scale, 0.f, nullptr, nullptr, nullptr});
}

// The dense gradient sweep over a tile (see ExpGradTile in kernels.h):
//   dL/dz_j = coef·exp(z_j − shift) + bias + colw_coef·colw_j
//   g_j     = dL/dz_j · dz_j/dx_j                     stored as TG, unless g is null
// returning Σ_j dL/dz_j · dz_j/dscale (the tile's share of dScale): fp32 lanes per block,
// double across blocks. dz/dx = scale, or scale·(1 − tanh²) with a softcap; dz/dscale = x, or
// x·(1 − tanh²). An entry that is −inf is out: its gradient and dScale term are exactly 0.
template <class V, class TX, class TG, bool kSoftcap>
double tile_exp_grad(const ExpGradTile& a) {
  using F = typename V::F;
  const TX* x = static_cast<const TX*>(a.x);
  TG* g = static_cast<TG*>(a.g);
  const F vs = V::set1(a.scale), vc = V::set1(a.cap), vic = V::set1(kSoftcap ? 1.f / a.cap : 0.f);
  const F vshift = V::set1(-a.shift), vcoef = V::set1(a.coef), vbias = V::set1(a.bias), vcw = V::set1(a.colw_coef);
  const F ninf = V::set1(-INFINITY);
  // One vector of entries starting at j (tail lanes hold −inf, so they contribute 0).
  auto step = [&](F v, int64_t j, int tail) -> F {
    F z, dzdx, dzds;
    if constexpr (kSoftcap) {
      F sech2;
      const F t = vtanh<V>(V::mul(V::mul(v, vs), vic), &sech2);
      z = V::mul(vc, t);
      dzdx = V::mul(vs, sech2);
      dzds = V::mul(v, sech2);
    } else {
      z = V::mul(v, vs);
      dzdx = vs;
      dzds = v;
    }
    F d = V::fma(vcoef, V::exp(V::add(z, vshift)), vbias);
    if (a.colw) d = V::fma(vcw, tail ? V::load_tail(a.colw + j, tail) : V::load(a.colw + j), d);
    d = V::add(V::zero_where_eq(d, v, ninf), V::zero());  // + 0: a zero is +0 whatever the signs (see below)
    if (g) {
      const F out = V::mul(d, dzdx);
      if (tail) V::store_tail(g + j, out, tail);
      else V::store(g + j, out);
    }
    return V::mul(d, V::zero_where_eq(dzds, v, ninf));
  };
  double total = 0;
  if constexpr (!kSoftcap) {
    if (a.kept && g && !a.dscale && a.bias == 0.f && !a.colw) {
      // The common case (no smoothing, no class weights, no dScale): g_j = (f·kept_j + 0)·scale,
      // bit for bit the arithmetic below, with no need to read x: kept is 0 for −inf entries.
      // Both paths add +0 after the fma, so a zero is +0 whatever the signs of coef and of a
      // bias of −0, and also where f·kept underflows (an fma rounds a tiny negative to −0).
      // f = coef·e^{block max − shift} is one scalar per block.
      auto factor = [&](int64_t block) {
        const float bm = a.block_max[block];
        return bm == -INFINITY ? 0.f : a.coef * expf(bm - a.shift);
      };
      // At scale 1 (the default) the multiply by it is exact, and left out.
      auto sweep = [&](auto unit_scale) {
        auto out = [&](F f, F kept) {
          const F d = V::add(V::fma(f, kept, V::zero()), V::zero());
          if constexpr (decltype(unit_scale)::value) return d;
          else return V::mul(d, vs);
        };
        if constexpr (std::is_same_v<TG, float>) {
          if (a.stream) {
            // Non-temporal stores: the gradient is too big to stay in cache, and they skip the
            // read-for-ownership a normal store makes (a third of the memory traffic). They go
            // to whole 64-byte lines only, over the whole tile: a line that also takes an
            // ordinary store is read, and its write-combining buffer flushed half full, which
            // made the sweep twice as slow where g sat 48 bytes into a line and every block
            // edge split one. So the partial lines at the tile's two ends get ordinary stores,
            // and the one vector per block that straddles a block edge takes both blocks' f.
            constexpr int64_t kLine = 64 / sizeof(float);
            const int64_t head = std::min<int64_t>(a.n, int64_t((64 - reinterpret_cast<uintptr_t>(g) % 64) % 64 / sizeof(float)));
            const int64_t body_end = head + (a.n - head) / kLine * kLine;
            auto scalar = [&](int64_t j) { g[j] = (factor(j / kBlock) * a.kept[j] + 0.f) * a.scale; };
            int64_t j = 0;
            for (; j < head; ++j) scalar(j);
            int64_t block = j / kBlock, edge = (block + 1) * kBlock;
            F f = V::set1(factor(block));
            for (; j < body_end; j += V::W) {
              if (j + V::W > edge) {
                const float f0 = factor(block), f1 = factor(block + 1);
                alignas(64) float lanes[V::W];
                for (int l = 0; l < V::W; ++l) lanes[l] = j + l < edge ? f0 : f1;
                V::store_stream(g + j, out(V::load(lanes), V::load(a.kept + j)));
                ++block, edge += kBlock;
                f = V::set1(f1);
                continue;
              }
              V::store_stream(g + j, out(f, V::load(a.kept + j)));
            }
            for (; j < a.n; ++j) scalar(j);
            V::fence_streams();  // order the weakly-ordered stores before the pool's barrier
            return 0;
          }
        }
        for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
          const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
          const F f = V::set1(factor(b0 / kBlock));
          int64_t j = b0;
          for (; j + V::W <= b1; j += V::W) V::store(g + j, out(f, V::load(a.kept + j)));
          if (j < b1) V::store_tail(g + j, out(f, V::load_tail(a.kept + j, int(b1 - j))), int(b1 - j));
        }
        return 0;
      };
      return a.scale == 1.f ? sweep(std::true_type{}) : sweep(std::false_type{});
    }
    if (a.kept) {
      // exp(z − shift) = kept · e^{block max − shift}: one scalar exp per block instead of one
      // per entry. kept is 0 for −inf entries; their bias term is masked as above.
      for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
        const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
        const float bm = a.block_max[b0 / kBlock];
        const F f = V::set1(bm == -INFINITY ? 0.f : a.coef * expf(bm - a.shift));
        F acc = V::zero();
        auto kstep = [&](F v, F e, int64_t j, int tail) -> F {
          F d = V::fma(f, e, vbias);
          if (a.colw) d = V::fma(vcw, tail ? V::load_tail(a.colw + j, tail) : V::load(a.colw + j), d);
          d = V::add(V::zero_where_eq(d, v, ninf), V::zero());
          if (g) {
            if (tail) V::store_tail(g + j, V::mul(d, vs), tail);
            else V::store(g + j, V::mul(d, vs));
          }
          return V::mul(d, V::zero_where_eq(v, v, ninf));
        };
        int64_t j = b0;
        for (; j + V::W <= b1; j += V::W) acc = V::add(acc, kstep(V::load(x + j), V::load(a.kept + j), j, 0));
        if (j < b1) {
          const int tail = int(b1 - j);
          acc = V::add(acc, kstep(V::load_tail(x + j, tail, -INFINITY), V::load_tail(a.kept + j, tail), j, tail));
        }
        total += double(V::sum(acc));
      }
      return total;
    }
  }
  for (int64_t b0 = 0; b0 < a.n; b0 += kBlock) {
    const int64_t b1 = a.n - b0 < kBlock ? a.n : b0 + kBlock;
    F acc = V::zero();
    int64_t j = b0;
    for (; j + V::W <= b1; j += V::W) acc = V::add(acc, step(V::load(x + j), j, 0));
    if (j < b1) {
      const int tail = int(b1 - j);
      acc = V::add(acc, step(V::load_tail(x + j, tail, -INFINITY), j, tail));
    }
    total += double(V::sum(acc));
  }
  return total;
}
