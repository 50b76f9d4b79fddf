// The op table (napi/ops.cpp): exports every op as <name> and <name>Async.
#pragma once
#include <napi.h>

namespace fl::napi {

void define_ops(Napi::Env env, Napi::Object exports);

}  // namespace fl::napi
