// linearCrossEntropy(hidden, weight, labels, opts, bias?, classWeights?, gradOutput?,
//                    gradHidden?, gradWeight?, gradBias?, rowLoss, lse?)
//   opts: { dtype, rows, dim, classes, scale, softcap, ignoreIndex, labelSmoothing, zLoss,
//           reduction: 0 mean | 1 sum | 2 none, gradFloat32 (gradHidden in float32),
//           wantDScale, accumulate, memoryBudget }
//   gradHidden (rows × dim), gradWeight (classes × dim, float32), gradBias (classes, float32):
//   where each gradient goes, or undefined for none. With `accumulate` they are read too.
//   CPU only. Returns { loss, dScale }.
#include "../native/ops/linear_cross_entropy.h"

#include "addon.h"
#include "job.h"
#include "ops.h"

namespace fl::napi {
namespace {

// A gradient buffer the op adds into (accumulate): written like any output, and, where an async
// call stages it (napi/addon.h hold_host), its current contents are copied into the staged block
// now, so the job adds to them.
void* in_out_host(Addon& addon, const Napi::Value& v, const char* name, napi_typedarray_type type, int64_t count, bool accumulate) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  const HostArray h = host_array(v, name, type);
  if (int64_t(h.length) != count)
    fail("ERR_SHAPE", std::string(name) + ": expected " + std::to_string(count) + " elements, received " + std::to_string(h.length));
  void* p = hold_host(addon, v, h, name, Access::Write);
  if (accumulate && p != h.data) std::memcpy(p, h.data, h.bytes);
  return p;
}

struct LinearCrossEntropyJob {
  LinearCrossEntropyArgs args{};
  Context* ctx;
  LossResult out{0, 0};

  LinearCrossEntropyJob(const Napi::CallbackInfo& info, Addon& addon) : ctx(&addon.ctx) {
    const Napi::Object o = info[3].As<Napi::Object>();
    LinearCrossEntropyArgs& a = args;
    a.dtype = dtype(o);
    a.rows = integer(o, "rows");
    a.dim = integer(o, "dim");
    a.classes = integer(o, "classes");
    const Operand hidden = operand(addon, info[0], "hidden", a.dtype, a.rows * a.dim, Access::Read);
    const Operand weight = operand(addon, info[1], "weight", a.dtype, a.classes * a.dim, Access::Read);
    if (hidden.device || weight.device)
      fail("ERR_DEVICE", "linearCrossEntropy: runs on the CPU only for now; expected host tensors, received a cuda tensor");
    a.hidden = hidden.ptr;
    a.weight = weight.ptr;
    a.labels = optional_host<const int32_t>(addon, info[2], "labels", napi_int32_array, a.rows);
    if (!a.labels && a.rows > 0) fail("ERR_TYPE", "labels: expected an Int32Array");
    a.ignore_index = int32_t(number(o, "ignoreIndex"));
    a.scale = float(number(o, "scale"));
    a.softcap = float(number(o, "softcap"));
    a.label_smoothing = float(number(o, "labelSmoothing"));
    a.z_loss = float(number(o, "zLoss"));
    const int64_t red = integer(o, "reduction");
    if (red > 2) fail("ERR_ARG", "reduction: expected 0, 1 or 2");
    a.reduction = Reduction(red);
    a.grad_hidden_float32 = o.Get("gradFloat32").ToBoolean();
    a.want_dscale = o.Get("wantDScale").ToBoolean();
    a.accumulate = o.Get("accumulate").ToBoolean();
    a.memory_budget = integer(o, "memoryBudget");
    a.bias = optional_host<const float>(addon, info[4], "bias", napi_float32_array, a.classes);
    a.class_weights = optional_host<const float>(addon, info[5], "classWeights", napi_float32_array, a.classes);
    a.grad_output = optional_host<const float>(addon, info[6], "gradOutput", napi_float32_array, a.rows);
    const bool half_grad = a.dtype != DType::Float32 && !a.grad_hidden_float32;
    a.grad_hidden = in_out_host(addon, info[7], "gradHidden", half_grad ? napi_uint16_array : napi_float32_array, a.rows * a.dim, a.accumulate);
    a.grad_weight = static_cast<float*>(in_out_host(addon, info[8], "gradWeight", napi_float32_array, a.classes * a.dim, a.accumulate));
    a.grad_bias = static_cast<float*>(in_out_host(addon, info[9], "gradBias", napi_float32_array, a.classes, a.accumulate));
    a.row_loss = optional_host<float>(addon, info[10], "rowLoss", napi_float32_array, a.rows);
    a.lse = optional_host<float>(addon, info[11], "lse", napi_float32_array, a.rows);
    if (!a.row_loss && a.rows > 0) fail("ERR_TYPE", "rowLoss: expected a Float32Array");
  }

  void execute() { out = linear_cross_entropy(*ctx, args); }

  Napi::Value result(Napi::Env env) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", out.loss);
    r.Set("dScale", out.dscale);
    return r;
  }
};

}  // namespace

Napi::Value linear_cross_entropy(const Napi::CallbackInfo& info, Addon& addon, bool async) {
  return run_job<LinearCrossEntropyJob>(info, addon, async);
}

}  // namespace fl::napi
