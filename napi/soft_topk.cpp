// softTopK(x, opts, kRows?, exclPtr?, exclCols?, values, threshold, iterations)
//   opts: { dtype, rows, cols, alpha, k, tol, maxIter, log }
// softTopKVjp(x, opts, exclPtr?, exclCols?, threshold, gradOutput, grad)
//   opts: { dtype, rows, cols, alpha, log, gradFloat32 }
// softTopKLoss(x, opts, kRows?, posPtr, posCols, posWeights?, exclPtr?, exclCols?, gradOutput?, grad?, rowLoss)
//   opts: { dtype, rows, cols, scale, reduction, gradFloat32, wantDScale, alpha, k, tol, maxIter }
// kRows: per-row k (Int32Array), else opts.k for every row. Returns nothing, nothing and
// { loss, dScale }.
#include "../native/ops/soft_topk.h"

#include "addon.h"
#include "job.h"
#include "ops.h"
#ifdef FUSEDLOSS_CUDA
#include "../cuda/ops.h"
#endif

namespace fl::napi {
namespace {

// A CSR argument pair (offsets of length rows + 1, then the columns), or null pointers.
struct Csr {
  const int32_t* ptr = nullptr;
  const int32_t* cols = nullptr;
  int64_t nnz = 0;
};
Csr csr(const Napi::Value& ptr, const Napi::Value& cols, const char* name, int64_t rows) {
  Csr c;
  c.ptr = optional_host<const int32_t>(ptr, name, napi_int32_array, rows + 1);
  if (!c.ptr) return c;
  const HostArray h = host_array(cols, name, napi_int32_array);
  c.nnz = c.ptr[rows];
  if (c.ptr[0] != 0 || int64_t(h.length) != c.nnz) fail("ERR_CSR", std::string(name) + ": rowPtr and cols do not agree");
  c.cols = static_cast<const int32_t*>(h.data);
  return c;
}

// Reads the threshold problem from the options object; x is argument 0.
SoftTopKProblem problem(const Napi::CallbackInfo& info, Addon& addon, bool* on_device) {
  const Napi::Object o = info[1].As<Napi::Object>();
  SoftTopKProblem p{};
  p.dtype = dtype(o);
  p.rows = integer(o, "rows");
  p.cols = integer(o, "cols");
  const Operand x = operand(addon, info[0], "scores", p.dtype, p.rows * p.cols);
  p.x = x.ptr;
  *on_device = x.device;
  p.scale = o.Has("scale") ? float(number(o, "scale")) : 1.f;
  p.alpha = float(number(o, "alpha"));
  if (!(p.alpha > 0) || !(p.scale > 0)) fail("ERR_ARG", "alpha and scale: expected finite numbers > 0");
  return p;
}

void solver_options(const Napi::CallbackInfo& info, SoftTopKProblem& p, const Napi::Value& k_rows) {
  const Napi::Object o = info[1].As<Napi::Object>();
  p.k = int32_t(integer(o, "k"));
  p.k_rows = optional_host<const int32_t>(k_rows, "k", napi_int32_array, p.rows);
  p.tol = float(number(o, "tol"));
  p.max_iter = int32_t(integer(o, "maxIter"));
  if (p.max_iter < 1) fail("ERR_ARG", "maxIter: expected an integer >= 1");
}

void host_only(bool on_device) {
  if (on_device) fail("ERR_DEVICE", "softTopK: expected scores on the CPU (this op has no CUDA path in this build)");
}

struct SoftTopKJob {
  SoftTopKArgs args{};
  bool on_device = false;
  Context* ctx;

  SoftTopKJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    SoftTopKArgs& a = args;
    a.p = problem(info, addon, &on_device);
    host_only(on_device);
    solver_options(info, a.p, info[2]);
    const Csr ex = csr(info[3], info[4], "exclude", a.p.rows);
    a.p.excl_ptr = ex.ptr;
    a.p.excl_cols = ex.cols;
    a.log_output = info[1].As<Napi::Object>().Get("log").ToBoolean();
    a.values = optional_host<float>(info[5], "values", napi_float32_array, a.p.rows * a.p.cols);
    a.threshold = optional_host<float>(info[6], "threshold", napi_float32_array, a.p.rows);
    a.iterations = optional_host<int32_t>(info[7], "iterations", napi_int32_array, a.p.rows);
    if (!a.values || !a.threshold || !a.iterations) fail("ERR_TYPE", "softTopK: expected output arrays");
  }
  void execute() { fl::soft_topk(*ctx, args); }
  Napi::Value result(Napi::Env env) { return env.Undefined(); }
};

struct SoftTopKVjpJob {
  SoftTopKVjpArgs args{};
  bool on_device = false;
  Context* ctx;

  SoftTopKVjpJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    SoftTopKVjpArgs& a = args;
    a.p = problem(info, addon, &on_device);
    host_only(on_device);
    const Napi::Object o = info[1].As<Napi::Object>();
    a.log_output = o.Get("log").ToBoolean();
    a.grad_float32 = o.Get("gradFloat32").ToBoolean();
    const Csr ex = csr(info[2], info[3], "exclude", a.p.rows);
    a.p.excl_ptr = ex.ptr;
    a.p.excl_cols = ex.cols;
    a.threshold = optional_host<const float>(info[4], "threshold", napi_float32_array, a.p.rows);
    a.grad_output = optional_host<const float>(info[5], "gradOutput", napi_float32_array, a.p.rows * a.p.cols);
    const Operand g = operand(addon, info[6], "grad", a.grad_float32 ? DType::Float32 : a.p.dtype, a.p.rows * a.p.cols);
    a.grad = g.ptr;
    if (!a.threshold || !a.grad_output) fail("ERR_TYPE", "softTopK vjp: expected threshold and gradOutput");
  }
  void execute() { fl::soft_topk_vjp(*ctx, args); }
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
    host_only(on_device);
    solver_options(info, a.p, info[2]);
    const Napi::Object o = info[1].As<Napi::Object>();
    const Csr pos = csr(info[3], info[4], "positives", a.p.rows);
    if (!pos.ptr) fail("ERR_TYPE", "positives: expected rowPtr and cols");
    a.pos_ptr = pos.ptr;
    a.pos_cols = pos.cols;
    a.pos_weights = optional_host<const float>(info[5], "positives.weights", napi_float32_array, pos.nnz);
    const Csr ex = csr(info[6], info[7], "exclude", a.p.rows);
    a.p.excl_ptr = ex.ptr;
    a.p.excl_cols = ex.cols;
    const int64_t red = integer(o, "reduction");
    if (red > 2) fail("ERR_ARG", "reduction: expected 0, 1 or 2");
    a.reduction = Reduction(red);
    a.grad_float32 = o.Get("gradFloat32").ToBoolean();
    a.want_dscale = o.Get("wantDScale").ToBoolean();
    a.grad_output = optional_host<const float>(info[8], "gradOutput", napi_float32_array, a.p.rows);
    if (!info[9].IsUndefined() && !info[9].IsNull()) {
      const Operand g = operand(addon, info[9], "grad", a.grad_float32 ? DType::Float32 : a.p.dtype, a.p.rows * a.p.cols);
      if (g.device != on_device) fail("ERR_DEVICE", "grad: expected the same device as the scores");
      a.grad = g.ptr;
    }
    a.row_loss = optional_host<float>(info[10], "rowLoss", napi_float32_array, a.p.rows);
    if (!a.row_loss) fail("ERR_TYPE", "rowLoss: expected a Float32Array");
  }
  void execute() { out = fl::soft_topk_loss(*ctx, args); }
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
