#include "check.cuh"
#include "runtime.h"

namespace fl::cuda {

Probe probe() {
  Probe p{false, "", 0, 0, {}};
  cudaRuntimeGetVersion(&p.runtime_version);
  cudaDriverGetVersion(&p.driver_version);  // leaves 0 when no driver is installed
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    p.reason = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    return p;
  }
  if (count == 0) {
    p.reason = "no CUDA-capable device";
    return p;
  }
  int current = 0;
  FL_CUDA_CHECK(cudaGetDevice(&current));
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    FL_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    DeviceInfo d{i, prop.name, prop.major, prop.minor, prop.totalGlobalMem, 0, prop.multiProcessorCount};
    FL_CUDA_CHECK(cudaSetDevice(i));
    size_t free_b = 0, total_b = 0;
    FL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    d.free_bytes = free_b;
    p.devices.push_back(d);
  }
  FL_CUDA_CHECK(cudaSetDevice(current));
  p.available = true;
  return p;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  FL_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  FL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  FL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void copy_on_device(void* dst, const void* src, size_t bytes) {
  FL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
void synchronize() { FL_CUDA_CHECK(cudaDeviceSynchronize()); }

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda(err, what);
}

}  // namespace fl::cuda
