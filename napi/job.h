// One pattern for every op, sync or async.
//
// A Job is built on the main thread from the call's arguments: it validates them and takes raw
// pointers into the buffers it will touch. execute() does the work and may run on a libuv
// worker thread: it must not touch any napi value. result() runs on the main thread again and
// builds the JS return value. Errors thrown as fl::Error become JS errors with the same `code`.
//
// Lifetimes on the async path (run_job and the argument readers of napi/addon.h guarantee
// them for every op, whatever the Job itself keeps). The rule: nothing JS does while the work
// runs (detach or transfer a buffer, drop every reference and GC, dispose() a tensor,
// terminate the worker) makes execute() touch freed memory.
// - Every argument object of the call is held by a Napi::Reference, and every DeviceBuffer
//   argument is pinned (DeviceBuffer::pin): a dispose() during the run defers the free until
//   the job is done.
// - Host memory: a napi reference does not keep a *detached* ArrayBuffer's memory alive, so
//   the job never points into memory V8 owns. Memory the addon lent (napi/host_memory.h: every
//   op output the TypeScript layer allocates) is used in place, the job holding a reference to
//   its block. Any other host array is staged: an input is copied into a block when the call
//   is made (so the op sees the values of that moment, whatever the caller writes afterwards),
//   an output is computed into a block and copied into the caller's array when the job
//   completes, on the main thread.
// - A host array detached while the work runs makes the promise reject with ERR_DETACHED (its
//   contents are not the result any more; nothing is copied into it).
// - Calls that share a buffer where one of them writes it (the same `out`, in-place scores, or
//   scores another call is overwriting in place) race; while an async call is in flight such
//   a call is refused with ERR_BUSY (InFlight below). Reading one buffer from many calls is fine.
// - Sync calls (async = false) run execute() on the calling thread and block its event loop
//   for the whole call (no JS can run meanwhile, so they use every buffer in place): use the
//   ...Async twins to keep a server responsive.
#pragma once
#include <napi.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../native/api/error.h"

namespace fl::napi {

inline Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// How an op uses a buffer.
enum class Access { Read, Write };

// A buffer an op uses, for the conflict check of InFlight.
struct Span {
  const char* begin;
  const char* end;
  Access access;
  std::string name;
  bool overlaps(const Span& o) const { return begin < o.end && o.begin < end; }
};

// Holds a job's argument objects alive, and its memory pinned, for the job's life.
struct Keep {
  std::vector<Napi::Reference<Napi::Value>> refs;
  std::vector<Napi::Reference<Napi::Value>> host_arrays;  // checked for detachment after the run
  std::vector<std::shared_ptr<void>> pins;                // DeviceBuffer memory and host blocks
  // A staged output: computed into `from`, copied into the caller's `array` on completion.
  struct CopyBack {
    Napi::Reference<Napi::Value> array;
    std::shared_ptr<void> from;
    size_t bytes;
  };
  std::vector<CopyBack> copy_backs;
  std::vector<Span> spans;  // every buffer the op reads or writes
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
  // Copies each staged output into the caller's array (main thread, none detached). A plain
  // memcpy: the CPU pool may be busy with other jobs, and the main thread must not wait for them.
  void copy_back() {
    for (CopyBack& c : copy_backs) {
      Napi::TypedArray ta = c.array.Value().As<Napi::TypedArray>();
      std::memcpy(static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), c.from.get(), c.bytes);
    }
  }
};

// The async jobs of one addon instance that have not completed, and the check that a new call
// shares no buffer with them where either side writes it.
class InFlight {
 public:
  void add(const Keep* k) { jobs_.push_back(k); }
  void remove(const Keep* k) {
    for (size_t i = 0; i < jobs_.size(); ++i)
      if (jobs_[i] == k) {
        jobs_.erase(jobs_.begin() + std::ptrdiff_t(i));
        return;
      }
  }
  void check(const Keep& call) const {
    for (const Keep* job : jobs_)
      for (const Span& a : call.spans)
        for (const Span& b : job->spans)
          if (a.overlaps(b) && (a.access == Access::Write || b.access == Access::Write))
            fail(err::kBusy, a.name + ": this buffer is " +
                                 (b.access == Access::Write ? "being written (as " + b.name + ")" : "being read (as " + b.name + ")") +
                                 " by an async call that has not completed" +
                                 (a.access == Access::Write ? ", and this call would write it" : "") +
                                 "; await that call first, or give each call its own buffer");
  }

 private:
  std::vector<const Keep*> jobs_;
};

template <class Job>
class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, std::unique_ptr<Job> job, Keep keep, std::shared_ptr<InFlight> in_flight)
      : Napi::AsyncWorker(env, "fusedloss"),
        job_(std::move(job)),
        keep_(std::move(keep)),
        in_flight_(std::move(in_flight)),
        deferred_(Napi::Promise::Deferred::New(env)) {
    in_flight_->add(&keep_);
  }
  ~JobWorker() override { in_flight_->remove(&keep_); }
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
        fail(err::kDetached,
             "an input or output ArrayBuffer was detached (transferred) while the async call ran; its result was discarded");
      keep_.copy_back();
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
    // Done with its buffers: from here on (the promise's continuations too) they are free again.
    in_flight_->remove(&keep_);
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
  std::shared_ptr<InFlight> in_flight_;
  Napi::Promise::Deferred deferred_;
  std::string code_ = "ERR_INTERNAL";
  std::string message_;
};

// Runs Job(info, ctx) now (sync) or on the libuv pool (async, returns a Promise). `ctx` (the
// Addon) provides pin(value): the device memory behind a DeviceBuffer argument, or null;
// `call`: the Keep that the argument readers (napi/addon.h) fill while the Job is built, and
// `call_async`, whether they must stage host memory; and `in_flight`.
template <class Job, class Ctx>
Napi::Value run_job(const Napi::CallbackInfo& info, Ctx& ctx, bool async) {
  Napi::Env env = info.Env();
  try {
    Keep keep;
    std::unique_ptr<Job> job;
    {
      ctx.call = &keep;
      ctx.call_async = async;
      struct Reset {
        Ctx& c;
        ~Reset() { c.call = nullptr; }
      } reset{ctx};
      job = std::make_unique<Job>(info, ctx);
    }
    ctx.in_flight->check(keep);
    if (!async) {
      job->execute();
      return job->result(env);
    }
    for (size_t i = 0; i < info.Length(); ++i) {
      keep(info[i]);
      if (std::shared_ptr<void> p = ctx.pin(info[i])) keep.pins.push_back(std::move(p));
    }
    auto* worker = new JobWorker<Job>(env, std::move(job), std::move(keep), ctx.in_flight);
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  } catch (const fl::Error& e) {
    throw make_error(env, e.code, e.what());
  }
}

}  // namespace fl::napi
