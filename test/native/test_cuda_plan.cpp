// The CUDA launchers' host-side decisions (cuda/plan.h), checked without a GPU: the soft top-k
// layout and its shared-memory budget (static + dynamic within the opt-in limit, at every N,
// including 12093..12288 where the static shared memory used to be left out), cluster slices,
// the row on chip of the softmax losses over positives and of the soft top-k vjp, the
// cross-entropy layout, the scratch plans, and the bracket over the entries that are in.
#include <algorithm>
#include <vector>

#include "check.h"
#include "cuda/plan.h"
#include "native/ops/soft_topk_math.h"

using namespace fl;
using namespace fl::cuda;
using fltest::Rng;

// Opt-in shared memory per block: A100 163 KB, H100/H200 227 KB.
constexpr size_t kOptinA100 = 166912, kOptinH100 = 232448;

FL_TEST(topk_plan_fits_static_plus_dynamic) {
  for (size_t optin : {kOptinA100, kOptinH100})
    for (int major : {8, 9})
      for (size_t static_smem : {size_t(0), size_t(784), size_t(2048), size_t(4000)}) {
        const size_t limit = dynamic_smem_limit(optin, static_smem);
        for (int64_t cols : {int64_t(1), int64_t(7), int64_t(12093), int64_t(12288), int64_t(41000), int64_t(57600), int64_t(57601),
                             int64_t(200000), int64_t(460000), int64_t(500000), int64_t(5000000)}) {
          const TopKPlan p = topk_plan(cols, limit, major);
          FL_CHECK(static_smem + p.dynamic_smem <= optin, "cols %lld: %zu + %zu > %zu", (long long)cols, static_smem, p.dynamic_smem, optin);
          FL_CHECK(p.dynamic_smem == size_t(p.slice) * sizeof(float) || p.layout == TopKLayout::Global, "cols %lld", (long long)cols);
          FL_CHECK(int64_t(p.blocks_per_row) * p.slice >= cols, "cols %lld: slices do not cover the row", (long long)cols);
          if (p.layout == TopKLayout::Cluster) {
            FL_CHECK(major >= 9, "clusters need sm_90");
            FL_CHECK(p.blocks_per_row >= 2 && p.blocks_per_row <= 8, "blocks %d", p.blocks_per_row);
            FL_CHECK(p.slice % kSliceAlign == 0, "slice %lld", (long long)p.slice);
            FL_CHECK(int64_t(p.blocks_per_row - 1) * p.slice < cols, "cols %lld: an empty block", (long long)cols);
          }
        }
      }
  // Every N from 12000 to 12400 with 784 B of static shared memory (the case of issue 21): the
  // dynamic size stays within what the attribute is raised to.
  const size_t limit = dynamic_smem_limit(kOptinH100, 784);
  for (int64_t cols = 12000; cols <= 12400; ++cols) {
    const TopKPlan p = topk_plan(cols, limit, 9);
    FL_CHECK(p.layout == TopKLayout::Block && p.dynamic_smem <= limit, "cols %lld", (long long)cols);
  }
}

FL_TEST(topk_plan_layout_boundaries_h100) {
  // 2 KB of static shared memory: 57600 columns fit one block, 8 blocks hold 460800.
  const size_t limit = dynamic_smem_limit(kOptinH100, 2048);
  FL_CHECK(topk_plan(12288, limit, 9).layout == TopKLayout::Block, "12288");
  FL_CHECK(topk_plan(57600, limit, 9).layout == TopKLayout::Block, "57600");
  FL_CHECK(topk_plan(57601, limit, 9).layout == TopKLayout::Cluster, "57601");
  FL_CHECK(topk_plan(57601, limit, 8).layout == TopKLayout::Global, "57601 on sm_80");
  FL_CHECK(topk_plan(200000, limit, 9).layout == TopKLayout::Cluster, "200000");
  FL_CHECK(topk_plan(460000, limit, 9).layout == TopKLayout::Cluster, "460000");
  FL_CHECK(topk_plan(500000, limit, 9).layout == TopKLayout::Global, "500000");
  FL_CHECK(dynamic_smem_limit(1000, 2048) == 0 && topk_plan(10, 0, 9).layout == TopKLayout::Global, "no shared memory");
}

