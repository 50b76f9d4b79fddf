// Core runtime: dtype conversions, CPU feature dispatch, the thread pool.
#include <atomic>
#include <cstring>
#include <cstdlib>
#include <string>
#include <thread>

#include "check.h"
#include "native/core/cpu_features.h"
#include "native/core/dtype.h"
#include "native/core/threadpool.h"

using namespace fl;
using fltest::Rng;

FL_TEST(f16_round_trips_every_bit_pattern) {
  // Every half converts to float exactly, and back to the same bits (NaNs stay NaN).
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = to_float(f16_t{uint16_t(h)});
    const uint16_t back = to_f16(f).bits;
    const bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
    if (nan ? !(f != f) || ((back >> 10) & 0x1f) != 0x1f || !(back & 0x3ff) : back != h) ++bad;
  }
  FL_CHECK(bad == 0, "%d half patterns did not round-trip", bad);
}

FL_TEST(f16_rounds_to_nearest_even) {
  // Halfway between 1 and the next half (1 + 2^-10) is 1 + 2^-11: ties go to the even mantissa.
  FL_CHECK(to_f16(1.0f + std::ldexp(1.0f, -11)).bits == 0x3c00, "tie below");
  FL_CHECK(to_f16(1.0f + 3 * std::ldexp(1.0f, -11)).bits == 0x3c02, "tie above");
  FL_CHECK(to_f16(65504.0f).bits == 0x7bff, "max half");
  FL_CHECK(to_f16(65520.0f).bits == 0x7c00, "overflow to inf");
  FL_CHECK(to_f16(std::ldexp(1.0f, -25)).bits == 0x0000, "half of the smallest subnormal ties to 0");
  FL_CHECK(to_f16(std::ldexp(3.0f, -25)).bits == 0x0002, "1.5 subnormal units ties to 2");
  FL_CHECK(to_f16(-INFINITY).bits == 0xfc00, "-inf");
}

FL_TEST(bf16_rounds_to_nearest_even_and_keeps_nan) {
  Rng rng(1);
  int bad = 0;
  for (int i = 0; i < 200000; ++i) {
    const float f = float(rng.normal() * std::exp(rng.normal() * 10));
    const uint16_t b = to_bf16(f).bits;
    // The result is one of the two neighbours and no farther from f than the other one.
    uint32_t u; std::memcpy(&u, &f, 4);
    const float lo = to_float(bf16_t{uint16_t(u >> 16)});
    const float hi = to_float(bf16_t{uint16_t((u >> 16) + 1)});
    const float got = to_float(bf16_t{b});
    if (!(got == lo || got == hi) || std::fabs(got - f) > std::fabs((got == lo ? hi : lo) - f)) ++bad;
  }
  FL_CHECK(bad == 0, "%d bf16 roundings wrong", bad);
  FL_CHECK(to_float(to_bf16(NAN)) != to_float(to_bf16(NAN)), "NaN stays NaN");
  FL_CHECK(to_bf16(INFINITY).bits == 0x7f80, "inf");
}

FL_TEST(isa_detection_is_consistent) {
  const Isa best = detect_isa();
  const Isa used = select_isa();
  FL_CHECK(int(used) <= int(best), "selected %s above detected %s", isa_name(used), isa_name(best));
  // The default is the widest the CPU has; FUSEDLOSS_SIMD caps it and never raises it.
  const char* env = std::getenv("FUSEDLOSS_SIMD");
  const std::string saved = env ? env : "";
  unsetenv("FUSEDLOSS_SIMD");
  FL_CHECK(select_isa() == best, "default %s, detected %s", isa_name(select_isa()), isa_name(best));
  for (Isa cap : {Isa::Sse2, Isa::Avx2, Isa::Avx512}) {
    setenv("FUSEDLOSS_SIMD", isa_name(cap), 1);
    const Isa want = int(cap) < int(best) ? cap : best;
    FL_CHECK(select_isa() == want, "FUSEDLOSS_SIMD=%s selects %s", isa_name(cap), isa_name(select_isa()));
  }
  if (env) setenv("FUSEDLOSS_SIMD", saved.c_str(), 1);
  else unsetenv("FUSEDLOSS_SIMD");
}

FL_TEST(thread_pool_runs_every_task_once) {
  ThreadPool pool(4);
  for (int64_t n : {1, 2, 3, 7, 1000, 100003}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int64_t t) { hits[static_cast<size_t>(t)].fetch_add(1); });
    int wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    FL_CHECK(wrong == 0, "n=%lld: %d tasks not run exactly once", (long long)n, wrong);
  }
}

FL_TEST(thread_pool_serves_concurrent_callers) {
  // Several threads (as libuv's pool does for the async twins) share one pool.
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) pool.parallel_for(97, [&](int64_t t) { total.fetch_add(t); });
    });
  for (auto& t : callers) t.join();
  FL_CHECK(total.load() == int64_t(6) * 50 * (96 * 97 / 2), "total %lld", (long long)total.load());
}

FL_TEST_MAIN()
