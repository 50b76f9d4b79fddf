// The one exception type of fusedloss and its codes. The N-API layer turns it into a JS error
// whose `code` is the same string (lib/errors.ts maps codes to FusedLossError subclasses).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fl {

namespace err {
constexpr const char* kArg = "ERR_ARG";                   // an option out of its domain
constexpr const char* kType = "ERR_TYPE";                 // not the kind of value expected
constexpr const char* kDType = "ERR_DTYPE";               // the wrong element type
constexpr const char* kShape = "ERR_SHAPE";               // lengths and shapes disagree
constexpr const char* kCsr = "ERR_CSR";                   // a malformed or conflicting CSR
constexpr const char* kLabelRange = "ERR_LABEL_RANGE";    // a label outside [0, cols)
constexpr const char* kKRange = "ERR_K_RANGE";            // soft top-k: k outside (0, N_i)
constexpr const char* kNonFinite = "ERR_NON_FINITE";      // NaN or +inf in the scores
constexpr const char* kDevice = "ERR_DEVICE";             // operands on different devices
constexpr const char* kDetached = "ERR_DETACHED";         // a JS ArrayBuffer was detached
constexpr const char* kDisposed = "ERR_DISPOSED";         // a device tensor was disposed
constexpr const char* kBusy = "ERR_BUSY";                 // a buffer an async call is writing
constexpr const char* kCuda = "ERR_CUDA";                 // a CUDA call failed
constexpr const char* kCudaOom = "ERR_CUDA_OOM";          // the device is out of memory
constexpr const char* kCudaUnavailable = "ERR_CUDA_UNAVAILABLE";
constexpr const char* kInternal = "ERR_INTERNAL";
}  // namespace err

struct Error : std::runtime_error {
  std::string code;  // one of err::k*
  Error(std::string c, const std::string& message) : std::runtime_error(message), code(std::move(c)) {}
};

[[noreturn]] inline void fail(const char* code, const std::string& message) { throw Error(code, message); }

// NaN or +inf at [row, col] of the scores. `name` is the argument as the TS caller passed it
// ("logits" for softmaxCrossEntropy, "scores" elsewhere): CPU and CUDA say the same.
[[noreturn]] inline void fail_non_finite(const char* name, int64_t row, int64_t col) {
  fail(err::kNonFinite, std::string(name) + ": expected finite values or -Infinity, received NaN or +Infinity at [" +
                            std::to_string(row) + ", " + std::to_string(col) + "]");
}

// NaN or +inf at [row, col] of scores formed as a product of two inputs (the forms from
// embeddings, linearCrossEntropy): `scores` names the product, `a` and `b` the inputs whose rows
// `row` and `col` made the entry.
[[noreturn]] inline void fail_non_finite_product(const std::string& scores, const char* a, const char* b, int64_t row, int64_t col) {
  fail(err::kNonFinite, scores + ": expected finite values, received NaN or +Infinity at [" + std::to_string(row) + ", " + std::to_string(col) +
                            "] (check " + a + " row " + std::to_string(row) + " and " + b + " row " + std::to_string(col) + ")");
}

}  // namespace fl