FL_TEST(ce_plan_layouts) {
  const size_t limit = dynamic_smem_limit(kOptinH100, 512);
  // 50257 bf16 (100 KB) fits one block; float32 (201 KB) too on an H100.
  for (int64_t bytes : {2, 4}) {
    const CePlan a = ce_plan(264, 50257, bytes, 132, 262144, 32768, limit, 9);
    FL_CHECK(a.layout == CeLayout::OnChip && a.blocks_per_row == 1 && a.dynamic_smem == size_t(50257 * bytes), "50257 x %lld bytes", (long long)bytes);
  }
  // 4096×131072 float32 (512 KB a row): a cluster of 3 on sm_90, the fused layout on sm_80.
  const CePlan b = ce_plan(4096, 131072, 4, 132, 262144, 32768, limit, 9);
  FL_CHECK(b.layout == CeLayout::OnChip && b.blocks_per_row == 3 && b.slice % kSliceAlign == 0 && b.dynamic_smem <= limit &&
               int64_t(b.blocks_per_row) * b.slice >= 131072,
           "131072 float32: %d blocks of %lld", b.blocks_per_row, (long long)b.slice);
  const CePlan b80 = ce_plan(4096, 131072, 4, 108, 262144, 32768, dynamic_smem_limit(kOptinA100, 512), 8);
  FL_CHECK(b80.layout == CeLayout::Fused, "sm_80: fused");
  // Too wide for 8 blocks: one block per row up to 262144, tiles beyond.
  FL_CHECK(ce_plan(4096, 240000, 4, 132, 262144, 32768, limit, 9).blocks_per_row == 5, "240000 float32: a cluster of 5");
  const CePlan wide = ce_plan(4096, 500000, 4, 132, 262144, 32768, limit, 9);
  FL_CHECK(wide.layout == CeLayout::Tiled && wide.tiles == 16, "500000 float32: beyond 8 blocks and one block's sweep");
  const CePlan c = ce_plan(263, 50257, 4, 132, 262144, 32768, limit, 9);
  FL_CHECK(c.layout == CeLayout::Tiled && c.tiles == 2, "fewer rows than 2·SMs: tiles %lld", (long long)c.tiles);
  const CePlan d = ce_plan(100000, 2000003, 4, 132, 262144, 32768, limit, 9);
  FL_CHECK(d.layout == CeLayout::Tiled && d.tiles == 62, "a row wider than a cluster's and one block's sweep: tiles %lld", (long long)d.tiles);
  const CePlan e = ce_plan(4, 0, 4, 132, 262144, 32768, limit, 9);
  FL_CHECK(e.layout == CeLayout::Tiled && e.tiles == 1, "cols = 0: one tile, not a 0-block grid");
  const CePlan f = ce_plan(1000, 0, 4, 132, 262144, 32768, limit, 9);
  FL_CHECK(f.layout == CeLayout::Fused && f.tiles == 1, "cols = 0 with many rows: one block a row");
  // Every on-chip plan stays within the limit and covers the row.
  for (int64_t cols = 1; cols < 600000; cols = cols * 3 / 2 + 7)
    for (int64_t bytes : {2, 4}) {
      const CePlan p = ce_plan(1000, cols, bytes, 132, 262144, 32768, limit, 9);
      if (p.layout != CeLayout::OnChip) continue;
      FL_CHECK(p.dynamic_smem <= limit && int64_t(p.blocks_per_row) * p.slice >= cols && int64_t(p.blocks_per_row - 1) * p.slice < cols,
               "cols %lld", (long long)cols);
    }
}

