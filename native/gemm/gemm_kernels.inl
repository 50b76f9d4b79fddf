// SIMD part of the GEMM core (native/gemm/gemm.h): packing and register-blocked micro-kernels,
// one instance per ISA (included into each ISA namespace by native/isa/isa_body.inl).
//
// One call computes one block of C (GemmBlock in kernels.h): for each kc-deep slice of K, the
// block's B panel (kc × n, widened to fp32) and, for each mc rows of A, their A panel (mc × kc)
// are packed into micro-panels laid out in the order the micro-kernel reads them; then each
// MR × NR tile of C takes the slice's products in registers and is written (or added) once.
// Every C entry sums its products in K order, slice by slice: the result does not depend on how
// the caller split C into blocks, nor on the thread count.

// The micro-tile: MR rows of A broadcast against NV vectors of B. MR·NV accumulators plus NV
// B vectors and a broadcast must fit the register file (16 registers below AVX-512, 32 with it),
// and MR·NV independent FMA chains hide the FMA latency (4–5 cycles, two pipes).
#if defined(FL_ISA_AVX512)
constexpr int kGemmMr = 12, kGemmNv = 2;   // 24 zmm accumulators, 12×32
#elif defined(FL_ISA_AVX2)
constexpr int kGemmMr = 6, kGemmNv = 2;    // 12 ymm accumulators, 6×16
#else
constexpr int kGemmMr = 4, kGemmNv = 2;    // no FMA (mul + add needs a temporary): 8 xmm, 4×8
#endif
constexpr int kGemmNr = kGemmNv * V::W;

// C[0..m)[0..n) (ldc) = or += the MR×NR product of the packed panels a (kc × MR) and b (kc × NR).
static inline void gemm_micro(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                              int m, int n, bool add) {
  using F = typename V::F;
  F acc[kGemmMr][kGemmNv];
#pragma GCC unroll 32
  for (int i = 0; i < kGemmMr; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kGemmNv; ++j) acc[i][j] = V::zero();
  for (int64_t k = 0; k < kc; ++k) {
    F bv[kGemmNv];
#pragma GCC unroll 4
    for (int j = 0; j < kGemmNv; ++j) bv[j] = V::load(b + j * V::W);
#pragma GCC unroll 32
    for (int i = 0; i < kGemmMr; ++i) {
      const F ai = V::set1(a[i]);
#pragma GCC unroll 4
      for (int j = 0; j < kGemmNv; ++j) acc[i][j] = V::fma(ai, bv[j], acc[i][j]);
    }
    a += kGemmMr;
    b += kGemmNr;
  }
  if (m == kGemmMr && n == kGemmNr) {
#pragma GCC unroll 32
    for (int i = 0; i < kGemmMr; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < kGemmNv; ++j) {
        float* p = c + i * ldc + j * V::W;
        V::store(p, add ? V::add(V::load(p), acc[i][j]) : acc[i][j]);
      }
    return;
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < kGemmNv; ++j) {
      const int w = n - j * V::W < V::W ? n - j * V::W : V::W;
      if (w <= 0) break;
      float* p = c + i * ldc + j * V::W;
      V::store_tail(p, add ? V::add(V::load_tail(p, w), acc[i][j]) : acc[i][j], w);
    }
}

// out[k·stride + r] = src[r·ld + k] for r < rows, k < kc: a transposing copy, by 4×4 blocks in
// SSE registers (every x86-64 has them) where a scalar loop would make 32 memory operations of
// the 8 a block takes. Both packings of a matrix stored across the micro-panel's direction use it.
static void gemm_transpose_copy(const float* src, int64_t ld, int rows, int64_t kc, float* out, int64_t stride) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* s0 = src + r * ld;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 a = _mm_loadu_ps(s0 + k), b = _mm_loadu_ps(s0 + ld + k), c = _mm_loadu_ps(s0 + 2 * ld + k), d = _mm_loadu_ps(s0 + 3 * ld + k);
      _MM_TRANSPOSE4_PS(a, b, c, d);
      float* o = out + k * stride + r;
      _mm_storeu_ps(o, a);
      _mm_storeu_ps(o + stride, b);
      _mm_storeu_ps(o + 2 * stride, c);
      _mm_storeu_ps(o + 3 * stride, d);
    }
    for (; k < kc; ++k)
      for (int q = 0; q < 4; ++q) out[k * stride + r + q] = s0[q * ld + k];
  }
  for (; r < rows; ++r)
    for (int64_t k = 0; k < kc; ++k) out[k * stride + r] = src[r * ld + k];
}

// Packs rows [0, m) × K slice [k0, k0 + kc) of op(A) (fp32) into MR-row micro-panels
// (panel p, step k: out[p·kc·MR + k·MR + r]); rows past m are zero.
static void gemm_pack_a(const GemmBlock& g, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* out) {
  for (int64_t p0 = 0; p0 < m; p0 += kGemmMr, out += kc * kGemmMr) {
    const int rows = int(m - p0 < kGemmMr ? m - p0 : kGemmMr);
    if (g.a_trans) {  // op(A)(i, k) = a[k·lda + i]: each step reads MR neighbours
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = g.a + (k0 + k) * g.lda + i0 + p0;
        float* dst = out + k * kGemmMr;
        int r = 0;
        for (; r < rows; ++r) dst[r] = src[r];
        for (; r < kGemmMr; ++r) dst[r] = 0.f;
      }
    } else {  // op(A)(i, k) = a[i·lda + k]: rows are contiguous runs of K
      gemm_transpose_copy(g.a + (i0 + p0) * g.lda + k0, g.lda, rows, kc, out, kGemmMr);
      for (int64_t k = 0; k < kc; ++k)
        for (int r = rows; r < kGemmMr; ++r) out[k * kGemmMr + r] = 0.f;
    }
  }
}

