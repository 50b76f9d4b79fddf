// One pattern for every op, sync or async.
//
// A Job is built on the main thread from the call's arguments: it validates them and takes raw
// pointers into the buffers it will touch. execute() does the work and may run on a libuv
// worker thread: it must not touch any napi value. result() runs on the main thread again and
// builds the JS return value. Errors thrown as fl::Error become JS errors with the same `code`.
//
// Lifetimes on the async path (run_job below guarantees them for every op, whatever the Job
// itself keeps):
// - Before the work is queued, on the main thread, every argument object of the call is held
//   by a Napi::Reference (so no input or output TypedArray or DeviceBuffer can be collected
//   while the work runs) and every DeviceBuffer argument is pinned (DeviceBuffer::pin), so a
//   dispose() during the run defers the free until the job is done.
// - Outputs are created on the main thread: the TypeScript layer allocates every output array
//   (and device tensor) before the call and passes it in; execute() only writes into memory
//   that already exists, and result() (main thread) builds the small JS result object.
// - A host ArrayBuffer that is detached (transferred to another thread) while the work runs
//   makes the promise reject with ERR_DETACHED: its contents are not the result any more.
//   Transferring a buffer that a pending call uses is a caller error, like reusing it: V8
//   keeps the memory alive for the new owner, but the job may still be writing into it.
// - Sync calls (async = false) run execute() on the calling thread and block its event loop
//   for the whole call: use the ...Async twins to keep a server responsive.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../native/core/error.h"

namespace fl::napi {

inline Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// Holds a job's argument objects alive, and its device memory pinned, for the job's life.
struct Keep {
  std::vector<Napi::Reference<Napi::Value>> refs;
  std::vector<Napi::Reference<Napi::Value>> host_arrays;  // checked for detachment after the run
  std::vector<std::shared_ptr<void>> pins;                // DeviceBuffer memory
  void operator()(const Napi::Value& v) {
    if (!v.IsObject()) return;  // references to primitives are not allowed before N-API 10
    if (v.IsTypedArray())
      host_arrays.push_back(Napi::Persistent(v));
    else
      refs.push_back(Napi::Persistent(v));
  }
  // True when a kept host array's buffer was detached after the job was built.
  bool any_detached() const {
    for (const auto& r : host_arrays) {
      const Napi::Value v = r.Value();
      bool detached = false;
      napi_is_detached_arraybuffer(v.Env(), v.As<Napi::TypedArray>().ArrayBuffer(), &detached);
      if (detached) return true;
    }
    return false;
  }
};

template <class Job>
class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, std::unique_ptr<Job> job, Keep keep)
      : Napi::AsyncWorker(env, "fusedloss"),
        job_(std::move(job)),
        keep_(std::move(keep)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      job_->execute();
    } catch (const fl::Error& e) {
      fail_with(e.code, e.what());
    } catch (const std::exception& e) {
      fail_with("ERR_INTERNAL", e.what());
    }
  }
  void OnOK() override {
    settle([&] {
      if (keep_.any_detached())
        fail("ERR_DETACHED",
             "an input or output ArrayBuffer was detached (transferred) while the async call ran; its result was discarded");
      return job_->result(Env());
    });
  }
  void OnError(const Napi::Error&) override {
    settle([&]() -> Napi::Value { throw fl::Error(code_, message_); });
  }
 private:
  void fail_with(const std::string& code, const std::string& message) {
    code_ = code;
    message_ = message;
    SetError(message);  // makes the worker call OnError
  }

  // Resolves the promise with make()'s value, or rejects it with the error make() throws.
  // When a worker_thread is terminated with this job in flight, its environment is going away:
  // no JS can run, settling fails, and nobody waits for the promise any more. That failure
  // must not escape (an exception here would abort the process), so it is dropped.
  template <class Make>
  void settle(Make&& make) {
    Napi::Env env = Env();
    try {
      Napi::HandleScope scope(env);
      try {
        deferred_.Resolve(make());
      } catch (const fl::Error& e) {
        deferred_.Reject(make_error(env, e.code, e.what()).Value());
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    } catch (const Napi::Error&) {
      // The environment is shutting down (see above).
    }
  }

  std::unique_ptr<Job> job_;
  Keep keep_;
  Napi::Promise::Deferred deferred_;
  std::string code_ = "ERR_INTERNAL";
  std::string message_;
};

// Runs Job(info, ctx) now (sync) or on the libuv pool (async, returns a Promise). `ctx` (the
// Addon) provides pin(value): the device memory behind a DeviceBuffer argument, or null.
template <class Job, class Ctx>
Napi::Value run_job(const Napi::CallbackInfo& info, Ctx& ctx, bool async) {
  Napi::Env env = info.Env();
  try {
    auto job = std::make_unique<Job>(info, ctx);
    if (!async) {
      job->execute();
      return job->result(env);
    }
    Keep keep;
    for (size_t i = 0; i < info.Length(); ++i) {
      keep(info[i]);
      if (std::shared_ptr<void> p = ctx.pin(info[i])) keep.pins.push_back(std::move(p));
    }
    auto* worker = new JobWorker<Job>(env, std::move(job), std::move(keep));
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  } catch (const fl::Error& e) {
    throw make_error(env, e.code, e.what());
  }
}

}  // namespace fl::napi
