// Which SIMD instruction set the CPU kernels use, chosen once per addon instance at run time,
// so one binary (the prebuild) runs on any x86-64.
#pragma once

namespace fl {

enum class Isa : int { Sse2 = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// The widest ISA this CPU and OS support.
Isa detect_isa();
// The ISA to use: detect_isa() capped by FUSEDLOSS_SIMD (sse2 | avx2 | avx512). AVX-512 is used
// only when FUSEDLOSS_SIMD=avx512 asks for it: its kernels compile and are tested wherever the
// CPU has it, but the machines this project is developed and tested on have no AVX-512, so it
// is not the default until it has run there.
Isa select_isa();

}  // namespace fl
