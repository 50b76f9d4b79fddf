// Positives and exclusions in CSR form (docs/MATH.md §1), as the kernels see them, and the per-row skip
// lists the softmax-row engine needs. lib/csr.ts validates every CSR once; check_csr repeats
// the structural checks here so that a wrong call from JS throws instead of reading out of
// bounds.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../api/types.h"  // Csr

namespace fl {

// Throws ERR_CSR unless `c` is a valid CSR of a rows × cols matrix with `nnz` entries:
// row_ptr[0] = 0, non-decreasing, row_ptr[rows] = nnz, every column in [0, cols), no column
// twice in a row, weights finite and >= 0. `name` goes into the message ("positives").
void check_csr(const Csr& c, int64_t rows, int64_t cols, int64_t nnz, const char* name);

// Per row, the sorted union of the columns of `a` and `b` (either may be empty): the columns
// the engine leaves out of a row's statistics and dense gradient. Built once per call into
// arrays of its own (the caller's cols stay as they are and need not be sorted). Throws
// ERR_CSR when a column is in both `a` and `b` (an exclusion that is also a positive); each
// of them must already be free of duplicates (check_csr).
// Columns of one row left out of a sweep: sorted, unique, in [0, cols).
struct RowSkip {
  const int32_t* cols = nullptr;
  int64_t n = 0;
};

// Calls run(a, b) for each non-empty run [a, b) of [c0, c1) between skipped columns, and
// skipped(c) for each skipped column in [c0, c1), in column order.
template <class Run, class Skipped>
void for_each_run(int64_t c0, int64_t c1, const RowSkip& skip, Run&& run, Skipped&& skipped) {
  const int32_t* s = std::lower_bound(skip.cols, skip.cols + skip.n, int32_t(c0));
  const int32_t* e = skip.cols + skip.n;
  int64_t c = c0;
  for (; s != e && *s < c1; ++s) {
    if (*s > c) run(c, int64_t(*s));
    skipped(int64_t(*s));
    c = int64_t(*s) + 1;
  }
  if (c < c1) run(c, c1);
}
template <class Run>
void for_each_run(int64_t c0, int64_t c1, const RowSkip& skip, Run&& run) {
  for_each_run(c0, c1, skip, run, [](int64_t) {});
}

class SkipLists {
 public:
  SkipLists() = default;
  SkipLists(int64_t rows, const Csr& a, const Csr& b, const char* a_name = "positives", const char* b_name = "exclude");

  const int32_t* cols(int64_t r) const { return cols_.data() + offsets_[size_t(r)]; }
  int64_t size(int64_t r) const { return offsets_[size_t(r) + 1] - offsets_[size_t(r)]; }
  RowSkip row(int64_t r) const { return {cols(r), size(r)}; }
  // The whole structure (rows + 1 offsets into all_cols), e.g. to copy to a GPU.
  const std::vector<int64_t>& offsets() const { return offsets_; }
  const std::vector<int32_t>& all_cols() const { return cols_; }

 private:
  std::vector<int64_t> offsets_{0};
  std::vector<int32_t> cols_;
};

}  // namespace fl
