// infoNCE(scores, opts, positives?, exclude?, gradOutput?, grad?, rowLoss)
//   opts: { dtype, rows, cols, scale, reduction: 0 mean | 1 sum | 2 none, gradFloat32, wantDScale,
//           symmetric }
//   positives, exclude: { rowPtr, cols, weights? } (napi/csr_arg.h); positives undefined: the
//   diagonal
// decoupledContrastive(scores, opts, positives?, exclude?, gradOutput?, grad?, rowLoss)
//   opts: the same without symmetric, plus sigma (DCLW's σ, or 0 for plain DCL)
// grad: where the gradient goes (host array or device buffer; the scores themselves for in
// place), or undefined for no gradient. Both return { loss, dScale }.
#include "../native/ops/contrastive.h"

#include "addon.h"
#include "csr_arg.h"
#include "job.h"
#include "ops.h"
#ifdef FUSEDLOSS_CUDA
#include "../cuda/ops.h"
#endif

namespace fl::napi {
namespace {

// Reads the arguments both losses share; returns whether the scores are on the device.
bool read_common(const Napi::CallbackInfo& info, Addon& addon, ContrastiveCommon& c, Csr& positives, Csr& exclude) {
  const Napi::Object o = info[1].As<Napi::Object>();
  c.dtype = dtype(o);
  c.rows = integer(o, "rows");
  c.cols = integer(o, "cols");
  const Operand scores = operand(addon, info[0], "scores", c.dtype, c.rows * c.cols, Access::Read);
  c.scores = scores.ptr;
  c.scale = float(number(o, "scale"));
  const int64_t red = integer(o, "reduction");
  if (red > 2) fail("ERR_ARG", "reduction: expected 0, 1 or 2");
  c.reduction = Reduction(red);
  c.grad_float32 = o.Get("gradFloat32").ToBoolean();
  c.want_dscale = o.Get("wantDScale").ToBoolean();
  positives = csr_arg(addon, info[2], "positives", c.rows, c.cols, true);
  exclude = csr_arg(addon, info[3], "exclude", c.rows, c.cols, true);
  if (exclude.weights) fail("ERR_ARG", "exclude.weights: expected none (exclusions are unweighted)");
  c.grad_output = optional_host<const float>(addon, info[4], "gradOutput", napi_float32_array, c.rows);
  if (!info[5].IsUndefined() && !info[5].IsNull()) {
    const Operand g = operand(addon, info[5], "grad", c.grad_float32 ? DType::Float32 : c.dtype, c.rows * c.cols, Access::Write);
    if (g.device != scores.device) fail("ERR_DEVICE", "grad: expected the same device as the scores");
    c.grad = g.ptr;
  }
  c.row_loss = optional_host<float>(addon, info[6], "rowLoss", napi_float32_array, c.rows);
  if (!c.row_loss && c.rows > 0) fail("ERR_TYPE", "rowLoss: expected a Float32Array");
  return scores.device;
}

Napi::Value loss_result(Napi::Env env, const LossResult& out) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", out.loss);
  r.Set("dScale", out.dscale);
  return r;
}

struct InfoNCEJob {
  InfoNCEArgs args{};
  bool on_device = false;
  Context* ctx;
  LossResult out{0, 0};

  InfoNCEJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    on_device = read_common(info, addon, args.c, args.positives, args.exclude);
    args.symmetric = info[1].As<Napi::Object>().Get("symmetric").ToBoolean();
    check_info_nce_shape(args);
  }

  void execute() {
    if (!on_device) {
      out = info_nce(*ctx, args);
      return;
    }
#ifdef FUSEDLOSS_CUDA
    out = cuda::info_nce(args);
#else
    fail("ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
  }

  Napi::Value result(Napi::Env env) { return loss_result(env, out); }
};

struct DecoupledContrastiveJob {
  DecoupledContrastiveArgs args{};
  bool on_device = false;
  Context* ctx;
  LossResult out{0, 0};

  DecoupledContrastiveJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    on_device = read_common(info, addon, args.c, args.positives, args.exclude);
    args.sigma = float(number(info[1].As<Napi::Object>(), "sigma"));
    if (!(args.sigma >= 0)) fail("ERR_ARG", "sigma: expected a number >= 0");
    check_decoupled_contrastive_shape(args);
  }

  void execute() {
    if (!on_device) {
      out = decoupled_contrastive(*ctx, args);
      return;
    }
#ifdef FUSEDLOSS_CUDA
    out = cuda::decoupled_contrastive(args);
#else
    fail("ERR_CUDA_UNAVAILABLE", "this build of fusedloss has no CUDA support");
#endif
  }

  Napi::Value result(Napi::Env env) { return loss_result(env, out); }
};

}  // namespace

Napi::Value info_nce(const Napi::CallbackInfo& info, Addon& addon, bool async) {
  return run_job<InfoNCEJob>(info, addon, async);
}

Napi::Value decoupled_contrastive(const Napi::CallbackInfo& info, Addon& addon, bool async) {
  return run_job<DecoupledContrastiveJob>(info, addon, async);
}

}  // namespace fl::napi