// The row on chip shared by soft top-k, cross-entropy and the softmax losses over positives:
// one block when the row fits, else the fewest blocks of a cluster (sm_90, at most 8) whose
// 32-column-aligned slices cover it with none empty, within the limit; else none.
FL_TEST(row_on_chip_slices) {
  const size_t limit = dynamic_smem_limit(kOptinH100, 1024);
  const int64_t fit4 = int64_t(limit / 4) / kSliceAlign * kSliceAlign;
  FL_CHECK(row_on_chip(0, 4, limit, 9).blocks_per_row == 1 && row_on_chip(0, 4, limit, 9).dynamic_smem == 0, "cols = 0");
  FL_CHECK(row_on_chip(int64_t(limit / 4), 4, limit, 9).blocks_per_row == 1, "exactly one block's");
  FL_CHECK(row_on_chip(int64_t(limit / 4) + 1, 4, limit, 9).blocks_per_row == 2, "one more column: a cluster of 2");
  FL_CHECK(row_on_chip(int64_t(limit / 4) + 1, 4, limit, 8).blocks_per_row == 0, "one more column on sm_80: not on chip");
  FL_CHECK(row_on_chip(8 * fit4, 4, limit, 9).blocks_per_row == 8, "8 blocks' worth");
  FL_CHECK(row_on_chip(8 * fit4 + 1, 4, limit, 9).blocks_per_row == 0, "beyond 8 blocks");
  FL_CHECK(row_on_chip(100, 4, 0, 9).blocks_per_row == 0, "no shared memory");
  for (size_t optin : {kOptinA100, kOptinH100})
    for (int major : {8, 9})
      for (int64_t bytes : {2, 4})
        for (int64_t cols = 1; cols < 1000000; cols = cols * 5 / 4 + 3) {
          const size_t lim = dynamic_smem_limit(optin, 1024);
          const RowOnChip r = row_on_chip(cols, bytes, lim, major);
          if (r.blocks_per_row == 0) {
            FL_CHECK(cols * bytes > int64_t(lim), "cols %lld fits one block", (long long)cols);
            continue;
          }
          FL_CHECK(r.dynamic_smem == size_t(r.slice * bytes) && r.dynamic_smem <= lim, "cols %lld: %zu > %zu", (long long)cols, r.dynamic_smem, lim);
          FL_CHECK(int64_t(r.blocks_per_row) * r.slice >= cols && int64_t(r.blocks_per_row - 1) * r.slice < cols, "cols %lld: cover, none empty",
                   (long long)cols);
          if (r.blocks_per_row > 1)
            FL_CHECK(major >= 9 && r.blocks_per_row <= 8 && r.slice % kSliceAlign == 0, "cols %lld: %d blocks of %lld", (long long)cols,
                     r.blocks_per_row, (long long)r.slice);
          // The plans built on it agree with it.
          const TopKPlan t = topk_plan(cols, lim, major);
          if (bytes == 4) FL_CHECK(t.blocks_per_row == r.blocks_per_row && t.slice == r.slice, "topk cols %lld", (long long)cols);
          const RowOnChip s = row_on_chip_grid(1000, cols, bytes, lim, major);
          FL_CHECK(s.blocks_per_row == r.blocks_per_row && s.slice == r.slice, "row_on_chip_grid cols %lld", (long long)cols);
        }
}

