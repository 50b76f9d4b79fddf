// Native microbenchmarks, llm.c's dev/ habit: each op is first validated at the bench shape
// against its long-double reference, and only then timed. The cases are the ops' FL_BENCH in
// their native test files (test/native/lab.h), which CMake links in here. Prints the
// median time, the bandwidth over the bytes the op must move and that as a share of this
// machine's copy floor (fl::parallel_copy on the same pool, as bench/run.mjs measures it).
//
//   bench_native OP:ROWS:COLS:BYTES ...
//
// bench/native/run.mjs (npm run bench:native) passes every op's bench sizes and byte counts from
// the op registry, scripts/ops.mjs. Exit status 1 when an op fails its validation.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "native/core/context.h"
#include "native/ops/copy.h"
#include "test/native/lab.h"

using namespace fltest;
using Clock = std::chrono::steady_clock;

namespace {

// Times of repeated calls: at least 2, and until `seconds` have passed.
void sample(const std::function<void()>& fn, double seconds, std::vector<double>& t) {
  const auto start = Clock::now();
  for (size_t n = 0; n < 2 || (std::chrono::duration<double>(Clock::now() - start).count() < seconds && n < 100); ++n) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median ms of the op and of the floor copy, after a warm-up, timed in 5 alternating rounds (as
// bench/run.mjs does): a shared machine's drift then hits both alike.
std::pair<double, double> time_ms(const std::function<void()>& op, const std::function<void()>& copy) {
  op();
  copy();
  std::vector<double> t_op, t_copy;
  for (int round = 0; round < 5; ++round) {
    sample(op, 0.12, t_op);
    sample(copy, 0.04, t_copy);
  }
  return {median(t_op), median(t_copy)};
}

}  // namespace

int main(int argc, char** argv) {
  fl::Context ctx;
  // The copy floor: 256 MiB through the pool, one read and one write per byte.
  const size_t copy_bytes = size_t(256) << 20;
  std::vector<char> src(copy_bytes, 1), dst(copy_bytes);
  const auto copy = [&] { fl::parallel_copy(ctx, dst.data(), src.data(), copy_bytes); };
  std::printf("%s, %d threads; the floor: a %zu MiB copy through the pool, timed alongside each op\n", fl::isa_name(ctx.isa), ctx.pool.threads(),
              copy_bytes >> 20);
  int status = 0;
  for (int i = 1; i < argc; ++i) {
    char name[64];
    long long rows, cols;
    double bytes;
    if (std::sscanf(argv[i], "%63[^:]:%lld:%lld:%lf", name, &rows, &cols, &bytes) != 4) {
      std::fprintf(stderr, "bench_native: expected OP:ROWS:COLS:BYTES, got %s\n", argv[i]);
      return 2;
    }
    const auto found = benches().find(name);
    if (found == benches().end()) {
      std::fprintf(stderr, "bench_native: no FL_BENCH(%s) in test/native/test_*.cpp\n", name);
      return 2;
    }
    const Bench b = found->second(ctx, rows, cols);
    const std::string why = b.validate();
    if (!why.empty()) {
      std::printf("%-22s %12s  FAIL: %s (not timed)\n", name, (std::to_string(rows) + "x" + std::to_string(cols)).c_str(), why.c_str());
      status = 1;
      continue;
    }
    const auto [ms, copy_ms] = time_ms(b.run, copy);
    const double copy_bw = 2.0 * double(copy_bytes) / (copy_ms / 1e3), floor_ms = bytes / copy_bw * 1e3;
    std::printf("%-22s %12s  ok  %9.3f ms  %6.1f GB/s  %4.0f%% of copy floor (copy %.1f GB/s)\n", name,
                (std::to_string(rows) + "x" + std::to_string(cols)).c_str(), ms, bytes / (ms / 1e3) / 1e9, 100 * floor_ms / ms, copy_bw / 1e9);
  }
  return status;
}