// Packs K slice [k0, k0 + kc) × columns [0, n) of op(B) (of type T, widened to fp32) into
// NR-column micro-panels (panel p, step k: out[p·kc·NR + k·NR + c]); columns past n are zero.
template <class T>
static void gemm_pack_b(const GemmBlock& g, int64_t k0, int64_t kc, float* out) {
  const T* b = static_cast<const T*>(g.b);
  for (int64_t p0 = 0; p0 < g.n; p0 += kGemmNr, out += kc * kGemmNr) {
    const int cols = int(g.n - p0 < kGemmNr ? g.n - p0 : kGemmNr);
    if (!g.b_trans) {  // op(B)(k, j) = b[k·ldb + j]: each step is a contiguous run of NR
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = b + (k0 + k) * g.ldb + p0;
        float* dst = out + k * kGemmNr;
        for (int v = 0; v < kGemmNv; ++v) {
          const int w = cols - v * V::W;
          V::store(dst + v * V::W, w >= V::W ? V::load(src + v * V::W) : w > 0 ? V::load_tail(src + v * V::W, w) : V::zero());
        }
      }
    } else if constexpr (std::is_same_v<T, float>) {  // op(B)(k, j) = b[j·ldb + k]: columns are runs of K
      gemm_transpose_copy(b + p0 * g.ldb + k0, g.ldb, cols, kc, out, kGemmNr);
      for (int64_t k = 0; k < kc; ++k)
        for (int c = cols; c < kGemmNr; ++c) out[k * kGemmNr + c] = 0.f;
    } else {  // half columns: widened a vector at a time, then scattered
      for (int c = 0; c < kGemmNr; ++c) {
        if (c >= cols) {
          for (int64_t k = 0; k < kc; ++k) out[k * kGemmNr + c] = 0.f;
          continue;
        }
        const T* src = b + (p0 + c) * g.ldb + k0;
        alignas(64) float t[V::W];
        for (int64_t k = 0; k < kc; k += V::W) {
          const int w = int(kc - k < V::W ? kc - k : V::W);
          V::store(t, w == V::W ? V::load(src + k) : V::load_tail(src + k, w));
          for (int s = 0; s < w; ++s) out[(k + s) * kGemmNr + c] = t[s];
        }
      }
    }
  }
}

// One block of C (see GemmBlock). Loop order: K slices; in each, the B panel is packed once and
// stays in L2 while every mc-row A panel (packed, L2) runs its MR-row micro-panels (L1) across it.
template <class T>
void gemm_block(const GemmBlock& g) {
  for (int64_t k0 = 0; k0 < g.k || k0 == 0; k0 += kGemmKc) {
    const int64_t kc = g.k - k0 < kGemmKc ? g.k - k0 : kGemmKc;
    const bool add = g.accumulate || k0 > 0;
    if (kc == 0) {  // K = 0: C = 0, or unchanged
      if (!add)
        for (int64_t i = 0; i < g.m; ++i) std::memset(g.c + i * g.ldc, 0, size_t(g.n) * sizeof(float));
      return;
    }
    gemm_pack_b<T>(g, k0, kc, g.pack_b);
    for (int64_t i0 = 0; i0 < g.m; i0 += kGemmMc) {
      const int64_t mc = g.m - i0 < kGemmMc ? g.m - i0 : kGemmMc;
      gemm_pack_a(g, i0, mc, k0, kc, g.pack_a);
      for (int64_t jr = 0; jr < g.n; jr += kGemmNr) {
        const int n = int(g.n - jr < kGemmNr ? g.n - jr : kGemmNr);
        const float* pb = g.pack_b + (jr / kGemmNr) * kc * kGemmNr;
        for (int64_t ir = 0; ir < mc; ir += kGemmMr) {
          const int m = int(mc - ir < kGemmMr ? mc - ir : kGemmMr);
          gemm_micro(kc, g.pack_a + (ir / kGemmMr) * kc * kGemmMr, pb, g.c + (i0 + ir) * g.ldc + jr, g.ldc, m, n, add);
        }
      }
    }
  }
}

// The FMA peak: `iters` steps of 12 independent FMA chains on whole vectors (more chains than
// latency × pipes on current cores). Returns the flops done (2 per lane per FMA).
double fma_peak(int64_t iters) {
  using F = typename V::F;
  F acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = V::set1(float(i) * 1e-3f);
  const F a = V::set1(0.999999f), b = V::set1(1e-7f);
  for (int64_t t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = V::fma(acc[i], a, b);
  F s = acc[0];
  for (int i = 1; i < 12; ++i) s = V::add(s, acc[i]);
  volatile float sink = V::sum(s);
  (void)sink;
  return double(iters) * 12 * 2 * V::W;
}
