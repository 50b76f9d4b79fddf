// infoNCE (MATH infoNCE, native/ops/contrastive_math.h; one-way and symmetric/CLIP) and decoupledContrastive (MATH decoupledContrastive, native/ops/contrastive_math.h; DCL and
// DCLW): loss and gradient in one call.
#pragma once
#include <cstdint>
#include <numeric>
#include <vector>

#include "../api/args.h"

namespace fl {

// Positives as a Csr: the caller's, or the diagonal in arrays of its own.
class PositivesOrDiagonal {
 public:
  PositivesOrDiagonal(const Csr& given, int64_t rows) : csr_(given) {
    if (given) return;
    row_ptr_.resize(size_t(rows) + 1);
    cols_.resize(size_t(rows));
    std::iota(row_ptr_.begin(), row_ptr_.end(), 0);
    std::iota(cols_.begin(), cols_.end(), 0);
    csr_ = Csr{row_ptr_.data(), cols_.data(), nullptr};
  }
  const Csr& csr() const { return csr_; }

 private:
  std::vector<int32_t> row_ptr_, cols_;
  Csr csr_;
};

// The shape checks, shared with the CUDA launchers.
void check_info_nce_shape(const InfoNCEArgs& args);

void check_decoupled_contrastive_shape(const DecoupledContrastiveArgs& args);

// DCLW's per-row weights w_i = 2 − B·softmax_i(S_ip/σ) from the B positive scores (host).
void dclw_weights(const float* positive_scores, int64_t rows, float sigma, double* w);

}  // namespace fl
