// A multi-threaded memcpy: the bandwidth floor the benchmarks compare every kernel against is
// what this achieves on the same pool (one read + one write per byte).
#pragma once
#include <cstddef>

#include "../core/context.h"

namespace fl {

void parallel_copy(Context& ctx, void* dst, const void* src, size_t bytes);

}  // namespace fl
