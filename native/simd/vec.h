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
//   store_stream(p, v)      non-temporal store to a float* aligned to sizeof(F)
//   fence_streams()         orders the store_stream stores before the stores that follow
//   prefetch_l2(p)          hints the 64-byte line at p into L2
//   load_tail(p, n, fill)   lanes past n hold `fill` (default 0)
//   add, sub, mul, div, fma(a,b,c)=a*b+c, max, min, sum(v), hmax(v)
//   zero_where_eq(a, x, c)  a with the lanes where x == c set to 0
//   select_lt(a, b, x, y)   x where a < b, else y
//   add_unless_one(e, sum, ones)    sum += e where e != 1, ones += 1 (integer lanes) where e == 1
//   count(ones)             the integer lanes of `ones` summed
//   Tally, tally_zero(), add_unless_one(e, sum, tally), count(tally, sum)
//                           add_unless_one's job for the softmax sweeps, by whatever is cheapest on
//                           the ISA: count(tally, sum) is the number of exact 1s left out of sum
//   kExpKeepsNaN            exp2_mul<true> of a NaN is NaN (else it may be 0): a NaN score then
//                           shows in a sweep's sum, and the sweep needs no NaN test of its own
//   add_or_count_where_eq(e, x, c, sum, ones)   ones += 1 where x == c, else sum += e
//   exp2_mul(a, b), exp(v)  2^(a·b) (a·b ≤ 127) and e^v (v ≤ 88): relative error ≤ 2e-7, exact 0
//                           for -inf; exp2_mul<false>: the caller guarantees a·b > −126.5
//                           (round(a·b) ≥ −126: no underflow, no −inf), which saves the mask
//   Bad, no_bad(), bad(b, v), any(b)   accumulate "NaN or +inf seen" flags
//   F unordered(m, a, b)    m with the lanes where a or b is NaN set (all bits); any_set(m)
//   lanes_within(a, lo, hi) bit i set where lo ≤ a_i ≤ hi (NaN lanes clear)
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <cmath>
#include <cstring>

#include "../core/dtype.h"

