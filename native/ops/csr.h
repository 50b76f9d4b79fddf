// Positives and exclusions in CSR form (SPEC 2), as the kernels see them, and the per-row skip
// lists the softmax-row engine needs. lib/csr.ts validates every CSR once; check_csr repeats
// the structural checks here so that a wrong call from JS throws instead of reading out of
// bounds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fl {

// A view of a caller's CSR: row r owns entries [row_ptr[r], row_ptr[r+1]) of cols/weights.
// An empty Csr (row_ptr null) has no entries in any row.
struct Csr {
  const int32_t* row_ptr = nullptr;  // rows + 1
  const int32_t* cols = nullptr;     // columns, in any order within a row
  const float* weights = nullptr;    // one per entry, or null: every weight 1

  explicit operator bool() const { return row_ptr != nullptr; }
  int64_t begin(int64_t r) const { return row_ptr ? row_ptr[r] : 0; }
  int64_t end(int64_t r) const { return row_ptr ? row_ptr[r + 1] : 0; }
  int64_t size(int64_t r) const { return end(r) - begin(r); }
  int64_t nnz(int64_t rows) const { return row_ptr ? row_ptr[rows] : 0; }
  float weight(int64_t e) const { return weights ? weights[e] : 1.f; }
};

// Throws ERR_CSR unless `c` is a valid CSR of a rows × cols matrix with `nnz` entries:
// row_ptr[0] = 0, non-decreasing, row_ptr[rows] = nnz, every column in [0, cols), no column
// twice in a row, weights finite and >= 0. `name` goes into the message ("positives").
void check_csr(const Csr& c, int64_t rows, int64_t cols, int64_t nnz, const char* name);

// Per row, the sorted union of the columns of `a` and `b` (either may be empty): the columns
// the engine leaves out of a row's statistics and dense gradient. Built once per call into
// arrays of its own (the caller's cols stay as they are and need not be sorted). Throws
// ERR_CSR when a column is in both `a` and `b` (an exclusion that is also a positive); each
// of them must already be free of duplicates (check_csr).
class SkipLists {
 public:
  SkipLists() = default;
  SkipLists(int64_t rows, const Csr& a, const Csr& b, const char* a_name = "positives", const char* b_name = "exclude");

  const int32_t* cols(int64_t r) const { return cols_.data() + offsets_[size_t(r)]; }
  int64_t size(int64_t r) const { return offsets_[size_t(r) + 1] - offsets_[size_t(r)]; }
  // The whole structure (rows + 1 offsets into all_cols), e.g. to copy to a GPU.
  const std::vector<int64_t>& offsets() const { return offsets_; }
  const std::vector<int32_t>& all_cols() const { return cols_; }

 private:
  std::vector<int64_t> offsets_{0};
  std::vector<int32_t> cols_;
};

}  // namespace fl
