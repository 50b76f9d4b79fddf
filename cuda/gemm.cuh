// The GEMM of the losses from embeddings (cuda/embeddings.cu): C (M×N, fp32) = A·B with the
// chunk's three products
//   S   = Q_c·Kᵀ   (A: Q_c, k contiguous;  B: K, k contiguous)
//   dQ̂  = G·K      (A: G,   k contiguous;  B: K, n contiguous)
//   dK += Gᵀ·Q_c   (A: Gᵀ,  m contiguous;  B: Q_c, n contiguous)
// CUDA 13 ships no cuBLAS here, and the epilogue (row and column scales, a bias, accumulation)
// is ours. This is the simplest correct form, laid out to be optimised on a GPU later (cp.async
// double buffering, ldmatrix, mma.sync with a register-blocked warp tile, a loss epilogue):
//   - one block of 256 threads per 128×128 tile of C, stepping K by 32, operands staged through
//     shared memory with guarded loads (any M, N, K; 64-bit offsets);
//   - bf16/fp16 operands: tensor cores through WMMA (16×16×16, fp32 accumulation; sm_80+), each
//     of the 8 warps a 64×32 piece of the tile;
//   - fp32 operands: an exact fp32 path (fmaf per product, no TF32), each thread 8×8 outputs;
//   - an operand of another storage type (the fp32 gradient G) is rounded to the MMA type as it
//     is staged, after a power-of-two `scale` (cuda/plan.h half_operand_scale) that the
//     epilogue's alpha undoes.
// Every C entry is owned by one block, which sums over K in order and then adds into C: with
// `accumulate` the result is deterministic and needs no atomics.
#pragma once
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "../native/api/error.h"
#include "check.cuh"
#include "common.cuh"
#include "plan.h"
#include "runtime.h"

