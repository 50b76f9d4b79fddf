// Error checking for CUDA calls inside the .cu files: every call goes through FL_CUDA_CHECK.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "../native/api/error.h"

namespace fl::cuda {

inline void throw_cuda(cudaError_t err, const char* what) {
  cudaGetLastError();  // clear the sticky-free error state so later calls are not poisoned
  const char* code = err == cudaErrorMemoryAllocation ? "ERR_CUDA_OOM" : "ERR_CUDA";
  fail(code, std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

}  // namespace fl::cuda

#define FL_CUDA_CHECK(call)                                           \
  do {                                                                \
    const cudaError_t fl_err_ = (call);                               \
    if (fl_err_ != cudaSuccess) ::fl::cuda::throw_cuda(fl_err_, #call); \
  } while (0)
