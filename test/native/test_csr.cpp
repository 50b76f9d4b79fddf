// CSR checks and skip lists (native/ops/csr.h): the second line of defence behind lib/csr.ts,
// and the per-row sorted union of positives and exclusions the softmax-row engine skips.
#include <string>
#include <vector>

#include "check.h"
#include "native/api/error.h"
#include "native/ops/csr.h"

using namespace fl;

static std::string csr_error(const Csr& c, int64_t rows, int64_t cols, int64_t nnz) {
  try {
    check_csr(c, rows, cols, nnz, "positives");
  } catch (const Error& e) {
    return e.code + " " + e.what();
  }
  return "";
}

FL_TEST(check_csr_accepts_valid_and_names_the_bad_entry) {
  const std::vector<int32_t> ptr{0, 2, 2, 5}, cols{4, 1, 0, 3, 2};
  const std::vector<float> w{1, 0.5f, 0, 2, 3};
  FL_CHECK(csr_error({ptr.data(), cols.data(), w.data()}, 3, 5, 5).empty(), "valid unsorted CSR rejected");
  const std::vector<int32_t> bad_cols{4, 1, 0, 5, 2};
  FL_CHECK(csr_error({ptr.data(), bad_cols.data(), nullptr}, 3, 5, 5).find("ERR_CSR positives.cols[3]") == 0, "column out of range");
  const std::vector<int32_t> dup{4, 1, 2, 3, 2};
  FL_CHECK(csr_error({ptr.data(), dup.data(), nullptr}, 3, 5, 5).find("row 2") != std::string::npos, "duplicate");
  const std::vector<int32_t> dec{0, 2, 1, 5};
  FL_CHECK(csr_error({dec.data(), cols.data(), nullptr}, 3, 5, 5).find("rowPtr[2]") != std::string::npos, "decreasing rowPtr");
  FL_CHECK(csr_error({ptr.data(), cols.data(), nullptr}, 3, 5, 4).find("rowPtr[3]") != std::string::npos, "last != nnz");
  const std::vector<float> nan_w{1, 1, NAN, 1, 1};
  FL_CHECK(csr_error({ptr.data(), cols.data(), nan_w.data()}, 3, 5, 5).find("weights[2]") != std::string::npos, "NaN weight");
}

FL_TEST(skip_lists_are_the_sorted_union_and_reject_overlap) {
  const std::vector<int32_t> pp{0, 2, 2, 3}, pc{7, 1, 4};
  const std::vector<int32_t> xp{0, 1, 3, 3}, xc{3, 9, 0};
  const SkipLists s(3, Csr{pp.data(), pc.data(), nullptr}, Csr{xp.data(), xc.data(), nullptr});
  const std::vector<std::vector<int32_t>> want{{1, 3, 7}, {0, 9}, {4}};
  for (int64_t r = 0; r < 3; ++r) {
    FL_CHECK(s.size(r) == int64_t(want[size_t(r)].size()), "row %d size", int(r));
    for (int64_t k = 0; k < s.size(r); ++k) FL_CHECK(s.cols(r)[k] == want[size_t(r)][size_t(k)], "row %d entry %d", int(r), int(k));
  }
  FL_CHECK(pc[0] == 7 && pc[1] == 1, "the caller's columns were reordered");
  const SkipLists only(3, Csr{pp.data(), pc.data(), nullptr}, Csr{});
  FL_CHECK(only.size(0) == 2 && only.size(1) == 0 && only.cols(0)[0] == 1, "positives only");
  const std::vector<int32_t> overlap{1, 9, 0};
  bool threw = false;
  try {
    SkipLists(3, Csr{pp.data(), pc.data(), nullptr}, Csr{xp.data(), overlap.data(), nullptr});
  } catch (const Error& e) {
    threw = e.code == "ERR_CSR" && std::string(e.what()).find("column 1") != std::string::npos;
  }
  FL_CHECK(threw, "an exclusion that is also a positive must throw ERR_CSR");
}

FL_TEST_MAIN()
