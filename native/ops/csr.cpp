#include "csr.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "../api/error.h"

namespace fl {

namespace {

[[noreturn]] void csr_error(const std::string& what, const std::string& expected, int64_t received) {
  fail(err::kCsr, what + ": expected " + expected + ", received " + std::to_string(received));
}

}  // namespace

void check_csr(const Csr& c, int64_t rows, int64_t cols, int64_t nnz, const char* name) {
  if (!c) return;
  const std::string n(name);
  if (c.row_ptr[0] != 0) csr_error(n + ".rowPtr[0]", "0", c.row_ptr[0]);
  for (int64_t r = 0; r < rows; ++r)
    if (c.row_ptr[r + 1] < c.row_ptr[r]) csr_error(n + ".rowPtr[" + std::to_string(r + 1) + "]", "a non-decreasing rowPtr", c.row_ptr[r + 1]);
  if (c.row_ptr[rows] != nnz) csr_error(n + ".rowPtr[" + std::to_string(rows) + "]", "cols.length = " + std::to_string(nnz), c.row_ptr[rows]);
  for (int64_t e = 0; e < nnz; ++e)
    if (c.cols[e] < 0 || c.cols[e] >= cols)
      csr_error(n + ".cols[" + std::to_string(e) + "]", "a column in [0, " + std::to_string(cols) + ")", c.cols[e]);
  if (c.weights)
    for (int64_t e = 0; e < nnz; ++e)
      if (!(c.weights[e] >= 0 && std::isfinite(c.weights[e])))
        fail(err::kCsr, n + ".weights[" + std::to_string(e) + "]: expected a finite weight >= 0");
  std::vector<int32_t> row;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* b = c.cols + c.row_ptr[r];
    const int32_t* e = c.cols + c.row_ptr[r + 1];
    if (std::adjacent_find(b, e, [](int32_t x, int32_t y) { return y <= x; }) == e) continue;  // strictly increasing
    row.assign(b, e);
    std::sort(row.begin(), row.end());
    const auto dup = std::adjacent_find(row.begin(), row.end());
    if (dup != row.end()) csr_error(n + ".cols (row " + std::to_string(r) + ")", "no column twice in a row", *dup);
  }
}

SkipLists::SkipLists(int64_t rows, const Csr& a, const Csr& b, const char* a_name, const char* b_name) {
  offsets_.assign(size_t(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r) offsets_[size_t(r) + 1] = offsets_[size_t(r)] + a.size(r) + b.size(r);
  cols_.resize(size_t(offsets_[size_t(rows)]));
  for (int64_t r = 0; r < rows; ++r) {
    int32_t* out = cols_.data() + offsets_[size_t(r)];
    int32_t* o = std::copy(a.cols + a.begin(r), a.cols + a.end(r), out);
    int32_t* last = std::copy(b.cols + b.begin(r), b.cols + b.end(r), o);
    std::sort(out, last);
    const int32_t* dup = std::adjacent_find(out, last);
    if (dup != last)
      fail(err::kCsr, std::string(b_name) + " (row " + std::to_string(r) + "): expected no column that is also in " + a_name +
                          ", received column " + std::to_string(*dup));
  }
}

}  // namespace fl
