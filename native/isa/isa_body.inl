// The body of every per-ISA translation unit. Before including this file the TU sets:
//   #pragma GCC target(...)   the instruction set
//   FL_ISA_NS                 a namespace unique to the ISA (see native/simd/vec.h)
//   FL_VEC                    the vector struct from vec.h
//   FL_KERNEL_TABLE, FL_ISA   the CpuKernels instance to define and its Isa value
// Each op's SIMD code is an .inl of templates over the vector type V, included here.
#include <type_traits>

#include "../simd/vec.h"
#include "kernels.h"
#include "../core/rowmath.h"

namespace fl::FL_ISA_NS {
using V = simd::FL_VEC;
#include "../ops/softmax_rows.inl"
#include "../ops/bce.inl"
#include "../ops/soft_topk.inl"
#include "../ops/infonce_sym.inl"
#include "../gemm/gemm_kernels.inl"
}  // namespace fl::FL_ISA_NS

// Fills one entry with the float32, float16 and bfloat16 instantiations of a kernel template.
#define FL_BY_DTYPE(fn) \
  { FL_ISA_NS::fn<FL_ISA_NS::V, float>, FL_ISA_NS::fn<FL_ISA_NS::V, f16_t>, FL_ISA_NS::fn<FL_ISA_NS::V, bf16_t> }

// The same for kernel templates over the element type only.
#define FL_BY_DTYPE_T(fn) \
  { FL_ISA_NS::fn<float>, FL_ISA_NS::fn<f16_t>, FL_ISA_NS::fn<bf16_t> }

namespace fl::FL_ISA_NS {
template <class T>
constexpr TileStatsFn stats_variants[4] = {tile_stats<V, T, false, false>, tile_stats<V, T, false, true>,
                                           tile_stats<V, T, true, false>, tile_stats<V, T, true, true>};
// Gradient in float32 or in the input dtype T.
template <class T>
constexpr TileExpGradFn grad_variants[4] = {tile_exp_grad<V, T, float, false>, tile_exp_grad<V, T, T, false>,
                                            tile_exp_grad<V, T, float, true>, tile_exp_grad<V, T, T, true>};
template <class T>
constexpr TopKValuesFn topk_values_variants[2] = {topk_values<V, T, false>, topk_values<V, T, true>};
template <class T>
constexpr TopKVjpSumsFn topk_vjp_sums_variants[2] = {topk_vjp_sums<V, T, false>, topk_vjp_sums<V, T, true>};
template <class T>
constexpr TopKVjpGradFn topk_vjp_grad_variants[4] = {topk_vjp_grad<V, T, float, false>, topk_vjp_grad<V, T, T, false>,
                                                     topk_vjp_grad<V, T, float, true>, topk_vjp_grad<V, T, T, true>};
}  // namespace fl::FL_ISA_NS

#define FL_VARIANTS(table)                                                                   \
  {                                                                                          \
    {FL_ISA_NS::table<float>[0], FL_ISA_NS::table<float>[1], FL_ISA_NS::table<float>[2],     \
     FL_ISA_NS::table<float>[3]},                                                            \
    {FL_ISA_NS::table<f16_t>[0], FL_ISA_NS::table<f16_t>[1], FL_ISA_NS::table<f16_t>[2],     \
     FL_ISA_NS::table<f16_t>[3]},                                                            \
    {FL_ISA_NS::table<bf16_t>[0], FL_ISA_NS::table<bf16_t>[1], FL_ISA_NS::table<bf16_t>[2],  \
     FL_ISA_NS::table<bf16_t>[3]},                                                           \
  }

namespace fl {
const CpuKernels FL_KERNEL_TABLE = {
    FL_ISA,
    FL_BY_DTYPE(tile_max_sum_exp),
    FL_VARIANTS(stats_variants),
    FL_VARIANTS(grad_variants),
    FL_ISA_NS::softcap_one<FL_ISA_NS::V>,
    {{FL_ISA_NS::bce_negatives<FL_ISA_NS::V, float, float>, FL_ISA_NS::bce_negatives<FL_ISA_NS::V, float, float>},
     {FL_ISA_NS::bce_negatives<FL_ISA_NS::V, f16_t, float>, FL_ISA_NS::bce_negatives<FL_ISA_NS::V, f16_t, f16_t>},
     {FL_ISA_NS::bce_negatives<FL_ISA_NS::V, bf16_t, float>, FL_ISA_NS::bce_negatives<FL_ISA_NS::V, bf16_t, bf16_t>}},
    FL_BY_DTYPE(topk_stats),
    FL_BY_DTYPE(topk_sums),
    FL_BY_DTYPE(topk_sums_gather),
    {{FL_ISA_NS::topk_grad<FL_ISA_NS::V, float, float>, FL_ISA_NS::topk_grad<FL_ISA_NS::V, float, float>},
     {FL_ISA_NS::topk_grad<FL_ISA_NS::V, f16_t, float>, FL_ISA_NS::topk_grad<FL_ISA_NS::V, f16_t, f16_t>},
     {FL_ISA_NS::topk_grad<FL_ISA_NS::V, bf16_t, float>, FL_ISA_NS::topk_grad<FL_ISA_NS::V, bf16_t, bf16_t>}},
    FL_BY_DTYPE(sym_stats),
    {{FL_ISA_NS::sym_grad<FL_ISA_NS::V, float, float>, FL_ISA_NS::sym_grad<FL_ISA_NS::V, float, float>},
     {FL_ISA_NS::sym_grad<FL_ISA_NS::V, f16_t, float>, FL_ISA_NS::sym_grad<FL_ISA_NS::V, f16_t, f16_t>},
     {FL_ISA_NS::sym_grad<FL_ISA_NS::V, bf16_t, float>, FL_ISA_NS::sym_grad<FL_ISA_NS::V, bf16_t, bf16_t>}},
    {{FL_ISA_NS::topk_values_variants<float>[0], FL_ISA_NS::topk_values_variants<float>[1]},
     {FL_ISA_NS::topk_values_variants<f16_t>[0], FL_ISA_NS::topk_values_variants<f16_t>[1]},
     {FL_ISA_NS::topk_values_variants<bf16_t>[0], FL_ISA_NS::topk_values_variants<bf16_t>[1]}},
    {{FL_ISA_NS::topk_vjp_sums_variants<float>[0], FL_ISA_NS::topk_vjp_sums_variants<float>[1]},
     {FL_ISA_NS::topk_vjp_sums_variants<f16_t>[0], FL_ISA_NS::topk_vjp_sums_variants<f16_t>[1]},
     {FL_ISA_NS::topk_vjp_sums_variants<bf16_t>[0], FL_ISA_NS::topk_vjp_sums_variants<bf16_t>[1]}},
    FL_VARIANTS(topk_vjp_grad_variants),
    FL_BY_DTYPE_T(gemm_block),
    FL_ISA_NS::kGemmMr,
    FL_ISA_NS::kGemmNr,
    FL_ISA_NS::fma_peak,
};
}  // namespace fl
