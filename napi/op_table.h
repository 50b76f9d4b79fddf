// The machinery of the op table (napi/ops.cpp): every op is called from JS as
//   addon.<name>(options) and addon.<name>Async(options)
// with ONE options object whose keys are the TS option names (each op's lib/ops/<op>.ts types
// them), read into the op's argument struct (native/api/args.h) by a Reader. An op is a struct with
//   using Args = ...;                                the argument struct
//   static constexpr const char* name;               the JS name
//   static void read(Reader&, Args&);                main thread: reads and checks the options
//   static R cpu(Context&, const Args&);             R: LossResult ({ loss, dScale }) or void
//   static R cuda(const Args&);                      (referenced only by the CUDA build; an op
//                                                    without it runs on host memory only)
// and OpJob runs it as a Job (napi/job.h) on the scores' device.
#pragma once
#include <napi.h>

#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "../native/api/args.h"
#include "../native/api/error.h"
#include "../native/core/context.h"
#include "addon.h"
#include "args.h"
#include "csr_arg.h"
#include "job.h"

namespace fl::napi {

#ifdef FUSEDLOSS_CUDA
constexpr bool kCudaBuild = true;
#else
constexpr bool kCudaBuild = false;
#endif

template <class T> constexpr napi_typedarray_type typed_array_of() {
  if constexpr (std::is_same_v<std::remove_const_t<T>, int32_t>) return napi_int32_array;
  else if constexpr (std::is_same_v<std::remove_const_t<T>, double>) return napi_float64_array;
  else return napi_float32_array;
}

template <class T> constexpr const char* typed_array_name() {
  if constexpr (std::is_same_v<std::remove_const_t<T>, int32_t>) return "an Int32Array";
  else if constexpr (std::is_same_v<std::remove_const_t<T>, double>) return "a Float64Array";
  else return "a Float32Array";
}

// Reads an op's options object. Every array or object it reads is held for an async call's
// life exactly as napi/job.h says (a device buffer pinned, a host array checked for
// detachment when the job completes, its memory staged by hold_host).
class Reader {
 public:
  Reader(const Napi::CallbackInfo& info, Addon& addon) : addon_(addon) {
    if (info.Length() < 1 || !info[0].IsObject() || info[0].IsTypedArray()) fail(err::kType, "expected one options object");
    o_ = info[0].As<Napi::Object>();
  }

  bool on_device() const { return on_device_; }

