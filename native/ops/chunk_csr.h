// A CSR restricted to a chunk's rows idx[0..rows), re-based at 0: the losses from embeddings run
// the matrix-form op on a chunk of S's rows, and the matrix-form ops take a CSR over their own
// rows. Host memory; used by both drivers (native/ops/embeddings.cpp, cuda/embeddings.cu).
#pragma once
#include <cstdint>
#include <vector>

#include "../api/types.h"

namespace fl {

struct ChunkCsr {
  std::vector<int32_t> row_ptr, cols;
  std::vector<float> weights;
  // The rows idx[0..rows) of c (empty when c is).
  ChunkCsr(const Csr& c, const int64_t* idx, int64_t rows) {
    if (!c) return;
    row_ptr.assign(size_t(rows + 1), 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t e = c.begin(idx[r]); e < c.end(idx[r]); ++e) {
        cols.push_back(c.cols[e]);
        if (c.weights) weights.push_back(c.weights[e]);
      }
      row_ptr[size_t(r + 1)] = int32_t(cols.size());
    }
  }
  // The diagonal positives of the chunk's rows: row r's positive is column idx[r].
  ChunkCsr(const int64_t* idx, int64_t rows) {
    row_ptr.resize(size_t(rows + 1));
    for (int64_t r = 0; r <= rows; ++r) row_ptr[size_t(r)] = int32_t(r);
    for (int64_t r = 0; r < rows; ++r) cols.push_back(int32_t(idx[r]));
  }
  Csr view() const {
    if (row_ptr.empty()) return Csr{};
    return Csr{row_ptr.data(), cols.data(), weights.empty() ? nullptr : weights.data()};
  }
};

}  // namespace fl
