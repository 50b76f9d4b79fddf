// Everything the CPU kernels need at run time. The N-API layer keeps one Context per addon
// instance (per worker_thread); there are no globals. The kernel table's own types stay in
// native/isa/kernels.h, which only the ops that call into it include.
#pragma once
#include "cpu_features.h"
#include "threadpool.h"

namespace fl {

struct Context {
  Isa isa;
  const CpuKernels* kernels;
  ThreadPool pool;

  Context() : Context(select_isa(), default_thread_count()) {}
  Context(Isa isa_, int threads) : isa(isa_), kernels(&cpu_kernels(isa_)), pool(threads) {}
};

}  // namespace fl