namespace fl::FL_ISA_NS::simd {

// exp via exp2. exp2_mul(a, b) = 2^t with t = a·b splits t into n = round(t) and f = t − n ∈
// [−½, ½], evaluates 2^f with a degree-5 minimax polynomial (relative error 1.0e-7 in exact
// arithmetic, 2e-7 evaluated in fp32, i.e. within 2 ulp), and scales by 2^n through the exponent
// bits. The rounding is the 1.5·2^23 trick: adding that constant leaves round(t) in the low
// mantissa bits, so n needs no round or convert instruction. Where there is an FMA, both the
// rounding and f come from fused a·b ± c, so t is never rounded on its own (f is then a·b − n to
// one rounding, and one multiply is saved). Round, convert, compares and min/max would compete
// with the FMAs for the two FMA-capable ports of current x86 cores, while adds and integer ops
// have ports of their own; the exp is the throughput limit of every softmax sweep, so this
// matters. The result is exactly 1 at t = 0, and exactly 0 below 2^−126 and at −inf (one integer
// compare of the same bits). It is for t ≤ 127 and exp for v ≤ 88, which callers guarantee by
// subtracting a running max or, where the argument is not bounded (tanh's e^{2u}), by clamping.
#define FL_EXP2_POLY(f)                                                               \
  fma(fma(fma(fma(fma(set1(0.0013308824272826314f), f, set1(0.009671516716480255f)),  \
                  f, set1(0.05550582334399223f)),                                     \
              f, set1(0.24022242426872253f)),                                         \
          f, set1(0.6931470632553101f)),                                              \
      f, set1(1.f))
constexpr float kExp2Round = 12582912.f;       // 1.5·2^23
constexpr int32_t kExp2LiveBits = 0x4B400000 - 127;  // bits of kExp2Round − 127: n ≥ −126 above

// What every x86 ISA does alike (the SSE instructions).
struct X86 {
  static void fence_streams() { _mm_sfence(); }
  static void prefetch_l2(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }
};

struct Sse2 : X86 {
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
  static void store_stream(float* p, F v) { _mm_stream_ps(p, v); }
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
  // The test compares bit patterns: integer ops have ports of their own, while a float compare
  // would compete with the exp's FMAs.
  static void add_unless_one(F e, F& sum, F& ones) {
    const __m128i is_one = _mm_cmpeq_epi32(_mm_castps_si128(e), _mm_set1_epi32(0x3F800000));
    sum = add(sum, _mm_andnot_ps(_mm_castsi128_ps(is_one), e));
    ones = _mm_castsi128_ps(_mm_sub_epi32(_mm_castps_si128(ones), is_one));
  }
  static void add_or_count_where_eq(F e, F x, F c, F& sum, F& ones) {
    const F eq = _mm_cmpeq_ps(x, c);
    sum = add(sum, _mm_andnot_ps(eq, e));
    ones = _mm_castsi128_ps(_mm_sub_epi32(_mm_castps_si128(ones), _mm_castps_si128(eq)));
  }
  using Tally = F;
  static constexpr bool kExpKeepsNaN = false;
  static Tally tally_zero() { return zero(); }
  static int64_t count(Tally ones, F) { return count(ones); }
  static int64_t count(F ones) {
    alignas(16) int32_t t[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(t), _mm_castps_si128(ones));
    return int64_t(t[0]) + t[1] + t[2] + t[3];
  }
  template <bool kMayUnderflow = true>
  static F exp2_mul(F a, F b) {  // no FMA: t is rounded once
    const F t = mul(a, b);
    const F s = add(t, set1(kExp2Round));
    const F f = sub(t, sub(s, set1(kExp2Round)));
    const __m128i sb = _mm_castps_si128(s);
    const __m128i scaled = _mm_add_epi32(_mm_castps_si128(FL_EXP2_POLY(f)), _mm_slli_epi32(sb, 23));
    if constexpr (!kMayUnderflow) return _mm_castsi128_ps(scaled);
    return _mm_castsi128_ps(_mm_and_si128(_mm_cmpgt_epi32(sb, _mm_set1_epi32(kExp2LiveBits)), scaled));
  }
  static F exp(F v) { return exp2_mul(v, set1(kLog2e)); }
  static Bad no_bad() { return _mm_setzero_ps(); }
  static Bad bad(Bad b, F v) {
    return _mm_or_ps(b, _mm_or_ps(_mm_cmpunord_ps(v, v), _mm_cmpeq_ps(v, set1(INFINITY))));
  }
  static bool any(Bad b) { return _mm_movemask_ps(b) != 0; }
  static F unordered(F m, F a, F b) { return _mm_or_ps(m, _mm_cmpunord_ps(a, b)); }
  static bool any_set(F m) { return _mm_movemask_ps(m) != 0; }
  static uint32_t lanes_within(F a, F lo, F hi) { return uint32_t(_mm_movemask_ps(_mm_and_ps(_mm_cmpge_ps(a, lo), _mm_cmple_ps(a, hi)))); }
};

#if defined(FL_ISA_AVX2) || defined(FL_ISA_AVX512)
struct Avx2 : X86 {
  static constexpr int W = 8;
  static constexpr const char* name = "avx2";
  using F = __m256;
  struct Bad {
    __m256i signed_max, unsigned_max;
  };
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
  static void store_stream(float* p, F v) { _mm256_stream_ps(p, v); }
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
  static void add_unless_one(F e, F& sum, F& ones) {
    const __m256i is_one = _mm256_cmpeq_epi32(_mm256_castps_si256(e), _mm256_set1_epi32(0x3F800000));
    sum = add(sum, _mm256_andnot_ps(_mm256_castsi256_ps(is_one), e));
    ones = _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(ones), is_one));
  }
  static void add_or_count_where_eq(F e, F x, F c, F& sum, F& ones) {
    const F eq = _mm256_cmp_ps(x, c, _CMP_EQ_OQ);
    sum = add(sum, _mm256_andnot_ps(eq, e));
    ones = _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(ones), _mm256_castps_si256(eq)));
  }
  using Tally = F;
  static constexpr bool kExpKeepsNaN = false;
  static Tally tally_zero() { return zero(); }
  static int64_t count(Tally ones, F) { return count(ones); }
  static int64_t count(F ones) {
    return Sse2::count(_mm_castsi128_ps(_mm_add_epi32(_mm256_castsi256_si128(_mm256_castps_si256(ones)),
                                                      _mm256_extracti128_si256(_mm256_castps_si256(ones), 1))));
  }
  template <bool kMayUnderflow = true>
  static F exp2_mul(F a, F b) {
    const F s = fma(a, b, set1(kExp2Round));
    const F f = _mm256_fmsub_ps(a, b, sub(s, set1(kExp2Round)));
    const __m256i sb = _mm256_castps_si256(s);
    const __m256i scaled = _mm256_add_epi32(_mm256_castps_si256(FL_EXP2_POLY(f)), _mm256_slli_epi32(sb, 23));
    if constexpr (!kMayUnderflow) return _mm256_castsi256_ps(scaled);
    // cmpgt(sb, c) & x, not andnot(cmpgt(c, sb), x): GCC turns the latter into min + cmpeq.
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(sb, _mm256_set1_epi32(kExp2LiveBits)), scaled));
  }
  static F exp(F v) { return exp2_mul(v, set1(kLog2e)); }
  // On the bit patterns, two integer maxima (ports of their own, unlike float compares): a
  // signed max ≥ 0x7F800000 means +inf or a positive NaN; an unsigned max > 0xFF800000 (−inf)
  // means a negative NaN.
  static Bad no_bad() { return Bad{_mm256_set1_epi32(INT32_MIN), _mm256_setzero_si256()}; }
  static Bad bad(Bad b, F v) {
    const __m256i u = _mm256_castps_si256(v);
    return Bad{_mm256_max_epi32(b.signed_max, u), _mm256_max_epu32(b.unsigned_max, u)};
  }
  static bool any(Bad b) {
    const __m256i pos = _mm256_cmpgt_epi32(b.signed_max, _mm256_set1_epi32(0x7F7FFFFF));
    const __m256i neg = _mm256_cmpeq_epi32(_mm256_max_epu32(b.unsigned_max, _mm256_set1_epi32(int32_t(0xFF800001u))), b.unsigned_max);
    return _mm256_movemask_epi8(_mm256_or_si256(pos, neg)) != 0;
  }
  static F unordered(F m, F a, F b) { return _mm256_or_ps(m, _mm256_cmp_ps(a, b, _CMP_UNORD_Q)); }
  static bool any_set(F m) { return _mm256_movemask_ps(m) != 0; }
  static uint32_t lanes_within(F a, F lo, F hi) {
    return uint32_t(_mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(a, lo, _CMP_GE_OQ), _mm256_cmp_ps(a, hi, _CMP_LE_OQ))));
  }
};
#endif

