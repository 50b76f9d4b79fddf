// The one exception type of the native core. The N-API layer turns it into a JS error whose
// `code` is stable (the TypeScript layer maps codes to FusedLossError subclasses).
#pragma once
#include <stdexcept>
#include <string>

namespace fl {

struct Error : std::runtime_error {
  std::string code;  // "ERR_SHAPE", "ERR_NON_FINITE", "ERR_CUDA", ...
  Error(std::string c, const std::string& message) : std::runtime_error(message), code(std::move(c)) {}
};

[[noreturn]] inline void fail(const char* code, const std::string& message) { throw Error(code, message); }

}  // namespace fl
