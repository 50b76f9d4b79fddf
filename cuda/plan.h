// The host-side decisions of the CUDA launchers, as plain C++ (no CUDA headers), so that the
// native tests check them on a machine without a GPU (test/native/test_cuda_plan.cpp): the
// scratch plan, the row held on chip (soft top-k, cross-entropy, the losses over positives and
// one-way InfoNCE/DCL) and its shared-memory budget, the cross-entropy layout, and the soft top-k
// bracket over the entries that are in.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../native/api/error.h"

#if defined(__CUDACC__)
#define FL_PLAN_HD __host__ __device__ __forceinline__
#else
#define FL_PLAN_HD inline
#endif

namespace fl::cuda {

// A call's scratch is one device allocation carved into arrays, each on a 256-byte boundary.
// A launcher lists its arrays once, as a function of the carver (a generic lambda calling
// take/upload): run over a ScratchPlan, the list adds up the bytes; run over the Scratch
// allocated with them (cuda/row_kernels.cuh), the same list hands out the arrays in the same
// order. No byte count is written by hand.
constexpr size_t padded(size_t bytes) { return (bytes + 255) / 256 * 256; }

struct ScratchPlan {
  size_t bytes = 0;
  template <class U> U* take(int64_t n) {
    bytes += padded(size_t(n) * sizeof(U));
    return nullptr;
  }
  template <class U> U* upload(const U*, int64_t n) { return take<U>(n); }
};

// Hands out [base, base + capacity) array by array; a take past the end throws ERR_INTERNAL (a
// list that differed between the plan and the carving) rather than hand out memory beyond it.
struct ScratchCarver {
  char* base = nullptr;
  size_t used = 0, capacity = 0;
  template <class U> U* take(int64_t n) {
    const size_t bytes = padded(size_t(n) * sizeof(U));
    if (n < 0 || used + bytes > capacity)
      fail(err::kInternal, "CUDA scratch: " + std::to_string(used + bytes) + " bytes taken from a plan of " + std::to_string(capacity));
    U* q = reinterpret_cast<U*>(base + used);
    used += bytes;
    return q;
  }
};

// ---------- soft top-k (cuda/soft_topk.cu) ----------

enum class TopKLayout {
  Block,    // one block; the row's z in its shared memory
  Cluster,  // a cluster of blocks (sm_90), each holding a slice of z in its shared memory
  Global,   // one block reading the scores on every pass
};

struct TopKPlan {
  TopKLayout layout;
  int blocks_per_row;
  int64_t slice;          // columns per block
  size_t dynamic_smem;    // bytes of z per block (0 for Global)
};

// The opt-in dynamic shared memory a kernel may have: the device's per-block opt-in limit less
// the kernel's own static __shared__ bytes (cudaFuncAttributes::sharedSizeBytes). Both count
// against the same limit: a dynamic size within the opt-in limit but not within this fails to
// launch (cudaErrorInvalidValue).
constexpr size_t dynamic_smem_limit(size_t smem_optin, size_t static_smem) {
  return smem_optin > static_smem ? smem_optin - static_smem : 0;
}

// Columns of a slice of a row (one block of a cluster's) are a multiple of this: whole 16-byte
// packs of any dtype, and whole 32-bit words of a skip mask, so that no two blocks share either.
constexpr int64_t kSliceAlign = 32;

// A row held on chip: in one block's shared memory, or sliced over a cluster of up to 8 blocks
// (a portable cluster size, sm_90). blocks_per_row = 0: it does not fit.
struct RowOnChip {
  int blocks_per_row;
  int64_t slice;          // columns per block
  size_t dynamic_smem;    // bytes of the row per block
};

// One block when the row's elem_bytes·cols fit `dynamic_limit` (dynamic_smem_limit() of the
// kernel that would run), a cluster of the fewest blocks that hold it on sm_90, else none.
// cols = 0 fits one block with no shared memory.
inline RowOnChip row_on_chip(int64_t cols, int64_t elem_bytes, size_t dynamic_limit, int cc_major) {
  if (cols * elem_bytes <= int64_t(dynamic_limit)) return {1, cols, size_t(cols * elem_bytes)};
  const int64_t fit = int64_t(dynamic_limit) / elem_bytes / kSliceAlign * kSliceAlign;
  if (cc_major >= 9 && fit > 0) {
    const int64_t per = (cols + fit - 1) / fit;
    if (per <= 8) {
      int64_t slice = (cols + per - 1) / per;
      slice = (slice + kSliceAlign - 1) / kSliceAlign * kSliceAlign;  // ≤ fit
      return {int(per), slice, size_t(slice * elem_bytes)};
    }
  }
  return {0, cols, 0};
}

// row_on_chip for a launch of `rows` rows: none (blocks_per_row = 0) also when the grid,
// rows·blocks_per_row blocks, would pass a launch's 2^31 − 1. The losses over positives and
// one-way InfoNCE/DCL (cuda/row_kernels.cuh softmax_row, elements of the scores) and the soft
// top-k vjp (8 bytes a column) then take one block a row reading the row twice.
inline RowOnChip row_on_chip_grid(int64_t rows, int64_t cols, int64_t elem_bytes, size_t dynamic_limit, int cc_major) {
  const RowOnChip r = row_on_chip(cols, elem_bytes, dynamic_limit, cc_major);
  if (r.blocks_per_row > 0 && rows * r.blocks_per_row > INT32_MAX) return {0, cols, 0};
  return r;
}

// One block when the row's z fits one block's shared memory, a cluster of up to 8 blocks (sm_90)
// when it fits theirs, else one block reading the scores on every pass.
inline TopKPlan topk_plan(int64_t cols, size_t dynamic_limit, int cc_major) {
  const RowOnChip r = row_on_chip(cols, sizeof(float), dynamic_limit, cc_major);
  if (r.blocks_per_row == 0) return {TopKLayout::Global, 1, cols, 0};
  return {r.blocks_per_row == 1 ? TopKLayout::Block : TopKLayout::Cluster, r.blocks_per_row, r.slice, r.dynamic_smem};
}

// The soft top-k bracket's inputs over the entries that are in (neither excluded nor −inf), as
// the CPU takes them (native/ops/soft_topk.cpp): the extremes of x and the count. Kept per
// thread and merged in any order (max/min and an integer count are exact). The kernel feeds it
// excluded entries as −inf.
struct IncludedExtremes {
  float max = -INFINITY;
  float neg_min = -INFINITY;  // max of −x: min x = −neg_min
  int64_t in = 0;
  FL_PLAN_HD void add(float x) {
    if (x == -INFINITY) return;
    max = x > max ? x : max;
    neg_min = -x > neg_min ? -x : neg_min;
    in += 1;
  }
  FL_PLAN_HD void merge(const IncludedExtremes& o) {
    max = o.max > max ? o.max : max;
    neg_min = o.neg_min > neg_min ? o.neg_min : neg_min;
    in += o.in;
  }
};

// ---------- softmaxCrossEntropy (cuda/cross_entropy.cu) ----------

enum class CeLayout {
  OnChip,  // the row in shared memory (a slice per block of a cluster on sm_90): 1 read + 1 write
  Fused,   // one block per row sweeping it twice (the second read from L2 when it still holds it)
  Tiled,   // statistics, row terms and gradient kernels over (row, tile) blocks
};

struct CePlan {
  CeLayout layout;
  int64_t tiles;        // tiles per row (Tiled; 1 otherwise)
  int blocks_per_row;   // OnChip: 1, or a cluster of up to 8
  int64_t slice;        // OnChip: columns per block
  size_t dynamic_smem;  // OnChip: bytes of the row per block
};

// When the rows fill the GPU (rows ≥ 2·SMs): on chip when the row's elem_bytes·cols fit one
// block's shared memory, or (sm_90) a cluster of up to 8 blocks' (`dynamic_limit`: the on-chip
// kernel's dynamic_smem_limit(), 0 for none); else one block per row up to fused_cols. Tiles of
// tile_cols otherwise, so that few wide rows still fill the GPU; cols = 0 (every label ignored)
// still gets one tile: a 0-block grid would not launch.
inline CePlan ce_plan(int64_t rows, int64_t cols, int64_t elem_bytes, int sms, int64_t fused_cols, int64_t tile_cols,
                      size_t dynamic_limit, int cc_major) {
  const bool fill = rows >= 2 * int64_t(sms);
  if (fill && cols > 0) {
    const RowOnChip r = row_on_chip(cols, elem_bytes, dynamic_limit, cc_major);
    if (r.blocks_per_row > 0) return {CeLayout::OnChip, 1, r.blocks_per_row, r.slice, r.dynamic_smem};
  }
  if (fill && cols <= fused_cols) return {CeLayout::Fused, 1, 1, cols, 0};
  return {CeLayout::Tiled, cols == 0 ? 1 : (cols + tile_cols - 1) / tile_cols, 1, cols, 0};
}

}  // namespace fl::cuda

