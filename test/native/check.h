// A minimal test harness for the native tests (ctest runs each test_*.cpp as one executable).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "native/core/cpu_features.h"

namespace fltest {

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); }
};

// Deterministic random numbers (splitmix64), so failures reproduce.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    const double u = uniform() + 1e-300, v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

inline int run_all() {
  for (auto& c : cases()) {
    const int before = failures();
    c.fn();
    std::printf("%s %s\n", failures() == before ? "ok  " : "FAIL", c.name);
  }
  std::printf("%zu cases, %d failed checks\n", cases().size(), failures());
  return failures() == 0 ? 0 : 1;
}

// Every ISA this CPU runs, from SSE2 up: each kernel test runs on all of them.
inline std::vector<fl::Isa> isas() {
  std::vector<fl::Isa> v;
  for (int i = 0; i <= int(fl::detect_isa()); ++i) v.push_back(fl::Isa(i));
  return v;
}

}  // namespace fltest

#define FL_TEST(name)                                             \
  static void name();                                             \
  static fltest::Register name##_reg(#name, name);                \
  static void name()

#define FL_CHECK(cond, ...)                                                \
  do {                                                                     \
    if (!(cond)) {                                                         \
      ++fltest::failures();                                                \
      std::printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                            \
      std::printf("\n");                                                   \
    }                                                                      \
  } while (0)

// bench_native links the test files for their bench cases (lab.h) and has its own main.
#ifdef FL_BENCH_MAIN
#define FL_TEST_MAIN()
#else
#define FL_TEST_MAIN() \
  int main() { return fltest::run_all(); }
#endif
