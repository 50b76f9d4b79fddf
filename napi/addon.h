// The addon's instance state and the GPU buffer class, shared by the op bindings in napi/.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "../native/core/context.h"
#include "../native/api/error.h"
#include "args.h"
#include "host_memory.h"
#include "job.h"
#include "ops.h"
#ifdef FUSEDLOSS_CUDA
#include "../cuda/runtime.h"
#endif

namespace fl::napi {

class Addon;

// Memory on the GPU, owned by a JS object. Freed by dispose() (or Symbol.dispose in the TS
// wrapper); the finalizer is only a backstop for buffers the user forgot.
//
// The allocation itself is shared: the DeviceBuffer holds one reference and every async job
// that uses the buffer holds another (a pin, taken on the main thread when the job is built;
// see run_job in napi/job.h). dispose() drops the buffer's reference at once (the JS object is
// disposed from then on), but the memory is freed, and `bytesInUse` lowered, only when the
// last pin goes: a job in flight never sees its memory freed under it.
class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "DeviceBuffer",
                       {InstanceMethod("dispose", &DeviceBuffer::dispose),
                        InstanceMethod("copyFromHost", &DeviceBuffer::copy_from_host),
                        InstanceMethod("copyToHost", &DeviceBuffer::copy_to_host),
                        InstanceAccessor("bytes", &DeviceBuffer::get_bytes, nullptr),
                        InstanceAccessor("disposed", &DeviceBuffer::get_disposed, nullptr)});
  }
  explicit DeviceBuffer(const Napi::CallbackInfo& info);

  size_t bytes = 0;

  void* require(const char* name) const {
    if (!memory_) fail(err::kDisposed, std::string(name) + ": the tensor was disposed");
    return memory_.get();
  }
  // A reference that keeps the memory alive after dispose() (null once disposed).
  std::shared_ptr<void> pin() const { return memory_; }

 private:
  std::shared_ptr<void> memory_;  // null once disposed
  Napi::Value dispose(const Napi::CallbackInfo& info) {
    memory_.reset();
    return info.Env().Undefined();
  }
  Napi::Value get_bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes)); }
  Napi::Value get_disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !memory_); }
  Napi::Value copy_from_host(const Napi::CallbackInfo& info);
  Napi::Value copy_to_host(const Napi::CallbackInfo& info);
};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    keep_large_frees_warm();
    Napi::Function buffer_class = DeviceBuffer::define(env);
    device_buffer_ctor = Napi::Persistent(buffer_class);
    DefineAddon(exports, {
                             InstanceMethod("backendInfo", &Addon::backend_info),
                             InstanceMethod("deviceAlloc", &Addon::device_alloc),
                             InstanceMethod("memcpy", &Addon::memcpy_),
                             InstanceMethod("hostAlloc", &Addon::host_alloc),
                             InstanceMethod("externalMemory", &Addon::external_memory),
                         });
    define_ops(env, exports);
  }

  Context ctx;
  Napi::FunctionReference device_buffer_ctor;
  std::shared_ptr<std::atomic<int64_t>> device_bytes = std::make_shared<std::atomic<int64_t>>(0);
  std::shared_ptr<HostMemory> host_memory = std::make_shared<HostMemory>();
  std::shared_ptr<InFlight> in_flight = std::make_shared<InFlight>();
  // While run_job builds a Job (main thread, no JS runs): the Keep its arguments go into, and
  // whether the call is async (its host memory staged). Null otherwise.
  Keep* call = nullptr;
  bool call_async = false;

  // The device pointer behind a DeviceBuffer argument, or nullptr when `v` is not one.
  DeviceBuffer* as_device(const Napi::Value& v) {
    if (!v.IsObject() || v.IsTypedArray()) return nullptr;
    Napi::Object o = v.As<Napi::Object>();
    if (!o.InstanceOf(device_buffer_ctor.Value())) return nullptr;
    return DeviceBuffer::Unwrap(o);
  }
  // For run_job: the memory behind a DeviceBuffer argument, kept alive while a job runs.
  std::shared_ptr<void> pin(const Napi::Value& v) {
    DeviceBuffer* d = as_device(v);
    return d ? d->pin() : nullptr;
  }

 private:
  Napi::Value backend_info(const Napi::CallbackInfo& info);
  Napi::Value device_alloc(const Napi::CallbackInfo& info);
  Napi::Value memcpy_(const Napi::CallbackInfo& info);
  Napi::Value host_alloc(const Napi::CallbackInfo& info);
  Napi::Value external_memory(const Napi::CallbackInfo& info);
};

// The memory an op uses for host array `v` (viewed as `h`), recorded in the call's Keep. A sync
// call uses the array itself. An async call uses memory that stays valid until its job is
// done whatever JS does meanwhile (napi/job.h): the array itself when the addon lent it (the
// job holds its block), else a block staged for it: an input copied now, an output copied
// into the array when the job completes.
inline void* hold_host(Addon& addon, const Napi::Value& v, const HostArray& h, const std::string& name, Access access) {
  Keep* call = addon.call;
  if (!call || h.bytes == 0) return h.data;
  const char* p = static_cast<const char*>(h.data);
  call->spans.push_back({p, p + h.bytes, access, name});
  if (!addon.call_async) return h.data;
  if (HostMemory::Block lent = addon.host_memory->find(h.buffer)) {
    call->pins.push_back(std::move(lent));
    return h.data;
  }
  HostMemory::Block staged = addon.host_memory->acquire(h.bytes);
  // A plain memcpy: the pool may be busy with other jobs, and the main thread must not wait for them.
  if (access == Access::Read)
    std::memcpy(staged.get(), h.data, h.bytes);
  else
    call->copy_backs.push_back({Napi::Persistent(v), staged, h.bytes});
  call->pins.push_back(staged);
  return staged.get();
}

// A tensor argument: a host TypedArray or a DeviceBuffer, checked against the element count.
struct Operand {
  void* ptr = nullptr;
  bool device = false;
};

inline Operand operand(Addon& addon, const Napi::Value& v, const char* name, DType dtype, int64_t count, Access access) {
  if (DeviceBuffer* d = addon.as_device(v)) {
    if (d->bytes != size_t(count * dtype_size(dtype)))
      fail(err::kShape, std::string(name) + ": expected a device buffer of " + std::to_string(count * dtype_size(dtype)) +
                            " bytes, received " + std::to_string(d->bytes));
    void* ptr = d->require(name);
    if (addon.call) addon.call->spans.push_back({static_cast<const char*>(ptr), static_cast<const char*>(ptr) + d->bytes, access, name});
    return {ptr, true};
  }
  const HostArray h = host_array(v, name, array_type_for(dtype));
  if (int64_t(h.length) != count)
    fail(err::kShape, std::string(name) + ": expected " + std::to_string(count) + " elements, received " + std::to_string(h.length));
  return {hold_host(addon, v, h, name, access), false};
}

// An optional host array argument (undefined or null → nullptr); a const T is read, else written.
template <class T>
T* optional_host(Addon& addon, const Napi::Value& v, const char* name, napi_typedarray_type type, int64_t count) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  const HostArray h = host_array(v, name, type);
  if (int64_t(h.length) != count)
    fail(err::kShape, std::string(name) + ": expected " + std::to_string(count) + " elements, received " + std::to_string(h.length));
  return static_cast<T*>(hold_host(addon, v, h, name, std::is_const_v<T> ? Access::Read : Access::Write));
}

}  // namespace fl::napi
