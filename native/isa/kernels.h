// The table of SIMD kernel entry points, one instance per ISA (native/isa/isa_*.cpp).
//
// Entries are plain function pointers over POD arguments so that nothing with external
// linkage crosses between ISA translation units. Element-type-generic entries are arrays
// indexed by DType (float32, float16, bfloat16).
#pragma once
#include <cstdint>

#include "../api/types.h"
#include "../core/cpu_features.h"
#include "../ops/soft_topk_math.h"

namespace fl {

// Statistics of one tile of a row, z = scale·x or z = cap·tanh(scale·x/cap):
// max = max z, rest = Σ exp(z − max) − 1 (see MaxSumExp in native/core/rowmath.h),
// lin = Σ colw_j·z_j over the finite entries (only when asked; colw ≡ 1 when null),
// first_bad = index of the first NaN/+inf in the tile, or -1.
struct TileMaxSumExp {
  float max;
  double rest;
  double lin;
  int64_t first_bad;
};
struct StatsTile {
  const void* x;
  int64_t n;
  float scale;
  float cap;          // softcap c (variants with a softcap only)
  const float* colw;  // per-column weights for `lin`, or null
  // Optional, without a softcap: keep[j] = exp(z_j − block max) for the tile's entries and
  // block_max[b] for each kBlock-long block, so that the gradient sweep needs no exp.
  float* keep;
  float* block_max;
};

// The dense gradient of a softmax-family loss over one tile (native/ops/softmax_rows.inl):
// dL/dz_j = coef·exp(z_j − shift) + bias + colw_coef·colw_j, written as dL/dx_j into g.
struct ExpGradTile {
  const void* x;
  void* g;            // null: compute the dScale share only
  int64_t n;
  float scale, cap;
  float shift, coef, bias;
  const float* colw;  // null, or per-column values (class weights)
  float colw_coef;
  const float* kept;       // StatsTile::keep of the same tile, or null
  const float* block_max;  // StatsTile::block_max of the same tile
  bool dscale;             // the dScale share is wanted (else the return value is unspecified)
  bool stream;             // g is large: non-temporal stores where the kernel can use them
};

using TileMaxSumExpFn = TileMaxSumExp (*)(const void* x, int64_t n, float scale);
using TileStatsFn = TileMaxSumExp (*)(const StatsTile&);
using TileExpGradFn = double (*)(const ExpGradTile&);
// z = cap·tanh(scale·x/cap) computed exactly as the SIMD sweeps compute it, so that the
// scalar code's z of an entry is bitwise the sweeps' z (a row's max term is then exactly 1).
using SoftcapFn = float (*)(float x, float scale, float cap);

// Soft top-k sweeps over a run of a row (native/ops/soft_topk.inl); z = scale·x.
struct TopKTileStats {
  float max, min;     // of x over the entries that are in (not −inf)
  int64_t in;         // how many are in
  int64_t first_bad;  // index of the first NaN/+inf, or -1
};
struct TopKSumsTile {
  const void* x;
  int64_t n;
  float scale, alpha, t;
};
struct TopKGradTile {
  const void* x;
  void* g;  // null: the dScale share only
  int64_t n;
  float scale, alpha, t;
  float log_coef, coef_sign;  // g = coef_sign·scale·e^{log_coef}·p(1 − p) (see topk_grad)
};
using TopKStatsFn = TopKTileStats (*)(const void* x, int64_t n);
using TopKSumsFn = TopKSums (*)(const TopKSumsTile&);
// A pass that also keeps its candidates (native/ops/soft_topk.cpp): the entries with |a| ≤ window
// are appended to out as float32 (in order); the others are summarised, per side, by
// Σ e^{−|a|} and Σ e^{−2|a|}, from which their share of the sums at a nearby t follows.
struct TopKGather {
  float window;
  float* out;          // room for cap + 16 floats (a whole vector is stored, then compacted)
  int64_t cap;
  int64_t count;       // candidates written so far; cap + 1 once they did not fit
  double lo1, lo2;     // a < −window: Σ e^{a}, Σ e^{2a}
  double hi1, hi2;     // a > window: Σ e^{−a}, Σ e^{−2a}
  double hi_count;     // a > window: how many
};
using TopKGatherFn = TopKSums (*)(const TopKSumsTile&, TopKGather&);
using TopKGradFn = double (*)(const TopKGradTile&);
// softTopK's values, and its vjp's two passes (sums, then the gradient), over a run of a row.
struct TopKValuesTile {
  const void* x;
  float* out;
  int64_t n;
  float scale, alpha, t;
};
struct TopKVjpTile {
  const void* x;
  const float* g_out;  // the upstream gradient, float32
  void* g;             // pass 2 only
  int64_t n;
  float scale, alpha, t;
  float log_factor, factor_sign;  // pass 2 only: log|α·G/V| of the row and its sign
};
struct TopKVjpSums {
  double v, g;  // Σ α·p(1 − p) and Σ own (see topk_vjp_sums)
};
using TopKValuesFn = void (*)(const TopKValuesTile&);
using TopKVjpSumsFn = TopKVjpSums (*)(const TopKVjpTile&);
using TopKVjpGradFn = void (*)(const TopKVjpTile&);

// The block length of the SIMD sweeps (softmax_rows.inl): statistics are merged per block.
constexpr int64_t kSoftmaxBlock = 2048;

// Variant indices.
constexpr int stats_variant(bool softcap, bool lin) { return (softcap ? 2 : 0) + (lin ? 1 : 0); }
// Gradient output: float32, or the input's own dtype (any grad_dtype other than Float32).
constexpr int grad_variant(bool softcap, DType grad_dtype) { return (softcap ? 2 : 0) + (grad_dtype == DType::Float32 ? 0 : 1); }

// binaryCrossEntropy over a stretch of negatives (native/ops/bce.inl): g_j = u·σ(z_j)·scale
// (stored as the grad dtype unless g is null); returns Σ softplus(z_j) and Σ u·σ(z_j)·x_j.
struct BceNegTile {
  const void* x;
  void* g;
  int64_t n;
  float scale, u;  // u: the row's upstream factor
  bool dscale;     // the dScale sum is wanted (else BceSums::dscale is 0)
};
struct BceSums {
  double loss, dscale;
  int64_t first_bad;  // first NaN/+inf, or −1
};
using BceNegFn = BceSums (*)(const BceNegTile&);
// Symmetric InfoNCE (native/ops/infonce_sym.inl), on a square n×n matrix, z = scale·x.
// Statistics of one column strip [c0, c1), all rows: each row's (max z, rest) over the strip
// and each of the strip's columns' (max z, rest) over all rows (rest as in MaxSumExp).
constexpr int64_t kSymStatsBlockRows = 32;
// Row and column maxima of z within this much of the largest allow one exponential per entry
// instead of two (e^{K − max} ≤ e^40 cannot overflow), in the statistics and the gradient.
constexpr double kSymSpread = 40;
struct SymStatsStrip {
  const void* x;
  int64_t n;     // columns (the row stride)
  int64_t rows;  // n for CLIP's square matrix; B for a sharded B × n block
  int64_t c0, c1;
  float scale;
  float* row_max;    // [rows]
  double* row_rest;  // [rows]
  float* col_max;    // [c1 − c0]
  double* col_rest;  // [c1 − c0]
  float* scratch;    // 5·(c1 − c0) floats
};
// The gradient of rows [r0, r1): dL/dz_ij = row_coef_i·e^{z_ij − row_shift_i} + col_coef_j·e^{z_ij − col_shift_j},
// written as dL/dx = scale·dL/dz into g unless g is null. With row_delta/col_gamma (when every
// shift is within a few dozen of the largest, K), the second exponential is the first times
// e^{row_shift_i − K}·e^{K − col_shift_j}: dL/dz = e^{z − row_shift_i}·(row_coef_i + row_delta_i·col_gamma_j).
struct SymGradRows {
  const void* x;
  void* g;
  int64_t n, r0, r1;
  float scale;
  const float *row_shift, *row_coef, *col_shift, *col_coef;
  const float *row_delta, *col_gamma;  // or null
};
// Returns the flat index of the first NaN/+inf, or −1.
using SymStatsFn = int64_t (*)(const SymStatsStrip&);
// Returns Σ dL/dz_ij · x_ij over the rows.
using SymGradFn = double (*)(const SymGradRows&);

// The GEMM core (native/gemm/gemm.h): one block of C = or += op(A)·op(B), m × n, depth k.
// op(A)(i, k) = a_trans ? a[k·lda + i] : a[i·lda + k] (fp32); op(B)(k, j) = b_trans ? b[j·ldb + k]
// : b[k·ldb + j], of the dtype the table entry is for, widened to fp32 while packing.
// K is cut into slices of kGemmKc and A into panels of kGemmMc rows (a multiple of every ISA's
// micro-tile height), the same on every ISA and thread count.
constexpr int64_t kGemmKc = 256;
constexpr int64_t kGemmMc = 96;
struct GemmBlock {
  int64_t m, n, k;
  const float* a;
  int64_t lda;
  bool a_trans;
  const void* b;
  int64_t ldb;
  bool b_trans;
  float* c;
  int64_t ldc;
  bool accumulate;  // C += op(A)·op(B) (else C = op(A)·op(B))
  float* pack_a;    // scratch: kGemmMc·kGemmKc floats
  float* pack_b;    // scratch: kGemmKc·(n rounded up to gemm_nr) floats
};
using GemmBlockFn = void (*)(const GemmBlock&);
using FmaPeakFn = double (*)(int64_t iters);

struct CpuKernels {
  Isa isa;
  TileMaxSumExpFn tile_max_sum_exp[3];  // [dtype]
  TileStatsFn tile_stats[3][4];         // [dtype][stats_variant]
  TileExpGradFn tile_exp_grad[3][4];    // [dtype][grad_variant]
  SoftcapFn softcap;
  BceNegFn bce_negatives[3][2];         // [dtype][grad float32, grad in the dtype]
  TopKStatsFn topk_stats[3];    // [dtype]
  TopKSumsFn topk_sums[3];      // [dtype]
  TopKGatherFn topk_sums_gather[3];  // [dtype]
  TopKGradFn topk_grad[3][2];   // [dtype][0: float32 gradient, 1: the input dtype]
  SymStatsFn sym_stats[3];              // [dtype]
  SymGradFn sym_grad[3][2];             // [dtype][0: float32 gradient, 1: the input dtype]
  TopKValuesFn topk_values[3][2];       // [dtype][0: p, 1: log p]
  TopKVjpSumsFn topk_vjp_sums[3][2];    // [dtype][0: 'prob', 1: 'log']
  TopKVjpGradFn topk_vjp_grad[3][4];    // [dtype][2·log + (0: float32 gradient, 1: the input dtype)]
  GemmBlockFn gemm_block[3];            // [dtype of B]
  int gemm_mr, gemm_nr;                 // the micro-tile
  FmaPeakFn fma_peak;
};

extern const CpuKernels kernels_sse2;
extern const CpuKernels kernels_avx2;
extern const CpuKernels kernels_avx512;


}  // namespace fl
