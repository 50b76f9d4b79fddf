// Element types and their conversions, shared by CPU and CUDA code.
//
// Half-precision tensors travel as raw 16-bit patterns (Uint16Array on the JS side). The
// kernels widen every element to fp32 on load and accumulate in fp32 or wider; gradients are
// narrowed once, at the store, with round-to-nearest-even so that the result is the one
// torch would produce from the same fp32 value.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "../api/types.h"  // DType
#include "hd.h"

namespace fl {

// Distinct tag types so that overloads and templates can tell the two 16-bit formats apart.
struct bf16_t { uint16_t bits; };
struct f16_t { uint16_t bits; };

FL_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f; std::memcpy(&f, &u, 4); return f;
#endif
}
FL_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u; std::memcpy(&u, &f, 4); return u;
#endif
}

FL_HD float to_float(float x) { return x; }
FL_HD float to_float(bf16_t x) { return bits_to_float(uint32_t(x.bits) << 16); }
FL_HD float to_float(f16_t x) {
  // IEEE half -> single, exact for every input (normals, subnormals, inf, nan).
  const uint32_t h = x.bits;
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    // Subnormal half: renormalise.
    int e = -1;
    do { mant <<= 1; ++e; } while ((mant & 0x400u) == 0);
    mant &= 0x3ffu;
    return bits_to_float(sign | (uint32_t(127 - 15 - e) << 23) | (mant << 13));
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

FL_HD bf16_t to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return bf16_t{uint16_t(u >> 16)};
}
FL_HD f16_t to_f16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16_t{uint16_t(sign | 0x7e00u)};
  if (a >= 0x477ff000u) return f16_t{uint16_t(sign | 0x7c00u)};  // rounds to >= 65520: inf
  if (a < 0x38800000u) {
    // Result is subnormal (or zero) in half: scale so the integer part is the half mantissa.
    const float scaled = bits_to_float(a) * 16777216.0f;  // 2^24
    // Round half to even by hand (no dependence on the FP rounding mode).
    uint32_t m = uint32_t(scaled);
    const float rem = scaled - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return f16_t{uint16_t(sign | m)};
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u;  // rebias 127 -> 15, RNE
  return f16_t{uint16_t(sign | (r >> 13))};
}

template <class T> FL_HD T from_float(float f) {
  if constexpr (std::is_same_v<T, bf16_t>) return to_bf16(f);
  else if constexpr (std::is_same_v<T, f16_t>) return to_f16(f);
  else return f;
}

// The one runtime-to-compile-time dtype switch: f(T{}) with T the element type of `d`
// (float, f16_t or bf16_t), returning what f returns.
template <class F> FL_HD decltype(auto) with_dtype(DType d, F&& f) {
  switch (d) {
    case DType::Float16: return f(f16_t{});
    case DType::BFloat16: return f(bf16_t{});
    default: return f(float{});
  }
}

// Element i of an array of `d`, widened to fp32; and v stored as element i of an array of `d`,
// rounded once (round to nearest even). Scalar paths only: the sweeps are SIMD (native/simd/).
FL_HD float load_element(const void* base, DType d, int64_t i) {
  return with_dtype(d, [&](auto t) { return to_float(static_cast<const decltype(t)*>(base)[i]); });
}
FL_HD void store_element(void* base, DType d, int64_t i, float v) {
  with_dtype(d, [&](auto t) {
    using T = decltype(t);
    static_cast<T*>(base)[i] = from_float<T>(v);
  });
}

}  // namespace fl
