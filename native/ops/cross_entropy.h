// softmaxCrossEntropy (MATH softmaxCrossEntropy, native/ops/cross_entropy_math.h): torch F.cross_entropy over very many classes, with
// ignore_index, label smoothing, class weights, z-loss and softcap; loss and gradient in one call.
#pragma once
#include <cstdint>

#include "../api/args.h"

namespace fl {

// Shared with the CUDA launcher: validates labels, and returns the 'mean' denominator
// Σ_{i not ignored} w_{y_i} and w̄ = mean of the class weights (1 without them).
struct CrossEntropyTotals {
  double weight_sum;
  double mean_class_weight;
};
CrossEntropyTotals cross_entropy_totals(const CrossEntropyArgs& args);

}  // namespace fl