namespace fl::cuda {

// ---------- the losses from embeddings (cuda/embeddings.cu, cuda/gemm.cuh) ----------

// The GEMM's block tile: kGemmTile × kGemmTile outputs, kGemmTileK of the contraction per step.
constexpr int64_t kGemmTile = 128;
constexpr int64_t kGemmTileK = 32;

// A GEMM's grid: one block per output tile, numbered row-major over (tile row, tile column), so
// that consecutive blocks share their A tile (in L2). One dimension of blocks: a launch takes up
// to 2^31 − 1 of them, where gridDim.y would stop at 65535.
struct GemmGrid {
  int64_t tiles_m, tiles_n;
  FL_PLAN_HD int64_t blocks() const { return tiles_m * tiles_n; }
  FL_PLAN_HD int64_t tile_m(int64_t block) const { return block / tiles_n; }
  FL_PLAN_HD int64_t tile_n(int64_t block) const { return block % tiles_n; }
};
FL_PLAN_HD GemmGrid gemm_grid(int64_t m, int64_t n) {
  return GemmGrid{(m + kGemmTile - 1) / kGemmTile, (n + kGemmTile - 1) / kGemmTile};
}

// The power of two a half-precision GEMM operand is multiplied by before it is rounded to fp16,
// so that its largest magnitude lands in [2^13, 2^14): the gradient G of a chunk can be far below
// fp16's normal range (u_i = 1/B times probabilities ~1/N), where fp16 keeps few bits or none.
// The product is multiplied back by the inverse (exact: a power of two). bf16 has fp32's range
// and takes 1. absmax 0 or not finite: 1.
inline float half_operand_scale(float absmax) {
  if (!(absmax > 0.f) || !std::isfinite(absmax)) return 1.f;
  int e = 0;
  std::frexp(absmax, &e);  // absmax = f·2^e, f in [0.5, 1)
  return std::ldexp(1.f, std::min(14 - e, 127));
}

// A call's plan: chunks of `chunk_rows` rows of S = Q·Kᵀ (every chunk the same size but the
// last), and the bytes the budget holds for them. rows 0: one row does not fit.
struct EmbeddingsPlan {
  int64_t chunk_rows;
  int64_t chunks;
  int64_t scratch_bytes;  // fixed + chunk_rows·per_row
};

// Per chunk row: its fp32 scores (in place for G), its queries as given (elem_bytes each), the
// fp32 dQ̂ row when gradQueries is wanted, the index and the row's bookkeeping, and `loss_row`:
// what the matrix-form launcher allocates per row (loss_row_bytes).
constexpr int64_t embeddings_row_bytes(int64_t cols, int64_t dim, int64_t elem_bytes, bool grad_queries, int64_t loss_row) {
  return 4 * cols + dim * elem_bytes + (grad_queries ? 4 * dim : 0) + 64 + loss_row;
}

// What a matrix-form launcher (cuda/*.cu) allocates per row of a chunk besides the scores: the
// row's loss, upstream factor, dScale part, labels or CSR row pointer, terms and lse (≤ 64 bytes),
// the cross-entropy's tiled partials (16 bytes a 32768-column tile), and the skip mask of the
// losses over positives (a bit a column).
constexpr int64_t loss_row_bytes(int64_t cols) { return 64 + 16 * ((cols + 32767) / 32768) + 4 * ((cols + 31) / 32); }

// The most rows the budget holds, then equal chunks (the last one no larger than the others):
// the GEMMs' tiles are as full in every chunk.
inline EmbeddingsPlan embeddings_plan(int64_t budget, int64_t fixed, int64_t per_row, int64_t active) {
  const int64_t fit = budget > fixed ? (budget - fixed) / per_row : 0;
  if (fit < 1 || active < 1) return {fit < 1 ? 0 : 1, active < 1 ? 0 : 1, fixed + per_row};
  const int64_t chunks = (active + fit - 1) / fit;
  const int64_t rows = (active + chunks - 1) / chunks;
  return {rows, chunks, fixed + rows * per_row};
}

}  // namespace fl::cuda
