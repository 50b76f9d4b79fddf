#!/usr/bin/env sh
# Run by ctest: the per-ISA objects (native/isa/isa_*.cpp) may export only their kernel table.
# Any other external or weak symbol there (an inline function compiled with AVX2/AVX-512
# enabled) could be merged by the linker into the baseline code path and crash CPUs without
# those instructions. See native/core/hd.h and native/isa/isa_body.inl.
# AddressSanitizer builds add one `__odr_asan.<global>` indicator per global (here the kernel
# table), and, where a kernel keeps stack arrays across a call it did not inline, a cleanup that
# unpoisons them on unwinding, whose frame names libstdc++'s personality routine through the
# weak pointer `DW.ref.__gxx_personality_v0`. Both are data only, never code (the pointer is the
# same in every object), so they are allowed.
set -eu
lib="$1"
bad=$(nm -C --defined-only "$lib" 2>/dev/null | awk '
  /^isa_.*\.o:$/ { inisa = 1; next }
  /\.o:$/ { inisa = 0; next }
  inisa && NF >= 3 && $2 ~ /^[TWVDBRu]$/ { $1 = ""; print }' | grep -v -E '(fl::isa_(sse2|avx2|avx512)::|fl::kernels_(sse2|avx2|avx512)$|__odr_asan\._ZN2fl1[24]kernels_(sse2|avx2|avx512)E$|^ V DW\.ref\.__gxx_personality_v0$)' || true)
if [ -n "$bad" ]; then
  echo "ISA objects export symbols outside their namespaces:"
  echo "$bad"
  exit 1
fi
echo "ok: ISA objects export only their own namespaces"
