// Launchers of the CUDA kernels, callable from plain C++ (the N-API layer); this header needs
// nothing but the API structs (native/api/), so any C++ unit can include it. Pointers named
// d_* are device pointers; everything else is host memory. Each launcher checks every CUDA
// call and launch, and throws fl::Error on failure.
#pragma once
#include "../native/api/args.h"

namespace fl::cuda {

// LogSumExpArgs with x on the device and out on the host.
void log_sum_exp(const LogSumExpArgs& args);

// CrossEntropyArgs with logits and grad on the device; labels, class weights, gradOutput,
// rowLoss and lse on the host (the launcher moves them).
LossResult cross_entropy(const CrossEntropyArgs& args);

// PositivesLossArgs with scores and grad on the device; the CSRs, gradOutput and rowLoss on
// the host (the launcher moves them).
LossResult decoupled_softmax(const PositivesLossArgs& args);
LossResult multi_label_softmax(const PositivesLossArgs& args);
LossResult binary_cross_entropy(const PositivesLossArgs& args);
// SoftTopKLossArgs with the scores and grad on the device; k_rows, positives, exclusions,
// gradOutput and rowLoss on the host (the launcher moves them).
LossResult soft_topk_loss(const SoftTopKLossArgs& args);
// softTopK with the scores and values on the device; k_rows, exclusions, threshold and
// iterations on the host. Its vjp: scores, gradOutput and grad on the device, threshold and
// exclusions on the host.
void soft_topk(const SoftTopKArgs& args);
void soft_topk_vjp(const SoftTopKVjpArgs& args);

// InfoNCEArgs / DecoupledContrastiveArgs with scores and grad on the device; the CSRs,
// gradOutput and rowLoss on the host (cuda/contrastive.cu).
LossResult info_nce(const InfoNCEArgs& args);
LossResult decoupled_contrastive(const DecoupledContrastiveArgs& args);

}  // namespace fl::cuda
