// Splitting B×N work over the thread pool in a way that does not change the arithmetic.
#pragma once
#include <algorithm>
#include <cstdint>

#include "threadpool.h"

namespace fl {

// Rows wider than this are cut into tiles of this many columns. The cut depends only on N, not
// on the thread count, and tile partials are merged in tile order, so results are bitwise the
// same on 1 or 64 threads. 32768 fp32 columns (128 KiB) stay in L2 between a kernel's passes.
constexpr int64_t kRowTile = 32768;

inline int64_t tiles_per_row(int64_t cols) { return cols <= kRowTile ? 1 : (cols + kRowTile - 1) / kRowTile; }

// Calls fn(row, tile, col_begin, col_end) for every tile of every row, on the pool. Narrow rows
// are grouped so that a task holds at least ~kRowTile elements (less scheduling overhead);
// a huge row (B = 1, N = 10^7) still spreads over every thread through its tiles.
template <class Fn>
void for_each_row_tile(ThreadPool& pool, int64_t rows, int64_t cols, Fn&& fn) {
  const int64_t tiles = tiles_per_row(cols);
  if (tiles > 1) {
    pool.parallel_for(rows * tiles, [&](int64_t t) {
      const int64_t r = t / tiles, k = t % tiles;
      const int64_t c0 = k * kRowTile;
      fn(r, k, c0, std::min(cols, c0 + kRowTile));
    });
    return;
  }
  const int64_t rows_per_task = std::max<int64_t>(1, kRowTile / std::max<int64_t>(cols, 1));
  const int64_t tasks = (rows + rows_per_task - 1) / rows_per_task;
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(rows, (t + 1) * rows_per_task);
    for (int64_t r = t * rows_per_task; r < r1; ++r) fn(r, int64_t(0), int64_t(0), cols);
  });
}

}  // namespace fl
