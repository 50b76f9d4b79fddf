// softmaxCrossEntropy(logits, labels, opts, classWeights?, gradOutput?, grad?, rowLoss, lse?)
//   opts: { dtype, rows, cols, scale, softcap, ignoreIndex, labelSmoothing, zLoss,
//           reduction: 0 mean | 1 sum | 2 none, gradFloat32, wantDScale }
//   grad: where the gradient goes (host array or device buffer; the logits themselves for
//         in-place), or undefined for no gradient. Returns { loss, dScale }.
#include "../native/ops/cross_entropy.h"

#include "addon.h"
#include "job.h"
#include "ops.h"
#ifdef FUSEDLOSS_CUDA
#include "../cuda/ops.h"
#endif

namespace fl::napi {
namespace {

struct CrossEntropyJob {
  CrossEntropyArgs args{};
  bool on_device = false;
  Context* ctx;
  LossResult out{0, 0};

  CrossEntropyJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    const Napi::Object o = info[2].As<Napi::Object>();
    CrossEntropyArgs& a = args;
    a.dtype = dtype(o);
    a.rows = integer(o, "rows");
    a.cols = integer(o, "cols");
    const Operand logits = operand(addon, info[0], "logits", a.dtype, a.rows * a.cols, Access::Read);
    a.logits = logits.ptr;
    on_device = logits.device;
    a.labels = optional_host<const int32_t>(addon, info[1], "labels", napi_int32_array, a.rows);
    if (!a.labels && a.rows > 0) fail("ERR_TYPE", "labels: expected an Int32Array");
    a.ignore_index = int32_t(number(o, "ignoreIndex"));
    a.scale = float(number(o, "scale"));
    a.softcap = float(number(o, "softcap"));
    a.label_smoothing = float(number(o, "labelSmoothing"));
    a.z_loss = float(number(o, "zLoss"));
    const int64_t red = integer(o, "reduction");
    if (red > 2) fail("ERR_ARG", "reduction: expected 0, 1 or 2");
    a.reduction = Reduction(red);
    a.grad_float32 = o.Get("gradFloat32").ToBoolean();
    a.want_dscale = o.Get("wantDScale").ToBoolean();
    a.class_weights = optional_host<const float>(addon, info[3], "classWeights", napi_float32_array, a.cols);
    a.grad_output = optional_host<const float>(addon, info[4], "gradOutput", napi_float32_array, a.rows);
    if (!info[5].IsUndefined() && !info[5].IsNull()) {
      const Operand g = operand(addon, info[5], "grad", a.grad_float32 ? DType::Float32 : a.dtype, a.rows * a.cols, Access::Write);
      if (g.device != on_device) fail("ERR_DEVICE", "grad: expected the same device as the logits");
      a.grad = g.ptr;
    }
    a.row_loss = optional_host<float>(addon, info[6], "rowLoss", napi_float32_array, a.rows);
    a.lse = optional_host<float>(addon, info[7], "lse", napi_float32_array, a.rows);
    if (!a.row_loss && a.rows > 0) fail("ERR_TYPE", "rowLoss: expected a Float32Array");
  }

  void execute() {
    if (on_device) {
#ifdef FUSEDLOSS_CUDA
      out = cuda::cross_entropy(args);
#else
      fail("ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
    } else {
      out = cross_entropy(*ctx, args);
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

Napi::Value softmax_cross_entropy(const Napi::CallbackInfo& info, Addon& addon, bool async) {
  return run_job<CrossEntropyJob>(info, addon, async);
}

}  // namespace fl::napi
