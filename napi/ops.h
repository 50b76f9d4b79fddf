// The op bindings, one file each in napi/. Each takes the call's arguments (validated and
// normalised by lib/), builds a Job (napi/job.h) and runs it sync or async.
#pragma once
#include <napi.h>

namespace fl::napi {

class Addon;

Napi::Value softmax_cross_entropy(const Napi::CallbackInfo& info, Addon& addon, bool async);

// Losses over CSR positives (napi/positives_losses.cpp).
Napi::Value decoupled_softmax(const Napi::CallbackInfo& info, Addon& addon, bool async);
Napi::Value multi_label_softmax(const Napi::CallbackInfo& info, Addon& addon, bool async);
Napi::Value binary_cross_entropy(const Napi::CallbackInfo& info, Addon& addon, bool async);
Napi::Value soft_topk(const Napi::CallbackInfo& info, Addon& addon, bool async);
Napi::Value soft_topk_vjp(const Napi::CallbackInfo& info, Addon& addon, bool async);
Napi::Value soft_topk_loss(const Napi::CallbackInfo& info, Addon& addon, bool async);
// napi/contrastive.cpp
Napi::Value info_nce(const Napi::CallbackInfo& info, Addon& addon, bool async);
Napi::Value decoupled_contrastive(const Napi::CallbackInfo& info, Addon& addon, bool async);
// napi/linear_cross_entropy.cpp (CPU only)
Napi::Value linear_cross_entropy(const Napi::CallbackInfo& info, Addon& addon, bool async);

}  // namespace fl::napi
