// Reading a CSR argument ({ rowPtr: Int32Array, cols: Int32Array, weights?: Float32Array },
// built fresh by lib/csr.ts) into a Csr view, with the structural checks repeated (check_csr):
// a wrong call from JS throws instead of reading out of bounds. Each array is held as every
// host argument is (hold_host in napi/addon.h) for the life of an async call.
#pragma once
#include <napi.h>

#include <string>

#include "../native/ops/csr.h"
#include "addon.h"
#include "args.h"

namespace fl::napi {

// An absent (undefined/null) argument gives an empty Csr when `optional`, else ERR_TYPE.
inline Csr csr_arg(Addon& addon, const Napi::Value& v, const char* name, int64_t rows, int64_t cols, bool optional) {
  if (v.IsUndefined() || v.IsNull()) {
    if (!optional) fail(err::kType, std::string(name) + ": expected an object { rowPtr, cols, weights? }");
    return {};
  }
  if (!v.IsObject() || v.IsTypedArray()) fail(err::kType, std::string(name) + ": expected an object { rowPtr, cols, weights? }");
  const Napi::Object o = v.As<Napi::Object>();
  const std::string n(name);
  const Napi::Value row_ptr_v = o.Get("rowPtr"), cols_v = o.Get("cols");
  const HostArray row_ptr = host_array(row_ptr_v, (n + ".rowPtr").c_str(), napi_int32_array);
  const HostArray c = host_array(cols_v, (n + ".cols").c_str(), napi_int32_array);
  if (int64_t(row_ptr.length) != rows + 1)
    fail(err::kShape, n + ".rowPtr: expected length " + std::to_string(rows + 1) + ", received length " + std::to_string(row_ptr.length));
  Csr out{static_cast<const int32_t*>(hold_host(addon, row_ptr_v, row_ptr, n + ".rowPtr", Access::Read)),
          static_cast<const int32_t*>(hold_host(addon, cols_v, c, n + ".cols", Access::Read)), nullptr};
  const Napi::Value w = o.Get("weights");
  if (!w.IsUndefined() && !w.IsNull()) {
    const HostArray wa = host_array(w, (n + ".weights").c_str(), napi_float32_array);
    if (wa.length != c.length)
      fail(err::kShape, n + ".weights: expected length " + std::to_string(c.length) + ", received length " + std::to_string(wa.length));
    out.weights = static_cast<const float*>(hold_host(addon, w, wa, n + ".weights", Access::Read));
  }
  check_csr(out, rows, cols, int64_t(c.length), name);
  return out;
}

}  // namespace fl::napi
