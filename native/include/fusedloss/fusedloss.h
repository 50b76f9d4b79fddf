// fusedloss: the C++ API of the native core, for programs that link the CMake target
// fusedloss::core (find_package(fusedloss) after `cmake --install`, or add_subdirectory).
//
//   fl::Context ctx;                    // the ISA this CPU runs best, one thread per core
//   fl::CrossEntropyArgs args{};        // the arguments of one call (native/api/args.h)
//   args.scores = ...;                  // every loss's common part, fl::LossArgs, then its own
//   const fl::LossResult r = fl::cross_entropy(ctx, args);
//
// The API layer (native/api/: the argument structs, DType, Reduction, Csr, LossResult, fl::Error
// and its err:: codes) is dependency-free; args.h declares each op's entry point next to its
// argument struct, taking a Context (the thread pool and the kernels of one ISA). Every op fills the caller's buffers (gradient, row
// losses) and returns the reduced loss and, when asked (grad_scale), dL/dscale; bad input throws
// fl::Error, whose `code` is the ERR_ code the JavaScript API reports. The math of every loss:
// docs/MATH.md. The target carries the compile flags the results depend on (-ffp-contract=off:
// the inline row math must not be contracted into FMAs where it rounds on purpose), so a program
// built against it computes bitwise what the addon does on the same ISA and thread count.
#pragma once

#include "native/api/args.h"
#include "native/api/error.h"
#include "native/api/types.h"
#include "native/core/context.h"
