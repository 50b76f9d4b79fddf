// Fixed-width SIMD vectors of fp32 for the CPU kernels.
//
// This header is included only by the per-ISA translation units in native/isa/, each of which
// enables its instruction set with `#pragma GCC target` before including it. The kernels are
// templates over one of these structs, so one kernel body serves every ISA and dtype, and
// runtime dispatch (native/core/cpu_features.h) picks the widest the machine has. Everything
// lives in the namespace FL_ISA_NS, which each ISA TU names differently, so no inline function
// compiled for one ISA can be merged by the linker with its twin compiled for another.
//
// Every struct provides the same static interface:
//   F                       the register type; W lanes
//   zero(), set1(x)
//   load(p), load_tail(p, n), store(p, v), store_tail(p, v, n)   p: float*, bf16_t*, f16_t*
//   load_tail(p, n, fill)   lanes past n hold `fill` (default 0)
//   add, sub, mul, div, fma(a,b,c)=a*b+c, max, min, sum(v), hmax(v)
//   zero_where_eq(a, x, c)  a with the lanes where x == c set to 0
//   select_lt(a, b, x, y)   x where a < b, else y
//   exp(v)                  e^v via 2^(v·log2e): relative error ~2e-7, exact 0 for -inf
//   Bad, no_bad(), bad(b, v), any(b)   accumulate "NaN or +inf seen" flags
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <cmath>
#include <cstring>

#include "../core/dtype.h"