// The softmax losses over positives: on chip at LLM-vocabulary and retrieval widths; the launch's
// grid (rows·blocks) stays within 2^31 − 1 blocks, else one block a row reading it twice.
FL_TEST(row_on_chip_grid_layouts) {
  const size_t limit = dynamic_smem_limit(kOptinH100, 1024);
  const RowOnChip a = row_on_chip_grid(4096, 50257, 2, limit, 9);
  FL_CHECK(a.blocks_per_row == 1 && a.dynamic_smem == 100514, "50257 bf16: one block");
  const RowOnChip b = row_on_chip_grid(4096, 131072, 4, limit, 9);
  FL_CHECK(b.blocks_per_row == 3, "131072 float32: a cluster of 3 (%d)", b.blocks_per_row);
  FL_CHECK(row_on_chip_grid(4096, 131072, 4, dynamic_smem_limit(kOptinA100, 1024), 8).blocks_per_row == 0, "sm_80: twice");
  FL_CHECK(row_on_chip_grid(int64_t(INT32_MAX) / 2, 131072, 4, limit, 9).blocks_per_row == 0, "a grid beyond 2^31 - 1 blocks");
  FL_CHECK(row_on_chip_grid(int64_t(INT32_MAX) / 2, 1000, 4, limit, 9).blocks_per_row == 1, "one block a row: as many as rows");
  // The soft top-k vjp keeps (v, own), 8 bytes a column: one block to limit/8 columns, a cluster
  // of up to 8 beyond on sm_90, re-read beyond that.
  const int64_t fit8 = int64_t(limit / 8) / kSliceAlign * kSliceAlign;
  FL_CHECK(row_on_chip_grid(2, int64_t(limit / 8), 8, limit, 9).blocks_per_row == 1, "vjp: one block");
  FL_CHECK(row_on_chip_grid(2, 200000, 8, limit, 9).blocks_per_row == 7, "vjp 200000: a cluster of 7 (%d)", row_on_chip_grid(2, 200000, 8, limit, 9).blocks_per_row);
  FL_CHECK(row_on_chip_grid(2, 8 * fit8, 8, limit, 9).blocks_per_row == 8 && row_on_chip_grid(2, 8 * fit8 + 1, 8, limit, 9).blocks_per_row == 0,
           "vjp: at most 8 blocks");
  FL_CHECK(row_on_chip_grid(2, 240000, 8, limit, 9).blocks_per_row == 0, "vjp 240000: re-read");
}

// The Scratch's carving on host memory (its upload copies to the device).
struct HostCarver : ScratchCarver {
  template <class U> U* upload(const U*, int64_t n) { return take<U>(n); }
};

FL_TEST(scratch_plans_are_padded_sums) {
  FL_CHECK(padded(0) == 0 && padded(1) == 256 && padded(256) == 256 && padded(257) == 512, "padded");
  ScratchPlan p;
  p.take<double>(3);
  p.take<int32_t>(65);
  FL_CHECK(p.bytes == 256 + 512, "%zu", p.bytes);
  // A launcher's list of arrays (as cuda/row_kernels.cuh carve_positives: some arrays only when
  // an input is there), run over the plan and then over a carver of the planned size: every array
  // fits, on a 256-byte boundary, and the carving ends exactly at the plan's end.
  for (int64_t rows : {int64_t(1), int64_t(1000), int64_t(4096)})
    for (bool excl : {false, true}) {
      const int64_t nnz = 3 * rows, mask_words = 4096 / 32;
      int32_t ptr[2] = {0, 0};
      auto list = [&](auto& c) {
        std::vector<void*> arrays;
        arrays.push_back(c.upload(ptr, rows + 1));
        arrays.push_back(c.template take<int32_t>(nnz));
        if (excl) arrays.push_back(c.template take<int32_t>(rows));
        arrays.push_back(c.template take<uint32_t>(rows * mask_words));
        arrays.push_back(c.template take<double>(rows));
        arrays.push_back(c.template take<long long>(1));
        return arrays;
      };
      ScratchPlan plan;
      list(plan);
      FL_CHECK(plan.bytes % 256 == 0 && plan.bytes >= size_t(rows) * 4096 / 8, "rows %lld: %zu", (long long)rows, plan.bytes);
      std::vector<char> memory(plan.bytes);
      HostCarver carver;
      carver.base = memory.data();
      carver.capacity = plan.bytes;
      for (void* a : list(carver)) FL_CHECK((static_cast<char*>(a) - memory.data()) % 256 == 0, "aligned");
      FL_CHECK(carver.used == plan.bytes, "rows %lld: carved %zu of %zu", (long long)rows, carver.used, plan.bytes);
    }
}

// A take past the planned size throws ERR_INTERNAL instead of handing out memory beyond it.
FL_TEST(scratch_take_checks_capacity) {
  std::vector<char> memory(512);
  ScratchCarver c;
  c.base = memory.data();
  c.capacity = memory.size();
  FL_CHECK(c.take<float>(64) == reinterpret_cast<float*>(memory.data()), "first array at the base");
  c.take<double>(32);
  FL_CHECK(c.used == 512, "%zu", c.used);
  bool threw = false;
  try {
    c.take<char>(1);
  } catch (const Error& e) {
    threw = e.code == "ERR_INTERNAL";
  }
  FL_CHECK(threw && c.used == 512, "overflow: ERR_INTERNAL, nothing handed out");
}

