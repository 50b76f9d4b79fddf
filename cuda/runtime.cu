#include <cstdlib>

#include "check.cuh"
#include "runtime.h"

namespace fl::cuda {

int selected_device() {
  const char* env = std::getenv("FUSEDLOSS_CUDA_DEVICE");
  if (!env || !*env) return 0;
  int count = 0;
  FL_CUDA_CHECK(cudaGetDeviceCount(&count));
  char* end = nullptr;
  const long d = std::strtol(env, &end, 10);
  if (*end != '\0' || d < 0 || d >= count)
    fail(err::kArg, std::string("FUSEDLOSS_CUDA_DEVICE: expected a device index from 0 to ") + std::to_string(count - 1) +
                        ", received '" + env + "'");
  return int(d);
}

int checked_device(int device) {
  int count = 0;
  FL_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    fail(err::kArg, "toDevice(): opts.device: expected a device index from 0 to " + std::to_string(count - 1) + ", received " +
                        std::to_string(device));
  return device;
}

DeviceScope::DeviceScope(int device) {
  FL_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ == device) return;
  FL_CUDA_CHECK(cudaSetDevice(device));
}
DeviceScope::~DeviceScope() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
  cudaGetLastError();
}

int device_of(const void* device_ptr) {
  cudaPointerAttributes attr{};
  FL_CUDA_CHECK(cudaPointerGetAttributes(&attr, device_ptr));
  return attr.device;
}

Probe probe() {
  Probe p{false, "", 0, 0, 0, {}};
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
  p.selected = selected_device();
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    FL_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));  // no context, no change of device
    p.devices.push_back(DeviceInfo{i, prop.name, prop.major, prop.minor, prop.totalGlobalMem, -1.0, prop.multiProcessorCount});
  }
  // Free memory needs a context: only on the device that is used anyway.
  const DeviceScope on(p.selected);
  size_t free_b = 0, total_b = 0;
  FL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  p.devices[size_t(p.selected)].free_bytes = double(free_b);
  p.available = true;
  return p;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  FL_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  return p;
}

void device_free(void* p) {
  if (p) FL_CUDA_CHECK(cudaFree(p));
}

void device_free_quiet(void* p) noexcept {
  if (p && cudaFree(p) != cudaSuccess) cudaGetLastError();  // the op that faulted has reported it
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
void synchronize() { FL_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread)); }

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda(err, what);
}

}  // namespace fl::cuda
