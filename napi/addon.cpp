// The N-API surface of fusedloss: thin. Arguments arrive validated and normalised by the
// TypeScript layer (lib/); the op table (napi/ops.cpp) turns them into the structs of
// native/api/, runs the op (napi/job.h), and maps fl::Error to JS errors with a stable `code`.
// This file holds the rest: device buffers, host memory, the bandwidth probe, backendInfo.
//
// All state lives in the Addon instance (one per environment, so one per worker_thread):
// the CPU thread pool and the device-memory counter. There are no statics.
#include <napi.h>

#include <string>

#include "addon.h"
#include "../native/ops/copy.h"
#include "args.h"
#include "job.h"
#include "ops.h"
#ifdef FUSEDLOSS_CUDA
#include "../cuda/runtime.h"
#endif

namespace fl::napi {

DeviceBuffer::DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
#ifdef FUSEDLOSS_CUDA
  Addon* addon = info.Env().GetInstanceData<Addon>();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw make_error(info.Env(), "ERR_TYPE", "DeviceBuffer: expected a byte count");
  const bool given = info.Length() > 1 && !info[1].IsUndefined();
  if (given && !info[1].IsNumber()) throw make_error(info.Env(), "ERR_TYPE", "DeviceBuffer: expected a device index");
  const double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 0 && requested <= 9007199254740991.0))
    throw make_error(info.Env(), "ERR_ARG", "DeviceBuffer: expected a byte count >= 0, received " + std::to_string(requested));
  bytes = size_t(requested);
  void* ptr = nullptr;
  try {
    // On the device asked for, else the selected one (FUSEDLOSS_CUDA_DEVICE, else 0); ops run on
    // their scores' device.
    const int device = given ? cuda::checked_device(info[1].As<Napi::Number>().Int32Value()) : cuda::selected_device();
    const cuda::DeviceScope on(device);
    ptr = cuda::device_alloc(bytes);  // ERR_CUDA_OOM when the device is full
  } catch (const fl::Error& e) {
    throw make_error(info.Env(), e.code, e.what());
  }
  // The deleter owns a reference to the addon's counter, so the last pin may drop after the
  // addon instance (and on any thread: cudaFree and the atomic are thread-safe).
  std::shared_ptr<std::atomic<int64_t>> in_use = addon->device_bytes;
  in_use->fetch_add(int64_t(bytes));
  memory_ = std::shared_ptr<void>(ptr, [in_use, n = bytes](void* p) {
    cuda::device_free_quiet(p);  // a finalizer or the last job's thread: nowhere to throw to
    in_use->fetch_sub(int64_t(n));
  });
#else
  throw make_error(info.Env(), "ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
}

// copyFromHost(typedArray) / copyToHost(typedArray): whole-buffer copies, sizes must match.
static HostArray copy_arg(const Napi::CallbackInfo& info, size_t bytes, const char* what) {
  if (info.Length() != 1 || !info[0].IsTypedArray()) fail(err::kType, std::string(what) + ": expected a TypedArray");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  HostArray h = host_array(info[0], what, ta.TypedArrayType());
  if (ta.ByteLength() != bytes)
    fail(err::kShape, std::string(what) + ": expected " + std::to_string(bytes) + " bytes, received " +
                          std::to_string(ta.ByteLength()));
  return h;
}

Napi::Value DeviceBuffer::copy_from_host(const Napi::CallbackInfo& info) {
  try {
    [[maybe_unused]] HostArray h = copy_arg(info, bytes, "copyFromHost");
#ifdef FUSEDLOSS_CUDA
    cuda::copy_to_device(require("copyFromHost"), h.data, bytes);
#endif
  } catch (const fl::Error& e) {
    throw make_error(info.Env(), e.code, e.what());
  }
  return info.Env().Undefined();
}

Napi::Value DeviceBuffer::copy_to_host(const Napi::CallbackInfo& info) {
  try {
    [[maybe_unused]] HostArray h = copy_arg(info, bytes, "copyToHost");
#ifdef FUSEDLOSS_CUDA
    cuda::copy_to_host(h.data, require("copyToHost"), bytes);
#endif
  } catch (const fl::Error& e) {
    throw make_error(info.Env(), e.code, e.what());
  }
  return info.Env().Undefined();
}