// The bracket from the entries that are in: an excluded outlier (1e4, or −1e4) does not widen
// it, −inf entries are out, and any split of the row into partials merged in any order gives the
// same extremes and count (as the kernel's threads, warps and cluster blocks do).
FL_TEST(included_extremes_bracket) {
  Rng rng(21);
  const int64_t n = 5000;
  std::vector<float> z(static_cast<size_t>(n));
  for (auto& v : z) v = float(rng.normal());
  z[17] = -INFINITY;
  z[100] = 1e4f;   // excluded
  z[200] = -1e4f;  // excluded
  std::vector<bool> out(static_cast<size_t>(n), false);
  out[100] = out[200] = true;
  float hi = -INFINITY, lo = INFINITY;
  int64_t in = 0;
  for (int64_t j = 0; j < n; ++j)
    if (!out[size_t(j)] && z[size_t(j)] != -INFINITY) {
      hi = std::max(hi, z[size_t(j)]);
      lo = std::min(lo, z[size_t(j)]);
      ++in;
    }
  for (int split : {1, 3, 32, 512, 4999}) {
    std::vector<IncludedExtremes> parts(static_cast<size_t>(split));
    for (int64_t j = 0; j < n; ++j) parts[size_t(j % split)].add(out[size_t(j)] ? -INFINITY : z[size_t(j)]);
    IncludedExtremes all;
    for (int i = split - 1; i >= 0; --i) all.merge(parts[size_t(i)]);
    FL_CHECK(all.max == hi && -all.neg_min == lo && all.in == in, "split %d: [%g, %g] %lld", split, double(-all.neg_min), double(all.max),
             (long long)all.in);
  }
  IncludedExtremes e;
  for (int64_t j = 0; j < n; ++j) e.add(out[size_t(j)] ? -INFINITY : z[size_t(j)]);
  const double alpha = 10, k = 50;
  const TopKSolver s = topk_solver_init(double(e.max), double(-e.neg_min), k, double(e.in), alpha, 1e-4);
  const double shift = std::log(k / (double(e.in) - k)) / alpha;
  FL_CHECK(s.lo == -double(hi) + shift && s.hi == -double(lo) + shift, "bracket [%g, %g]", s.lo, s.hi);
  FL_CHECK(s.hi - s.lo < 20, "the excluded outliers do not widen the bracket: %g", s.hi - s.lo);
  // The root is inside it: Σσ(α(z + t)) over the entries in is below k at lo and above at hi.
  auto F = [&](double t) {
    double f = 0;
    for (int64_t j = 0; j < n; ++j)
      if (!out[size_t(j)] && z[size_t(j)] != -INFINITY) f += 1 / (1 + std::exp(-alpha * (double(z[size_t(j)]) + t)));
    return f;
  };
  FL_CHECK(F(s.lo) <= k && F(s.hi) >= k, "F(lo) = %g, F(hi) = %g", F(s.lo), F(s.hi));
}

// The embeddings GEMM's grid (cuda/gemm.cuh): every output tile exactly once, consecutive blocks
// along a tile row, and the ragged edges covered, at odd sizes and past 65535 tile rows.
FL_TEST(gemm_grid_covers_every_tile_once) {
  for (int64_t m : {int64_t(1), int64_t(127), int64_t(128), int64_t(129), int64_t(1031), int64_t(8192), int64_t(10'000'003)})
    for (int64_t n : {int64_t(1), int64_t(100), int64_t(4096), int64_t(131072), int64_t(1'000'001)}) {
      const GemmGrid g = gemm_grid(m, n);
      FL_CHECK(g.tiles_m * kGemmTile >= m && (g.tiles_m - 1) * kGemmTile < m, "m %lld", (long long)m);
      FL_CHECK(g.tiles_n * kGemmTile >= n && (g.tiles_n - 1) * kGemmTile < n, "n %lld", (long long)n);
      if (g.blocks() > 4'000'000) {
        // Spot checks at the ends and in the middle, 64-bit block numbers.
        for (int64_t b : {int64_t(0), g.tiles_n - 1, g.tiles_n, g.blocks() / 2, g.blocks() - 1})
          FL_CHECK(g.tile_m(b) * g.tiles_n + g.tile_n(b) == b && g.tile_m(b) < g.tiles_m, "block %lld", (long long)b);
        continue;
      }
      std::vector<char> seen(size_t(g.blocks()), 0);
      for (int64_t b = 0; b < g.blocks(); ++b) {
        const int64_t tm = g.tile_m(b), tn = g.tile_n(b);
        FL_CHECK(tm < g.tiles_m && tn < g.tiles_n, "block %lld", (long long)b);
        seen[size_t(tm * g.tiles_n + tn)]++;
        if (b > 0 && tn > 0) FL_CHECK(g.tile_m(b - 1) == tm && g.tile_n(b - 1) == tn - 1, "row-major order at %lld", (long long)b);
      }
      FL_CHECK(std::all_of(seen.begin(), seen.end(), [](char c) { return c == 1; }), "m %lld n %lld", (long long)m, (long long)n);
    }
}