  double number(const char* key) const {
    const Napi::Value v = o_.Get(key);
    if (!v.IsNumber()) fail(err::kType, std::string("options.") + key + ": expected a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  int64_t integer(const char* key) const {
    const double d = number(key);
    if (d != double(int64_t(d)) || d < 0) fail(err::kType, std::string("options.") + key + ": expected a non-negative integer");
    return int64_t(d);
  }
  bool flag(const char* key) const { return o_.Get(key).ToBoolean(); }
  bool is_array(const char* key) const { return o_.Get(key).IsTypedArray(); }
  // An enum sent as its code (dtype, reduction, output): an integer in [0, max].
  template <class E> E code(const char* key, int64_t max) const {
    const int64_t c = integer(key);
    if (c > max) fail(err::kArg, std::string(key) + ": expected an integer in [0, " + std::to_string(max) + "]");
    return E(c);
  }
  DType dtype(const char* key) const {
    const int64_t d = integer(key);
    if (d > 2) fail(err::kDType, std::string("options.") + key + ": expected 0, 1 or 2");
    return DType(d);
  }

  // The scores matrix under `key` ("scores", or "logits" for softmaxCrossEntropy): dtype, rows,
  // cols, scale and the matrix itself, on the host or the device (the op's device).
  void scores(ScoresArgs& a, const char* key = "scores") {
    name_ = key;
    a.dtype = dtype("dtype");
    a.rows = integer("rows");
    a.cols = integer("cols");
    a.scale = float(number("scale"));
    if (!(a.scale > 0)) fail(err::kArg, "scale: expected a finite number > 0");
    const Operand x = operand(addon_, get(key), key, a.dtype, a.rows * a.cols, Access::Read);
    a.scores = x.ptr;
    on_device_ = x.device;
  }

  // The first operand of an op without a scores matrix (linearCrossEntropy's hidden, the
  // embeddings' queries), on the host or the device: the op runs there, and the operands read
  // after it must be there too (matrix()).
  const void* input(const char* key, DType dtype, int64_t count) {
    name_ = key;
    const Operand x = operand(addon_, get(key), key, dtype, count, Access::Read);
    on_device_ = x.device;
    return x.ptr;
  }

  // What every loss takes (LossArgs): the scores, then reduction, gradDtype, gradScale,
  // gradOutput?, grad? and rowLoss.
  void loss(LossArgs& a, const char* key = "scores") {
    scores(a, key);
    a.reduction = code<Reduction>("reduction", 2);
    a.grad_dtype = grad_dtype(a);
    a.grad_scale = flag("gradScale");
    a.grad_output = host<const float>("gradOutput", a.rows);
    a.grad = matrix("grad", a.grad_dtype, a.rows * a.cols, Access::Write, false);
    a.row_loss = host<float>("rowLoss", a.rows);
    if (!a.row_loss && a.rows > 0) fail(err::kType, "rowLoss: expected a Float32Array");
  }

  // gradDtype: float32, or the scores' own dtype.
  DType grad_dtype(const ScoresArgs& a) const {
    const DType g = dtype("gradDtype");
    if (g != DType::Float32 && g != a.dtype)
      fail(err::kDType, std::string("gradDtype: expected float32 or the scores' dtype ") + dtype_name(a.dtype));
    return g;
  }

  // An optional host array of `count` elements (absent: null).
  template <class T> T* host(const char* key, int64_t count) {
    return optional_host<T>(addon_, get(key), key, typed_array_of<T>(), count);
  }
  // A host array of `count` elements, required unless it would be empty.
  template <class T> T* required_host(const char* key, int64_t count) {
    T* p = host<T>(key, count);
    if (!p && count > 0) fail(err::kType, std::string(key) + ": expected " + typed_array_name<T>());
    return p;
  }

  // A host Float32Array the op adds into (with `accumulate`) whatever the op's device (the CUDA
  // launcher moves it): host(), and where an async call stages it, the staged block starts with
  // the array's contents.
  float* host_accumulated(const char* key, int64_t count) {
    float* p = host<float>(key, count);
    if (p) {
      const HostArray h = host_array(o_.Get(key), key, napi_float32_array);
      if (p != h.data) std::memcpy(p, h.data, h.bytes);
    }
    return p;
  }

  // A rows × cols (`count`-element) operand on the scores' device; absent: null unless `required`.
  void* matrix(const char* key, DType dtype, int64_t count, Access access, bool required) {
    const Napi::Value v = get(key);
    if (!required && (v.IsUndefined() || v.IsNull())) return nullptr;
    const Operand m = operand(addon_, v, key, dtype, count, access);
    if (m.device != on_device_) fail(err::kDevice, std::string(key) + ": expected the same device as the " + name_);
    return m.ptr;
  }

  // A host output the op adds into (with `accumulate`): like matrix(), and where an async call
  // stages it (hold_host), the staged block starts with the array's contents.
  void* accumulated(const char* key, DType dtype, int64_t count) {
    void* p = matrix(key, dtype, count, Access::Write, false);
    if (p && !on_device_) {
      const HostArray h = host_array(o_.Get(key), key, array_type_for(dtype));
      if (p != h.data) std::memcpy(p, h.data, h.bytes);
    }
    return p;
  }

  // A CSR { rowPtr, cols, weights? } over the rows × cols scores (absent: empty when optional).
  Csr csr(const char* key, const ScoresArgs& a, bool optional) { return csr_arg(addon_, get(key), key, a.rows, a.cols, optional); }
  // `exclude`: an optional CSR without weights.
  Csr exclude(const ScoresArgs& a) {
    const Csr c = csr("exclude", a, true);
    if (c.weights) fail(err::kArg, "exclude.weights: expected none (exclusions are unweighted)");
    return c;
  }

 private:
  // The value under `key`, held for an async call's life (napi/job.h).
  Napi::Value get(const char* key) {
    const Napi::Value v = o_.Get(key);
    if (Keep* keep = addon_.call; keep && addon_.call_async) {
      (*keep)(v);
      if (std::shared_ptr<void> p = addon_.pin(v)) keep->pins.push_back(std::move(p));
    }
    return v;
  }

  Addon& addon_;
  Napi::Object o_;
  bool on_device_ = false;
  const char* name_ = "scores";
};

// Whether Op has a CUDA path (Op::cuda); an op without one refuses device inputs.
template <class Op, class = void>
struct HasCuda : std::false_type {};
template <class Op>
struct HasCuda<Op, std::void_t<decltype(&Op::cuda)>> : std::true_type {};

// One op call as a Job: read on the main thread, run on the scores' device.
template <class Op>
class OpJob {
  using Args = typename Op::Args;
  using Out = decltype(Op::cpu(std::declval<Context&>(), std::declval<const Args&>()));

 public:
  OpJob(const Napi::CallbackInfo& info, Addon& addon) : ctx_(&addon.ctx) {
    Reader r(info, addon);
    Op::read(r, args_);
    on_device_ = r.on_device();
  }

  void execute() {
    if constexpr (std::is_void_v<Out>) run();
    else out_ = run();
  }

  Napi::Value result(Napi::Env env) {
    if constexpr (std::is_void_v<Out>) {
      return env.Undefined();
    } else {
      Napi::Object r = Napi::Object::New(env);
      r.Set("loss", out_.loss);
      r.Set("dScale", out_.dscale);
      return r;
    }
  }

 private:
  Out run() {
    if (!on_device_) return Op::cpu(*ctx_, args_);
    // Discarded in the CPU build, so that Op::cuda (and the CUDA library) is never referenced.
    if constexpr (!HasCuda<Op>::value) fail(err::kDevice, std::string(Op::name) + ": runs on host memory only; received a cuda tensor");
    else if constexpr (kCudaBuild) return Op::cuda(args_);
    else fail(err::kCudaUnavailable, "this build of fusedloss has no CUDA support");
  }

  Args args_{};
  bool on_device_ = false;
  Context* ctx_;
  std::conditional_t<std::is_void_v<Out>, char, Out> out_{};
};

// Exports Op as exports[Op::name] and exports[Op::name + "Async"].
template <class Op>
void define_op(Napi::Env env, Napi::Object exports) {
  auto bind = [](auto async) {
    return [](const Napi::CallbackInfo& info) {
      return run_job<OpJob<Op>>(info, *info.Env().GetInstanceData<Addon>(), decltype(async)::value);
    };
  };
  exports.Set(Op::name, Napi::Function::New(env, bind(std::false_type{}), Op::name));
  const std::string async_name = std::string(Op::name) + "Async";
  exports.Set(async_name, Napi::Function::New(env, bind(std::true_type{}), async_name));
}

}  // namespace fl::napi