// hostAlloc(bytes): an ArrayBuffer of `bytes` (uninitialised) over memory the addon owns
// (napi/host_memory.h): what the TypeScript layer allocates async ops' outputs from.
Napi::Value Addon::host_alloc(const Napi::CallbackInfo& info) {
  const double v = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(v >= 1 && v <= 9007199254740991.0 && v == double(size_t(v))))
    throw make_error(info.Env(), "ERR_ARG", "hostAlloc: expected a byte count >= 1");
  host_memory->reclaim();  // first, so that the blocks of buffers V8 collected can serve this one
  return host_memory->lend(info.Env(), host_memory->acquire(size_t(v)), size_t(v));
}

// externalMemory(): V8's external-memory figure, in bytes (what paces its GCs; the figure
// napi_adjust_external_memory moves). test/default-call.test.ts checks that a lent output is
// counted once.
Napi::Value Addon::external_memory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

Napi::Value Addon::device_alloc(const Napi::CallbackInfo& info) {
  return device_buffer_ctor.New({info[0], info[1]});
}

// memcpy(dst, src): copies src's bytes into dst on the thread pool (host TypedArrays), or on the
// GPU (two DeviceBuffers). Used by the benchmarks to measure the copy-bandwidth floor.
Napi::Value Addon::memcpy_(const Napi::CallbackInfo& info) {
  try {
    DeviceBuffer* dd = as_device(info[0]);
    DeviceBuffer* sd = as_device(info[1]);
    if (dd && sd) {
      if (dd->bytes != sd->bytes) fail(err::kShape, "memcpy: buffers differ in size");
#ifdef FUSEDLOSS_CUDA
      cuda::copy_on_device(dd->require("dst"), sd->require("src"), dd->bytes);
      cuda::synchronize();
#endif
      return info.Env().Undefined();
    }
    if (!info[0].IsTypedArray() || !info[1].IsTypedArray()) fail(err::kType, "memcpy: expected two TypedArrays or two DeviceBuffers");
    Napi::TypedArray d = info[0].As<Napi::TypedArray>(), s = info[1].As<Napi::TypedArray>();
    HostArray hd = host_array(d, "dst", d.TypedArrayType()), hs = host_array(s, "src", s.TypedArrayType());
    if (d.ByteLength() != s.ByteLength()) fail(err::kShape, "memcpy: arrays differ in size");
    parallel_copy(ctx, hd.data, hs.data, d.ByteLength());
  } catch (const fl::Error& e) {
    throw make_error(info.Env(), e.code, e.what());
  }
  return info.Env().Undefined();
}

Napi::Value Addon::backend_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("threads", ctx.pool.threads());
  cpu.Set("simd", isa_name(ctx.isa));
  cpu.Set("simdDetected", isa_name(detect_isa()));
  out.Set("cpu", cpu);
  Napi::Object gpu = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
#ifdef FUSEDLOSS_CUDA
  gpu.Set("compiled", true);
  try {
    const cuda::Probe p = cuda::probe();
    gpu.Set("available", p.available);
    if (!p.available) gpu.Set("reason", p.reason);
    gpu.Set("runtimeVersion", p.runtime_version);
    gpu.Set("driverVersion", p.driver_version);
    if (p.available) gpu.Set("selectedDevice", p.selected);
    for (size_t i = 0; i < p.devices.size(); ++i) {
      const cuda::DeviceInfo& d = p.devices[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", d.index);
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      o.Set("totalMemory", double(d.total_bytes));
      if (d.free_bytes >= 0) o.Set("freeMemory", d.free_bytes);  // measured on the selected device only
      o.Set("multiprocessors", d.multiprocessors);
      devices.Set(uint32_t(i), o);
    }
  } catch (const fl::Error& e) {
    gpu.Set("available", false);
    gpu.Set("reason", e.what());
  }
#else
  gpu.Set("compiled", false);
  gpu.Set("available", false);
  gpu.Set("reason", "this is the CPU addon, built without CUDA");
#endif
  gpu.Set("devices", devices);
  gpu.Set("bytesInUse", double(device_bytes->load()));
  out.Set("cuda", gpu);
  return out;
}

}  // namespace fl::napi

using FusedLossAddon = fl::napi::Addon;
NODE_API_ADDON(FusedLossAddon)
