#include "gemm.h"

#include <algorithm>
#include <vector>

#include "../api/error.h"
#include "../isa/kernels.h"

namespace fl {

namespace {

// A task's block of C is at most this many columns wide, so that its packed B panel
// (kGemmKc × kMaxBlockCols fp32, 512 KiB) stays in L2 while the A panels run across it.
constexpr int64_t kMaxBlockCols = 512;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct Scratch {
  std::vector<float> a, b;
};

}  // namespace

int64_t gemm_scratch_bytes(const Context& ctx) {
  return int64_t(sizeof(float)) * (kGemmMc * kGemmKc + kGemmKc * (kMaxBlockCols + ctx.kernels->gemm_nr));
}

void gemm(Context& ctx, int64_t m, int64_t n, int64_t k, const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc,
          bool accumulate) {
  if (a.dtype != DType::Float32) fail(err::kInternal, "gemm: A must be float32");
  if (m <= 0 || n <= 0) return;
  const CpuKernels& K = *ctx.kernels;
  const int64_t mr = K.gemm_mr, nr = K.gemm_nr;
  // Blocks: columns in runs of ≤ kMaxBlockCols, rows whole; then halve the larger side (rows by
  // micro-tiles, columns by micro-panels) until there are a few tasks per thread to balance.
  // Packing costs O(m·k) per column block and O(n·k) per row block, against O(m·n·k) flops.
  int64_t bn = std::min(round_up(n, nr), kMaxBlockCols), bm = round_up(m, mr);
  const int64_t want = ctx.pool.threads() == 1 ? 1 : 2 * int64_t(ctx.pool.threads());
  auto tasks = [&] { return ((m + bm - 1) / bm) * ((n + bn - 1) / bn); };
  while (tasks() < want && (bm > mr || bn > nr)) {
    if (bm >= bn && bm > mr) bm = round_up(bm / 2, mr);
    else if (bn > nr) bn = round_up(bn / 2, nr);
    else bm = round_up(bm / 2, mr);
  }
  const int64_t row_blocks = (m + bm - 1) / bm, col_blocks = (n + bn - 1) / bn;
  const GemmBlockFn fn = K.gemm_block[int(b.dtype)];
  const int64_t esize = dtype_size(b.dtype);
  ctx.pool.parallel_for(row_blocks * col_blocks, [&](int64_t t) {
    // Column blocks vary fastest: neighbouring tasks share their A rows.
    const int64_t i0 = (t / col_blocks) * bm, j0 = (t % col_blocks) * bn;
    thread_local Scratch s;
    s.a.resize(size_t(kGemmMc * kGemmKc));
    s.b.resize(size_t(kGemmKc * (kMaxBlockCols + nr)));
    GemmBlock g;
    g.m = std::min(bm, m - i0);
    g.n = std::min(bn, n - j0);
    g.k = k;
    g.a = static_cast<const float*>(a.p) + (a.trans ? i0 : i0 * a.ld);
    g.lda = a.ld;
    g.a_trans = a.trans;
    g.b = static_cast<const char*>(b.p) + (b.trans ? j0 * b.ld : j0) * esize;
    g.ldb = b.ld;
    g.b_trans = b.trans;
    g.c = c + i0 * ldc + j0;
    g.ldc = ldc;
    g.accumulate = accumulate;
    g.pack_a = s.a.data();
    g.pack_b = s.b.data();
    fn(g);
  });
}

}  // namespace fl
