// decoupledSoftmax / multiLabelSoftmax / binaryCrossEntropy
//   (scores, positives, opts, exclude?, gradOutput?, grad?, rowLoss)
//   positives, exclude: { rowPtr, cols, weights? } (napi/csr_arg.h)
//   opts: { dtype, rows, cols, scale, reduction: 0 mean | 1 sum | 2 none, gradFloat32, wantDScale }
//   grad: where the gradient goes (host array or device buffer; the scores themselves for
//         in place), or undefined for no gradient. Returns { loss, dScale }.
#include "../native/ops/positives_losses.h"

#include "addon.h"
#include "csr_arg.h"
#include "job.h"
#include "ops.h"
#ifdef FUSEDLOSS_CUDA
#include "../cuda/ops.h"
#endif

namespace fl::napi {
namespace {

enum class Which { DecoupledSoftmax, MultiLabelSoftmax, BinaryCrossEntropy };

template <Which W>
struct PositivesLossJob {
  PositivesLossArgs args{};
  bool on_device = false;
  Context* ctx;
  LossResult out{0, 0};

  PositivesLossJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    const Napi::Object o = info[2].As<Napi::Object>();
    PositivesLossArgs& a = args;
    a.dtype = dtype(o);
    a.rows = integer(o, "rows");
    a.cols = integer(o, "cols");
    const Operand scores = operand(addon, info[0], "scores", a.dtype, a.rows * a.cols, Access::Read);
    a.scores = scores.ptr;
    on_device = scores.device;
    a.positives = csr_arg(addon, info[1], "positives", a.rows, a.cols, false);
    a.exclude = csr_arg(addon, info[3], "exclude", a.rows, a.cols, true);
    if (a.exclude.weights) fail("ERR_ARG", "exclude.weights: expected none (exclusions are unweighted)");
    a.scale = float(number(o, "scale"));
    const int64_t red = integer(o, "reduction");
    if (red > 2) fail("ERR_ARG", "reduction: expected 0, 1 or 2");
    a.reduction = Reduction(red);
    a.grad_float32 = o.Get("gradFloat32").ToBoolean();
    a.want_dscale = o.Get("wantDScale").ToBoolean();
    a.grad_output = optional_host<const float>(addon, info[4], "gradOutput", napi_float32_array, a.rows);
    if (!info[5].IsUndefined() && !info[5].IsNull()) {
      const Operand g = operand(addon, info[5], "grad", a.grad_float32 ? DType::Float32 : a.dtype, a.rows * a.cols, Access::Write);
      if (g.device != on_device) fail("ERR_DEVICE", "grad: expected the same device as the scores");
      a.grad = g.ptr;
    }
    a.row_loss = optional_host<float>(addon, info[6], "rowLoss", napi_float32_array, a.rows);
    if (!a.row_loss && a.rows > 0) fail("ERR_TYPE", "rowLoss: expected a Float32Array");
  }

  void execute() {
    if (on_device) {
#ifdef FUSEDLOSS_CUDA
      if constexpr (W == Which::DecoupledSoftmax) out = cuda::decoupled_softmax(args);
      else if constexpr (W == Which::MultiLabelSoftmax) out = cuda::multi_label_softmax(args);
      else out = cuda::binary_cross_entropy(args);
#else
      fail("ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
    } else if constexpr (W == Which::DecoupledSoftmax) {
      out = decoupled_softmax(*ctx, args);
    } else if constexpr (W == Which::MultiLabelSoftmax) {
      out = multi_label_softmax(*ctx, args);
    } else {
      out = binary_cross_entropy(*ctx, args);
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

Napi::Value decoupled_softmax(const Napi::CallbackInfo& info, Addon& addon, bool async) {
  return run_job<PositivesLossJob<Which::DecoupledSoftmax>>(info, addon, async);
}
Napi::Value multi_label_softmax(const Napi::CallbackInfo& info, Addon& addon, bool async) {
  return run_job<PositivesLossJob<Which::MultiLabelSoftmax>>(info, addon, async);
}
Napi::Value binary_cross_entropy(const Napi::CallbackInfo& info, Addon& addon, bool async) {
  return run_job<PositivesLossJob<Which::BinaryCrossEntropy>>(info, addon, async);
}

}  // namespace fl::napi
