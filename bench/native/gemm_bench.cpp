// The GEMM core's microbenchmark: the machine's FMA peak (measured), then C = A·Bᵀ, C += A·B and
// C += Aᵀ·B at the shapes linearCrossEntropy runs, each validated against float64 on sampled
// entries before it is timed. Prints one JSON line per measurement.
//   gemm_bench [threads=2] [isa=best] [rounds=5] [shape index, or all; "peak" for the FMA peak only]
// Built with the native tests (cmake -DFUSEDLOSS_TESTS=ON); bench/gemm.mjs runs it beside
// OpenBLAS sgemm through PyTorch.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "native/gemm/gemm.h"
#include "native/isa/kernels.h"

using namespace fl;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  Isa isa = detect_isa();
  if (argc > 2 && std::strcmp(argv[2], "best") != 0)
    isa = std::strcmp(argv[2], "sse2") == 0 ? Isa::Sse2 : std::strcmp(argv[2], "avx2") == 0 ? Isa::Avx2 : Isa::Avx512;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  const char* only = argc > 4 ? argv[4] : "all";
  const bool all = std::strcmp(only, "all") == 0, peak = all || std::strcmp(only, "peak") == 0;
  Context ctx(isa, threads);

  // FMA peak: every thread runs independent chains; best of the rounds.
  if (peak) {
    const int64_t iters = 20000000;
    double best = 0;
    for (int r = 0; r < rounds; ++r) {
      std::vector<double> flops(static_cast<size_t>(threads));
      const double t0 = now();
      ctx.pool.parallel_for(threads, [&](int64_t t) { flops[size_t(t)] = ctx.kernels->fma_peak(iters); });
      const double dt = now() - t0;
      double f = 0;
      for (double x : flops) f += x;
      best = std::max(best, f / dt / 1e9);
    }
    std::printf("{\"what\":\"fma_peak\",\"isa\":\"%s\",\"threads\":%d,\"gflops\":%.1f}\n", isa_name(isa), threads, best);
  }

  struct Shape {
    const char* name;
    int64_t m, n, k;
    bool at, bt;
  };
  const Shape shapes[] = {
      {"square A.Bt", 2048, 2048, 2048, false, true},
      {"scores H.Wt", 256, 32768, 512, false, true},
      {"dH += G.W", 256, 512, 32768, false, false},
      {"dW += Gt.H", 32768, 512, 256, true, false},
  };
  for (int si = 0; si < int(sizeof(shapes) / sizeof(shapes[0])); ++si) {
    if (!all && (peak || std::atoi(only) != si)) continue;
    const Shape& s = shapes[si];
    const int64_t ar = s.at ? s.k : s.m, ac = s.at ? s.m : s.k, br = s.bt ? s.n : s.k, bc = s.bt ? s.k : s.n;
    std::vector<float> a(size_t(ar * ac)), b(size_t(br * bc)), c(size_t(s.m * s.n), 0.f);
    uint64_t seed = 1;
    auto rnd = [&] { seed = seed * 6364136223846793005ull + 1442695040888963407ull; return float(int64_t(seed >> 40) % 2001 - 1000) * 1e-3f; };
    for (auto& v : a) v = rnd();
    for (auto& v : b) v = rnd();
    const GemmOperand A{a.data(), DType::Float32, ac, s.at}, B{b.data(), DType::Float32, bc, s.bt};
    gemm(ctx, s.m, s.n, s.k, A, B, c.data(), s.n, false);
    double worst = 0;
    for (int q = 0; q < 64; ++q) {
      const int64_t i = (q * 7919) % s.m, j = (q * 104729) % s.n;
      double r = 0, mag = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        const double x = a[size_t(s.at ? p * ac + i : i * ac + p)], y = b[size_t(s.bt ? j * bc + p : p * bc + j)];
        r += x * y;
        mag += std::fabs(x * y);
      }
      worst = std::max(worst, std::fabs(c[size_t(i * s.n + j)] - r) / (mag + 1e-30));
    }
    if (worst > 1e-5) {
      std::printf("{\"what\":\"gemm\",\"shape\":\"%s\",\"error\":%.3g,\"valid\":false}\n", s.name, worst);
      return 1;
    }
    double best = 1e30;
    for (int r = 0; r < rounds; ++r) {
      const double t0 = now();
      gemm(ctx, s.m, s.n, s.k, A, B, c.data(), s.n, s.at || !s.bt);
      best = std::min(best, now() - t0);
    }
    std::printf("{\"what\":\"gemm\",\"shape\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"isa\":\"%s\",\"threads\":%d,\"ms\":%.2f,\"gflops\":%.1f,\"error\":%.2g}\n",
                s.name, (long long)s.m, (long long)s.n, (long long)s.k, isa_name(isa), threads, best * 1e3,
                2.0 * double(s.m) * double(s.n) * double(s.k) / best / 1e9, worst);
  }
  return 0;
}