#if defined(FL_ISA_AVX512)
struct Avx512 : X86 {
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
  static void store_stream(float* p, F v) { _mm512_stream_ps(p, v); }
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
  static void add_unless_one(F e, F& sum, F& ones) {
    const __mmask16 is_one = _mm512_cmpeq_epi32_mask(_mm512_castps_si512(e), _mm512_set1_epi32(0x3F800000));
    sum = _mm512_mask_add_ps(sum, __mmask16(~is_one), sum, e);
    ones = _mm512_castsi512_ps(_mm512_mask_add_epi32(_mm512_castps_si512(ones), is_one, _mm512_castps_si512(ones), _mm512_set1_epi32(1)));
  }
  static void add_or_count_where_eq(F e, F x, F c, F& sum, F& ones) {
    const __mmask16 eq = _mm512_cmp_ps_mask(x, c, _CMP_EQ_OQ);
    sum = _mm512_mask_add_ps(sum, __mmask16(~eq), sum, e);
    ones = _mm512_castsi512_ps(_mm512_mask_add_epi32(_mm512_castps_si512(ones), eq, _mm512_castps_si512(ones), _mm512_set1_epi32(1)));
  }
  static int64_t count(F ones) { return _mm512_reduce_add_epi32(_mm512_castps_si512(ones)); }
  // The softmax sweeps' tally: `all` sums every term, 1s included, and one fixup (its +ONE class
  // mapped to +0, the rest passed through) drops the 1s from `sum` (bitwise the masked add: sum
  // + 0 is sum). The 1s are then all − sum: a lane adds at most kSoftmaxBlock/16 terms ≤ 1, so its
  // rounding error stays far below ½ and the count rounds back exactly. Three vector operations
  // where the compare and two masked adds take four, in the exp loop whose throughput is the limit.
  struct Tally {
    F all;
  };
  static constexpr bool kExpKeepsNaN = true;
  static Tally tally_zero() { return Tally{zero()}; }
  static void add_unless_one(F e, F& sum, Tally& t) {
    sum = add(sum, _mm512_fixupimm_ps(e, e, _mm512_set1_epi32(0x11118111), 0));  // class 3 (+1) → +0
    t.all = add(t.all, e);
  }
  static int64_t count(const Tally& t, F sum) { return std::llround(double(Avx512::sum(t.all)) - double(Avx512::sum(sum))); }
  template <bool kMayUnderflow = true>
  static F exp2_mul(F a, F b) {
    // scalef computes p·2^r exactly, so AVX-512 needs neither the rounding trick nor the
    // exponent arithmetic; masked-zero lanes give 0 below 2^−126 and at −inf.
    const F t = mul(a, b);
    const F r = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const F f = _mm512_fmsub_ps(a, b, r);
    if constexpr (!kMayUnderflow) return _mm512_scalef_ps(FL_EXP2_POLY(f), r);
    // NLT_UQ, not GE_OQ: a NaN t is live, so a NaN argument gives NaN (kExpKeepsNaN).
    const __mmask16 live = _mm512_cmp_ps_mask(t, set1(-126.f), _CMP_NLT_UQ);
    return _mm512_maskz_scalef_ps(live, FL_EXP2_POLY(f), r);
  }
  static F exp(F v) { return exp2_mul(v, set1(kLog2e)); }
  static Bad no_bad() { return 0; }
  static Bad bad(Bad b, F v) {
    return b | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v, set1(INFINITY), _CMP_EQ_OQ);
  }
  static bool any(Bad b) { return b != 0; }
  static F unordered(F m, F a, F b) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(m), _mm512_movm_epi32(_mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q))));
  }
  static bool any_set(F m) { return _mm512_movepi32_mask(_mm512_castps_si512(m)) != 0; }
  static uint32_t lanes_within(F a, F lo, F hi) {
    return uint32_t(_mm512_cmp_ps_mask(a, lo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(a, hi, _CMP_LE_OQ));
  }
};
#endif

#undef FL_EXP2_POLY
}  // namespace fl::FL_ISA_NS::simd
