// Which SIMD instruction set the CPU kernels use, chosen once per addon instance at run time,
// so one binary (the prebuild) runs on any x86-64.
#pragma once

namespace fl {

enum class Isa : int { Sse2 = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// The widest ISA this CPU and OS support.
Isa detect_isa();
// The ISA to use: detect_isa(), capped by FUSEDLOSS_SIMD (sse2 | avx2 | avx512) where it asks
// for less. Every ISA's kernels are tested wherever the CPU has it (test/native runs each one).
Isa select_isa();

// The SIMD kernel table of an ISA (native/isa/kernels.h defines it; declared here so that the
// core needs none of the kernels' types).
struct CpuKernels;
const CpuKernels& cpu_kernels(Isa isa);

}  // namespace fl