// The fp16 operand scale: a power of two that puts the largest |G| in [2^13, 2^14) (exact to
// undo), also for gradients far below fp16's normal range; 1 for nothing to scale.
FL_TEST(half_operand_scale_keeps_fp16_in_range) {
  for (float m : {1e-30f, 3e-9f, 6e-8f, 1e-5f, 0.25f, 1.f, 3.f, 1000.f, 65504.f, 1e30f}) {
    const float s = half_operand_scale(m);
    int e = 0;
    FL_CHECK(std::frexp(s, &e) == 0.5f, "scale %g is a power of two", double(s));
    FL_CHECK(m * s >= 8192.f && m * s < 16384.f, "absmax %g · scale %g = %g", double(m), double(s), double(m * s));
  }
  for (float m : {0.f, -1.f, INFINITY, NAN}) FL_CHECK(half_operand_scale(m) == 1.f, "absmax %g", double(m));
  // A subnormal absmax: the scale stays finite (capped at 2^127).
  FL_CHECK(std::isfinite(half_operand_scale(1e-40f)), "subnormal");
}

// The chunk plan: within the budget, every active row in some chunk, equal chunks (the last no
// larger), and none when one row does not fit.
FL_TEST(embeddings_plan_within_budget) {
  Rng rng(17);
  for (int t = 0; t < 2000; ++t) {
    const int64_t cols = 1 + int64_t(rng.uniform() * 300000), dim = 1 + int64_t(rng.uniform() * 4096), active = 1 + int64_t(rng.uniform() * 20000);
    const int64_t per_row = embeddings_row_bytes(cols, dim, rng.uniform() < 0.5 ? 2 : 4, rng.uniform() < 0.5, loss_row_bytes(cols));
    const int64_t fixed = int64_t(rng.uniform() * 1e6);
    const int64_t budget = fixed + int64_t(rng.uniform() * double(per_row) * 3000);
    const EmbeddingsPlan p = embeddings_plan(budget, fixed, per_row, active);
    if (budget < fixed + per_row) {
      FL_CHECK(p.chunk_rows == 0, "budget %lld fixed %lld per row %lld: no row fits", (long long)budget, (long long)fixed, (long long)per_row);
      continue;
    }
    FL_CHECK(p.chunk_rows >= 1 && p.scratch_bytes <= budget, "budget %lld: %lld bytes", (long long)budget, (long long)p.scratch_bytes);
    FL_CHECK(p.chunks * p.chunk_rows >= active && (p.chunks - 1) * p.chunk_rows < active, "active %lld: %lld × %lld", (long long)active,
             (long long)p.chunks, (long long)p.chunk_rows);
    FL_CHECK(p.chunks == (active + (budget - fixed) / per_row - 1) / ((budget - fixed) / per_row), "the fewest chunks the budget allows");
  }
  FL_CHECK(embeddings_row_bytes(131072, 4096, 2, true, 0) == 4 * 131072 + 2 * 4096 + 4 * 4096 + 64, "bytes of a row at the issue's shape");
}

FL_TEST_MAIN()