namespace fl::cuda {

// An operand in global memory: element (i, k), i over M (A) or N (B), at p[i·ld + k] when the
// GEMM's layout says k is contiguous, else at p[k·ld + i]. Each element is multiplied by
// `scale` before it is rounded to the MMA type (1: a 16-bit operand of the MMA type is copied
// bit for bit).
template <class TS>
struct GemmInput {
  const TS* p;
  int64_t ld;
  float scale;
};

// C[m, n] = alpha·acc·row_scale[m]·col_scale[n] + col_add[n] (+ C[m, n] with accumulate), in
// that order, each factor only when given.
struct GemmEpilogue {
  float* c;
  int64_t ldc;
  float alpha;
  const float* row_scale;  // M, or null
  const float* col_scale;  // N, or null
  const float* col_add;    // N, or null (a bias)
  bool accumulate;
  __device__ __forceinline__ void store(int64_t m, int64_t n, float acc) const {
    float v = acc * alpha;
    if (row_scale) v *= row_scale[m];
    if (col_scale) v *= col_scale[n];
    if (col_add) v += col_add[n];
    float* dst = c + m * ldc + n;
    *dst = accumulate ? *dst + v : v;
  }
};

constexpr int kGemmThreads = 256;
constexpr int kBM = int(kGemmTile), kBN = int(kGemmTile), kBK = int(kGemmTileK);

// The WMMA element type of a 16-bit storage type.
template <class T> struct WmmaType;
template <> struct WmmaType<bf16_t> { using type = __nv_bfloat16; };
template <> struct WmmaType<f16_t> { using type = __half; };

// Element (i, k) of an operand, 0 outside [0, rows) × [0, K).
template <bool kContiguousK, class TS>
__device__ __forceinline__ float load_operand(const GemmInput<TS>& x, int64_t i, int64_t k, int64_t rows, int64_t K) {
  if (i >= rows || k >= K) return 0.f;
  return to_float(kContiguousK ? x.p[i * x.ld + k] : x.p[k * x.ld + i]) * x.scale;
}

// The 16-bit pattern of element (i, k) in the MMA type T (0 outside the matrix).
template <class T, bool kContiguousK, class TS>
__device__ __forceinline__ uint16_t load_half_bits(const GemmInput<TS>& x, int64_t i, int64_t k, int64_t rows, int64_t K) {
  if constexpr (std::is_same_v<TS, T>) {
    if (x.scale == 1.f) {
      if (i >= rows || k >= K) return 0;
      return (kContiguousK ? x.p[i * x.ld + k] : x.p[k * x.ld + i]).bits;
    }
  }
  return from_float<T>(load_operand<kContiguousK>(x, i, k, rows, K)).bits;
}

// Index e of a tile's kRows × kBK elements as (i, k): consecutive threads along the operand's
// contiguous dimension, so that a warp's loads are coalesced.
template <bool kContiguousK, int kRows>
__device__ __forceinline__ void tile_coords(int e, int& i, int& k) {
  if (kContiguousK) {
    i = e / kBK;
    k = e % kBK;
  } else {
    k = e / kRows;
    i = e % kRows;
  }
}

// T: the MMA type (float: the exact fp32 path; bf16_t or f16_t: tensor cores). kKA, kKB: whether
// k is A's and B's contiguous dimension.
template <class T, bool kKA, bool kKB, class TA, class TB>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(int64_t M, int64_t N, int64_t K, GemmGrid grid, GemmInput<TA> a,
                                                            GemmInput<TB> b, GemmEpilogue ep) {
  const int64_t m0 = grid.tile_m(blockIdx.x) * kBM, n0 = grid.tile_n(blockIdx.x) * kBN;
  const int tid = threadIdx.x;
  if constexpr (std::is_same_v<T, float>) {
    // Padded rows: the reads As[ty + 16i][k] of a warp's two ty fall in different banks.
    __shared__ float As[kBM][kBK + 1];
    __shared__ float Bs[kBK][kBN + 1];
    const int tx = tid % 16, ty = tid / 16;
    float acc[8][8] = {};
    for (int64_t k0 = 0; k0 < K; k0 += kBK) {
      for (int e = tid; e < kBM * kBK; e += kGemmThreads) {
        int i, k;
        tile_coords<kKA, kBM>(e, i, k);
        As[i][k] = load_operand<kKA>(a, m0 + i, k0 + k, M, K);
      }
      for (int e = tid; e < kBN * kBK; e += kGemmThreads) {
        int i, k;
        tile_coords<kKB, kBN>(e, i, k);
        Bs[k][i] = load_operand<kKB>(b, n0 + i, k0 + k, N, K);
      }
      __syncthreads();
#pragma unroll 4
      for (int k = 0; k < kBK; ++k) {
        float av[8], bv[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) av[i] = As[ty + 16 * i][k];
#pragma unroll
        for (int j = 0; j < 8; ++j) bv[j] = Bs[k][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int64_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
        if (m < M && n < N) ep.store(m, n, acc[i][j]);
      }
  } else {
    namespace wmma = nvcuda::wmma;
    using W = typename WmmaType<T>::type;
    // Rows padded by 8 elements (16 bytes): every fragment's start stays 32-byte aligned and
    // its ldm a multiple of 8, as WMMA requires.
    constexpr int kLdA = kBK + 8, kLdB = kBN + 8;
    __shared__ __align__(128) uint16_t As[kBM * kLdA];
    __shared__ __align__(128) uint16_t Bs[kBK * kLdB];
    __shared__ __align__(128) float stage[kGemmThreads / kWarp][16 * 16];
    const int warp = tid / kWarp, lane = tid % kWarp;
    const int wm = warp / 4, wn = warp % 4;  // the warp's 64×32 piece of the tile
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
    for (int64_t k0 = 0; k0 < K; k0 += kBK) {
      for (int e = tid; e < kBM * kBK; e += kGemmThreads) {
        int i, k;
        tile_coords<kKA, kBM>(e, i, k);
        As[i * kLdA + k] = load_half_bits<T, kKA>(a, m0 + i, k0 + k, M, K);
      }
      for (int e = tid; e < kBN * kBK; e += kGemmThreads) {
        int i, k;
        tile_coords<kKB, kBN>(e, i, k);
        Bs[k * kLdB + i] = load_half_bits<T, kKB>(b, n0 + i, k0 + k, N, K);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> fa[4];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::row_major> fb[2];
#pragma unroll
        for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(fa[i], reinterpret_cast<const W*>(As + (wm * 64 + i * 16) * kLdA + kk), kLdA);
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], reinterpret_cast<const W*>(Bs + kk * kLdB + wn * 32 + j * 16), kLdB);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      __syncthreads();
    }
    // Each 16×16 fragment through the warp's staging square, then out with the epilogue.
    float* st = stage[warp];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::store_matrix_sync(st, acc[i][j], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += kWarp) {
          const int64_t m = m0 + wm * 64 + i * 16 + e / 16, n = n0 + wn * 32 + j * 16 + e % 16;
          if (m < M && n < N) ep.store(m, n, st[e]);
        }
        __syncwarp();
      }
  }
}

// C = A·B (M×N = M×K · K×N) through the epilogue, on the calling thread's stream; T: the MMA
// type. Throws ERR_SHAPE when the tiles pass one launch's 2^31 − 1 blocks.
template <class T, bool kKA, bool kKB, class TA, class TB>
void gemm(int64_t M, int64_t N, int64_t K, GemmInput<TA> a, GemmInput<TB> b, const GemmEpilogue& ep, const char* what) {
  if (M == 0 || N == 0) return;
  const GemmGrid grid = gemm_grid(M, N);
  if (grid.blocks() > INT32_MAX) fail(err::kShape, std::string(what) + ": too many output tiles for one launch");
  gemm_kernel<T, kKA, kKB, TA, TB><<<unsigned(grid.blocks()), kGemmThreads>>>(M, N, K, grid, a, b, ep);
  check_launch(what);
}

}  // namespace fl::cuda
