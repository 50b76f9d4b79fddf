// The CUDA runtime as the rest of the addon sees it: plain C++, no CUDA headers, every call
// checked. Failures throw fl::Error with code ERR_CUDA (or ERR_CUDA_OOM for allocations), so
// they surface in JS as thrown errors and never abort the process.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fl::cuda {

struct DeviceInfo {
  int index;
  std::string name;
  int major, minor;  // compute capability
  size_t total_bytes, free_bytes;
  int multiprocessors;
};

struct Probe {
  bool available;        // a driver and at least one device
  std::string reason;    // why not, when unavailable ("no CUDA-capable device", ...)
  int runtime_version;   // e.g. 13000
  int driver_version;    // 0 without a driver
  std::vector<DeviceInfo> devices;
};

Probe probe();

void* device_alloc(size_t bytes);  // ERR_CUDA_OOM when the device is full
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void synchronize();

// Throws ERR_CUDA with `what` and the CUDA error text when the last launch failed.
void check_launch(const char* what);

}  // namespace fl::cuda
