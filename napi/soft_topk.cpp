// softTopK(x, opts, kRows?, exclude?, values, threshold, iterations)
//   opts: { dtype, rows, cols, alpha, k, tol, maxIter, log }
// softTopKVjp(x, opts, exclude?, threshold, gradOutput, grad)
//   opts: { dtype, rows, cols, alpha, log, gradFloat32 }
// softTopKLoss(x, opts, kRows?, positives, exclude?, gradOutput?, grad?, rowLoss)
//   opts: { dtype, rows, cols, scale, reduction, gradFloat32, wantDScale, alpha, k, tol, maxIter }
// kRows: per-row k (Int32Array), else opts.k for every row; positives and exclude: CSR objects
// (lib/csr.ts). Returns nothing, nothing and
// { loss, dScale }.
#include "../native/ops/soft_topk.h"

#include "addon.h"
#include "csr_arg.h"
#include "job.h"
#include "ops.h"
#ifdef FUSEDLOSS_CUDA
#include "../cuda/ops.h"
#endif

namespace fl::napi {
namespace {

// Reads the threshold problem from the options object; x is argument 0.
SoftTopKProblem problem(const Napi::CallbackInfo& info, Addon& addon, bool* on_device) {
  const Napi::Object o = info[1].As<Napi::Object>();
  SoftTopKProblem p{};
  p.dtype = dtype(o);
  p.rows = integer(o, "rows");
  p.cols = integer(o, "cols");
  const Operand x = operand(addon, info[0], "scores", p.dtype, p.rows * p.cols, Access::Read);
  p.x = x.ptr;
  *on_device = x.device;
  p.scale = o.Has("scale") ? float(number(o, "scale")) : 1.f;
  p.alpha = float(number(o, "alpha"));
  if (!(p.alpha > 0) || !(p.scale > 0)) fail("ERR_ARG", "alpha and scale: expected finite numbers > 0");
  return p;
}

void solver_options(const Napi::CallbackInfo& info, Addon& addon, SoftTopKProblem& p, const Napi::Value& k_rows) {
  const Napi::Object o = info[1].As<Napi::Object>();
  p.k = int32_t(integer(o, "k"));
  p.k_rows = optional_host<const int32_t>(addon, k_rows, "k", napi_int32_array, p.rows);
  p.tol = float(number(o, "tol"));
  p.max_iter = int32_t(integer(o, "maxIter"));
  if (p.max_iter < 1) fail("ERR_ARG", "maxIter: expected an integer >= 1");
}

// An operand (B×N) on the scores' device.
void* same_device(Addon& addon, const Napi::Value& v, const char* name, DType dtype, int64_t count, bool on_device, Access access) {
  const Operand o = operand(addon, v, name, dtype, count, access);
  if (o.device != on_device) fail("ERR_DEVICE", std::string(name) + ": expected the same device as the scores");
  return o.ptr;
}

struct SoftTopKJob {
  SoftTopKArgs args{};
  bool on_device = false;
  Context* ctx;

  SoftTopKJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    SoftTopKArgs& a = args;
    a.p = problem(info, addon, &on_device);
    solver_options(info, addon, a.p, info[2]);
    a.p.exclude = csr_arg(addon, info[3], "exclude", a.p.rows, a.p.cols, true);
    a.log_output = info[1].As<Napi::Object>().Get("log").ToBoolean();
    a.values = static_cast<float*>(same_device(addon, info[4], "values", DType::Float32, a.p.rows * a.p.cols, on_device, Access::Write));
    a.threshold = optional_host<float>(addon, info[5], "threshold", napi_float32_array, a.p.rows);
    a.iterations = optional_host<int32_t>(addon, info[6], "iterations", napi_int32_array, a.p.rows);
    if (!a.values || !a.threshold || !a.iterations) fail("ERR_TYPE", "softTopK: expected output arrays");
  }
  void execute() {
    if (on_device) {
#ifdef FUSEDLOSS_CUDA
      cuda::soft_topk(args);
#else
      fail("ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
    } else {
      fl::soft_topk(*ctx, args);
    }
  }
  Napi::Value result(Napi::Env env) { return env.Undefined(); }
};

struct SoftTopKVjpJob {
  SoftTopKVjpArgs args{};
  bool on_device = false;
  Context* ctx;

  SoftTopKVjpJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    SoftTopKVjpArgs& a = args;
    a.p = problem(info, addon, &on_device);
    const Napi::Object o = info[1].As<Napi::Object>();
    a.log_output = o.Get("log").ToBoolean();
    a.grad_float32 = o.Get("gradFloat32").ToBoolean();
    a.p.exclude = csr_arg(addon, info[2], "exclude", a.p.rows, a.p.cols, true);
    a.threshold = optional_host<const float>(addon, info[3], "threshold", napi_float32_array, a.p.rows);
    a.grad_output = static_cast<const float*>(same_device(addon, info[4], "gradOutput", DType::Float32, a.p.rows * a.p.cols, on_device, Access::Read));
    a.grad = same_device(addon, info[5], "grad", a.grad_float32 ? DType::Float32 : a.p.dtype, a.p.rows * a.p.cols, on_device, Access::Write);
    if (!a.threshold) fail("ERR_TYPE", "softTopK vjp: expected threshold");
  }
  void execute() {
    if (on_device) {
#ifdef FUSEDLOSS_CUDA
      cuda::soft_topk_vjp(args);
#else
      fail("ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
    } else {
      fl::soft_topk_vjp(*ctx, args);
    }
  }
  Napi::Value result(Napi::Env env) { return env.Undefined(); }
};

struct SoftTopKLossJob {
  SoftTopKLossArgs args{};
  bool on_device = false;
  Context* ctx;
  LossResult out{0, 0};

  SoftTopKLossJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    SoftTopKLossArgs& a = args;
    a.p = problem(info, addon, &on_device);
    solver_options(info, addon, a.p, info[2]);
    const Napi::Object o = info[1].As<Napi::Object>();
    a.positives = csr_arg(addon, info[3], "positives", a.p.rows, a.p.cols, false);
    a.p.exclude = csr_arg(addon, info[4], "exclude", a.p.rows, a.p.cols, true);
    const int64_t red = integer(o, "reduction");
    if (red > 2) fail("ERR_ARG", "reduction: expected 0, 1 or 2");
    a.reduction = Reduction(red);
    a.grad_float32 = o.Get("gradFloat32").ToBoolean();
    a.want_dscale = o.Get("wantDScale").ToBoolean();
    a.grad_output = optional_host<const float>(addon, info[5], "gradOutput", napi_float32_array, a.p.rows);
    if (!info[6].IsUndefined() && !info[6].IsNull()) {
      const Operand g = operand(addon, info[6], "grad", a.grad_float32 ? DType::Float32 : a.p.dtype, a.p.rows * a.p.cols, Access::Write);
      if (g.device != on_device) fail("ERR_DEVICE", "grad: expected the same device as the scores");
      a.grad = g.ptr;
    }
    a.row_loss = optional_host<float>(addon, info[7], "rowLoss", napi_float32_array, a.p.rows);
    if (!a.row_loss) fail("ERR_TYPE", "rowLoss: expected a Float32Array");
  }
  void execute() {
    if (on_device) {
#ifdef FUSEDLOSS_CUDA
      out = cuda::soft_topk_loss(args);
#else
      fail("ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
    } else {
      out = fl::soft_topk_loss(*ctx, args);
    }
  }
  Napi::Value result(Napi::Env env) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", out.loss);
    r.Set("dScale", out.dscale);
    return r;
  }
};

}  // namespace

Napi::Value soft_topk(const Napi::CallbackInfo& info, Addon& addon, bool async) { return run_job<SoftTopKJob>(info, addon, async); }
Napi::Value soft_topk_vjp(const Napi::CallbackInfo& info, Addon& addon, bool async) { return run_job<SoftTopKVjpJob>(info, addon, async); }
Napi::Value soft_topk_loss(const Napi::CallbackInfo& info, Addon& addon, bool async) { return run_job<SoftTopKLossJob>(info, addon, async); }

}  // namespace fl::napi
