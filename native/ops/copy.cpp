#include "copy.h"

#include <cstdint>
#include <cstring>

namespace fl {

void parallel_copy(Context& ctx, void* dst, const void* src, size_t bytes) {
  constexpr size_t kChunk = size_t(1) << 20;  // 1 MiB: large enough to stream, small enough to balance
  const int64_t chunks = int64_t((bytes + kChunk - 1) / kChunk);
  ctx.pool.parallel_for(chunks, [&](int64_t c) {
    const size_t off = size_t(c) * kChunk;
    const size_t n = bytes - off < kChunk ? bytes - off : kChunk;
    std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, n);
  });
}

}  // namespace fl
