// The CUDA runtime as the rest of the addon sees it: plain C++, no CUDA headers, every call
// checked. Failures throw fl::Error with code ERR_CUDA (or ERR_CUDA_OOM for allocations), so
// they surface in JS as thrown errors and never abort the process.
//
// Streams: the kernels are built with --default-stream per-thread, so each host thread (the
// main thread, each libuv worker running an async job) has its own stream: two async jobs run
// concurrently on the GPU, and a caller's work on other streams overlaps them. Every op ends
// with a checked synchronising call on its stream, so a fault is the error of the call that
// caused it.
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
  size_t total_bytes;
  double free_bytes;  // measured on the selected device only (−1 elsewhere: measuring needs a context there)
  int multiprocessors;
};

struct Probe {
  bool available;        // a driver and at least one device
  std::string reason;    // why not, when unavailable ("no CUDA-capable device", ...)
  int runtime_version;   // e.g. 13000
  int driver_version;    // 0 without a driver
  int selected;          // the device new buffers go to (FUSEDLOSS_CUDA_DEVICE, else 0)
  std::vector<DeviceInfo> devices;
};

// Reads the devices' properties without creating a context on any device but the selected one
// and without changing the calling thread's current device.
Probe probe();

// The device new buffers go to: FUSEDLOSS_CUDA_DEVICE (an index below the device count), else 0.
// Throws ERR_ARG for a value that names no device.
int selected_device();
// `device` when it names a device here; throws ERR_ARG otherwise.
int checked_device(int device);

// Makes `device` the calling thread's current device for its lifetime, and restores the one
// before on every exit path.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

// The device that holds a device pointer (ops run on the device of their scores).
int device_of(const void* device_ptr);

void* device_alloc(size_t bytes);     // on the current device; ERR_CUDA_OOM when it is full
void device_free(void* p);            // checked: throws ERR_CUDA
void device_free_quiet(void* p) noexcept;  // for destructors and finalizers: frees, clears the error state
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void synchronize();  // the calling thread's stream, checked

// Throws ERR_CUDA with `what` and the CUDA error text when the last launch failed.
void check_launch(const char* what);

}  // namespace fl::cuda
