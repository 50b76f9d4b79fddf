// Reading arguments that the TypeScript layer has already validated and normalised. The
// checks here are a second line of defence (a wrong call from JS must throw, never crash):
// each failure throws fl::Error with the same codes the TS layer uses.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "../native/api/error.h"
#include "../native/api/types.h"

namespace fl::napi {

inline const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "Float32Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_float64_array: return "Float64Array";
    default: return "another TypedArray";
  }
}

// A view of a host TypedArray. Throws ERR_DETACHED for a detached buffer.
struct HostArray {
  void* data = nullptr;
  size_t length = 0;  // elements
  size_t bytes = 0;
  const void* buffer = nullptr;  // the start of its ArrayBuffer's memory
  napi_typedarray_type type = napi_float32_array;
};

inline HostArray host_array(const Napi::Value& v, const char* name, napi_typedarray_type want) {
  if (!v.IsTypedArray()) fail(err::kType, std::string(name) + ": expected a " + typed_array_name(want));
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != want)
    fail(err::kDType, std::string(name) + ": expected a " + typed_array_name(want) + ", received " +
                          typed_array_name(ta.TypedArrayType()));
  Napi::ArrayBuffer buf = ta.ArrayBuffer();
  bool detached = false;
  napi_is_detached_arraybuffer(v.Env(), buf, &detached);
  if (detached) fail(err::kDetached, std::string(name) + ": its ArrayBuffer was detached (transferred)");
  HostArray h;
  h.data = static_cast<char*>(buf.Data()) + ta.ByteOffset();
  h.length = ta.ElementLength();
  h.bytes = ta.ByteLength();
  h.buffer = buf.Data();
  h.type = want;
  return h;
}

inline napi_typedarray_type array_type_for(DType d) {
  return d == DType::Float32 ? napi_float32_array : napi_uint16_array;
}

}  // namespace fl::napi
