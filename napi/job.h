// One pattern for every op, sync or async.
//
// A Job is built on the main thread from the call's arguments: it validates them, takes raw
// pointers and holds a Napi::Reference to every buffer it will touch, so that nothing it
// needs can be collected while it runs. execute() does the work and may run on a libuv worker
// thread: it must not touch any napi value. result() runs on the main thread again and builds
// the JS return value. Errors thrown as fl::Error become JS errors with the same `code`.
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

// Holds buffers alive for the duration of a job.
struct Keep {
  std::vector<Napi::Reference<Napi::Value>> refs;
  void operator()(const Napi::Value& v) {
    if (v.IsObject()) refs.push_back(Napi::Persistent(v));  // references to primitives are not allowed before N-API 10
  }
};

template <class Job>
class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, std::unique_ptr<Job> job)
      : Napi::AsyncWorker(env, "fusedloss"), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      job_->execute();
    } catch (const fl::Error& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "ERR_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    try {
      deferred_.Resolve(job_->result(Env()));
    } catch (const fl::Error& e) {
      deferred_.Reject(make_error(Env(), e.code, e.what()).Value());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(make_error(Env(), code_, e.Message()).Value());
  }

 private:
  std::unique_ptr<Job> job_;
  Napi::Promise::Deferred deferred_;
  std::string code_ = "ERR_INTERNAL";
};

// Runs Job(info, ctx...) now (sync) or on the libuv pool (async, returns a Promise).
template <class Job, class Ctx>
Napi::Value run_job(const Napi::CallbackInfo& info, Ctx& ctx, bool async) {
  Napi::Env env = info.Env();
  try {
    auto job = std::make_unique<Job>(info, ctx);
    if (!async) {
      job->execute();
      return job->result(env);
    }
    auto* worker = new JobWorker<Job>(env, std::move(job));
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  } catch (const fl::Error& e) {
    throw make_error(env, e.code, e.what());
  }
}

}  // namespace fl::napi