namespace fl::FL_ISA_NS::simd {

// exp via exp2: split t = v·log2(e) into n = round(t) and f = t − n ∈ [−½, ½], evaluate
// 2^f with a degree-7 Taylor polynomial in f·ln2 (max relative error 1.5e-8 before rounding),
// and scale by 2^n through the exponent bits. t is clamped to [−126, 126] first so the
// exponent arithmetic cannot overflow; inputs below −87.3 (e^x < 2^−126) become exactly 0,
// which also maps −inf to 0. No input here is above 0 by more than a rounding error (all
// callers subtract the running max), so the upper clamp never changes a result that matters.
#define FL_EXP_COEFFS                                                                   \
  const F c1 = set1(0.6931471805599453f), c2 = set1(0.2402265069591007f),               \
          c3 = set1(0.05550410866482158f), c4 = set1(0.009618129107628477f),            \
          c5 = set1(0.0013333558146428443f), c6 = set1(0.00015403530393381608f),        \
          c7 = set1(1.5252733804059841e-05f)

struct Sse2 {
  static constexpr int W = 4;
  static constexpr const char* name = "sse2";
  using F = __m128;
  using Bad = __m128;
  static F zero() { return _mm_setzero_ps(); }
  static F set1(float x) { return _mm_set1_ps(x); }
  static F load(const float* p) { return _mm_loadu_ps(p); }
  static F load(const bf16_t* p) {
    const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h));
  }
  static F load(const f16_t* p) {
    alignas(16) float t[4];
    for (int i = 0; i < 4; ++i) t[i] = to_float(p[i]);
    return _mm_load_ps(t);
  }
  template <class T> static F load_tail(const T* p, int n, float fill = 0.f) {
    alignas(16) float t[4] = {fill, fill, fill, fill};
    for (int i = 0; i < n; ++i) t[i] = to_float(p[i]);
    return _mm_load_ps(t);
  }
  static void store(float* p, F v) { _mm_storeu_ps(p, v); }
  template <class T> static void store(T* p, F v) { store_tail(p, v, W); }
  template <class T> static void store_tail(T* p, F v, int n) {
    alignas(16) float t[4];
    _mm_store_ps(t, v);
    for (int i = 0; i < n; ++i) p[i] = from_float<T>(t[i]);
  }
  static F add(F a, F b) { return _mm_add_ps(a, b); }
  static F sub(F a, F b) { return _mm_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm_mul_ps(a, b); }
  static F div(F a, F b) { return _mm_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static F zero_where_eq(F a, F x, F c) { return _mm_andnot_ps(_mm_cmpeq_ps(x, c), a); }
  static F select_lt(F a, F b, F x, F y) {
    const F m = _mm_cmplt_ps(a, b);
    return _mm_or_ps(_mm_and_ps(m, x), _mm_andnot_ps(m, y));
  }
  static F max(F a, F b) { return _mm_max_ps(a, b); }
  static F min(F a, F b) { return _mm_min_ps(a, b); }
  static float sum(F v) {
    alignas(16) float t[4];
    _mm_store_ps(t, v);
    return (t[0] + t[1]) + (t[2] + t[3]);
  }
  static float hmax(F v) {
    v = _mm_max_ps(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm_max_ps(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtss_f32(v);
  }
  static F exp(F v) {
    FL_EXP_COEFFS;
    F t = mul(v, set1(1.4426950408889634f));
    const F dead = _mm_cmplt_ps(t, set1(-126.f));
    t = min(max(t, set1(-126.f)), set1(126.f));
    const __m128i n = _mm_cvtps_epi32(t);  // round to nearest
    const F f = sub(t, _mm_cvtepi32_ps(n));
    F p = fma(c7, f, c6);
    p = fma(p, f, c5); p = fma(p, f, c4); p = fma(p, f, c3);
    p = fma(p, f, c2); p = fma(p, f, c1); p = fma(p, f, set1(1.f));
    const __m128i scaled = _mm_add_epi32(_mm_castps_si128(p), _mm_slli_epi32(n, 23));
    return _mm_andnot_ps(dead, _mm_castsi128_ps(scaled));
  }
  static Bad no_bad() { return _mm_setzero_ps(); }
  static Bad bad(Bad b, F v) {
    return _mm_or_ps(b, _mm_or_ps(_mm_cmpunord_ps(v, v), _mm_cmpeq_ps(v, set1(INFINITY))));
  }
  static bool any(Bad b) { return _mm_movemask_ps(b) != 0; }
};

#if defined(FL_ISA_AVX2) || defined(FL_ISA_AVX512)
struct Avx2 {
  static constexpr int W = 8;
  static constexpr const char* name = "avx2";
  using F = __m256;
  using Bad = __m256;
  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load(const bf16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static F load(const f16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  template <class T> static F load_tail(const T* p, int n, float fill = 0.f) {
    alignas(32) T t[W];
    const T f = from_float<T>(fill);
    for (int i = 0; i < W; ++i) t[i] = f;
    std::memcpy(t, p, sizeof(T) * n);
    return load(t);
  }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store(f16_t* p, F v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static void store(bf16_t* p, F v) { store_tail(p, v, W); }
  template <class T> static void store_tail(T* p, F v, int n) {
    alignas(32) float t[W];
    _mm256_store_ps(t, v);
    for (int i = 0; i < n; ++i) p[i] = from_float<T>(t[i]);
  }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F zero_where_eq(F a, F x, F c) { return _mm256_andnot_ps(_mm256_cmp_ps(x, c, _CMP_EQ_OQ), a); }
  static F select_lt(F a, F b, F x, F y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static float sum(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    return Sse2::sum(s);
  }
  static float hmax(F v) {
    return Sse2::hmax(_mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
  }
  static F exp(F v) {
    FL_EXP_COEFFS;
    F t = mul(v, set1(1.4426950408889634f));
    const F dead = _mm256_cmp_ps(t, set1(-126.f), _CMP_LT_OQ);
    t = min(max(t, set1(-126.f)), set1(126.f));
    const F r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const F f = sub(t, r);
    F p = fma(c7, f, c6);
    p = fma(p, f, c5); p = fma(p, f, c4); p = fma(p, f, c3);
    p = fma(p, f, c2); p = fma(p, f, c1); p = fma(p, f, set1(1.f));
    const __m256i scaled =
        _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_cvtps_epi32(r), 23));
    return _mm256_andnot_ps(dead, _mm256_castsi256_ps(scaled));
  }
  static Bad no_bad() { return _mm256_setzero_ps(); }
  static Bad bad(Bad b, F v) {
    return _mm256_or_ps(b, _mm256_or_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q),
                                        _mm256_cmp_ps(v, set1(INFINITY), _CMP_EQ_OQ)));
  }
  static bool any(Bad b) { return _mm256_movemask_ps(b) != 0; }
};
#endif

#if defined(FL_ISA_AVX512)
struct Avx512 {
  static constexpr int W = 16;
  static constexpr const char* name = "avx512";
  using F = __m512;
  using Bad = __mmask16;
  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load(const bf16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static F load(const f16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __mmask16 tail_mask(int n) { return __mmask16((1u << n) - 1u); }
  static F load_tail(const float* p, int n, float fill = 0.f) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p);
  }
  static F load_tail(const bf16_t* p, int n, float fill = 0.f) {
    const __m256i h = _mm256_mask_loadu_epi16(_mm256_set1_epi16(short(to_bf16(fill).bits)), tail_mask(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static F load_tail(const f16_t* p, int n, float fill = 0.f) {
    return _mm512_cvtph_ps(_mm256_mask_loadu_epi16(_mm256_set1_epi16(short(to_f16(fill).bits)), tail_mask(n), p));
  }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_tail(float* p, F v, int n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
  static __m256i to_bf16_bits(F v) {
    // Round to nearest even on the bit pattern; NaN stays NaN (quiet bit forced).
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
  }
  static void store(bf16_t* p, F v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16_bits(v));
  }
  static void store_tail(bf16_t* p, F v, int n) {
    _mm256_mask_storeu_epi16(p, tail_mask(n), to_bf16_bits(v));
  }
  static void store(f16_t* p, F v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static void store_tail(f16_t* p, F v, int n) {
    _mm256_mask_storeu_epi16(p, tail_mask(n), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F zero_where_eq(F a, F x, F c) { return _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(x, c, _CMP_EQ_OQ), _mm512_setzero_ps()); }
  static F select_lt(F a, F b, F x, F y) { return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), x); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static float sum(F v) {
    return Avx2::sum(_mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  static float hmax(F v) { return _mm512_reduce_max_ps(v); }
  static F exp(F v) {
    FL_EXP_COEFFS;
    F t = mul(v, set1(1.4426950408889634f));
    const __mmask16 live = _mm512_cmp_ps_mask(t, set1(-126.f), _CMP_GE_OQ);
    t = min(max(t, set1(-126.f)), set1(126.f));
    const F r = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const F f = sub(t, r);
    F p = fma(c7, f, c6);
    p = fma(p, f, c5); p = fma(p, f, c4); p = fma(p, f, c3);
    p = fma(p, f, c2); p = fma(p, f, c1); p = fma(p, f, set1(1.f));
    // scalef computes p·2^r exactly; masked-zero lanes give e^x = 0 below the clamp.
    return _mm512_maskz_scalef_ps(live, p, r);
  }
  static Bad no_bad() { return 0; }
  static Bad bad(Bad b, F v) {
    return b | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v, set1(INFINITY), _CMP_EQ_OQ);
  }
  static bool any(Bad b) { return b != 0; }
};
#endif

#undef FL_EXP_COEFFS
}  // namespace fl::FL_ISA_NS::simd
